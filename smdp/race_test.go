package smdp

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// racingStore lets another replica act right after AuthenticateClient has
// read the order (meanwhile), and counts the server's two-transaction
// fallback (AuthenticateClient).
type racingStore struct {
	*store.DB
	meanwhile func(ctx context.Context, p store.Profile)
	recorded  atomic.Int32
}

func (r *racingStore) DownloadProfile(ctx context.Context, mid string) (store.Profile, error) {
	p, err := r.DB.DownloadProfile(ctx, mid)
	if err == nil && r.meanwhile != nil {
		r.meanwhile(ctx, p)
	}
	return p, err
}

func (r *racingStore) AuthenticateClient(ctx context.Context, iccid, eid string) (store.Profile, error) {
	r.recorded.Add(1)
	return r.DB.AuthenticateClient(ctx, iccid, eid)
}

func racingEnv(t *testing.T, meanwhile func(ctx context.Context, e *env, p store.Profile)) (*env, *racingStore) {
	t.Helper()
	e := newEnv(t)
	rs := &racingStore{DB: e.db}
	rs.meanwhile = func(ctx context.Context, p store.Profile) { meanwhile(ctx, e, p) }
	srv, err := NewServer(Config{Address: testAddress, Credentials: e.srv.cfg.Credentials, Store: rs, HSM: e.hsm,
		Now: e.srv.cfg.Now, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	return e, rs
}

// The order changes between the read the answer is prepared from and the
// transaction that records the attempt (another replica counted one): the
// transaction refuses, the attempt is recorded on the current order and
// the answer prepared again; the download completes and the order counts
// exactly the two attempts made.
func TestAuthenticateClientOrderChangedMeanwhile(t *testing.T) {
	eu := newTestEUICC(t, esim.CurveP256)
	e, rs := racingEnv(t, func(ctx context.Context, e *env, p store.Profile) {
		if _, err := e.db.AuthenticateClient(ctx, p.ICCID, eu.eid); err != nil {
			t.Errorf("the other replica's attempt: %v", err)
		}
	})
	p := e.order(t, e.addProfile(t), "", nil, "")
	upp, _ := download(t, e, eu, &p.MatchingID, "")
	if !bytes.Equal(upp, e.upp) {
		t.Fatal("the UPP the eUICC opened differs from the stored one")
	}
	if n := rs.recorded.Load(); n != 1 {
		t.Fatalf("the server recorded the attempt apart %d times, want 1 (after the refused transaction)", n)
	}
	o, err := e.db.Order(context.Background(), p.ICCID)
	if err != nil {
		t.Fatal(err)
	}
	if o.DownloadAttempts != 2 || o.State != store.StateInstalled {
		t.Fatalf("order after the download: %d attempts, %s; want 2, Installed", o.DownloadAttempts, o.State)
	}
}

// Another replica advances the session meanwhile: this call is a
// duplicate (8.10.1/3.9) and records no download attempt, since the
// attempt and the session commit together.
func TestAuthenticateClientSessionChangedMeanwhile(t *testing.T) {
	eu := newTestEUICC(t, esim.CurveP256)
	var tid string
	e, rs := racingEnv(t, func(ctx context.Context, e *env, p store.Profile) {
		s, err := e.db.GetSession(ctx, tid)
		if err == nil {
			_, err = e.db.UpdateSession(ctx, s)
		}
		if err != nil {
			t.Errorf("the other replica's session update: %v", err)
		}
	})
	p := e.order(t, e.addProfile(t), "", nil, "")
	ia := initiated(t, e, eu)
	tid = tidKey(ia.TransactionID)
	_, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &p.MatchingID), eu.cert, eu.eum))
	wantStatus(t, st, "8.10.1/3.9")
	o, err := e.db.Order(context.Background(), p.ICCID)
	if err != nil {
		t.Fatal(err)
	}
	if o.DownloadAttempts != 0 || rs.recorded.Load() != 0 {
		t.Fatalf("a duplicate call recorded an attempt: %d stored, %d apart", o.DownloadAttempts, rs.recorded.Load())
	}
}

// A profile the eUICC cannot take (row 20) still costs the download
// attempt, as the store's rows 16–19 come first.
func TestIneligibleProfileCountsTheAttempt(t *testing.T) {
	e := newEnv(t)
	p := e.order(t, e.addProfile(t), "", nil, "")
	eu := newTestEUICC(t, esim.CurveP256)
	ia := initiated(t, e, eu)
	s1 := eu.authSigned1(ia, &p.MatchingID)
	s1.EUICCInfo2.ExtCardResource = []byte{0x81, 0x01, 0x00, 0x82, 0x02, 0x01, 0x00} // 256 bytes free: too few
	_, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, s1, eu.cert, eu.eum))
	wantStatus(t, st, "8.1/4.8")
	o, err := e.db.Order(context.Background(), p.ICCID)
	if err != nil {
		t.Fatal(err)
	}
	if o.DownloadAttempts != 1 {
		t.Fatalf("download attempts after an ineligible profile = %d, want 1", o.DownloadAttempts)
	}
}

