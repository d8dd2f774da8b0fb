package smdp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/esim/tlv"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// AuthenticateClient is ES9+ AuthenticateClient. Checks in the row order of
// es2-es10-codes.md §3.3 (the first failing row decides): session, eUICC
// error, EUM → CI → eUICC chain (AKI, chosen CI, expiry before policy,
// extensions, signatures), euiccSignature1, EID range, server challenge,
// inner transaction id, matching ID / EID order lookup, then the store's
// order checks (EID binding, released, expiry, attempts), then the
// profile's eligibility on this eUICC (forbidden policy rules), ctxParams1
// (another alternative has no matching ID: the EID's order is looked up
// first), then memory.
func (s *Server) AuthenticateClient(ctx context.Context, req *rsp.AuthenticateClientRequest) (*rsp.AuthenticateClientResponse, error) {
	return withSessionCache(ctx, s, func(ctx context.Context) (*rsp.AuthenticateClientResponse, error) {
		return s.authenticateClient(ctx, req)
	})
}

func (s *Server) authenticateClient(ctx context.Context, req *rsp.AuthenticateClientRequest) (*rsp.AuthenticateClientResponse, error) {
	const fn = ES9AuthenticateClient
	sess, d, err := s.loadSession(ctx, fn, req.TransactionID, phaseInitiated) // row 1
	if err != nil {
		return nil, err
	}
	ok, err := authenticateOk(&req.AuthenticateServerResponse) // row 23
	if err != nil {
		return nil, err
	}
	cred := s.credentialsFor(d.CISKI)
	if cred == nil {
		return nil, s.internal(ctx, fn, "finding the session's CI", fmt.Errorf("CI %X no longer configured", d.CISKI))
	}
	eum, euicc, err := rsp.VerifyEUICCChainCached(cred.CI, ok.EUMCertificate, ok.EUICCCertificate, s.cfg.Now(), s.eums) // rows 2–8
	if err != nil {
		return nil, err
	}
	signed := &ok.EUICCSigned1
	if !verifyRS(euicc.PublicKey, signed.Raw, ok.EUICCSignature1) { // row 9
		return nil, status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccSignature1 does not verify with the eUICC certificate")
	}
	eid := euicc.SubjectSerialNumber
	if !eum.EIDPermitted(eid) { // row 10
		return nil, status(rsp.SubjectEUICCCertificate, rsp.ReasonVerificationFailed, "EID outside the EUM's permitted range")
	}
	if !bytes.Equal(signed.ServerChallenge[:], sess.ServerChallenge) { // row 11
		return nil, status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "serverChallenge does not match the session")
	}
	if !signed.TransactionID.Equal(req.TransactionID) { // row 12
		return nil, status(rsp.SubjectTransactionID, rsp.ReasonUnknown, "transactionId in euiccSigned1 differs from the request's")
	}
	var matchingID *string // absent without ctxParamsForCommonAuthentication: the EID's order (row 14/15)
	if c := signed.CtxParams1.Common; c != nil {
		matchingID = c.MatchingID
	}
	full, err := s.findOrder(ctx, matchingID, eid) // rows 13–15
	if err != nil {
		return nil, err
	}
	if signed.CtxParams1.Common == nil { // row 21, after rows 16–20
		return nil, s.refuseCtxParams1(ctx, &signed.EUICCInfo2, eid, full)
	}
	return s.offerProfile(ctx, sess, d, cred, ok, eid, full)
}

// errCtxParams1 refuses the store's transaction in refuseCtxParams1 (row
// 21 decides: nothing is written).
var errCtxParams1 = errors.New("smdp: ctxParams1 is not ctxParamsForCommonAuthentication")

