package smdp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// GetBoundProfilePackage is ES9+ GetBoundProfilePackage. Checks in the order
// of es2-es10-codes.md §3.4: session, eUICC error, euiccSignature2, inner
// transaction id, confirmation code (missing, wrong, retries), one-time key
// reuse (§4.1); then the stored PPP is bound through the HSM.
func (s *Server) GetBoundProfilePackage(ctx context.Context, req *rsp.GetBoundProfilePackageRequest) (*rsp.GetBoundProfilePackageResponse, error) {
	return withSessionCache(ctx, s, func(ctx context.Context) (*rsp.GetBoundProfilePackageResponse, error) {
		return s.getBoundProfilePackage(ctx, req)
	})
}

// errKeyKnown: the eUICC one-time key a package was bound to without
// looking it up is recorded after all; the call runs again with the lookup.
var errKeyKnown = errors.New("smdp: the eUICC one-time key is known")

func (s *Server) getBoundProfilePackage(ctx context.Context, req *rsp.GetBoundProfilePackageRequest) (*rsp.GetBoundProfilePackageResponse, error) {
	r, err := s.getBPP(ctx, req, false)
	if errors.Is(err, errKeyKnown) {
		return s.getBPP(ctx, req, true)
	}
	return r, err
}

// getBPP is GetBoundProfilePackage. Unless lookup is set (or the call is a
// retry), the eUICC one-time key is not looked up before binding: a key
// seen before is rare (a retry, a re-download after a postponed
// CancelSession, a key reused for another profile) and the transaction
// that records the key as new refuses it then (errKeyKnown), so that the
// call runs again with the lookup and answers as §4.1 says; the common
// case saves a store read.
func (s *Server) getBPP(ctx context.Context, req *rsp.GetBoundProfilePackageRequest, lookup bool) (*rsp.GetBoundProfilePackageResponse, error) {
	const fn = ES9GetBoundProfilePackage
	sess, d, err := s.loadSession(ctx, fn, req.TransactionID, phaseAuthenticated, phaseBound)
	if err != nil {
		return nil, err
	}
	pd := req.PrepareDownloadResponse
	if pd.Ok == nil {
		return nil, status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "the eUICC refused PrepareDownload")
	}
	signed := &pd.Ok.EUICCSigned2
	if err := verifyEUICCSignature2(d, pd.Ok); err != nil {
		return nil, err
	}
	if !signed.TransactionID.Equal(req.TransactionID) {
		return nil, status(rsp.SubjectTransactionID, rsp.ReasonUnknown, "transactionId in euiccSigned2 differs from the request's")
	}
	if err := s.checkConfirmationCode(ctx, sess, d, signed.HashCc, req.TransactionID); err != nil {
		return nil, err
	}
	// A retried call with the same eUICC one-time key (a lost answer): the
	// package is bound again with the same smdpOtpk and shared secret
	// (§4.1), from the sealed binding, so that the session row need not
	// carry the package between calls. Nothing in the store changes.
	retry := sess.Phase == phaseBound && bytes.Equal(sess.EUICCOtPK, signed.EUICCOtpk)
	lookup = lookup || retry
	var earlier *store.OneTimeKey
	if lookup {
		if earlier, err = s.earlierBinding(ctx, sess, signed.EUICCOtpk); err != nil {
			return nil, err
		}
	}
	if retry && earlier == nil {
		return nil, s.internal(ctx, fn, "finding the session's binding", errors.New("the one-time key of a bound session is gone"))
	}
	pkg, smdpOtpk, keyRef, err := s.bind(ctx, sess, d, req.TransactionID, signed.EUICCOtpk, earlier)
	if err != nil {
		return nil, err
	}
	if retry {
		return &rsp.GetBoundProfilePackageResponse{TransactionID: req.TransactionID, BoundProfilePackage: pkg}, nil
	}
	// The delivery, the one-time key's binding and the session's next
	// phase commit together (sess.Data is unchanged: d is only read here).
	sess.Phase, sess.EUICCOtPK, sess.SMDPOtPK = phaseBound, signed.EUICCOtpk, smdpOtpk
	ch := &store.SessionChange{Update: keepExpiry(sess)}
	if earlier == nil {
		ch.OneTimeKey = &store.OneTimeKey{EUICCOtPK: signed.EUICCOtpk, ICCID: sess.ICCID, SMDPOtPK: smdpOtpk, KeyRef: keyRef}
		ch.OneTimeKeyNew = !lookup
	}
	if _, err := s.cfg.Store.BPPDeliveredWith(ctx, sess.ICCID, ch); err != nil {
		var se *store.Error
		if !lookup && errors.As(err, &se) && se.Kind == store.ErrConflict && se.Key == store.KeyEUICCOtPK {
			return nil, errKeyKnown
		}
		return nil, s.sessionWriteError(ctx, fn, "recording the delivery", err)
	}
	s.stored(sess, sess.Version+1, d)
	return &rsp.GetBoundProfilePackageResponse{TransactionID: req.TransactionID, BoundProfilePackage: pkg}, nil
}

