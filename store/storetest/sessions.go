package storetest

import (
	"bytes"
	"context"
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
		key  store.Key
	}{
		{"expired", func() error { _, err := s.GetSession(ctx, "short"); return err }, store.ErrNotFound, store.KeyTransactionID},
		{"update of an expired session", func() error {
			_, err := s.UpdateSession(ctx, store.Session{TransactionID: "short", Version: 1})
			return err
		}, store.ErrNotFound, store.KeyTransactionID},
		{"cancelled", func() error { _, err := s.GetSession(ctx, "cancelled"); return err }, store.ErrNotFound, store.KeyTransactionID},
		{"unknown", func() error { _, err := s.GetSession(ctx, "nope"); return err }, store.ErrNotFound, store.KeyTransactionID},
		{"delete unknown", func() error { return s.DeleteSession(ctx, "nope") }, store.ErrNotFound, store.KeyTransactionID},
		{"no transaction id", func() error { _, err := s.PutSession(ctx, store.Session{}); return err }, store.ErrInvalid, store.KeyTransactionID},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.fn(), tc.want, tc.key) })
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
