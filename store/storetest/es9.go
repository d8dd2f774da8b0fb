package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
)

// testSessionChanges: an ES9+ call's order event and session change commit
// together or not at all (AuthenticateClientWith, BPPDeliveredWith,
// InstallResultWith), and the reads and dry run the SM-DP+ prepares its
// answers from.
func testSessionChanges(t *testing.T, open Opener) {
	ctx := context.Background()
	clock := NewClock()
	s := open(t, store.WithClock(clock.Now), store.WithSessionTTL(5*time.Minute), store.WithMaxDownloadAttempts(2))
	ps := fill(t, s, 4)
	release := func(i int) store.Profile {
		t.Helper()
		iccid := ICCID(i)
		must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid}))(t)
		return must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, ReleaseFlag: true}))(t)
	}
	attempts := func(i int) int {
		t.Helper()
		return must(s.Order(ctx, ICCID(i)))(t).DownloadAttempts
	}
	session := func(tid string) store.Session {
		t.Helper()
		return must(s.PutSession(ctx, store.Session{TransactionID: tid, Phase: "initiated"}))(t)
	}

	o := release(0)
	full := must(s.DownloadProfile(ctx, o.MatchingID))(t)
	if full.ICCID != ICCID(0) || !bytes.Equal(full.Segments, ps[0].Segments) || !bytes.Equal(full.ProtectedPPK, ps[0].ProtectedPPK) ||
		full.State != store.StateReleased || full.MatchingID != o.MatchingID {
		t.Fatalf("DownloadProfile = %+v", full)
	}
	_, err := s.DownloadProfile(ctx, "NOPE")
	wantErr(t, err, store.ErrNotFound, store.KeyMatchingID)

	// The dry run tells the outcome and writes nothing.
	dry := must(s.CheckAuthenticateClient(full, eid1))(t)
	if dry.DownloadAttempts != 1 || dry.EID != eid1 || attempts(0) != 0 {
		t.Fatalf("CheckAuthenticateClient = %+v, stored attempts %d", dry, attempts(0))
	}
	_, err = s.CheckAuthenticateClient(full, "")
	wantErr(t, err, store.ErrInvalid, store.KeyEID)
	bound := full
	bound.EID = eid2
	_, err = s.CheckAuthenticateClient(bound, eid1)
	wantErr(t, err, store.ErrEIDMismatch, store.KeyEID)

	// expect refuses: nothing written, neither order nor session.
	sess := session("T0")
	upd := sess
	upd.Phase, upd.ICCID, upd.EID = "authenticated", ICCID(0), eid1
	refused := errors.New("the order changed")
	_, err = s.AuthenticateClientWith(ctx, ICCID(0), eid1, func(store.Profile) error { return refused }, &store.SessionChange{Update: &upd})
	if !errors.Is(err, refused) {
		t.Fatalf("AuthenticateClientWith with a refusing expect: %v", err)
	}
	if attempts(0) != 0 || must(s.GetSession(ctx, "T0"))(t).Version != 1 {
		t.Fatal("a refused AuthenticateClientWith wrote")
	}
	// Accepted: both written.
	p := must(s.AuthenticateClientWith(ctx, ICCID(0), eid1, func(p store.Profile) error {
		if p.DownloadAttempts != dry.DownloadAttempts {
			return refused
		}
		return nil
	}, &store.SessionChange{Update: &upd}))(t)
	got := must(s.GetSession(ctx, "T0"))(t)
	if p.DownloadAttempts != 1 || attempts(0) != 1 || got.Version != 2 || got.Phase != "authenticated" || got.ICCID != ICCID(0) {
		t.Fatalf("after AuthenticateClientWith: order %+v, session %+v", p, got)
	}
	// A replica holding the old session version changes nothing, the order
	// neither.
	o1 := release(1)
	stale := session("T1")
	stale2 := stale
	stale2.Phase = "authenticated"
	must(s.UpdateSession(ctx, stale2))(t)
	_, err = s.AuthenticateClientWith(ctx, o1.ICCID, eid1, nil, &store.SessionChange{Update: &stale})
	wantErr(t, err, store.ErrStale, store.KeyTransactionID)
	if attempts(1) != 0 {
		t.Fatal("the order of a stale session update was written")
	}

	// BPPDeliveredWith: order, session and one-time key together.
	otpk := append([]byte{4}, bytes.Repeat([]byte{3}, 64)...)
	got.Phase, got.EUICCOtPK, got.SMDPOtPK = "bound", otpk, []byte{4, 4}
	p = must(s.BPPDeliveredWith(ctx, ICCID(0), &store.SessionChange{Update: &got,
		OneTimeKey: &store.OneTimeKey{EUICCOtPK: otpk, ICCID: ICCID(0), SMDPOtPK: []byte{4, 4}, KeyRef: "otk-0"}}))(t)
	if p.State != store.StateDownloaded {
		t.Fatalf("BPPDeliveredWith: %+v", p)
	}
	got = must(s.GetSession(ctx, "T0"))(t)
	if got.Version != 3 || got.Phase != "bound" || !bytes.Equal(got.EUICCOtPK, otpk) {
		t.Fatalf("session after BPPDeliveredWith: %+v", got)
	}
	if k := must(s.GetOneTimeKey(ctx, otpk))(t); k.ICCID != ICCID(0) || k.KeyRef != "otk-0" || !k.ExpiresAt.Equal(clock.Now().Add(5*time.Minute)) {
		t.Fatalf("one-time key after BPPDeliveredWith: %+v", k)
	}
	// A key that must be new but is recorded: nothing written.
	o2 := release(2)
	t6 := session("T6")
	_, err = s.BPPDeliveredWith(ctx, o2.ICCID, &store.SessionChange{Update: &t6,
		OneTimeKey: &store.OneTimeKey{EUICCOtPK: otpk, ICCID: o2.ICCID, KeyRef: "otk-x"}, OneTimeKeyNew: true})
	wantErr(t, err, store.ErrConflict, store.KeyEUICCOtPK)
	if k := must(s.GetOneTimeKey(ctx, otpk))(t); k.KeyRef != "otk-0" || must(s.GetSession(ctx, "T6"))(t).Version != 1 {
		t.Fatalf("a refused new key wrote: %+v", k)
	}
	// Delivered again (no order write): the session change still applies.
	must(s.BPPDeliveredWith(ctx, ICCID(0), &store.SessionChange{Update: &got}))(t)
	if v := must(s.GetSession(ctx, "T0"))(t).Version; v != 4 {
		t.Fatalf("session version after a repeated delivery = %d, want 4", v)
	}
	// An illegal transition writes no session change.
	other := session("T2")
	_, err = s.InstallResultWith(ctx, o1.ICCID, true, &store.SessionChange{Delete: "T2"})
	wantErr(t, err, store.ErrIllegalTransition, "")
	if must(s.GetSession(ctx, "T2"))(t).Version != other.Version {
		t.Fatal("session changed by a refused transition")
	}
	// InstallResultWith ends the session with the order.
	p = must(s.InstallResultWith(ctx, ICCID(0), true, &store.SessionChange{Delete: "T0"}))(t)
	if p.State != store.StateInstalled {
		t.Fatalf("InstallResultWith: %+v", p)
	}
	_, err = s.GetSession(ctx, "T0")
	wantErr(t, err, store.ErrNotFound, store.KeyTransactionID)
	// A repeated notification: no order write, deleting a gone session is no error.
	must(s.InstallResultWith(ctx, ICCID(0), true, &store.SessionChange{Delete: "T0"}))(t)
	// A versioned delete of a gone session, or of another version,
	// writes nothing.
	_, err = s.InstallResultWith(ctx, ICCID(0), true, &store.SessionChange{Delete: "T0", DeleteVersion: 4})
	wantErr(t, err, store.ErrNotFound, store.KeyTransactionID)
	o3 := release(3)
	t5 := session("T5")
	t5.ICCID = o3.ICCID
	must(s.AuthenticateClientWith(ctx, o3.ICCID, eid1, nil, &store.SessionChange{Update: &t5}))(t) // T5 now at version 2
	must(s.BPPDeliveredWith(ctx, o3.ICCID, nil))(t)
	_, err = s.InstallResultWith(ctx, o3.ICCID, true, &store.SessionChange{Delete: "T5", DeleteVersion: 1})
	wantErr(t, err, store.ErrStale, store.KeyTransactionID)
	if st := must(s.Order(ctx, o3.ICCID))(t).State; st != store.StateDownloaded {
		t.Fatalf("the order of a stale versioned delete went to %s", st)
	}
	if p := must(s.InstallResultWith(ctx, o3.ICCID, true, &store.SessionChange{Delete: "T5", DeleteVersion: 2}))(t); p.State != store.StateInstalled {
		t.Fatalf("InstallResultWith at the stored version: %s", p.State)
	}
	_, err = s.GetSession(ctx, "T5")
	wantErr(t, err, store.ErrNotFound, store.KeyTransactionID)

	// The attempt limit: the order goes to Error (committed), the session
	// change does not happen.
	t3 := session("T3")
	for range 2 {
		must(s.AuthenticateClient(ctx, o1.ICCID, eid1))(t)
	}
	_, err = s.AuthenticateClientWith(ctx, o1.ICCID, eid1, nil, &store.SessionChange{Update: &t3})
	wantErr(t, err, store.ErrRetryLimit, "")
	if st := must(s.Order(ctx, o1.ICCID))(t).State; st != store.StateError {
		t.Fatalf("state after the attempt limit = %s", st)
	}
	if must(s.GetSession(ctx, "T3"))(t).Version != 1 {
		t.Fatal("session changed by a failed attempt")
	}
	_, err = s.CheckAuthenticateClient(must(s.Order(ctx, o1.ICCID))(t), eid1)
	wantErr(t, err, store.ErrIllegalTransition, "")

	// An expired session: ErrNotFound, nothing written.
	t4 := session("T4")
	clock.Advance(6 * time.Minute)
	_, err = s.AuthenticateClientWith(ctx, o2.ICCID, eid1, nil, &store.SessionChange{Update: &t4})
	wantErr(t, err, store.ErrNotFound, store.KeyTransactionID)
	if attempts(2) != 0 {
		t.Fatal("the order of an expired session's update was written")
	}
	_, err = s.BPPDeliveredWith(ctx, o2.ICCID, &store.SessionChange{OneTimeKey: &store.OneTimeKey{}})
	wantErr(t, err, store.ErrInvalid, "")
}
