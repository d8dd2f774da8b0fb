package smdp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// BenchmarkES2OrderPair: DownloadOrder (by profile type) + ConfirmOrder
// pairs over HTTPS with mutual TLS on the embedded store, 32 concurrent
// operator clients (keep-alive connections, as a BSS would hold them).
// pairs/s = b.N / elapsed.
func BenchmarkES2OrderPair(b *testing.B) {
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(b.TempDir(), "perso.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1"}); err != nil {
		b.Fatal(err)
	}
	n := b.N + 64
	for i := 0; i < n; i += 5000 {
		if _, err := s.PutBatch(ctx, "b1", storetest.Profiles("t1", i, min(5000, n-i), 64)); err != nil {
			b.Fatal(err)
		}
	}
	ca := newTestCA(b, "Bench Operator CA")
	if _, err := s.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: ca.pem()}); err != nil {
		b.Fatal(err)
	}
	e, err := NewES2(ES2Config{Address: smdpAddr, Desk: s, Log: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NewES2Handler(e, ES2HTTPOptions{Operators: s, OperatorTTL: time.Second})) // as perso serve
	srv.TLS = &tls.Config{}
	RequestClientCertificates(srv.TLS)
	srv.StartTLS()
	defer srv.Close()
	cert := ca.issue(b, "bss")
	// 32 client goroutines in all (RunParallel starts p×GOMAXPROCS).
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	var failed atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &ES2Client{BaseURL: srv.URL, HTTP: clientWith(srv, cert), RequesterID: "op-a"}
		for pb.Next() {
			d, err := c.DownloadOrder(ctx, rsp.DownloadOrderRequest{ProfileType: "t1"})
			if err == nil {
				_, err = c.ConfirmOrder(ctx, rsp.ConfirmOrderRequest{ICCID: d.ICCID, ReleaseFlag: true})
			}
			if err != nil && failed.Add(1) == 1 {
				fmt.Println("order failed:", err)
			}
		}
	})
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d pairs failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}

// BenchmarkES2OrderPairDirect is BenchmarkES2OrderPair without HTTP and
// TLS: the handlers on the store, to tell the store's share from the
// transport's.
func BenchmarkES2OrderPairDirect(b *testing.B) {
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(b.TempDir(), "perso.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1"}); err != nil {
		b.Fatal(err)
	}
	n := b.N + 64
	for i := 0; i < n; i += 5000 {
		if _, err := s.PutBatch(ctx, "b1", storetest.Profiles("t1", i, min(5000, n-i), 64)); err != nil {
			b.Fatal(err)
		}
	}
	e, err := NewES2(ES2Config{Address: smdpAddr, Desk: s, Log: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	var failed atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d, st := e.DownloadOrder(ctx, "op-a", &rsp.DownloadOrderRequest{ProfileType: "t1"})
			if st.IsZero() {
				_, st = e.ConfirmOrder(ctx, "op-a", &rsp.ConfirmOrderRequest{ICCID: d.ICCID, ReleaseFlag: true})
			}
			if !st.IsZero() {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d pairs failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}
