package storetest

import (
	"bytes"
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
)

func testSessions(t *testing.T, open Opener) {
	ctx := context.Background()
	clock := NewClock()
	s := open(t, store.WithClock(clock.Now), store.WithSessionTTL(5*time.Minute))
	// Two handles on one store stand for two server replicas when the
	// backend is shared; here they are the same store.
	in := store.Session{
		TransactionID: "0123456789ABCDEF0123456789ABCDEF", Phase: "initiated",
		EUICCChallenge: bytes.Repeat([]byte{1}, 16), ServerChallenge: bytes.Repeat([]byte{2}, 16),
	}
	put := must(s.PutSession(ctx, in))(t)
	if put.Version != 1 || !put.ExpiresAt.Equal(clock.Now().Add(5*time.Minute)) {
		t.Fatalf("PutSession = %+v", put)
	}
	_, err := s.PutSession(ctx, in)
	wantErr(t, err, store.ErrConflict, "")

	got := must(s.GetSession(ctx, in.TransactionID))(t)
	if got.Phase != "initiated" || !bytes.Equal(got.ServerChallenge, in.ServerChallenge) || got.Version != 1 {
		t.Fatalf("GetSession = %+v", got)
	}
	clock.Advance(time.Minute)
	got.Phase, got.EID, got.ICCID, got.MatchingID = "authenticated", eid1, ICCID(0), "AC"
	got.EUICCOtPK, got.SMDPOtPK, got.OTKeyRef, got.Data = []byte{4, 1}, []byte{4, 2}, "otk-17", []byte("certs")
	upd := must(s.UpdateSession(ctx, got))(t)
	if upd.Version != 2 || !upd.ExpiresAt.Equal(put.ExpiresAt) {
		t.Fatalf("UpdateSession = %+v, want version 2 and the stored expiry", upd)
	}
	// A replica holding the old version loses.
	_, err = s.UpdateSession(ctx, got)
	wantErr(t, err, store.ErrStale, "")
	again := must(s.GetSession(ctx, in.TransactionID))(t)
	if again.Phase != "authenticated" || again.EID != eid1 || again.ICCID != ICCID(0) || again.MatchingID != "AC" ||
		again.OTKeyRef != "otk-17" || !bytes.Equal(again.Data, []byte("certs")) || !bytes.Equal(again.SMDPOtPK, []byte{4, 2}) {
		t.Fatalf("session after update = %+v", again)
	}
	// An explicit expiry extends the session.
	again.ExpiresAt = clock.Now().Add(time.Hour)
	must(s.UpdateSession(ctx, again))(t)

	must(s.PutSession(ctx, store.Session{TransactionID: "short", ExpiresAt: clock.Now().Add(time.Minute)}))(t)
	must(s.PutSession(ctx, store.Session{TransactionID: "cancelled"}))(t)
	if err := s.DeleteSession(ctx, "cancelled"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)

	for _, tc := range []struct {
		name string
		fn   func() error
		want error
		code string
	}{
		{"expired", func() error { _, err := s.GetSession(ctx, "short"); return err }, store.ErrNotFound, "8.10.1/3.9"},
		{"update of an expired session", func() error {
			_, err := s.UpdateSession(ctx, store.Session{TransactionID: "short", Version: 1})
			return err
		}, store.ErrNotFound, "8.10.1/3.9"},
		{"cancelled", func() error { _, err := s.GetSession(ctx, "cancelled"); return err }, store.ErrNotFound, "8.10.1/3.9"},
		{"unknown", func() error { _, err := s.GetSession(ctx, "nope"); return err }, store.ErrNotFound, "8.10.1/3.9"},
		{"delete unknown", func() error { return s.DeleteSession(ctx, "nope") }, store.ErrNotFound, "8.10.1/3.9"},
		{"no transaction id", func() error { _, err := s.PutSession(ctx, store.Session{}); return err }, store.ErrInvalid, "8.10.1/2.2"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.fn(), tc.want, tc.code) })
	}

	n := must(s.DeleteExpired(ctx))(t)
	if n != 1 {
		t.Fatalf("DeleteExpired removed %d, want 1 (the short session)", n)
	}
	if _, err := s.GetSession(ctx, in.TransactionID); err != nil {
		t.Fatalf("a live session was cleaned up: %v", err)
	}
	clock.Advance(2 * time.Hour)
	if n := must(s.DeleteExpired(ctx))(t); n != 1 {
		t.Fatalf("DeleteExpired removed %d, want 1", n)
	}
	if n := must(s.DeleteExpired(ctx))(t); n != 0 {
		t.Fatalf("second DeleteExpired removed %d", n)
	}
}

