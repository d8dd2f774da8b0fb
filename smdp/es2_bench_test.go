package smdp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/perso-esim/perso/jobs"
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

// BenchmarkES2ProgressDelivery: HandleDownloadProgressInfo reports
// delivered by River workers (serve.callback_workers = 16) over mutual TLS
// to a local operator endpoint that answers 204 at once, on the embedded
// store; three reports per order (points 1, 3, 4, delivered in order).
// callbacks/s = b.N / elapsed, from the first insert to the last delivery.
func BenchmarkES2ProgressDelivery(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := store.Open(ctx, "sqlite", filepath.Join(b.TempDir(), "perso.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ca := newTestCA(b, "Bench PKI")
	var delivered atomic.Int64
	done := make(chan struct{})
	opSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		if delivered.Add(1) == int64(b.N) {
			close(done)
		}
	}))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	opSrv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(b, "bss")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots}
	opSrv.StartTLS()
	defer opSrv.Close()
	if _, err := s.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: ca.pem(), CallbackURL: opSrv.URL + "/cb"}); err != nil {
		b.Fatal(err)
	}
	workers := river.NewWorkers()
	w := &ProgressWorker{Operators: s, RequesterID: smdpAddr, Backoff: func(int) time.Duration { return 10 * time.Millisecond },
		HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16,
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{ca.issue(b, smdpAddr)}}}}}
	river.AddWorker(workers, w)
	jc, err := jobs.New(ctx, s, jobs.Config{Queues: map[string]int{ProgressQueue: 16}, Workers: workers, PollInterval: 10 * time.Millisecond,
		Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	w.Pending = jc // as perso serve
	params := make([]river.InsertManyParams, 0, b.N)
	for i := 0; i < b.N; i++ {
		iccid := storetest.ICCID(i / 3)
		a := ProgressArgs{EventID: fmt.Sprintf("evt-%d", i), Operator: "op-a", ICCID: iccid, ProfileType: "t1",
			Point: []int{PointEligibility, PointDownload, PointInstall}[i%3], Timestamp: time.Now().UTC().Format(time.RFC3339)}
		opts := a.InsertOpts()
		opts.Tags = []string{orderTag(a.Operator, iccid)}
		params = append(params, river.InsertManyParams{Args: a, InsertOpts: &opts})
	}
	b.ResetTimer()
	for i := 0; i < len(params); i += 1000 {
		if err := jc.InsertMany(ctx, params[i:min(i+1000, len(params))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := jc.Start(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("%d of %d reports delivered", delivered.Load(), b.N)
	}
	b.StopTimer()
	jc.Stop(context.WithoutCancel(ctx))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "callbacks/s")
}
