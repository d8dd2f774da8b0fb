package smdp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/jobs"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// flakyOperator is an operator's HandleDownloadProgressInfo endpoint over
// mutual TLS that fails the first attempts of every report, and records
// each report it accepted, deduplicated by eventId as a real receiver would.
type flakyOperator struct {
	mu       sync.Mutex
	failures int // per eventId before accepting
	down     bool
	attempts map[string]int
	accepted map[string]int // eventId → times accepted
	reports  []*rsp.HandleDownloadProgressInfoRequest
	got      chan struct{}
}

func (f *flakyOperator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, err := rsp.DecodeES2Request(rsp.ES2HandleDownloadProgressInfo, body)
	if err != nil || r.URL.Path != rsp.ES2HandleDownloadProgressInfo.Path() || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "bad report", http.StatusBadRequest)
		return
	}
	m := req.(*rsp.HandleDownloadProgressInfoRequest)
	id := m.Header.FunctionCallIdentifier
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts[id]++
	if f.down || f.attempts[id] <= f.failures {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	f.accepted[id]++
	if f.accepted[id] == 1 {
		f.reports = append(f.reports, m)
		f.got <- struct{}{}
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestProgressCallbacks: reports enqueued with the changes while the
// operator is unreachable and the server stops survive the restart, are
// delivered through the operator's failures, over mutual TLS, each exactly
// once, in the order of each order's changes.
func TestProgressCallbacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca := newTestCA(t, "Test PKI")
	recv := &flakyOperator{failures: 2, down: true, attempts: map[string]int{}, accepted: map[string]int{}, got: make(chan struct{}, 16)}
	srv := httptest.NewUnstartedServer(recv)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "bss.operator.example")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots}
	srv.StartTLS()
	defer srv.Close()
	smdpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		Certificates: []tls.Certificate{ca.issue(t, smdpAddr)}}}}

	path := filepath.Join(t.TempDir(), "perso.db")
	// start opens the store and River with the progress worker and hook;
	// work says whether the worker runs.
	start := func(work bool) (*store.DB, *jobs.Client) {
		db, err := store.Open(ctx, "sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		workers := river.NewWorkers()
		w := &ProgressWorker{Operators: db, HTTP: smdpClient, RequesterID: smdpAddr,
			Backoff: func(int) time.Duration { return 5 * time.Millisecond }}
		river.AddWorker(workers, w)
		cfg := jobs.Config{Workers: workers, PollInterval: 10 * time.Millisecond}
		if work {
			cfg.Queues = map[string]int{ProgressQueue: 2}
		}
		c, err := jobs.New(ctx, db, cfg)
		if err != nil {
			t.Fatal(err)
		}
		w.Pending = c // as perso serve (TestES2OrderDownloadReports keeps River's JobList)
		db.SetTransitionHook(ProgressHook(c, nil))
		if work {
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return db, c
	}

	db, _ := start(false)
	if _, err := db.CreateBatch(ctx, store.Batch{ID: "b1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutBatch(ctx, "b1", storetest.Profiles("t1", 0, 2, 8)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: ca.pem(), CallbackURL: srv.URL + rsp.ES2HandleDownloadProgressInfo.Path()}); err != nil {
		t.Fatal(err)
	}
	e := newES2(t, db, nil)
	for i, installed := range []bool{true, false} {
		iccid := storetest.ICCID(i)
		if _, st := e.DownloadOrder(ctx, "op-a", &rsp.DownloadOrderRequest{ICCID: iccid}); !st.IsZero() {
			t.Fatal(st)
		}
		if _, st := e.ConfirmOrder(ctx, "op-a", &rsp.ConfirmOrderRequest{ICCID: iccid, ReleaseFlag: true}); !st.IsZero() {
			t.Fatal(st)
		}
		for _, step := range []func() (store.Profile, error){
			func() (store.Profile, error) { return db.AuthenticateClient(ctx, iccid, eid1) },
			func() (store.Profile, error) { return db.BPPDelivered(ctx, iccid) },
			func() (store.Profile, error) { return db.InstallResult(ctx, iccid, installed) },
		} {
			if _, err := step(); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close() // the server stops before anything was delivered

	recv.mu.Lock()
	recv.down = false
	recv.mu.Unlock()
	db, c := start(true)
	defer db.Close()
	for range 6 {
		select {
		case <-recv.got:
		case <-ctx.Done():
			t.Fatalf("reports delivered: %d of 6", len(recv.reports))
		}
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	type point struct {
		id     int
		status string
	}
	byICCID := map[string][]point{}
	for _, r := range recv.reports {
		id := r.Header.FunctionCallIdentifier
		if recv.accepted[id] != 1 || recv.attempts[id] != 3 {
			t.Errorf("report %s accepted %d times after %d attempts, want once after 3", id, recv.accepted[id], recv.attempts[id])
		}
		if r.ProfileType != "t1" || r.Header.FunctionRequesterIdentifier != smdpAddr || r.Timestamp == "" {
			t.Errorf("report %+v", r)
		}
		byICCID[r.ICCID] = append(byICCID[r.ICCID], point{r.NotificationPointID, r.NotificationPointStatus.Code()})
	}
	want := map[string][]point{
		storetest.ICCID(0): {{1, "/"}, {3, "/"}, {4, "/"}},
		storetest.ICCID(1): {{1, "/"}, {3, "/"}, {4, "8.1/4.2"}},
	}
	for iccid, w := range want {
		got := byICCID[iccid]
		if len(got) != len(w) {
			t.Fatalf("%s: reports %v, want %v", iccid, got, w)
		}
		for i := range w {
			if got[i] != w[i] {
				t.Errorf("%s: reports %v, want %v (in this order)", iccid, got, w)
				break
			}
		}
	}
	rows, err := c.List(ctx, ProgressQueue)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.State != rivertype.JobStateCompleted {
			t.Errorf("job %d is %s", r.ID, r.State)
		}
	}
	if len(rows) != 6 {
		t.Errorf("%d report jobs, want 6", len(rows))
	}
}
