package smdp

import (
	"context"
	"encoding/json"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// InitiateAuthentication is ES9+ InitiateAuthentication. Checks in the
// order of es2-es10-codes.md §3.2: address → svn → signing-list match →
// verification-list chain; then a new session is stored.
func (s *Server) InitiateAuthentication(ctx context.Context, req *rsp.InitiateAuthenticationRequest) (*rsp.InitiateAuthenticationResponse, error) {
	if err := s.checkAddress(req.SMDPAddress); err != nil {
		return nil, err
	}
	if err := checkSVN(req.EUICCInfo1.SVN); err != nil {
		return nil, err
	}
	cred, err := s.selectCI(&req.EUICCInfo1)
	if err != nil {
		return nil, err
	}
	if err := checkVerificationList(cred, &req.EUICCInfo1); err != nil {
		return nil, err
	}
	return s.newSession(ctx, req, cred)
}

// checkAddress: smdpAddress ≠ own FQDN → 8.8.1/3.8.
func (s *Server) checkAddress(addr string) error {
	if !sameAddress(addr, s.cfg.Address) {
		return status(rsp.SubjectSMDPAddress, rsp.ReasonRefused, "smdpAddress is not this SM-DP+")
	}
	return nil
}

// checkSVN: every 2.x is served (pySim's client sends 2.4.0); others → 8.8.3/3.1.
func checkSVN(v rsp.Version) error {
	if v[0] != 2 {
		return status(rsp.SubjectSpecVersion, rsp.ReasonUnknownUnsupported, "SGP.22 version "+v.String()+" not supported (2.x only)")
	}
	return nil
}

// selectCI picks the first configured CI (in preference order) whose key id
// the eUICC lists for signing; none → 8.8.2/3.1. Unknown ids are skipped.
func (s *Server) selectCI(info *rsp.EUICCInfo1) (*Credentials, error) {
	for i := range s.cfg.Credentials {
		c := &s.cfg.Credentials[i]
		for _, id := range info.CIPKIDsForSigning {
			if rsp.SameKeyID(c.CI.SKI, id) {
				return c, nil
			}
		}
	}
	return nil, status(rsp.SubjectSecurityConfiguration, rsp.ReasonUnknownUnsupported, "no CI public key in euiccCiPKIdListForSigning is supported")
}

// checkVerificationList: the eUICC must be able to verify CERT.DPauth, i.e.
// list its CI for verification; else 8.8.4/3.7.
func checkVerificationList(c *Credentials, info *rsp.EUICCInfo1) error {
	for _, id := range info.CIPKIDsForVerification {
		if rsp.SameKeyID(c.CI.SKI, id) {
			return nil
		}
	}
	return status(rsp.SubjectSMDPCertificate, rsp.ReasonUnavailable, "no SM-DP+ certificate chains to a CI in euiccCiPKIdListForVerification")
}

// newSession signs serverSigned1 with DPauth and stores the session. The
// transaction id and server challenge are fresh random values.
func (s *Server) newSession(ctx context.Context, req *rsp.InitiateAuthenticationRequest, cred *Credentials) (*rsp.InitiateAuthenticationResponse, error) {
	const fn = ES9InitiateAuthentication
	tid := rsp.TransactionID(random(16))
	s1 := rsp.ServerSigned1{
		TransactionID:   tid,
		EUICCChallenge:  req.EUICCChallenge,
		ServerAddress:   s.cfg.Address,
		ServerChallenge: [rsp.ChallengeSize]byte(random(rsp.ChallengeSize)),
	}
	raw, err := s1.Marshal()
	if err != nil {
		return nil, s.internal(ctx, fn, "encoding serverSigned1", err)
	}
	s1.Raw = raw
	sig, err := s.sign(ctx, RoleDPauth, cred.CI.Curve, raw)
	if err != nil {
		return nil, s.internal(ctx, fn, "signing serverSigned1 with DPauth", err)
	}
	d := &sessionData{CISKI: cred.CI.SKI}
	data, _ := json.Marshal(d)
	sess, err := s.cfg.Store.PutSession(ctx, store.Session{
		TransactionID:   tidKey(tid),
		Phase:           phaseInitiated,
		EUICCChallenge:  req.EUICCChallenge[:],
		ServerChallenge: s1.ServerChallenge[:],
		Data:            data,
	})
	if err != nil {
		return nil, s.internal(ctx, fn, "storing the session", err)
	}
	s.stored(sess, sess.Version, d)
	s.sessionOpened(tidKey(tid))
	return &rsp.InitiateAuthenticationResponse{
		TransactionID:       tid,
		ServerSigned1:       s1,
		ServerSignature1:    sig,
		EUICCCIPKIDToBeUsed: cred.CI.SKI,
		ServerCertificate:   cred.DPauth.Raw,
	}, nil
}
