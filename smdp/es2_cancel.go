package smdp

import (
	"context"
	"errors"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// CancelOrder is ES2+ CancelOrder (es2-es10-codes.md §2.2, §3.1): the
// pending order ends and the profile becomes Available again or
// Unavailable. An order bound to an EID needs that EID. A resent identical
// call succeeds again (see resentCancel).
func (s *ES2) CancelOrder(ctx context.Context, op string, r *rsp.CancelOrderRequest) (*struct{}, rsp.Status) {
	const fn = ES2CancelOrder
	iccid := r.ICCID
	if st := firstFailure(
		func() rsp.Status { return checkICCID(&iccid) },
		func() rsp.Status { return checkEIDFormat(r.EID) },
		func() rsp.Status { return checkFinalStatus(r.FinalProfileStatusIndicator) },
		func() rsp.Status { return s.checkOwner(ctx, fn, op, iccid) },
	); !st.IsZero() {
		return nil, st
	}
	final := store.State(r.FinalProfileStatusIndicator)
	_, err := s.cfg.Desk.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid, EID: r.EID, MatchingID: r.MatchingID, Final: final})
	if errors.Is(err, store.ErrIllegalTransition) {
		resent, rerr := s.resentCancel(ctx, op, iccid, final)
		if rerr != nil {
			return nil, s.internal(ctx, fn, rerr)
		}
		if resent {
			return &struct{}{}, passed
		}
	}
	if err != nil {
		return nil, s.internal(ctx, fn, err)
	}
	return &struct{}{}, passed
}

// resentCancel reports whether a CancelOrder the store refused (no order
// to cancel) repeats the one that ended op's order: the profile is in the
// final state asked for and its last order was op's. The cancel cleared the
// order's EID and matching ID, so those cannot be compared again; a repeat
// asking for the other final state is a conflicting call and stays refused
// (8.2.1/3.3). A profile ordered again since is not in a final state: the
// repeat then cancels the new order if it is op's, as any CancelOrder would.
func (s *ES2) resentCancel(ctx context.Context, op, iccid string, final store.State) (bool, error) {
	owner, err := s.cfg.Desk.OrderOwner(ctx, iccid)
	if err != nil || owner != op {
		return false, err
	}
	p, err := s.cfg.Desk.Order(ctx, iccid)
	if err != nil {
		return false, err
	}
	return p.State == final, nil
}

func checkFinalStatus(v string) rsp.Status {
	switch v {
	case string(store.StateAvailable), string(store.StateUnavailable):
		return passed
	case "":
		return fail(rsp.SubjectProfile, rsp.ReasonMissing, "finalProfileStatusIndicator missing")
	}
	return fail(rsp.SubjectProfile, rsp.ReasonInvalidFormat, "finalProfileStatusIndicator must be Available or Unavailable")
}
