package euiccsim

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
)

func sha256Sum(b []byte) []byte { d := sha256.Sum256(b); return d[:] }

// authenticate runs GetEUICCChallenge, the test SM-DP+'s initiate and
// AuthenticateServer with the request passed through mutate.
func authenticate(t *testing.T, e *EUICC, dp *testDP, mutate func(*rsp.AuthenticateServerRequest)) (*rsp.InitiateAuthenticationResponse, *rsp.AuthenticateServerResponse, error) {
	t.Helper()
	ch, err := e.GetEUICCChallenge()
	if err != nil {
		t.Fatal(err)
	}
	ia, status := dp.initiate(&rsp.InitiateAuthenticationRequest{EUICCChallenge: ch, SMDPAddress: dp.address, EUICCInfo1: *e.GetEUICCInfo1()})
	if !status.IsZero() {
		t.Fatalf("initiate: %v", status)
	}
	mid := dp.matchingID
	req := &rsp.AuthenticateServerRequest{
		ServerSigned1: ia.ServerSigned1, ServerSignature1: ia.ServerSignature1,
		EUICCCIPKIDToBeUsed: ia.EUICCCIPKIDToBeUsed, ServerCertificate: ia.ServerCertificate,
		CtxParams1: rsp.CtxParams1{Common: &rsp.CtxParamsForCommonAuthentication{MatchingID: &mid,
			DeviceInfo: rsp.DeviceInfo{TAC: [4]byte{1, 2, 3, 4}, DeviceCapabilities: []byte{}}}},
	}
	if mutate != nil {
		mutate(req)
	}
	resp, err := e.AuthenticateServer(req)
	return ia, resp, err
}

// resign replaces serverSigned1 by a validly signed (by DPauth) variant.
func resign(t *testing.T, dp *testDP, req *rsp.AuthenticateServerRequest, change func(*rsp.ServerSigned1)) {
	s1 := req.ServerSigned1
	s1.Raw = nil
	change(&s1)
	var err error
	if s1.Raw, err = s1.Marshal(); err != nil {
		t.Fatal(err)
	}
	req.ServerSigned1 = s1
	req.ServerSignature1 = dpSign(t, dp.authSigner, s1.Raw)
}

