package smdp

import (
	"context"
	"errors"
	"fmt"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// CancelSession is ES9+ CancelSession. Checks in the order of
// es2-es10-codes.md §3.6: session, eUICC error, signature, smdpOid,
// signed transaction id. Every reason (0–5, 127) ends the session and puts
// the order back to Released for a re-download (Error once the attempts
// are used up).
func (s *Server) CancelSession(ctx context.Context, req *rsp.CancelSessionRequestEs9) (*rsp.CancelSessionResponseEs9, error) {
	const fn = ES9CancelSession
	ctx, _ = withSessionUse(ctx, true) // from the store: its writes are not conditional on the version
	sess, d, err := s.loadSession(ctx, fn, req.TransactionID, phaseAuthenticated, phaseBound)
	if err != nil {
		return nil, err
	}
	ok := req.CancelSessionResponse.Ok
	if ok == nil {
		return nil, status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "the eUICC refused CancelSession")
	}
	signed := &ok.EUICCCancelSessionSigned
	cert, err := rsp.ParseCertificate(d.EUICCCert)
	if err != nil || !verifyRS(cert.PublicKey, signed.Raw, ok.EUICCCancelSessionSignature) {
		return nil, status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccCancelSessionSignature does not verify with the eUICC certificate")
	}
	cred := s.credentialsFor(d.CISKI)
	if cred == nil || !signed.SMDPOID.Equal(cred.DPauth.SMDPOID()) {
		return nil, status(rsp.SubjectSMDP, rsp.ReasonInvalidAssociation, "smdpOid is not this SM-DP+'s")
	}
	if !signed.TransactionID.Equal(req.TransactionID) {
		return nil, status(rsp.SubjectTransactionID, rsp.ReasonUnknown, "transactionId in euiccCancelSessionSigned differs from the request's")
	}
	if err := s.cfg.Store.DeleteSession(ctx, sess.TransactionID); err != nil {
		return nil, s.internal(ctx, fn, "ending the session", err) // a concurrent cancel or PIR ended it: 8.10.1/3.9
	}
	s.sessionEnded(sess.TransactionID)
	s.sessions.drop(sess.TransactionID)
	if sess.Phase == phaseBound && len(sess.EUICCOtPK) > 0 {
		s.rememberBoundKey(ctx, sess)
	}
	if _, err := s.cfg.Store.SessionCancelled(ctx, sess.ICCID); err != nil && !errors.Is(err, store.ErrIllegalTransition) {
		return nil, s.internal(ctx, fn, "recording the cancellation", err)
	}
	s.log.InfoContext(ctx, "smdp: session cancelled", "iccid", sess.ICCID, "reason", fmt.Sprint(int64(signed.Reason)))
	return &rsp.CancelSessionResponseEs9{}, nil
}
