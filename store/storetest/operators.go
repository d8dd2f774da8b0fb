package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/perso-esim/perso/store"
)

func testOperators(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	a := store.Operator{ID: "op-a", TrustPEM: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n", CallbackURL: "https://a.example/cb"}
	b := store.Operator{ID: "op-b", TrustPEM: "B"}
	must(s.AddOperator(ctx, a))(t)
	must(s.AddOperator(ctx, b))(t)
	if got := must(s.AddOperator(ctx, a))(t); got.ID != a.ID || got.CreatedAt.IsZero() {
		t.Fatalf("re-adding the same operator: %+v", got)
	}
	changed := a
	changed.CallbackURL = "https://elsewhere.example/"
	_, err := s.AddOperator(ctx, changed)
	wantErr(t, err, store.ErrConflict, store.KeyOperator)
	_, err = s.AddOperator(ctx, store.Operator{ID: "no-trust"})
	wantErr(t, err, store.ErrInvalid, store.KeyOperator)

	ops := must(s.ListOperators(ctx))(t)
	if len(ops) != 2 || ops[0].ID != "op-a" || ops[0].TrustPEM != a.TrustPEM || ops[0].CallbackURL != a.CallbackURL || ops[1].ID != "op-b" {
		t.Fatalf("ListOperators = %+v", ops)
	}
	if got := must(s.GetOperator(ctx, "op-b"))(t); got.TrustPEM != "B" {
		t.Fatalf("GetOperator = %+v", got)
	}
	if err := s.RemoveOperator(ctx, "op-b"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.RemoveOperator(ctx, "op-b"), store.ErrNotFound, store.KeyOperator)
	_, err = s.GetOperator(ctx, "op-b")
	wantErr(t, err, store.ErrNotFound, store.KeyOperator)
}

// testTransitionHook: the hook sees every order write with its owner, in
// the write's transaction (its error rolls the write back), and resent
// ES2+ calls succeed without a write.
func testTransitionHook(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	fill(t, s, 4)
	var seen []store.Transition
	fail := false
	s.SetTransitionHook(func(ctx context.Context, tx store.Tx, tr store.Transition) error {
		if tx.SQL() == nil && tx.Pgx() == nil {
			t.Errorf("hook without a transaction")
		}
		if fail {
			return errors.New("hook refuses")
		}
		seen = append(seen, tr)
		return nil
	})
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(0), EID: eid1, Operator: "op-a"}))(t)
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(0), EID: eid1, Operator: "op-a"}))(t) // resent: no write
	must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(0), MatchingID: ptr("T-0"), ReleaseFlag: true}))(t)
	again := must(s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(0), MatchingID: ptr("T-0"), ReleaseFlag: true}))(t)
	if again.MatchingID != "T-0" || again.State != store.StateReleased {
		t.Fatalf("resent ConfirmOrder: %+v", again)
	}
	if _, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: ICCID(0), MatchingID: ptr("T-other"), ReleaseFlag: true}); !errors.Is(err, store.ErrIllegalTransition) {
		t.Fatalf("conflicting ConfirmOrder: %v", err)
	}
	must(s.ReleaseProfile(ctx, ICCID(0)))(t) // released already: a resend
	must(s.AuthenticateClient(ctx, ICCID(0), eid1))(t)
	must(s.BPPDelivered(ctx, ICCID(0)))(t)
	must(s.InstallResult(ctx, ICCID(0), true))(t)
	p := must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype, Operator: "op-b"}))(t)

	want := []struct {
		ev       store.Event
		from, to store.State
		owner    string
	}{
		{store.EventDownloadOrder, store.StateAvailable, store.StateLinked, "op-a"},
		{store.EventConfirmOrder, store.StateLinked, store.StateReleased, "op-a"},
		{store.EventAuthenticateClient, store.StateReleased, store.StateReleased, "op-a"},
		{store.EventBPPDelivered, store.StateReleased, store.StateDownloaded, "op-a"},
		{store.EventInstallResult, store.StateDownloaded, store.StateInstalled, "op-a"},
		{store.EventDownloadOrder, store.StateAvailable, store.StateAllocated, "op-b"},
	}
	if len(seen) != len(want) {
		t.Fatalf("hook saw %d transitions, want %d: %+v", len(seen), len(want), seen)
	}
	for i, w := range want {
		g := seen[i]
		if g.Event != w.ev || g.From != w.from || g.To != w.to || g.Operator != w.owner || g.Profile.State != w.to {
			t.Errorf("transition %d = %s %s→%s owner %q, want %s %s→%s owner %q", i, g.Event, g.From, g.To, g.Operator, w.ev, w.from, w.to, w.owner)
		}
	}
	if owner := must(s.OrderOwner(ctx, p.ICCID))(t); owner != "op-b" {
		t.Fatalf("OrderOwner = %q", owner)
	}

	// A failing hook rolls the write back: the order stays as it was.
	fail = true
	if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(2), Operator: "op-a"}); err == nil {
		t.Fatal("DownloadOrder succeeded although the hook failed")
	}
	if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: ptype}); err == nil {
		t.Fatal("DownloadOrder by type succeeded although the hook failed")
	}
	if o := must(s.Order(ctx, ICCID(2)))(t); o.State != store.StateAvailable {
		t.Fatalf("rolled-back order is %s", o.State)
	}
	if owner := must(s.OrderOwner(ctx, ICCID(2)))(t); owner != "" {
		t.Fatalf("rolled-back owner %q", owner)
	}
	if n := must(s.CountByState(ctx, ""))(t); n[store.StateAvailable] != 2 {
		t.Fatalf("counts after rolled-back writes: %v", n)
	}
	s.SetTransitionHook(nil)
	must(s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: ICCID(2)}))(t)
}