func TestAuthenticateServer(t *testing.T) {
	for _, curve := range curves {
		n := curve.SGP26Name()
		// The SGP.26 negative-test certificates with the DPauth role
		// policy (…1.4) all carry the EUM's key: a server signing with
		// SK_EUM presents them as its CERT.DPauth.
		eumKey := sgp26Signer(t, "EUM", "SK_EUM_ECDSA_NIST.pem")
		asDPauth := func(file string) func(*testing.T, *testDP, *rsp.AuthenticateServerRequest) {
			return func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
				r.ServerCertificate = sgp26(t, "invalid", file)
				r.ServerSignature1 = dpSign(t, eumKey, r.ServerSigned1.Raw)
			}
		}
		tests := []struct {
			name     string
			nistOnly bool
			mutate   func(*testing.T, *testDP, *rsp.AuthenticateServerRequest)
			code     rsp.AuthenticateErrorCode // 0: success
			msg      string
		}{
			{name: "valid", mutate: func(*testing.T, *testDP, *rsp.AuthenticateServerRequest) {}},
			{name: "forged serverSignature1", code: rsp.AuthErrInvalidSignature, msg: "serverSignature1",
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					sig := bytes.Clone(r.ServerSignature1)
					sig[10] ^= 1
					r.ServerSignature1 = sig
				}},
			{name: "signed by another SM-DP+ (DP2auth key)", code: rsp.AuthErrInvalidSignature,
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					r.ServerSignature1 = dpSign(t, sgp26Signer(t, "DPauth", "SK_S_SM_DP2auth_ECDSA_"+n+".pem"), r.ServerSigned1.Raw)
				}},
			{name: "serverAddress changed after signing", code: rsp.AuthErrInvalidSignature,
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					r.ServerSigned1.Raw = nil
					r.ServerSigned1.ServerAddress = "evil.example.com"
				}},
			{name: "transactionId changed after signing", code: rsp.AuthErrInvalidSignature,
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					r.ServerSigned1.Raw = nil
					r.ServerSigned1.TransactionID = rsp.TransactionID{1, 2, 3}
				}},
			{name: "unknown CI (euiccCiPKIdToBeUsed)", code: rsp.AuthErrCIPKUnknown, msg: "not a CI this eUICC trusts",
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					r.EUICCCIPKIDToBeUsed = []byte{0x84, 0x66, 0xD9, 0xDC, 0x85, 0xC4, 0x6D, 0x76, 0x83, 0xE2, 0x01, 0x74, 0x3D, 0x94, 0x62, 0xCA, 0x35, 0xAE, 0x78, 0x34}
				}},
			{name: "DPauth issued by an unknown CI", nistOnly: true, code: rsp.AuthErrInvalidCertificate, msg: "does not chain",
				mutate: asDPauth("CERT_EUM_ECDSA_NIST_UNKNOWN_CI.der")},
			{name: "expired DPauth", nistOnly: true, code: rsp.AuthErrInvalidCertificate, msg: "expired on 2015-01-01",
				mutate: asDPauth("CERT_EUM_ECDSA_NIST_EXPIRED.der")},
			{name: "self-signed DPauth without AKI", nistOnly: true, code: rsp.AuthErrInvalidCertificate, msg: "no authorityKeyIdentifier",
				mutate: asDPauth("CERT_EUM_ECDSA_NIST_INVALID.der")},
			{name: "DPpb certificate as DPauth (role policy)", code: rsp.AuthErrInvalidCertificate, msg: "role policy",
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					r.ServerCertificate = dp.pbCert
					r.ServerSignature1 = dpSign(t, dp.pbSigner, r.ServerSigned1.Raw)
				}},
			{name: "garbage certificate", code: rsp.AuthErrInvalidCertificate,
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					r.ServerCertificate = []byte{0x30, 0x03, 0x02, 0x01, 0x00}
				}},
			{name: "validly signed, other euiccChallenge", code: rsp.AuthErrEUICCChallengeMismatch,
				mutate: func(t *testing.T, dp *testDP, r *rsp.AuthenticateServerRequest) {
					resign(t, dp, r, func(s *rsp.ServerSigned1) { s.EUICCChallenge[0] ^= 0xFF })
				}},
		}
		for _, tc := range tests {
			if tc.nistOnly && curve != esim.CurveP256 {
				continue // the SGP.26 invalid/ certificates are NIST only
			}
			t.Run(n+"/"+tc.name, func(t *testing.T) {
				e, dp := newTestEUICC(t, curve), newTestDP(t, curve)
				ia, resp, err := authenticate(t, e, dp, func(r *rsp.AuthenticateServerRequest) { tc.mutate(t, dp, r) })
				if tc.code == 0 {
					if err != nil || resp.Ok == nil {
						t.Fatalf("AuthenticateServer: %v", err)
					}
					s1 := resp.Ok.EUICCSigned1
					if !s1.TransactionID.Equal(ia.TransactionID) || s1.ServerAddress != dp.address || s1.ServerChallenge != ia.ServerSigned1.ServerChallenge {
						t.Errorf("euiccSigned1 does not echo serverSigned1: %+v", s1)
					}
					// The answer must survive the wire and verify at the server.
					der, err := resp.Marshal()
					if err != nil {
						t.Fatal(err)
					}
					back, err := rsp.ParseAuthenticateServerResponse(der)
					if err != nil {
						t.Fatal(err)
					}
					if _, st := dp.authenticate(&rsp.AuthenticateClientRequest{TransactionID: ia.TransactionID, AuthenticateServerResponse: *back}); !st.IsZero() {
						t.Fatalf("the SM-DP+ refused the eUICC's answer: %v", st)
					}
					return
				}
				var es10 *ES10Error
				if !errors.As(err, &es10) || es10.Code != int64(tc.code) {
					t.Fatalf("error %v, want code %d", err, tc.code)
				}
				if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("error %q does not say %q", err, tc.msg)
				}
				if resp == nil || resp.Error == nil || resp.Error.Code != tc.code || resp.Ok != nil {
					t.Fatalf("response %+v, want the error alternative with code %d", resp, tc.code)
				}
				if _, err := resp.Marshal(); err != nil {
					t.Errorf("error answer does not encode: %v", err)
				}
			})
		}
	}
}

