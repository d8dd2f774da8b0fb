package smdp

import (
	"context"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// HandleNotification is ES9+ HandleNotification. The HTTP answer is always
// 204 (es2-es10-codes.md §3.5); the returned error says what was refused or
// not applied, for the log and metrics only.
//
// A ProfileInstallationResult is verified with the session's eUICC
// certificate over the BF27 bytes as received and applied to the store
// (Installed, or back to Released / Error), and ends the session. An
// OtherSignedNotification is verified through its own eUICC → EUM → CI
// chain; the store keeps no state for enable/disable/delete events, so it
// is only logged.
func (s *Server) HandleNotification(ctx context.Context, req *rsp.HandleNotification) error {
	var err error
	switch pn := req.PendingNotification; {
	case pn.PIR != nil:
		_, err = withSessionCache(ctx, s, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.installResult(ctx, pn.PIR)
		})
	case pn.Other != nil:
		err = s.otherNotification(ctx, pn.Other)
	default:
		err = status(subjectFunction, rsp.ReasonMissing, "empty pendingNotification")
	}
	if err != nil {
		s.log.WarnContext(ctx, "smdp: notification not applied", "err", err)
	}
	return err
}

func (s *Server) installResult(ctx context.Context, pir *rsp.ProfileInstallationResult) error {
	const fn = ES9HandleNotification
	data := &pir.Data
	sess, d, err := s.loadSession(ctx, fn, data.TransactionID, phaseBound)
	if err != nil {
		return err
	}
	cert, err := rsp.ParseCertificate(d.EUICCCert)
	if err != nil || !verifyRS(cert.PublicKey, data.Raw, pir.EUICCSignPIR) {
		return status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccSignPIR does not verify with the session's eUICC certificate")
	}
	success := data.Success != nil
	// The result and the end of the session commit together.
	// The session is deleted at the version read (a stale copy, or a
	// concurrent call on another replica, writes nothing).
	if _, err := s.cfg.Store.InstallResultWith(ctx, sess.ICCID, success,
		&store.SessionChange{Delete: sess.TransactionID, DeleteVersion: sess.Version}); err != nil {
		return s.sessionWriteError(ctx, fn, "recording the installation result", err)
	}
	s.sessions.drop(sess.TransactionID)
	s.sessionEnded(sess.TransactionID)
	if !success && data.Error != nil {
		s.log.InfoContext(ctx, "smdp: installation failed on the eUICC", "iccid", sess.ICCID,
			"bppCommandId", data.Error.BPPCommandID, "errorReason", data.Error.ErrorReason)
	}
	return nil
}

func (s *Server) otherNotification(ctx context.Context, n *rsp.OtherSignedNotification) error {
	var lastErr error
	for i := range s.cfg.Credentials {
		_, euicc, err := rsp.VerifyEUICCChainCached(s.cfg.Credentials[i].CI, n.EUMCertificate, n.EUICCCertificate, s.cfg.Now(), s.eums)
		if err != nil {
			lastErr = err
			continue
		}
		if !verifyRS(euicc.PublicKey, n.TBSOtherNotification.Raw, n.EUICCNotificationSignature) {
			return status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccNotificationSignature does not verify")
		}
		s.log.InfoContext(ctx, "smdp: notification", "eid", euicc.SubjectSerialNumber,
			"seq", n.TBSOtherNotification.SeqNumber, "event", uint64(n.TBSOtherNotification.Operation))
		if n.TBSOtherNotification.Operation&rsp.NotificationDelete != 0 {
			return s.reportDeleted(ctx, &n.TBSOtherNotification, euicc.SubjectSerialNumber)
		}
		return nil
	}
	return lastErr
}
