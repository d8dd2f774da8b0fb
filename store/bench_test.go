package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/perso-esim/perso/internal/cputime"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

const (
	ts48Segments = 12 * 1024 // ≈ the `86` segments of a TS.48 profile
	benchChunk   = 1000      // profiles per PutBatch call
)

type benchBackend struct {
	name string
	open func(b *testing.B) *store.DB
}

var benchBackends = []benchBackend{
	{"sqlite", func(b *testing.B) *store.DB {
		s, err := store.Open(context.Background(), "sqlite", filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
	{"postgres", func(b *testing.B) *store.DB {
		s, err := store.Open(context.Background(), "postgres", testenv.PostgresSchemaDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

// BenchmarkBulkInsert: PutBatch of TS.48-size rows (12 KB of segments, a
// 100-byte protected PPK), 1,000 profiles per call, from GOMAXPROCS
// concurrent loaders (the engine's store stage, or several workers). One op
// = one call.
func BenchmarkBulkInsert(b *testing.B) {
	for _, bb := range benchBackends {
		b.Run(bb.name, func(b *testing.B) {
			ctx := context.Background()
			s := bb.open(b)
			defer s.Close()
			if _, err := s.CreateBatch(ctx, store.Batch{ID: "bench"}); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetBytes(int64(benchChunk * (ts48Segments + 100)))
			cpu0 := cputime.Process().Microseconds()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				chunk := storetest.Profiles("bench", 0, benchChunk, ts48Segments)
				for pb.Next() {
					first := int(next.Add(1)-1) * benchChunk
					for j := range chunk {
						chunk[j].ICCID = storetest.ICCID(first + j)
					}
					res, err := s.PutBatch(ctx, "bench", chunk)
					if err != nil || res.Inserted != benchChunk {
						b.Errorf("PutBatch: %+v, %v", res, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*benchChunk)/b.Elapsed().Seconds(), "profiles/s")
			b.ReportMetric(float64(cputime.Process().Microseconds()-cpu0)/float64(b.N*benchChunk), "proc-cpu-µs/profile")
		})
	}
}

// BenchmarkOrders: allocate + link + confirm, the ES2+ order path: a
// DownloadOrder from a profile-type pool with an EID, then a ConfirmOrder
// that generates the matching ID and releases the profile. Concurrent
// callers, as a server sees them. One op = one order.
func BenchmarkOrders(b *testing.B) {
	for _, bb := range benchBackends {
		b.Run(bb.name, func(b *testing.B) {
			ctx := context.Background()
			s := bb.open(b)
			defer s.Close()
			if _, err := s.CreateBatch(ctx, store.Batch{ID: "bench"}); err != nil {
				b.Fatal(err)
			}
			for first := 0; first < b.N; first += 5000 {
				if _, err := s.PutBatch(ctx, "bench", storetest.Profiles("pool", first, min(5000, b.N-first), 64)); err != nil {
					b.Fatal(err)
				}
			}
			b.SetParallelism(8)
			cpu0 := cputime.Process().Microseconds()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					eid := fmt.Sprintf("890490320000000000000000%08d", 1)
					p, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: "pool", EID: eid})
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: p.ICCID, EID: eid, ReleaseFlag: true}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
			b.ReportMetric(float64(cputime.Process().Microseconds()-cpu0)/float64(b.N), "proc-cpu-µs/order")
		})
	}
}