// refuseCtxParams1 answers a request whose ctxParams1 is another CHOICE
// alternative (row 21, 1.3.1/2.2) once the rows before it have passed:
// the order's (16–19, the store's verdict) and the profile's policy rules
// (20). A failing earlier row decides, recorded as offerProfile records
// it; row 21 itself writes nothing.
func (s *Server) refuseCtxParams1(ctx context.Context, info2 *rsp.EUICCInfo2, eid string, full store.Profile) error {
	const fn = ES9AuthenticateClient
	refused := status(rsp.SubjectCtxParams1, rsp.ReasonMissing, "ctxParams1 is not ctxParamsForCommonAuthentication")
	_, pprs, err := profileMetadata(full)
	if err != nil {
		return s.internal(ctx, fn, "encoding the profile metadata", err)
	}
	row20 := checkPolicyRules(info2, pprs)
	if _, err := s.cfg.Store.CheckAuthenticateClient(full, eid); err == nil && row20 == nil {
		return refused
	}
	if err := s.confirmSession(ctx); err != nil {
		return err
	}
	// The store decides rows 16–19 on the current order; when they pass,
	// row 20 records the attempt and row 21 refuses the transaction.
	_, err = s.cfg.Store.AuthenticateClientWith(ctx, full.ICCID, eid, func(store.Profile) error {
		if row20 != nil {
			return nil
		}
		return errCtxParams1
	}, nil)
	switch {
	case errors.Is(err, errCtxParams1):
		return refused
	case err != nil:
		return s.internal(ctx, fn, "recording the download attempt", err)
	}
	return row20
}

// authenticateOk: an authenticateResponseError from the eUICC is a Failed
// answer (no agreed code; 8.1/6.1 names the eUICC's refusal), never a 500.
func authenticateOk(r *rsp.AuthenticateServerResponse) (*rsp.AuthenticateResponseOk, error) {
	if r.Ok == nil {
		code := int64(-1)
		if r.Error != nil {
			code = int64(r.Error.Code)
		}
		return nil, status(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, fmt.Sprintf("the eUICC refused AuthenticateServer (error %d)", code))
	}
	return r.Ok, nil
}

// findOrder finds the download, with its protected material and metadata:
// by matching ID when one is given (unknown → 8.2.6/3.8); absent or empty
// → the EID's pending order (none → 8.1.1/3.8).
func (s *Server) findOrder(ctx context.Context, matchingID *string, eid string) (store.Profile, error) {
	const fn = ES9AuthenticateClient
	var (
		p   store.Profile
		err error
	)
	if matchingID != nil && *matchingID != "" {
		p, err = s.cfg.Store.DownloadProfile(ctx, *matchingID)
	} else if p, err = s.cfg.Store.PendingOrderByEID(ctx, eid); err == nil {
		p, err = s.cfg.Store.GetProfile(ctx, p.ICCID)
	}
	if err != nil {
		return store.Profile{}, s.internal(ctx, fn, "finding the download order", err)
	}
	return p, nil
}

// errOrderChanged: the order changed between the read that an
// AuthenticateClient answer was prepared from and the transaction that
// records it.
var errOrderChanged = errors.New("smdp: the order changed while the answer was prepared")

// offerProfile checks the order (rows 16–19) and the profile's eligibility
// (rows 20, 22), signs smdpSigned2 with DPpb, and records the download
// attempt and the session's next phase in one store transaction. The
// answer is prepared from full, the order as read; the transaction checks
// that the store's verdict is the same (it normally is: a race with
// another call on the same order is rare) and otherwise the attempt is
// recorded first and the answer prepared again from the recorded order.
func (s *Server) offerProfile(ctx context.Context, sess store.Session, d *sessionData, cred *Credentials,
	ok *rsp.AuthenticateResponseOk, eid string, full store.Profile) (*rsp.AuthenticateClientResponse, error) {
	const fn = ES9AuthenticateClient
	next, err := s.cfg.Store.CheckAuthenticateClient(full, eid) // rows 16–19, nothing written yet
	if err != nil {
		// The store decides and records the refusal (an attempt beyond
		// the limit puts the order in Error).
		return s.offerRecorded(ctx, sess, d, cred, ok, eid, full)
	}
	md, pprs, err := profileMetadata(full)
	if err != nil {
		return nil, s.internal(ctx, fn, "encoding the profile metadata", err)
	}
	if err := checkEligible(&ok.EUICCSigned1.EUICCInfo2, pprs, len(full.Segments)); err != nil { // rows 20 and 22
		// The attempt counts, as the store's rows come first.
		if err := s.confirmSession(ctx); err != nil {
			return nil, err
		}
		if _, serr := s.cfg.Store.AuthenticateClient(ctx, full.ICCID, eid); serr != nil {
			return nil, s.internal(ctx, fn, "recording the download attempt", serr)
		}
		return nil, err
	}
	resp, err := s.offer(ctx, &sess, d, cred, ok, eid, md, next)
	if err != nil {
		return nil, err
	}
	expect := func(p store.Profile) error {
		if p.DownloadAttempts != next.DownloadAttempts || !bytes.Equal(p.CCHash, next.CCHash) || p.MatchingID != next.MatchingID {
			return errOrderChanged
		}
		return nil
	}
	_, err = s.cfg.Store.AuthenticateClientWith(ctx, full.ICCID, eid, expect, &store.SessionChange{Update: keepExpiry(sess)})
	if errors.Is(err, errOrderChanged) {
		return s.offerRecorded(ctx, sess, d, cred, ok, eid, full)
	}
	if err != nil {
		return nil, s.sessionWriteError(ctx, fn, "recording the download attempt", err)
	}
	s.stored(sess, sess.Version+1, d)
	s.keepLoaded(sess.TransactionID, full)
	return resp, nil
}

