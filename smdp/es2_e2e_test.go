package smdp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/jobs"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// TestES2OrderDownloadReports is the operator's whole story on one
// listener shared by ES2+ and ES9+ (as perso serve runs it): the operator
// orders over mutual TLS with a confirmation code, the activation code
// leads an eUICC (no client certificate) through the download, and the
// operator's flaky endpoint receives points 1, 3 and 4 once each, in order.
func TestES2OrderDownloadReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t)
	iccid := e.addProfile(t)
	ca := newTestCA(t, "Operator CA")

	recv := &flakyOperator{failures: 1, attempts: map[string]int{}, accepted: map[string]int{}, got: make(chan struct{}, 8)}
	opSrv := httptest.NewUnstartedServer(recv)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	opSrv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "bss")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots}
	opSrv.StartTLS()
	defer opSrv.Close()
	if _, err := e.db.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: ca.pem(), CallbackURL: opSrv.URL + rsp.ES2HandleDownloadProgressInfo.Path()}); err != nil {
		t.Fatal(err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &ProgressWorker{Operators: e.db, RequesterID: testAddress, Backoff: func(int) time.Duration { return 5 * time.Millisecond },
		HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{ca.issue(t, testAddress)}}}}})
	jc, err := jobs.New(ctx, e.db, jobs.Config{Queues: map[string]int{ProgressQueue: 2}, Workers: workers, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.db.SetTransitionHook(ProgressHook(jc, nil))
	if err := jc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer jc.Stop(context.WithoutCancel(ctx))

	es2, err := NewES2(ES2Config{Address: testAddress, Desk: e.db, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(rsp.ES2PathPrefix, NewES2Handler(es2, ES2HTTPOptions{Operators: e.db}))
	mux.Handle("/", e.srv.Handler(HTTPOptions{}))
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{}
	RequestClientCertificates(srv.TLS)
	srv.StartTLS()
	defer srv.Close()

	op := &ES2Client{BaseURL: srv.URL, HTTP: clientWith(srv, ca.issue(t, "bss")), RequesterID: "op-a"}
	d, err := op.DownloadOrder(ctx, rsp.DownloadOrderRequest{ICCID: iccid})
	if err != nil {
		t.Fatal(err)
	}
	co, err := op.ConfirmOrder(ctx, rsp.ConfirmOrderRequest{ICCID: d.ICCID, ConfirmationCode: "12345678", ReleaseFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	code, err := activation.Parse(es2.ActivationCode(co, true).String())
	if err != nil || !code.CCRequired {
		t.Fatalf("activation code: %+v %v", code, err)
	}

	eu := newTestEUICC(t, esim.CurveP256)
	cl := &es9Client{t: t, hc: srv.Client(), bases: []string{"https://" + srv.Listener.Addr().String()}}
	r, st, _ := cl.do(eu.initiate())
	wantStatus(t, st, "")
	ia := r.(*rsp.InitiateAuthenticationResponse)
	mid := code.MatchingID
	r, st, _ = cl.do(eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &mid), eu.cert, eu.eum))
	wantStatus(t, st, "")
	r, st, _ = cl.do(eu.prepare(t, r.(*rsp.AuthenticateClientResponse), "12345678"))
	wantStatus(t, st, "")
	upp, pir := eu.install(t, r.(*rsp.GetBoundProfilePackageResponse), true)
	if _, _, c := cl.do(pir); c != http.StatusNoContent || !bytes.Equal(upp, e.upp) {
		t.Fatalf("handleNotification HTTP %d, UPP equal %v", c, bytes.Equal(upp, e.upp))
	}

	for range 3 {
		select {
		case <-recv.got:
		case <-ctx.Done():
			t.Fatalf("reports received: %d of 3", len(recv.reports))
		}
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for i, want := range []int{PointEligibility, PointDownload, PointInstall} {
		r := recv.reports[i]
		id := r.Header.FunctionCallIdentifier
		if r.NotificationPointID != want || !r.NotificationPointStatus.IsZero() || r.ICCID != iccid || recv.accepted[id] != 1 || recv.attempts[id] != 2 {
			t.Errorf("report %d: point %d status %q ICCID %s, accepted %d after %d attempts; want point %d success, once after 2",
				i, r.NotificationPointID, r.NotificationPointStatus.Code(), r.ICCID, recv.accepted[id], recv.attempts[id], want)
		}
	}
}
