package smdp

import (
	"bytes"
	"context"
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
