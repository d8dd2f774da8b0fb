package smdp

import (
	"context"
	"strings"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// ConfirmOrder is ES2+ ConfirmOrder (es2-es10-codes.md §2.2, §3.1): the
// matching ID (generated when absent; none when empty, the download then
// found by EID), the confirmation code, the release flag, and the SM-DS
// event when smdsAddress is given. A resent identical call answers the
// same matching ID again (and retries a failed SM-DS registration).
func (s *ES2) ConfirmOrder(ctx context.Context, op string, r *rsp.ConfirmOrderRequest) (*rsp.ConfirmOrderResponse, rsp.Status) {
	const fn = ES2ConfirmOrder
	iccid := r.ICCID
	if st := firstFailure(
		func() rsp.Status { return checkICCID(&iccid) },
		func() rsp.Status { return checkEIDFormat(r.EID) },
		func() rsp.Status { return checkMatchingIDFormat(r.MatchingID) },
		func() rsp.Status { return s.checkOwner(ctx, fn, op, iccid) },
		func() rsp.Status { return s.checkSMDS(ctx, iccid, r) },
	); !st.IsZero() {
		return nil, st
	}
	var cc []byte
	if r.ConfirmationCode != "" {
		cc = store.HashConfirmationCode(r.ConfirmationCode)
	}
	p, err := s.cfg.Desk.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, EID: r.EID, MatchingID: r.MatchingID,
		CCHash: cc, ReleaseFlag: r.ReleaseFlag})
	if err != nil {
		return nil, s.internal(ctx, fn, err)
	}
	if r.SMDSAddress != "" {
		if err := s.cfg.SMDS.RegisterEvent(ctx, r.SMDSAddress, p.EID, p.MatchingID); err != nil {
			// The order stays confirmed: the operator's resent call
			// registers again.
			s.log.WarnContext(ctx, "smdp: SM-DS registration failed", "iccid", p.ICCID, "smds", r.SMDSAddress, "err", err)
			return nil, fail(rsp.SubjectSMDS, rsp.ReasonInaccessible, "SM-DS registration failed")
		}
	}
	return &rsp.ConfirmOrderResponse{EID: p.EID, MatchingID: p.MatchingID, SMDPAddress: s.cfg.Address}, passed
}

// checkMatchingIDFormat: a matching ID goes into an activation code, whose
// fields '$' separates.
func checkMatchingIDFormat(m *string) rsp.Status {
	if m != nil && strings.ContainsAny(*m, "$\r\n") {
		return fail(rsp.SubjectMatchingID, rsp.ReasonInvalidFormat, "matchingId must not contain '$' or line breaks")
	}
	return passed
}

// checkSMDS: with an smdsAddress the order needs an EID (8.1.1/2.2), from
// this call or the DownloadOrder, and an SM-DS to register at (8.9/5.1).
// An unknown ICCID answers as unknown first.
func (s *ES2) checkSMDS(ctx context.Context, iccid string, r *rsp.ConfirmOrderRequest) rsp.Status {
	if r.SMDSAddress == "" {
		return passed
	}
	p, err := s.cfg.Desk.Order(ctx, iccid)
	if err != nil {
		return s.internal(ctx, ES2ConfirmOrder, err)
	}
	if r.EID == "" && p.EID == "" {
		return fail(rsp.SubjectEID, rsp.ReasonMissing, "an smdsAddress needs an EID")
	}
	if s.cfg.SMDS == nil {
		return fail(rsp.SubjectSMDS, rsp.ReasonInaccessible, "no SM-DS registration configured on this SM-DP+")
	}
	return passed
}
