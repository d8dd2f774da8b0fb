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
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/esim"
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

// fakeQueue records the jobs inserted outside a store transaction.
type fakeQueue struct{ args []ProgressArgs }

func (q *fakeQueue) InsertMany(_ context.Context, ps []river.InsertManyParams) error {
	for _, p := range ps {
		a := p.Args.(ProgressArgs)
		if len(p.InsertOpts.Tags) != 1 || p.InsertOpts.Tags[0] != orderTag(a.Operator, a.ICCID) || p.InsertOpts.Queue != ProgressQueue {
			return fmt.Errorf("report %+v inserted with %+v", a, p.InsertOpts)
		}
		q.args = append(q.args, a)
	}
	return nil
}

// TestDeletionReport: a verified delete notification from the eUICC that
// installed an operator's order enqueues one PointDeleted report to that
// operator, after the order's earlier reports (same order tag), with an
// eventId that a resent notification repeats; a deletion of a profile
// that is not installed, of an unknown ICCID, another event or a forged
// signature enqueue nothing.
func TestDeletionReport(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	q := &fakeQueue{}
	e.srv.SetDeletionReporter(DeletionReports(q, e.db, func() time.Time { return e.now }))
	es2 := newES2(t, e.db, nil)
	installed, ordered := e.addProfile(t), e.addProfile(t)
	eu := newTestEUICC(t, esim.CurveP256)
	for _, iccid := range []string{installed, ordered} {
		if _, st := es2.DownloadOrder(ctx, "op-a", &rsp.DownloadOrderRequest{ICCID: iccid}); !st.IsZero() {
			t.Fatal(st)
		}
	}
	co, st := es2.ConfirmOrder(ctx, "op-a", &rsp.ConfirmOrderRequest{ICCID: installed, ReleaseFlag: true})
	if !st.IsZero() {
		t.Fatal(st)
	}
	_, ac := authenticated(t, e, eu, co.MatchingID)
	gb, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, ""))
	wantStatus(t, st, "")
	_, pir := eu.install(t, gb, true)
	if err := e.srv.HandleNotification(ctx, wire(t, pir)); err != nil {
		t.Fatal(err)
	}

	notify := func(iccid string, op rsp.NamedBits, seq int64, forge bool) error {
		c, err := esim.ParseICCID(iccid)
		if err != nil {
			t.Fatal(err)
		}
		bcd := c.SwappedBCD()
		md := rsp.NotificationMetadata{SeqNumber: seq, Operation: op, NotificationAddress: testAddress, ICCID: bcd[:]}
		raw, err := md.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		n := &rsp.HandleNotification{PendingNotification: rsp.PendingNotification{Other: &rsp.OtherSignedNotification{
			TBSOtherNotification: md, EUICCNotificationSignature: eu.sign(t, raw), EUICCCertificate: eu.cert, EUMCertificate: eu.eum}}}
		if forge {
			n.PendingNotification.Other.EUICCNotificationSignature[9] ^= 1
		}
		return e.srv.HandleNotification(ctx, wire(t, n))
	}
	const payload = "894944999999999000" // not added by e.addProfile (it counts up from 1)
	luhn, err := esim.LuhnDigit(payload)
	if err != nil {
		t.Fatal(err)
	}
	unknown := payload + string(luhn)
	for _, tc := range []struct {
		name  string
		iccid string
		op    rsp.NamedBits
		forge bool
	}{
		{"profile ordered, not installed", ordered, rsp.NotificationDelete, false},
		{"unknown ICCID", unknown, rsp.NotificationDelete, false},
		{"disable, not delete", installed, rsp.NotificationDisable, false},
		{"forged signature", installed, rsp.NotificationDelete, true},
	} {
		notify(tc.iccid, tc.op, 3, tc.forge)
		if len(q.args) != 0 {
			t.Fatalf("%s: reports %+v", tc.name, q.args)
		}
	}
	for range 2 { // the LPA sends the same notification again
		if err := notify(installed, rsp.NotificationDelete, 4, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(q.args) != 2 || q.args[0] != q.args[1] {
		t.Fatalf("reports %+v, want the same one twice", q.args)
	}
	if a := q.args[0]; a.Point != PointDeleted || a.Operator != "op-a" || a.ICCID != installed || a.EID != eu.eid ||
		a.ProfileType == "" || a.Subject != "" || a.EventID == "" {
		t.Fatalf("report %+v", a)
	}
	if err := notify(installed, rsp.NotificationDelete, 5, false); err != nil || len(q.args) != 3 || q.args[2].EventID == q.args[0].EventID {
		t.Fatalf("a later deletion (seq 5): %v, reports %+v", err, q.args)
	}
}

// TestProgressPoint: each download change an operator is told of maps to
// its notification point and status (failures with the code ES9+
// answered); the operator's own ES2+ calls and intermediate steps are not
// reported.
func TestProgressPoint(t *testing.T) {
	for _, tc := range []struct {
		ev       store.Event
		to       store.State
		point    int
		code     string // "" success
		reported bool
	}{
		{store.EventAuthenticateClient, store.StateReleased, PointEligibility, "", true},
		{store.EventAuthenticateClient, store.StateError, PointEligibility, "8.8.5/6.4", true},
		{store.EventCCFailure, store.StateReleased, 0, "", false},
		{store.EventCCFailure, store.StateError, PointConfirmCode, "8.2.7/6.4", true},
		{store.EventBPPDelivered, store.StateDownloaded, PointDownload, "", true},
		{store.EventSessionCancelled, store.StateReleased, PointDownload, "8.1/3.8", true},
		{store.EventInstallResult, store.StateInstalled, PointInstall, "", true},
		{store.EventInstallResult, store.StateReleased, PointInstall, "8.1/4.2", true},
		{store.EventDownloadOrder, store.StateAllocated, 0, "", false},
		{store.EventConfirmOrder, store.StateReleased, 0, "", false},
		{store.EventCancelOrder, store.StateAvailable, 0, "", false},
		{store.EventReleaseProfile, store.StateReleased, 0, "", false},
	} {
		point, st, reported := progressPoint(store.Transition{Event: tc.ev, To: tc.to})
		code := ""
		if !st.IsZero() {
			code = st.Code()
		}
		if reported != tc.reported || reported && (point != tc.point || code != tc.code) {
			t.Errorf("%s → %s: point %d %q reported %v; want %d %q %v", tc.ev, tc.to, point, code, reported, tc.point, tc.code, tc.reported)
		}
	}
}