// verifyEUICCSignature2: over the received euiccSigned2 bytes followed by
// the smdpSignature2 element this session sent; else 8.1/6.1.
func verifyEUICCSignature2(d *sessionData, ok *rsp.PrepareDownloadResponseOk) error {
	cert, err := rsp.ParseCertificate(d.EUICCCert)
	if err == nil && verifyRS(cert.PublicKey, rsp.EUICCSignature2Data(ok.EUICCSigned2.Raw, d.SmdpSignature2), ok.EUICCSignature2) {
		return nil
	}
	return status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccSignature2 does not verify with the eUICC certificate")
}

// checkConfirmationCode: when the order requires one, hashCc must be
// SHA-256(SHA-256(CC) ‖ transactionId) for one of the stored hashes of
// the code (ASCII or hex-decoded digits, §4.2). Missing → 8.2.7/2.2,
// wrong → 8.2.7/3.8, each counted; at the store's limit → 8.2.7/6.4.
// The session stays usable after a wrong code.
func (s *Server) checkConfirmationCode(ctx context.Context, sess store.Session, d *sessionData, hashCc []byte, tid rsp.TransactionID) error {
	const fn = ES9GetBoundProfilePackage
	if !d.CCRequired {
		return nil // hashCc is ignored when the order requires none
	}
	p, ok := s.peekLoaded(sess.TransactionID, sess.ICCID)
	if !ok {
		var err error
		if p, err = s.cfg.Store.GetProfile(ctx, sess.ICCID); err != nil {
			return s.internal(ctx, fn, "loading the order", err)
		}
	}
	if hashCc != nil && ccMatches(p.CCHash, hashCc, tid) {
		return nil
	}
	st := status(rsp.SubjectConfirmationCode, rsp.ReasonRefused, "confirmation code refused")
	if hashCc == nil {
		st = status(rsp.SubjectConfirmationCode, rsp.ReasonMissing, "confirmation code required")
	}
	if err := s.confirmSession(ctx); err != nil {
		return err
	}
	if _, err := s.cfg.Store.ConfirmationCodeFailed(ctx, sess.ICCID); err != nil {
		return s.internal(ctx, fn, "counting the confirmation code failure", err)
	}
	return st
}

func ccMatches(stored, hashCc []byte, tid []byte) bool {
	for i := 0; i+sha256.Size <= len(stored); i += sha256.Size {
		h := sha256.New()
		h.Write(stored[i : i+sha256.Size])
		h.Write(tid)
		if subtle.ConstantTimeCompare(h.Sum(nil), hashCc) == 1 {
			return true
		}
	}
	return false
}

// earlierBinding finds the binding of an eUICC one-time key that an earlier
// session of this profile already used (a retry after CancelSession with
// reason postponed, or a lost answer): the BPP must then carry the same
// SM-DP+ one-time key (§4.1). A key bound to another profile is refused
// (8.2/3.7). nil when the key is new.
func (s *Server) earlierBinding(ctx context.Context, sess store.Session, euiccOtpk []byte) (*store.OneTimeKey, error) {
	k, err := s.cfg.Store.GetOneTimeKey(ctx, euiccOtpk)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, s.internal(ctx, ES9GetBoundProfilePackage, "looking up the one-time key", err)
	}
	if k.ICCID != sess.ICCID || k.KeyRef == "" || len(k.SMDPOtPK) == 0 {
		return nil, status(rsp.SubjectProfile, rsp.ReasonUnavailable, "the eUICC one-time key was bound for another download; retry with a new key")
	}
	return &k, nil
}

// A session cancelled after its package was bound (e.g. reason postponed)
// leaves a marker: the eUICC one-time key the package was bound to, under
// the transaction id boundKeyID(ICCID) in the session table (same TTL,
// swept alike). The next session of the profile announces it in
// smdpSigned2.bppEuiccOtpk, so that the eUICC reuses that key pair and the
// package is re-offered with the same smdpOtpk (es2-es10-codes.md §4.1).
func boundKeyID(iccid string) string { return "bound-otpk:" + iccid }

// rememberBoundKey records the marker; a failure only costs the reuse
// (the next session binds with fresh keys), so it is logged, not returned.
func (s *Server) rememberBoundKey(ctx context.Context, sess store.Session) {
	id := boundKeyID(sess.ICCID)
	if err := s.cfg.Store.DeleteSession(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.WarnContext(ctx, "smdp: replacing the bound-key marker", "iccid", sess.ICCID, "err", err)
		return
	}
	if _, err := s.cfg.Store.PutSession(ctx, store.Session{TransactionID: id, Phase: "bound-otpk", ICCID: sess.ICCID,
		EUICCOtPK: sess.EUICCOtPK, SMDPOtPK: sess.SMDPOtPK}); err != nil {
		s.log.WarnContext(ctx, "smdp: recording the bound-key marker", "iccid", sess.ICCID, "err", err)
	}
}

