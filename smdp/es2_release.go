package smdp

import (
	"context"

	"github.com/perso-esim/perso/rsp"
)

// ReleaseProfile is ES2+ ReleaseProfile (es2-es10-codes.md §3.1): a
// confirmed order becomes downloadable. Releasing a released order again
// succeeds (a resent call).
func (s *ES2) ReleaseProfile(ctx context.Context, op string, r *rsp.ReleaseProfileRequest) (*struct{}, rsp.Status) {
	const fn = ES2ReleaseProfile
	iccid := r.ICCID
	if st := firstFailure(
		func() rsp.Status { return checkICCID(&iccid) },
		func() rsp.Status { return s.checkOwner(ctx, fn, op, iccid) },
	); !st.IsZero() {
		return nil, st
	}
	if _, err := s.cfg.Desk.ReleaseProfile(ctx, iccid); err != nil {
		return nil, s.internal(ctx, fn, err)
	}
	return &struct{}{}, passed
}