func TestAuthenticateServerNeedsChallenge(t *testing.T) {
	e, dp := newTestEUICC(t, esim.CurveP256), newTestDP(t, esim.CurveP256)
	var req *rsp.AuthenticateServerRequest
	if _, _, err := authenticate(t, e, dp, func(r *rsp.AuthenticateServerRequest) { req = r }); err != nil {
		t.Fatal(err)
	}
	// The challenge is single-use: a replay of the same request fails.
	resp, err := e.AuthenticateServer(req)
	var es10 *ES10Error
	if !errors.As(err, &es10) || es10.Code != int64(rsp.AuthErrNoSessionContext) || resp.Error == nil {
		t.Fatalf("replayed AuthenticateServer: %v, want noSessionContext", err)
	}
}

// TestCheckServerSigned1 covers the LPA's own checks of
// InitiateAuthentication's answer (validly signed, but for another address
// or transaction).
func TestCheckServerSigned1(t *testing.T) {
	ia := &rsp.InitiateAuthenticationResponse{TransactionID: rsp.TransactionID{1, 2},
		ServerSigned1: rsp.ServerSigned1{TransactionID: rsp.TransactionID{1, 2}, ServerAddress: testAddress}}
	tests := []struct {
		name    string
		tid     rsp.TransactionID
		address string
		want    string
	}{
		{"same", rsp.TransactionID{1, 2}, testAddress, ""},
		{"address case", rsp.TransactionID{1, 2}, strings.ToUpper(testAddress), ""},
		{"wrong address", rsp.TransactionID{1, 2}, "other.example.com", "serverAddress"},
		{"wrong transaction id", rsp.TransactionID{1, 3}, testAddress, "transactionId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := *ia
			c.TransactionID = tc.tid
			err := checkServerSigned1(&c, tc.address)
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// prepare runs authentication and the SM-DP+'s authenticateClient, then
// PrepareDownload with the request passed through mutate.
func prepare(t *testing.T, e *EUICC, dp *testDP, mutate func(*rsp.PrepareDownloadRequest)) (*rsp.AuthenticateClientResponse, *rsp.PrepareDownloadResponse, error) {
	t.Helper()
	ia, asr, err := authenticate(t, e, dp, nil)
	if err != nil {
		t.Fatal(err)
	}
	acr, status := dp.authenticate(&rsp.AuthenticateClientRequest{TransactionID: ia.TransactionID, AuthenticateServerResponse: *asr})
	if !status.IsZero() {
		t.Fatalf("authenticateClient: %v", status)
	}
	req := &rsp.PrepareDownloadRequest{SmdpSigned2: acr.SmdpSigned2, SmdpSignature2: acr.SmdpSignature2, SmdpCertificate: acr.SmdpCertificate}
	if mutate != nil {
		mutate(req)
	}
	resp, err := e.PrepareDownload(req)
	return acr, resp, err
}

func TestPrepareDownload(t *testing.T) {
	for _, curve := range curves {
		n := curve.SGP26Name()
		tests := []struct {
			name   string
			mutate func(*testing.T, *testDP, *rsp.PrepareDownloadRequest)
			code   rsp.DownloadErrorCode
		}{
			{name: "valid", mutate: func(*testing.T, *testDP, *rsp.PrepareDownloadRequest) {}},
			{name: "with hashCc", mutate: func(t *testing.T, dp *testDP, r *rsp.PrepareDownloadRequest) {
				r.HashCc = HashCC("1234", r.SmdpSigned2.TransactionID)
			}},
			{name: "forged smdpSignature2", code: rsp.DownloadErrInvalidSignature,
				mutate: func(t *testing.T, dp *testDP, r *rsp.PrepareDownloadRequest) {
					sig := bytes.Clone(r.SmdpSignature2)
					sig[40] ^= 0x80
					r.SmdpSignature2 = sig
				}},
			{name: "smdpSignature2 not bound to euiccSignature1", code: rsp.DownloadErrInvalidSignature,
				mutate: func(t *testing.T, dp *testDP, r *rsp.PrepareDownloadRequest) {
					r.SmdpSignature2 = dpSign(t, dp.pbSigner, r.SmdpSigned2.Raw)
				}},
			{name: "DPauth certificate as DPpb (role policy)", code: rsp.DownloadErrInvalidCertificate,
				mutate: func(t *testing.T, dp *testDP, r *rsp.PrepareDownloadRequest) { r.SmdpCertificate = dp.authCert }},
			{name: "DP2pb signs", code: rsp.DownloadErrInvalidSignature,
				mutate: func(t *testing.T, dp *testDP, r *rsp.PrepareDownloadRequest) {
					r.SmdpCertificate = sgp26(t, "DPpb", "CERT_S_SM_DP2pb_ECDSA_"+n+".der")
				}},
			{name: "validly signed, other transactionId", code: rsp.DownloadErrInvalidTransactionID,
				mutate: func(t *testing.T, dp *testDP, r *rsp.PrepareDownloadRequest) {
					s2 := &rsp.SmdpSigned2{TransactionID: rsp.TransactionID{9, 9, 9}}
					var err error
					if s2.Raw, err = s2.Marshal(); err != nil {
						t.Fatal(err)
					}
					// The signature must cover euiccSignature1: take it from the suffix of the old signed data.
					s := dp.sessions[string(r.SmdpSigned2.TransactionID)]
					r.SmdpSigned2 = *s2
					r.SmdpSignature2 = dpSign(t, dp.pbSigner, rsp.SmdpSignature2Data(s2.Raw, s.euiccSignature1))
				}},
		}
		for _, tc := range tests {
			t.Run(n+"/"+tc.name, func(t *testing.T) {
				e, dp := newTestEUICC(t, curve), newTestDP(t, curve)
				acr, resp, err := prepare(t, e, dp, func(r *rsp.PrepareDownloadRequest) { tc.mutate(t, dp, r) })
				if tc.code == 0 {
					if err != nil || resp.Ok == nil {
						t.Fatalf("PrepareDownload: %v", err)
					}
					es2 := resp.Ok.EUICCSigned2
					if !es2.TransactionID.Equal(acr.TransactionID) || curve.CheckPoint(es2.EUICCOtpk) != nil {
						t.Errorf("euiccSigned2 %+v: wrong tid or a point not on %v", es2, curve)
					}
					return
				}
				var es10 *ES10Error
				if !errors.As(err, &es10) || es10.Code != int64(tc.code) || resp.Error == nil || resp.Error.Code != tc.code {
					t.Fatalf("got %v / %+v, want code %d", err, resp, tc.code)
				}
			})
		}
	}
	t.Run("no session", func(t *testing.T) {
		e := newTestEUICC(t, esim.CurveP256)
		resp, err := e.PrepareDownload(&rsp.PrepareDownloadRequest{SmdpSigned2: rsp.SmdpSigned2{TransactionID: rsp.TransactionID{1}}})
		if resp == nil || resp.Error == nil || resp.Error.Code != rsp.DownloadErrNoSessionContext || err == nil {
			t.Fatalf("got %v / %+v, want noSessionContext", err, resp)
		}
	})
}

// TestOtpkReuse: when the SM-DP+ re-offers a BPP bound to an earlier
// one-time key (bppEuiccOtpk), the eUICC answers with that same key.
func TestOtpkReuse(t *testing.T) {
	e, dp := newTestEUICC(t, esim.CurveP256), newTestDP(t, esim.CurveP256)
	_, first, err := prepare(t, e, dp, nil)
	if err != nil {
		t.Fatal(err)
	}
	otpk := first.Ok.EUICCSigned2.EUICCOtpk
	for _, reuse := range []bool{true, false} {
		_, resp, err := prepare(t, e, dp, func(r *rsp.PrepareDownloadRequest) {
			s2 := &rsp.SmdpSigned2{TransactionID: r.SmdpSigned2.TransactionID}
			if reuse {
				s2.BPPEUICCOtpk = otpk
			}
			var err error
			if s2.Raw, err = s2.Marshal(); err != nil {
				t.Fatal(err)
			}
			s := dp.sessions[string(s2.TransactionID)]
			r.SmdpSigned2, r.SmdpSignature2 = *s2, dpSign(t, dp.pbSigner, rsp.SmdpSignature2Data(s2.Raw, s.euiccSignature1))
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Equal(resp.Ok.EUICCSigned2.EUICCOtpk, otpk); got != reuse {
			t.Errorf("reuse=%v: same one-time key = %v", reuse, got)
		}
	}
}

// load runs a whole session up to the BPP and hands it through mutate to
// LoadBoundProfilePackage.
func load(t *testing.T, e *EUICC, dp *testDP, mutate func([]byte) []byte) ([]byte, error) {
	t.Helper()
	acr, pdr, err := prepare(t, e, dp, nil)
	if err != nil {
		t.Fatal(err)
	}
	gb, status := dp.getBPP(&rsp.GetBoundProfilePackageRequest{TransactionID: acr.TransactionID, PrepareDownloadResponse: *pdr})
	if !status.IsZero() {
		t.Fatalf("getBoundProfilePackage: %v", status)
	}
	pkg := gb.BoundProfilePackage
	if mutate != nil {
		pkg = mutate(bytes.Clone(pkg))
	}
	return e.LoadBoundProfilePackage(pkg)
}

func TestLoadBoundProfilePackage(t *testing.T) {
	for _, curve := range curves {
		n := curve.SGP26Name()
		tests := []struct {
			name   string
			mutate func(*testing.T, *EUICC, *testDP, []byte) []byte
			cmd    int64
			reason int64 // 0: success
			twice  bool
		}{
			{name: "valid"},
			{name: "last 86 segment tampered", cmd: cmdLoadProfileElements, reason: reasonSCP03tSecurityError,
				mutate: func(t *testing.T, e *EUICC, dp *testDP, b []byte) []byte { b[len(b)-5] ^= 1; return b }},
			{name: "ICCID already installed", cmd: cmdStoreMetadata, reason: reasonICCIDAlreadyExists, twice: true},
			{name: "truncated", cmd: cmdInitialiseSecureChannel, reason: reasonSCP03tStructureError,
				mutate: func(t *testing.T, e *EUICC, dp *testDP, b []byte) []byte { return b[:len(b)-1] }},
		}
		for _, tc := range tests {
			t.Run(n+"/"+tc.name, func(t *testing.T) {
				e, dp := newTestEUICC(t, curve), newTestDP(t, curve)
				if tc.twice {
					if _, err := load(t, e, dp, nil); err != nil {
						t.Fatal(err)
					}
				}
				var mutate func([]byte) []byte
				if tc.mutate != nil {
					mutate = func(b []byte) []byte { return tc.mutate(t, e, dp, b) }
				}
				pir, err := load(t, e, dp, mutate)
				if pir == nil {
					t.Fatalf("no PIR: %v", err)
				}
				p, perr := rsp.ParseProfileInstallationResult(pir)
				if perr != nil {
					t.Fatal(perr)
				}
				cert, _ := rsp.ParseCertificate(e.euiccCert)
				if !verify(cert.PublicKey, p.Data.Raw, p.EUICCSignPIR) {
					t.Error("euiccSignPIR does not verify with CERT.EUICC")
				}
				if !p.Data.SMDPOID.Equal([]int{2, 999, 10}) || p.Data.NotificationMetadata.NotificationAddress != dp.address {
					t.Errorf("PIR smdpOid %v address %q", p.Data.SMDPOID, p.Data.NotificationMetadata.NotificationAddress)
				}
				if tc.reason == 0 {
					if err != nil || p.Data.Success == nil {
						t.Fatalf("install: %v", err)
					}
					got, ok := e.Profile(dp.iccid)
					if !ok || !bytes.Equal(got.UPP, dp.upp) {
						t.Fatal("installed UPP differs from the SM-DP+'s")
					}
					return
				}
				var es10 *ES10Error
				if !errors.As(err, &es10) || es10.Code != tc.reason {
					t.Fatalf("error %v, want reason %d", err, tc.reason)
				}
				if r := p.Data.Error; r == nil || r.BPPCommandID != tc.cmd || r.ErrorReason != tc.reason {
					t.Fatalf("errorResult %+v, want command %d reason %d", p.Data.Error, tc.cmd, tc.reason)
				}
			})
		}
	}
}

// TestBoundForOtherSession: packages validly built for the eUICC's one-time
// key but for another transaction, or signed by another SM-DP+, are refused.
func TestBoundForOtherSession(t *testing.T) {
	for _, curve := range curves {
		n := curve.SGP26Name()
		tests := []struct {
			name   string
			tid    []byte
			signer string
			reason int64
		}{
			{"other transactionId", []byte{7, 7, 7}, "SK_S_SM_DPpb_ECDSA_" + n + ".pem", reasonInvalidTransactionID},
			{"smdpSign by DP2pb", nil, "SK_S_SM_DP2pb_ECDSA_" + n + ".pem", reasonInvalidSignature},
			{"control: as the session", nil, "SK_S_SM_DPpb_ECDSA_" + n + ".pem", 0},
		}
		for _, tc := range tests {
			t.Run(n+"/"+tc.name, func(t *testing.T) {
				e, dp := newTestEUICC(t, curve), newTestDP(t, curve)
				acr, pdr, err := prepare(t, e, dp, nil)
				if err != nil {
					t.Fatal(err)
				}
				s := dp.sessions[string(acr.TransactionID)]
				tid := tc.tid
				if tid == nil {
					tid = acr.TransactionID
				}
				ka, _ := bpp.NewSoftwareKeyAgreement(curve)
				pkg, err := bpp.BindUnprotected(t.Context(), sgp26Signer(t, "DPpb", tc.signer), ka, &bpp.BindParams{
					TransactionID: tid, HostID: []byte("h"), EID: s.eid, EUICCOtpk: pdr.Ok.EUICCSigned2.EUICCOtpk, MetadataDER: s.metadata}, dp.upp)
				if err != nil {
					t.Fatal(err)
				}
				pir, err := e.LoadBoundProfilePackage(pkg)
				if pir == nil {
					t.Fatalf("no PIR: %v", err)
				}
				var es10 *ES10Error
				if tc.reason == 0 {
					if err != nil {
						t.Fatal(err)
					}
				} else if !errors.As(err, &es10) || es10.Code != tc.reason {
					t.Fatalf("got %v, want reason %d", err, tc.reason)
				}
			})
		}
	}
}

func mustCert(t *testing.T, der []byte) *rsp.Certificate {
	t.Helper()
	c, err := rsp.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCancelSession(t *testing.T) {
	e, dp := newTestEUICC(t, esim.CurveBrainpoolP256r1), newTestDP(t, esim.CurveBrainpoolP256r1)
	ia, _, err := authenticate(t, e, dp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := e.CancelSession(&rsp.CancelSessionRequest{TransactionID: rsp.TransactionID{1}, Reason: rsp.CancelPostponed}); err == nil || resp.Error == nil {
		t.Fatalf("cancel of another transaction: %v", err)
	}
	resp, err := e.CancelSession(&rsp.CancelSessionRequest{TransactionID: ia.TransactionID, Reason: rsp.CancelPostponed})
	if err != nil {
		t.Fatal(err)
	}
	signed := resp.Ok.EUICCCancelSessionSigned
	if !signed.SMDPOID.Equal([]int{2, 999, 10}) || signed.Reason != rsp.CancelPostponed ||
		!verify(mustCert(t, e.euiccCert).PublicKey, signed.Raw, resp.Ok.EUICCCancelSessionSignature) {
		t.Fatalf("cancellation %+v does not verify or names the wrong OID/reason", signed)
	}
	if _, err := e.PrepareDownload(&rsp.PrepareDownloadRequest{SmdpSigned2: rsp.SmdpSigned2{TransactionID: ia.TransactionID}}); err == nil {
		t.Fatal("session still open after CancelSession")
	}
}

// TestOtherNotifications: enable and delete produce signed
// OtherSignedNotifications because the metadata lists them; disable does
// not.
func TestOtherNotifications(t *testing.T) {
	for _, curve := range curves {
		t.Run(curve.SGP26Name(), func(t *testing.T) {
			e, dp := newTestEUICC(t, curve), newTestDP(t, curve)
			if _, err := load(t, e, dp, nil); err != nil {
				t.Fatal(err)
			}
			if err := e.EnableProfile(dp.iccid); err != nil {
				t.Fatal(err)
			}
			if err := e.DeleteProfile(dp.iccid); err == nil {
				t.Fatal("deleted an enabled profile")
			}
			if err := e.DisableProfile(dp.iccid); err != nil {
				t.Fatal(err)
			}
			if err := e.DeleteProfile(dp.iccid); err != nil {
				t.Fatal(err)
			}
			list := e.ListNotification()
			var ops []rsp.NamedBits
			var seqs []int64
			for _, m := range list {
				ops = append(ops, m.Operation)
				seqs = append(seqs, m.SeqNumber)
			}
			want := []rsp.NamedBits{rsp.NotificationInstall, rsp.NotificationEnable, rsp.NotificationDelete}
			if len(ops) != 3 || ops[0] != want[0] || ops[1] != want[1] || ops[2] != want[2] || seqs[0] >= seqs[1] || seqs[1] >= seqs[2] {
				t.Fatalf("notifications %v seq %v, want %v in increasing order", ops, seqs, want)
			}
			for _, der := range e.RetrieveNotificationsList()[1:] {
				pn, err := rsp.ParsePendingNotification(der)
				if err != nil || pn.Other == nil {
					t.Fatalf("%v %+v", err, pn)
				}
				dp.notify(&rsp.HandleNotification{PendingNotification: *pn})
			}
			if len(dp.others) != 2 {
				t.Fatalf("the SM-DP+ accepted %d of 2 signed notifications", len(dp.others))
			}
			if !e.RemoveNotificationFromList(seqs[0]) || e.RemoveNotificationFromList(seqs[0]) {
				t.Error("NotificationSent: first removal must succeed, the second report nothing to delete")
			}
		})
	}
}

func TestNewRefusesMismatchedCredentials(t *testing.T) {
	nist, err := LoadSGP26(sgp26Dir(t), esim.CurveP256)
	if err != nil {
		t.Fatal(err)
	}
	brp, err := LoadSGP26(sgp26Dir(t), esim.CurveBrainpoolP256r1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(c *Credentials)
		want   string
	}{
		{"key of the other curve", func(c *Credentials) { c.Key = brp.Key }, "private key"},
		{"EUM of the other curve", func(c *Credentials) { c.EUMCertificate = brp.EUMCertificate }, "not issued by the EUM"},
		{"CI of the other curve", func(c *Credentials) { c.CICertificates = brp.CICertificates }, "no trusted CI"},
		{"both CIs trusted", func(c *Credentials) { c.CICertificates = append(c.CICertificates, brp.CICertificates...) }, ""},
		{"as loaded", func(c *Credentials) {}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := *nist
			tc.change(&c)
			_, err := New(&c, WithClock(func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }))
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func sgp26Dir(t *testing.T) string { return filepath.Dir(testenv.Path(t, "sgp26", "eUICC")) }