// offerRecorded is offerProfile in two store transactions: the attempt is
// recorded first (the store's verdict on the current order), then the
// answer prepared and the session stored.
func (s *Server) offerRecorded(ctx context.Context, sess store.Session, d *sessionData, cred *Credentials,
	ok *rsp.AuthenticateResponseOk, eid string, full store.Profile) (*rsp.AuthenticateClientResponse, error) {
	const fn = ES9AuthenticateClient
	if err := s.confirmSession(ctx); err != nil {
		return nil, err
	}
	p, err := s.cfg.Store.AuthenticateClient(ctx, full.ICCID, eid) // rows 16–19
	if err != nil {
		return nil, s.internal(ctx, fn, "recording the download attempt", err)
	}
	md, pprs, err := profileMetadata(full)
	if err != nil {
		return nil, s.internal(ctx, fn, "encoding the profile metadata", err)
	}
	if err := checkEligible(&ok.EUICCSigned1.EUICCInfo2, pprs, len(full.Segments)); err != nil { // rows 20 and 22
		return nil, err
	}
	resp, err := s.offer(ctx, &sess, d, cred, ok, eid, md, p)
	if err != nil {
		return nil, err
	}
	next, err := s.cfg.Store.UpdateSession(ctx, sess)
	if err != nil {
		return nil, s.sessionWriteError(ctx, fn, "storing the session", err)
	}
	s.stored(sess, next.Version, d)
	s.keepLoaded(sess.TransactionID, full)
	return resp, nil
}

// offer builds smdpSigned2 for the order p (as recorded, or as it will
// be), signs smdpSignature2 with DPpb, and advances sess (its Data
// included) to the authenticated phase.
func (s *Server) offer(ctx context.Context, sess *store.Session, d *sessionData, cred *Credentials,
	ok *rsp.AuthenticateResponseOk, eid string, md []byte, p store.Profile) (*rsp.AuthenticateClientResponse, error) {
	const fn = ES9AuthenticateClient
	tid := ok.EUICCSigned1.TransactionID
	s2 := rsp.SmdpSigned2{TransactionID: tid, CCRequired: p.CCRequired()}
	if p.DownloadAttempts > 1 { // only a re-attempt can have a bound package
		s2.BPPEUICCOtpk = s.boundKey(ctx, p.ICCID)
	}
	raw, err := s2.Marshal()
	if err != nil {
		return nil, s.internal(ctx, fn, "encoding smdpSigned2", err)
	}
	s2.Raw = raw
	sig, err := s.sign(ctx, RoleDPpb, cred.CI.Curve, rsp.SmdpSignature2Data(raw, ok.EUICCSignature1))
	if err != nil {
		return nil, s.internal(ctx, fn, "signing smdpSigned2 with DPpb", err)
	}
	d.EUICCSignature1 = ok.EUICCSignature1
	d.EUICCCert = ok.EUICCCertificate
	d.SmdpSignature2 = sig
	d.ProfileMetadata = md
	d.CCRequired = p.CCRequired()
	data, err := json.Marshal(d)
	if err != nil {
		return nil, s.internal(ctx, fn, "encoding the session", err)
	}
	sess.Phase, sess.EID, sess.ICCID, sess.MatchingID, sess.Data = phaseAuthenticated, eid, p.ICCID, p.MatchingID, data
	return &rsp.AuthenticateClientResponse{
		TransactionID:   tid,
		ProfileMetadata: md,
		SmdpSigned2:     s2,
		SmdpSignature2:  sig,
		SmdpCertificate: cred.DPpb.Raw,
	}, nil
}

