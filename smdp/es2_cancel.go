package smdp

import (
	"context"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// CancelOrder is ES2+ CancelOrder (es2-es10-codes.md §2.2, §3.1): the
// pending order ends and the profile becomes Available again or
// Unavailable. An order bound to an EID needs that EID.
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
	_, err := s.cfg.Desk.CancelOrder(ctx, store.CancelOrderRequest{ICCID: iccid, EID: r.EID, MatchingID: r.MatchingID,
		Final: store.State(r.FinalProfileStatusIndicator)})
	if err != nil {
		return nil, s.internal(ctx, fn, err)
	}
	return &struct{}{}, passed
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