// boundKey returns the eUICC one-time key an earlier session of the
// profile bound its package to, nil when there is none (or it expired).
func (s *Server) boundKey(ctx context.Context, iccid string) []byte {
	m, err := s.cfg.Store.GetSession(ctx, boundKeyID(iccid))
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.WarnContext(ctx, "smdp: reading the bound-key marker", "iccid", iccid, "err", err)
		}
		return nil
	}
	return m.EUICCOtPK
}

// otkLabel binds a sealed shared secret to its profile and eUICC key.
func otkLabel(iccid string, euiccOtpk []byte) string {
	h := sha256.Sum256(euiccOtpk)
	return "otk:" + iccid + ":" + hex.EncodeToString(h[:8])
}

// captureKA keeps the SM-DP+ one-time public key the HSM made and a copy
// of Z, to be sealed for a later re-binding and then zeroed.
type captureKA struct {
	bpp.KeyAgreement
	otpk, z []byte
}

func (c *captureKA) EphemeralECDH(ctx context.Context, peer []byte) ([]byte, []byte, error) {
	otpk, z, err := c.KeyAgreement.EphemeralECDH(ctx, peer)
	c.otpk = append([]byte(nil), otpk...)
	c.z = append([]byte(nil), z...)
	return otpk, z, err
}

// replayKA re-offers an earlier binding's SM-DP+ one-time key and Z.
type replayKA struct{ otpk, z []byte }

func (r *replayKA) EphemeralECDH(context.Context, []byte) ([]byte, []byte, error) {
	return append([]byte(nil), r.otpk...), append([]byte(nil), r.z...), nil
}

// bind loads the stored PPP, unseals its PPK through the HSM and binds it
// to the eUICC's one-time key (ECDH and smdpSign on the HSM).
func (s *Server) bind(ctx context.Context, sess store.Session, d *sessionData, tid rsp.TransactionID, euiccOtpk []byte,
	earlier *store.OneTimeKey) (pkg, smdpOtpk []byte, keyRef string, err error) {
	const fn = ES9GetBoundProfilePackage
	cred := s.credentialsFor(d.CISKI)
	if cred == nil {
		return nil, nil, "", s.internal(ctx, fn, "finding the session's CI", errors.New("CI no longer configured"))
	}
	curve := cred.CI.Curve
	if err := curve.CheckPoint(euiccOtpk); err != nil {
		return nil, nil, "", status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccOtpk is not a point on the session's curve")
	}
	eid, err := hex.DecodeString(sess.EID) // 32 digits → 16 bytes plain BCD
	if err != nil || len(eid) != 16 {
		return nil, nil, "", s.internal(ctx, fn, "decoding the session's EID", fmt.Errorf("EID %q is not 32 digits", sess.EID))
	}
	p, ok := s.takeLoaded(sess.TransactionID, sess.ICCID)
	if !ok {
		if p, err = s.cfg.Store.GetProfile(ctx, sess.ICCID); err != nil {
			return nil, nil, "", s.internal(ctx, fn, "loading the profile", err)
		}
	}
	keyBlob, err := s.batchKey(ctx, p.BatchID)
	if err != nil {
		return nil, nil, "", s.internal(ctx, fn, "loading the profile's batch", err)
	}
	flat, err := s.cfg.HSM.UnprotectPPK(ctx, keyBlob, p.ICCID, p.ProtectedPPK)
	if err != nil {
		return nil, nil, "", s.internal(ctx, fn, "unsealing the PPK", err)
	}
	ppk, err := bpp.PPKFromBytes(flat)
	clear(flat)
	if err != nil {
		return nil, nil, "", s.internal(ctx, fn, "unsealing the PPK", err)
	}
	defer ppk.Zero()
	label := otkLabel(p.ICCID, euiccOtpk)
	var ka bpp.KeyAgreement
	var capture *captureKA
	if earlier != nil {
		z, err := s.cfg.HSM.OpenSecret(ctx, label, earlier.KeyRef)
		if err != nil {
			return nil, nil, "", s.internal(ctx, fn, "opening the earlier binding", err)
		}
		r := &replayKA{otpk: earlier.SMDPOtPK, z: z}
		defer clear(z)
		ka = r
	} else {
		capture = &captureKA{KeyAgreement: s.cfg.HSM.KeyAgreement(curve)}
		ka = capture
		defer func() { clear(capture.z) }()
	}
	pkg, err = bpp.Bind(ctx, s.cfg.HSM.Signer(RoleDPpb, curve), ka, &bpp.BindParams{
		TransactionID: tid, HostID: s.cfg.HostID, EID: eid, EUICCOtpk: euiccOtpk,
		MetadataDER: d.ProfileMetadata,
	}, &bpp.PPP{Segments: p.Segments, PPK: ppk})
	if err != nil {
		return nil, nil, "", s.internal(ctx, fn, "binding the profile", err)
	}
	if earlier != nil {
		return pkg, earlier.SMDPOtPK, earlier.KeyRef, nil
	}
	ref, err := s.cfg.HSM.SealSecret(ctx, label, capture.z)
	if err != nil {
		return nil, nil, "", s.internal(ctx, fn, "sealing the binding for retries", err)
	}
	return pkg, capture.otpk, ref, nil
}