// checkEligible: a profile whose policy rules the eUICC forbids
// (euiccInfo2.forbiddenProfilePolicyRules) is 8.2.5/4.3 (row 20); a
// profile larger than the free non-volatile memory the eUICC reports
// (extCardResource) is 8.1/4.8 (row 22). The size compared is the stored
// package's (its protected segments): what the eUICC must take in; an
// eUICC that reports no free memory is not refused.
func checkEligible(info2 *rsp.EUICCInfo2, pprs bpp.PolicyRules, size int) error {
	if err := checkPolicyRules(info2, pprs); err != nil {
		return err
	}
	if free, ok := info2.FreeNonVolatileMemory(); ok && free < uint64(size) {
		return status(rsp.SubjectEUICC, rsp.ReasonInsufficientMemory,
			fmt.Sprintf("the eUICC reports %d bytes of free non-volatile memory; the profile needs %d", free, size))
	}
	return nil
}

// checkPolicyRules is checkEligible's row 20.
func checkPolicyRules(info2 *rsp.EUICCInfo2, pprs bpp.PolicyRules) error {
	for bit, name := range []string{"pprUpdateControl", "ppr1", "ppr2"} {
		if pprs&(1<<bit) != 0 && info2.ForbiddenPPRs.Has(uint(bit)) {
			return status(rsp.SubjectProfileType, rsp.ReasonStoppedOnWarning,
				"the profile carries "+name+", which this eUICC forbids (forbiddenProfilePolicyRules)")
		}
	}
	return nil
}

// profileMetadata is the StoreMetadataRequest (BF25) of a stored profile:
// the eUICC sees the same bytes here and in the BPP. store.Metadata.DER,
// when set, holds the elements that follow profileClass
// (notificationConfigurationInfo, profileOwner, profilePolicyRules …), in
// the module's order; they are checked by parsing, and the profile's
// policy rules are returned for the eligibility check.
func profileMetadata(p store.Profile) ([]byte, bpp.PolicyRules, error) {
	iccid, err := esim.ParseICCID(p.ICCID)
	if err != nil {
		return nil, 0, err
	}
	class := bpp.ClassOperational
	switch p.Metadata.ProfileClass {
	case 0:
		class = bpp.ClassTest
	case 1:
		class = bpp.ClassProvisioning
	}
	m := bpp.StoreMetadata{ICCID: iccid, ServiceProviderName: p.Metadata.ServiceProviderName,
		ProfileName: p.Metadata.ProfileName, ProfileClass: class}
	if len(p.Metadata.DER) > 0 {
		extra, err := trailingMetadata(iccid, p.Metadata.DER)
		if err != nil {
			return nil, 0, err
		}
		m.Notifications, m.ProfileOwner, m.PolicyRules, m.Extensions = extra.Notifications, extra.ProfileOwner, extra.PolicyRules, extra.Extensions
	}
	der, err := m.Marshal()
	return der, m.PolicyRules, err
}

// trailingMetadata parses elements that follow profileClass by placing
// them in a minimal StoreMetadataRequest.
func trailingMetadata(iccid esim.ICCID, elems []byte) (*bpp.StoreMetadata, error) {
	base, err := (&bpp.StoreMetadata{ICCID: iccid, ProfileClass: bpp.ClassOperational}).Marshal()
	if err != nil {
		return nil, err
	}
	_, hdr, _, err := tlv.ReadHeader(base, 0, len(base))
	if err != nil {
		return nil, err
	}
	content := append(append([]byte(nil), base[hdr:]...), elems...)
	m, err := bpp.ParseStoreMetadata(tlv.AppendTLV(nil, 0xBF25, content))
	if err != nil {
		return nil, fmt.Errorf("the stored metadata's extra elements: %w", err)
	}
	return m, nil
}
