package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
)

func testSweep(t *testing.T, open Opener) {
	ctx := context.Background()
	clock := NewClock()
	s := open(t, store.WithClock(clock.Now))
	fill(t, s, 6) // created now
	bring(t, s, ICCID(0), store.StateInstalled)
	bring(t, s, ICCID(1), store.StateReleased)
	bring(t, s, ICCID(2), store.StateError)
	clock.Advance(48 * time.Hour)
	must(s.CreateBatch(ctx, store.Batch{ID: "fresh"}))(t)
	must(s.PutBatch(ctx, "fresh", Profiles(ptype, 10, 3, 64)))(t)
	bring(t, s, ICCID(3), store.StateInstalled) // installed just now

	res := must(s.Sweep(ctx, store.SweepPolicy{InstalledFor: time.Hour, MaxAge: 24 * time.Hour}))(t)
	// Installed long ago: 0. Expired (old and never delivered): 2 (Error), 4, 5 (Available).
	if res.Installed != 1 || res.Expired != 3 {
		t.Fatalf("Sweep = %+v, want 1 installed and 3 expired", res)
	}
	for _, tc := range []struct {
		iccid  string
		state  store.State
		swept  bool
		action string
	}{
		{ICCID(0), store.StateInstalled, true, "sweep-installed"},
		{ICCID(1), store.StateReleased, false, ""},
		{ICCID(2), store.StateUnavailable, true, "sweep-expired"},
		{ICCID(3), store.StateInstalled, false, ""},
		{ICCID(4), store.StateUnavailable, true, "sweep-expired"},
		{ICCID(10), store.StateAvailable, false, ""},
	} {
		t.Run(tc.iccid, func(t *testing.T) {
			p := must(s.GetProfile(ctx, tc.iccid))(t)
			if p.State != tc.state {
				t.Errorf("state %s, want %s", p.State, tc.state)
			}
			material := len(p.Segments) > 0 || len(p.ProtectedPPK) > 0 || p.PPKKeyRef != ""
			if tc.swept == material || tc.swept == p.SweptAt.IsZero() {
				t.Errorf("swept %v: segments %d bytes, PPK %d bytes, key ref %q, SweptAt %v",
					tc.swept, len(p.Segments), len(p.ProtectedPPK), p.PPKKeyRef, p.SweptAt)
			}
			audit := must(s.Audit(ctx, tc.iccid))(t)
			if !tc.swept {
				if len(audit) != 0 {
					t.Errorf("audit rows for an unswept profile: %+v", audit)
				}
				return
			}
			if len(audit) != 1 || audit[0].Action != tc.action || audit[0].BatchID != "b1" || !audit[0].At.Equal(clock.Now()) {
				t.Errorf("audit = %+v, want one %s row", audit, tc.action)
			}
		})
	}
	if a := must(s.Audit(ctx, ICCID(0)))(t); len(a) == 1 && (a[0].EID != eid1 || a[0].State != store.StateInstalled) {
		t.Errorf("audit row of the installed profile: %+v", a[0])
	}
	if res := must(s.Sweep(ctx, store.SweepPolicy{InstalledFor: time.Hour, MaxAge: 24 * time.Hour}))(t); res != (store.SweepResult{}) {
		t.Errorf("second sweep = %+v, want nothing", res)
	}
	// Swept profiles are never allocated.
	got := must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype}))(t)
	if got.ICCID < ICCID(10) {
		t.Errorf("allocated %s, want a fresh profile", got.ICCID)
	}
	// Limit (two fresh profiles have expired by now) and the disabled
	// installed sweep.
	clock.Advance(25 * time.Hour)
	res = must(s.Sweep(ctx, store.SweepPolicy{InstalledFor: -1, MaxAge: 24 * time.Hour, Limit: 1}))(t)
	if res.Installed != 0 || res.Expired != 1 {
		t.Errorf("limited sweep = %+v, want 1 expired", res)
	}
	res = must(s.Sweep(ctx, store.SweepPolicy{InstalledFor: 0}))(t)
	if res.Installed != 1 || res.Expired != 0 {
		t.Errorf("sweep of every installed profile = %+v, want 1 installed", res)
	}
}