func testOneTimeKeys(t *testing.T, open Opener) {
	ctx := context.Background()
	clock := NewClock()
	s := open(t, store.WithClock(clock.Now), store.WithSessionTTL(time.Minute))
	otpk := append([]byte{4}, bytes.Repeat([]byte{7}, 64)...)
	if err := s.PutOneTimeKey(ctx, store.OneTimeKey{EUICCOtPK: otpk, ICCID: ICCID(1), SMDPOtPK: []byte{4, 9}, KeyRef: "otk-1"}); err != nil {
		t.Fatal(err)
	}
	k := must(s.GetOneTimeKey(ctx, otpk))(t)
	if k.ICCID != ICCID(1) || k.KeyRef != "otk-1" || !bytes.Equal(k.SMDPOtPK, []byte{4, 9}) {
		t.Fatalf("GetOneTimeKey = %+v", k)
	}
	// Re-binding replaces the mapping.
	if err := s.PutOneTimeKey(ctx, store.OneTimeKey{EUICCOtPK: otpk, ICCID: ICCID(1), SMDPOtPK: []byte{4, 10}, KeyRef: "otk-2"}); err != nil {
		t.Fatal(err)
	}
	if k := must(s.GetOneTimeKey(ctx, otpk))(t); k.KeyRef != "otk-2" {
		t.Fatalf("after re-binding: %+v", k)
	}
	_, err := s.GetOneTimeKey(ctx, []byte{4, 0})
	wantErr(t, err, store.ErrNotFound, "")
	wantErr(t, s.PutOneTimeKey(ctx, store.OneTimeKey{}), store.ErrInvalid, "")
	clock.Advance(time.Minute)
	_, err = s.GetOneTimeKey(ctx, otpk)
	wantErr(t, err, store.ErrNotFound, "")
	if n := must(s.DeleteExpired(ctx))(t); n != 1 {
		t.Fatalf("DeleteExpired removed %d, want 1", n)
	}
}

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

// testConcurrentAllocation: 64 goroutines ordering from one pool of 1,000
// profiles allocate every profile exactly once.
func testConcurrentAllocation(t *testing.T, open Opener) {
	const pool, workers = 1000, 64
	ctx := context.Background()
	s := open(t)
	fill(t, s, pool)
	var (
		mu   sync.Mutex
		got  []string
		errs []error
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype, EID: eid1})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				got = append(got, p.ICCID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	CheckAllocation(t, got, pool)
	for _, err := range errs {
		wantErr(t, err, store.ErrNoProfileAvailable, "8.2.5/3.7")
	}
	if c := must(s.CountByState(ctx, "b1"))(t); c[store.StateLinked] != pool || c[store.StateAvailable] != 0 {
		t.Fatalf("states after the race: %v", c)
	}
}

// CheckAllocation fails unless iccids are exactly ICCID(0) … ICCID(n-1),
// each once.
func CheckAllocation(t *testing.T, iccids []string, n int) {
	t.Helper()
	sort.Strings(iccids)
	for i := 1; i < len(iccids); i++ {
		if iccids[i] == iccids[i-1] {
			t.Fatalf("profile %s allocated twice", iccids[i])
		}
	}
	if len(iccids) != n {
		t.Fatalf("%d profiles allocated, want %d", len(iccids), n)
	}
	for i, id := range iccids {
		if id != ICCID(i) {
			t.Fatalf("allocated %s, want %s", id, ICCID(i))
		}
	}
}