// replicas returns two servers on one store (e's and a second one): the
// calls of one session alternate between them as a load balancer may
// send them, each server keeping copies of the sessions it wrote.
func replicas(t *testing.T, e *env) [2]*Server {
	t.Helper()
	b, err := NewServer(Config{Address: testAddress, Credentials: e.srv.cfg.Credentials, Store: e.db, HSM: e.hsm,
		Now: e.srv.cfg.Now, Log: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return [2]*Server{e.srv, b}
}

// on runs one call on server srv.
func on[R rsp.Response](t *testing.T, e *env, srv *Server, req rsp.Request) (R, rsp.Status) {
	t.Helper()
	keep := e.srv
	e.srv = srv
	defer func() { e.srv = keep }()
	return call[R](t, e, req)
}

// authenticatedOnReplicas orders a profile and runs initiateAuthentication
// and authenticateClient for it on the first of two replicas.
func authenticatedOnReplicas(t *testing.T) (*env, [2]*Server, store.Profile, *testEUICC, *rsp.InitiateAuthenticationResponse, *rsp.AuthenticateClientResponse) {
	t.Helper()
	e := newEnv(t)
	srv := replicas(t, e)
	p := e.order(t, e.addProfile(t), "", nil, "")
	eu := newTestEUICC(t, esim.CurveP256)
	ia, st := on[*rsp.InitiateAuthenticationResponse](t, e, srv[0], eu.initiate())
	wantStatus(t, st, "")
	ac, st := on[*rsp.AuthenticateClientResponse](t, e, srv[0], eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &p.MatchingID), eu.cert, eu.eum))
	wantStatus(t, st, "")
	return e, srv, p, eu, ia, ac
}

// A server whose copy of a session another replica advanced answers as a
// fresh read would: a retried getBoundProfilePackage that replica A still
// sees as the first (its copy says authenticated, B bound the package) is
// answered as the retry (same smdpOtpk, no store change; the package A
// bound from its stale copy is discarded when its transaction finds the
// session moved), and the notification then completes the download on A.
func TestStaleSessionCopyRetry(t *testing.T) {
	e, srv, p, eu, ia, ac := authenticatedOnReplicas(t)
	req := eu.prepare(t, ac, "")
	first, st := on[*rsp.GetBoundProfilePackageResponse](t, e, srv[1], req)
	wantStatus(t, st, "")
	again, st := on[*rsp.GetBoundProfilePackageResponse](t, e, srv[0], req)
	wantStatus(t, st, "")
	if !bytes.Equal(smdpOtpkOf(t, eu, again.BoundProfilePackage), smdpOtpkOf(t, eu, first.BoundProfilePackage)) {
		t.Fatal("the retry on the replica with the stale copy got another smdpOtpk")
	}
	s, err := e.db.GetSession(context.Background(), tidKey(ia.TransactionID))
	if err != nil || s.Version != 3 || s.Phase != phaseBound {
		t.Fatalf("session after the retry: version %d phase %s, %v; want 3, bound", s.Version, s.Phase, err)
	}
	upp, pir := eu.install(t, again, true)
	if !bytes.Equal(upp, e.upp) {
		t.Fatal("UPP differs")
	}
	if err := srv[0].HandleNotification(context.Background(), wire(t, pir)); err != nil {
		t.Fatalf("handleNotification on the replica with the stale copy: %v", err)
	}
	if o, _ := e.db.Order(context.Background(), p.ICCID); o.State != store.StateInstalled {
		t.Fatalf("state %s, want Installed", o.State)
	}
}

// A session cancelled on another replica is gone for the server that still
// has a copy: its notification is refused and changes nothing.
func TestStaleSessionCopyCancelled(t *testing.T) {
	e, srv, p, eu, _, ac := authenticatedOnReplicas(t)
	gb, st := on[*rsp.GetBoundProfilePackageResponse](t, e, srv[0], eu.prepare(t, ac, ""))
	wantStatus(t, st, "")
	_, st = on[*rsp.CancelSessionResponseEs9](t, e, srv[1], eu.cancel(t, ac.TransactionID, rsp.CancelPostponed, asn1.ObjectIdentifier{2, 999, 10}))
	wantStatus(t, st, "")
	_, pir := eu.install(t, gb, true)
	err := srv[0].HandleNotification(context.Background(), wire(t, pir))
	var rst rsp.Status
	if !errors.As(err, &rst) || rst.Code() != "8.10.1/3.9" {
		t.Fatalf("notification of a session cancelled on another replica: %v, want 8.10.1/3.9", err)
	}
	if o, _ := e.db.Order(context.Background(), p.ICCID); o.State != store.StateReleased {
		t.Fatalf("state %s, want Released (cancelled, re-downloadable)", o.State)
	}
}
