package smdp

import (
	"context"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// DownloadOrder is ES2+ DownloadOrder (es2-es10-codes.md §2.2, §3.1): it
// reserves the given ICCID, or a free profile of the profile type, for op.
// A resent identical call answers the same ICCID again.
func (s *ES2) DownloadOrder(ctx context.Context, op string, r *rsp.DownloadOrderRequest) (*rsp.DownloadOrderResponse, rsp.Status) {
	const fn = ES2DownloadOrder
	iccid := r.ICCID
	if st := firstFailure(
		func() rsp.Status { return checkEIDFormat(r.EID) },
		func() rsp.Status { return checkICCIDOrType(&iccid, r.ProfileType) },
		func() rsp.Status {
			if iccid == "" {
				return passed
			}
			return s.checkOwner(ctx, fn, op, iccid)
		},
	); !st.IsZero() {
		return nil, st
	}
	p, err := s.cfg.Desk.DownloadOrder(ctx, store.DownloadOrderRequest{EID: r.EID, ICCID: iccid, ProfileType: r.ProfileType, Operator: op})
	if err != nil {
		return nil, s.internal(ctx, fn, err)
	}
	return &rsp.DownloadOrderResponse{ICCID: p.ICCID}, passed
}

// checkICCIDOrType: an ICCID (of ICCID form) or a profile type must be
// given.
func checkICCIDOrType(iccid *string, profileType string) rsp.Status {
	if *iccid == "" {
		if profileType == "" {
			return fail(rsp.SubjectProfileType, rsp.ReasonMissing, "neither iccid nor profileType given")
		}
		return passed
	}
	return checkICCID(iccid)
}
