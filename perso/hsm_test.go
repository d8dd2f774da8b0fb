package perso_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/perso"
)

// countingDecrypter counts the calls that reach the HSM.
type countingDecrypter struct {
	perso.TransportDecrypter
	calls atomic.Int64
}

func (c *countingDecrypter) DecryptTransport(ctx context.Context, label, alg string, ct []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.TransportDecrypter.DecryptTransport(ctx, label, alg, ct)
}

var keyNumber atomic.Int64

// TestTransportThroughSoftHSM decrypts a transport-encrypted .out file
// through hsmpool on a real SoftHSM2 token: the transport key is imported
// into the token and never used in software by the reader. One
// DecryptTransport call is made per encrypted column per batch.
func TestTransportThroughSoftHSM(t *testing.T) {
	tok := testenv.SoftHSM(t)
	ctx := context.Background()
	pool, err := hsmpool.Open(ctx, hsmpool.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 2})
	if err != nil {
		t.Fatalf("hsmpool.Open: %v", err)
	}
	t.Cleanup(func() { pool.Close() })

	cases := []struct {
		alg  string
		kind string
		key  string
	}{
		{perso.TransportAES128CBC, hsmpool.KindTransportAES, "8f3a1c5e7b9d2f4a6c8e0b1d3f5a7c9e"},
		{perso.TransportAES128ECB, hsmpool.KindTransportAES, "0c1d2e3f405162738495a6b7c8d9eafb"},
		{perso.Transport3DESCBC, hsmpool.KindTransport3DES, "1a2b3c4d5e6f70811a2b3c4d5e6f7081a1b2c3d4e5f60718"},
	}
	for _, c := range cases {
		t.Run(c.alg, func(t *testing.T) {
			n := int(900 + keyNumber.Add(1))
			key := hexBytes(t, c.key)
			if err := pool.ImportSecretKey(ctx, perso.TransportKeyLabel(n), c.kind, bytes.Clone(key)); err != nil {
				t.Fatalf("ImportSecretKey: %v", err)
			}
			gen := perso.GenOptions{Count: 2500, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
				BatchSize: 1000, Rand: rand.NewChaCha8([32]byte{9})}
			plainGen := gen
			want := collect(t, plainGen)

			gen.Rand = rand.NewChaCha8([32]byte{9})
			gen.Transport, gen.TransportKey = perso.Transport{Key: n, Alg: c.alg}, key
			g, err := perso.NewGenerator(gen)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			path := filepath.Join(t.TempDir(), "enc.out")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := perso.NewOutWriter(f, g.Schema(), perso.OutFileHeader{Customer: "Acme", Quantity: gen.Count,
				Transport: perso.Transport{Key: n, Alg: c.alg}, IMSI: gen.IMSIStart, SerNb: "894415000000000001"})
			if err != nil {
				t.Fatal(err)
			}
			for {
				rec, err := g.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Write(rec); err != nil {
					t.Fatal(err)
				}
				rec.Release()
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()

			dec := &countingDecrypter{TransportDecrypter: pool}
			var rejects perso.RejectList
			r, _, err := perso.Open(path, perso.Options{Decrypter: dec, BatchSize: 1000, Rejects: &rejects})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var got []perso.Record
			for {
				rec, err := r.Next(ctx)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < int(rec.NumRows()); i++ {
					pr, err := perso.RecordAt(rec, i)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, pr)
				}
				rec.Release()
			}
			if len(rejects.Items) > 0 || len(got) != len(want) {
				t.Fatalf("%d records, %d rejects; want %d records", len(got), len(rejects.Items), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i].Ki, want[i].Ki) || !bytes.Equal(got[i].OPc, want[i].OPc) {
					t.Fatalf("record %d: Ki/OPc after HSM decryption differ from the plaintext", i)
				}
			}
			// 3 batches x 2 encrypted columns (ki, opc)
			if calls := dec.calls.Load(); calls != 6 {
				t.Fatalf("%d DecryptTransport calls, want 6 (one per column per batch)", calls)
			}
		})
	}
}

func collect(t *testing.T, o perso.GenOptions) []perso.Record {
	t.Helper()
	g, err := perso.NewGenerator(o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var out []perso.Record
	for {
		rec, err := g.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			r, err := perso.RecordAt(rec, i)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		rec.Release()
	}
}

func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		b[i] = byte(v)
	}
	return b
}

// BenchmarkTransportSoftHSM reads a transport-encrypted .out (AES-128-CBC,
// ki and opc) through hsmpool on SoftHSM2: with the default batches (one
// DecryptTransport call per column per 8192 records) and, for comparison,
// with one-record batches (one call per value, the naive design).
func BenchmarkTransportSoftHSM(b *testing.B) {
	tok := testenv.SoftHSM(b)
	ctx := context.Background()
	pool, err := hsmpool.Open(ctx, hsmpool.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	n := int(900 + keyNumber.Add(1))
	key := make([]byte, 16)
	if err := pool.ImportSecretKey(ctx, perso.TransportKeyLabel(n), hsmpool.KindTransportAES, bytes.Clone(key)); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		records int64
		batch   int
	}{{"batch=8192", 100_000, 8192}, {"batch=1", 5_000, 1}} {
		b.Run(c.name, func(b *testing.B) {
			g, err := perso.NewGenerator(perso.GenOptions{Count: c.records, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
				Transport: perso.Transport{Key: n, Alg: perso.TransportAES128CBC}, TransportKey: key})
			if err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			w, _ := perso.NewOutWriter(&buf, g.Schema(), perso.OutFileHeader{Quantity: c.records, Transport: perso.Transport{Key: n, Alg: perso.TransportAES128CBC}})
			for {
				rec, err := g.Next()
				if err == io.EOF {
					break
				}
				w.Write(rec)
				rec.Release()
			}
			w.Close()
			g.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := perso.NewOutReader(bytes.NewReader(buf.Bytes()), perso.Options{Decrypter: pool, BatchSize: c.batch})
				if err != nil {
					b.Fatal(err)
				}
				for {
					rec, err := r.Next(ctx)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					rec.Release()
				}
				if r.Stats().Records != c.records {
					b.Fatalf("%d records", r.Stats().Records)
				}
			}
			b.ReportMetric(float64(c.records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
