package smdp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

func wantStatus(t *testing.T, got rsp.Status, want string) {
	t.Helper()
	if want == "" {
		if !got.IsZero() {
			t.Fatalf("got %v, want success", got)
		}
		return
	}
	if got.Code() != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

func initiated(t *testing.T, e *env, eu *testEUICC) *rsp.InitiateAuthenticationResponse {
	t.Helper()
	ia, st := call[*rsp.InitiateAuthenticationResponse](t, e, eu.initiate())
	wantStatus(t, st, "")
	return ia
}

// authenticated runs InitiateAuthentication and AuthenticateClient for an
// order made by matching ID.
func authenticated(t *testing.T, e *env, eu *testEUICC, mid string) (*rsp.InitiateAuthenticationResponse, *rsp.AuthenticateClientResponse) {
	t.Helper()
	ia := initiated(t, e, eu)
	ac, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &mid), eu.cert, eu.eum))
	wantStatus(t, st, "")
	return ia, ac
}

func TestInitiateAuthenticationChecks(t *testing.T) {
	e := newEnv(t)
	nist := testCredentials(t, esim.CurveP256).CI.SKI
	brp := testCredentials(t, esim.CurveBrainpoolP256r1).CI.SKI
	unknown := mustCert(t, "invalid", "CERT_UNKNOWN_CI_ECDSA_NIST.der").SKI
	for _, tc := range []struct {
		name   string
		mutate func(*rsp.InitiateAuthenticationRequest)
		want   string
		ci     []byte // the CI the server must choose on success
	}{
		{"ok", func(*rsp.InitiateAuthenticationRequest) {}, "", nist},
		{"address case and port", func(r *rsp.InitiateAuthenticationRequest) { r.SMDPAddress = "TestSMDPplus1.example.com:443" }, "", nist},
		{"wrong address", func(r *rsp.InitiateAuthenticationRequest) { r.SMDPAddress = "other.example.com" }, "8.8.1/3.8", nil},
		{"wrong address before svn", func(r *rsp.InitiateAuthenticationRequest) {
			r.SMDPAddress = "x.example.com"
			r.EUICCInfo1.SVN = rsp.Version{1, 0, 0}
		}, "8.8.1/3.8", nil},
		{"svn 1.0.0", func(r *rsp.InitiateAuthenticationRequest) { r.EUICCInfo1.SVN = rsp.Version{1, 0, 0} }, "8.8.3/3.1", nil},
		{"svn 3.0.0", func(r *rsp.InitiateAuthenticationRequest) { r.EUICCInfo1.SVN = rsp.Version{3, 0, 0} }, "8.8.3/3.1", nil},
		{"svn 2.4.0", func(r *rsp.InitiateAuthenticationRequest) { r.EUICCInfo1.SVN = rsp.Version{2, 4, 0} }, "", nist},
		{"unknown CI", func(r *rsp.InitiateAuthenticationRequest) {
			r.EUICCInfo1.CIPKIDsForSigning = [][]byte{unknown}
			r.EUICCInfo1.CIPKIDsForVerification = [][]byte{unknown}
		}, "8.8.2/3.1", nil},
		{"unknown and short PKIDs skipped", func(r *rsp.InitiateAuthenticationRequest) {
			r.EUICCInfo1.CIPKIDsForSigning = [][]byte{{1, 2}, unknown, brp}
			r.EUICCInfo1.CIPKIDsForVerification = [][]byte{{1, 2}, brp}
		}, "", brp},
		{"signing NIST, verification BRP only", func(r *rsp.InitiateAuthenticationRequest) {
			r.EUICCInfo1.CIPKIDsForSigning = [][]byte{nist}
			r.EUICCInfo1.CIPKIDsForVerification = [][]byte{brp}
		}, "8.8.4/3.7", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newTestEUICC(t, esim.CurveP256).initiate()
			tc.mutate(req)
			resp, st := call[*rsp.InitiateAuthenticationResponse](t, e, req)
			wantStatus(t, st, tc.want)
			if tc.want != "" {
				return
			}
			if !bytes.Equal(resp.EUICCCIPKIDToBeUsed, tc.ci) {
				t.Fatalf("CI %X chosen, want %X", resp.EUICCCIPKIDToBeUsed, tc.ci)
			}
			dpauth, err := rsp.ParseCertificate(resp.ServerCertificate)
			if err != nil || !rsp.SameKeyID(dpauth.AKI, tc.ci) || !dpauth.HasPolicy(rsp.PolicyDPauth) {
				t.Fatalf("serverCertificate is not the DPauth certificate of the chosen CI (%v)", err)
			}
			if !verifyRS(dpauth.PublicKey, resp.ServerSigned1.Raw, resp.ServerSignature1) {
				t.Fatal("serverSignature1 does not verify with CERT.DPauth")
			}
			if resp.ServerSigned1.EUICCChallenge != req.EUICCChallenge || resp.ServerSigned1.ServerAddress != testAddress {
				t.Fatal("serverSigned1 does not echo the challenge and carry the address")
			}
		})
	}
	t.Run("fresh transaction ids and challenges", func(t *testing.T) {
		eu := newTestEUICC(t, esim.CurveP256)
		a, b := initiated(t, e, eu), initiated(t, e, eu)
		if a.TransactionID.Equal(b.TransactionID) || a.ServerSigned1.ServerChallenge == b.ServerSigned1.ServerChallenge {
			t.Fatal("two sessions share a transaction id or server challenge")
		}
	})
}

// TestAuthenticateClientChecks: one case per row of es2-es10-codes.md
// §3.3 (the certificates of sgp26/invalid are TestInvalidCertificates').
func TestAuthenticateClientChecks(t *testing.T) {
	type setup = acSetup
	for _, tc := range []struct {
		name string
		// order places the order; nil: by matching ID, no EID.
		order func(t *testing.T, e *env, iccid string) string
		// build returns the request; nil: the regular one.
		build func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest
		opts  []store.Option
		// meta is the profile's metadata; nil: the default one.
		meta *store.Metadata
		want string
		// after checks the store (and session) after the call; nil: nothing.
		after func(t *testing.T, s *setup, iccid string)
	}{
		{name: "ok"},
		// Row 21 (ctxParams1 not ctxParamsForCommonAuthentication) comes
		// after rows 13–20: without the common parameters there is no
		// matchingId, so the EID's pending order is looked up first.
		{name: "ctxParams1 not for common authentication, no order for the EID (row 14 first)", want: "8.1.1/3.8", build: otherCtxParams1},
		{name: "ctxParams1 not for common authentication, the EID's order (row 21, nothing written)", want: "1.3.1/2.2",
			order: eidOrder, build: otherCtxParams1,
			after: func(t *testing.T, s *setup, iccid string) {
				p, err := s.e.db.GetProfile(context.Background(), iccid)
				if err != nil || p.State != store.StateReleased || p.DownloadAttempts != 0 {
					t.Fatalf("after a row-21 refusal: state %s, %d download attempts (%v); want Released, 0", p.State, p.DownloadAttempts, err)
				}
				// The session is still usable: the same eUICC's call with
				// the common parameters gets the EID's order.
				_, st := call[*rsp.AuthenticateClientResponse](t, s.e, s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, nil), s.eu.cert, s.eu.eum))
				wantStatus(t, st, "")
			}},
		{name: "ctxParams1 not for common authentication, the EID's order not released (row 17 first)", want: "8.2/1.2", build: otherCtxParams1,
			order: func(t *testing.T, e *env, iccid string) string {
				ctx := context.Background()
				if _, err := e.db.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid, EID: testEID}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, EID: testEID, MatchingID: new(string)}); err != nil {
					t.Fatal(err)
				}
				return ""
			}},
		{name: "ctxParams1 not for common authentication, the EID's order expired (row 18 first)", want: "8.8.5/4.10",
			opts: []store.Option{store.WithOrderTTL(time.Hour)}, order: eidOrder,
			build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
				s.e.now = s.e.now.Add(2 * time.Hour)
				s.ia = initiated(t, s.e, s.eu)
				return otherCtxParams1(t, s)
			}},
		{name: "ctxParams1 not for common authentication, download attempts used up (row 19 first)", want: "8.8.5/6.4",
			opts: []store.Option{store.WithMaxDownloadAttempts(1)},
			order: func(t *testing.T, e *env, iccid string) string {
				mid := eidOrder(t, e, iccid)
				if _, err := e.db.AuthenticateClient(context.Background(), iccid, testEID); err != nil {
					t.Fatal(err)
				}
				return mid
			},
			build: otherCtxParams1,
			after: func(t *testing.T, s *setup, iccid string) {
				if p, _ := s.e.db.GetProfile(context.Background(), iccid); p.State != store.StateError {
					t.Fatalf("state %s after the attempt limit, want Error", p.State)
				}
			}},
		{name: "ctxParams1 not for common authentication, profile with ppr1 forbidden (row 20 first)", want: "8.2.5/4.3",
			meta: pprMeta, order: eidOrder,
			build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
				r := otherCtxParams1(t, s)
				s1 := r.AuthenticateServerResponse.Ok.EUICCSigned1
				s1.EUICCInfo2.ForbiddenPPRs = 1 << 1
				return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
			},
			after: func(t *testing.T, s *setup, iccid string) {
				if p, _ := s.e.db.GetProfile(context.Background(), iccid); p.DownloadAttempts != 1 {
					t.Fatalf("%d download attempts after a row-20 refusal, want 1 (the store's rows come first)", p.DownloadAttempts)
				}
			}},
		{name: "ctxParams1 not for common authentication, eUICC lacks memory (row 21 before 22)", want: "1.3.1/2.2", order: eidOrder,
			build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
				r := otherCtxParams1(t, s)
				s1 := r.AuthenticateServerResponse.Ok.EUICCSigned1
				s1.EUICCInfo2.ExtCardResource = []byte{0x81, 0x01, 0x00, 0x82, 0x02, 0x01, 0x00} // 256 bytes free
				return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
			}},
		{name: "missing matchingId, the EID's order (row 15)", order: eidOrder, build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			return s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, nil), s.eu.cert, s.eu.eum)
		}},
		{name: "profile with ppr1, eUICC forbids ppr1", want: "8.2.5/4.3", meta: pprMeta,
			build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
				s1 := s.eu.authSigned1(s.ia, &s.mid)
				s1.EUICCInfo2.ForbiddenPPRs = 1 << 1
				return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
			}},
		{name: "profile with ppr1, eUICC forbids ppr2 only", meta: pprMeta,
			build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
				s1 := s.eu.authSigned1(s.ia, &s.mid)
				s1.EUICCInfo2.ForbiddenPPRs = 1 << 2
				return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
			}},
		{name: "profile without rules, eUICC forbids ppr1 and ppr2", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			s1 := s.eu.authSigned1(s.ia, &s.mid)
			s1.EUICCInfo2.ForbiddenPPRs = 1<<1 | 1<<2
			return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
		}},
		{name: "eUICC lacks memory", want: "8.1/4.8", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			s1 := s.eu.authSigned1(s.ia, &s.mid)
			s1.EUICCInfo2.ExtCardResource = []byte{0x81, 0x01, 0x00, 0x82, 0x02, 0x01, 0x00} // 256 bytes free
			return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
		}},
		{name: "eUICC has the memory", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			s1 := s.eu.authSigned1(s.ia, &s.mid)
			s1.EUICCInfo2.ExtCardResource = []byte{0x81, 0x01, 0x00, 0x82, 0x03, 0x10, 0x00, 0x00} // 1 MiB free
			return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
		}},
		{name: "unknown transactionId", want: "8.10.1/3.9", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			return s.eu.authenticate(t, rsp.TransactionID{1, 2, 3}, s.eu.authSigned1(s.ia, &s.mid), s.eu.cert, s.eu.eum)
		}},
		{name: "eUICC error", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			return &rsp.AuthenticateClientRequest{TransactionID: s.ia.TransactionID, AuthenticateServerResponse: rsp.AuthenticateServerResponse{
				Error: &rsp.AuthenticateResponseError{TransactionID: s.ia.TransactionID, Code: 2}}}
		}},
		{name: "eUICC certificate of the other curve's EUM", want: "8.1.3/6.1", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			return s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, &s.mid), sgp26(t, "eUICC", "CERT_EUICC_ECDSA_BRP.der"), s.eu.eum)
		}},
		{name: "forged euiccSignature1", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			r := s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, &s.mid), s.eu.cert, s.eu.eum)
			sig := append(rsp.Signature(nil), r.AuthenticateServerResponse.Ok.EUICCSignature1...)
			sig[10] ^= 1
			r.AuthenticateServerResponse.Ok.EUICCSignature1 = sig
			return r
		}},
		{name: "euiccSignature1 by another key", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			s.eu.key = mustKey(t, "EUM", "SK_EUM_ECDSA_NIST.pem")
			return s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, &s.mid), s.eu.cert, s.eu.eum)
		}},
		{name: "wrong serverChallenge", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			s1 := s.eu.authSigned1(s.ia, &s.mid)
			s1.ServerChallenge[0] ^= 1
			return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
		}},
		{name: "transactionId inside differs", want: "8.10.1/3.9", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			s1 := s.eu.authSigned1(s.ia, &s.mid)
			s1.TransactionID = rsp.TransactionID{9, 9}
			return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
		}},
		{name: "unknown matchingId", want: "8.2.6/3.8", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			mid := "NOT-AN-ORDER"
			return s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, &mid), s.eu.cert, s.eu.eum)
		}},
		{name: "missing matchingId, no order for the EID", want: "8.1.1/3.8", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			return s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, nil), s.eu.cert, s.eu.eum)
		}},
		{name: "empty matchingId, no order for the EID", want: "8.1.1/3.8", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			return s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, new(string)), s.eu.cert, s.eu.eum)
		}},
		{name: "order bound to another EID", want: "8.1.1/3.8",
			order: func(t *testing.T, e *env, iccid string) string {
				return e.order(t, iccid, "89049032123451234512345678901299", nil, "").MatchingID
			}},
		{name: "order not released", want: "8.2/1.2",
			order: func(t *testing.T, e *env, iccid string) string {
				ctx := context.Background()
				e.db.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid})
				p, err := e.db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid})
				if err != nil {
					t.Fatal(err)
				}
				return p.MatchingID
			}},
		{name: "cancelled order", want: "8.2.6/3.8",
			order: func(t *testing.T, e *env, iccid string) string {
				mid := e.order(t, iccid, "", nil, "").MatchingID
				if _, err := e.db.CancelOrder(context.Background(), store.CancelOrderRequest{ICCID: iccid, Final: store.StateAvailable}); err != nil {
					t.Fatal(err)
				}
				return mid
			}},
		{name: "order expired", want: "8.8.5/4.10", opts: []store.Option{store.WithOrderTTL(time.Hour)},
			build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
				s.e.now = s.e.now.Add(2 * time.Hour)
				ia := initiated(t, s.e, s.eu) // a fresh session after the wait
				return s.eu.authenticate(t, ia.TransactionID, s.eu.authSigned1(ia, &s.mid), s.eu.cert, s.eu.eum)
			}},
		{name: "session expired", want: "8.10.1/3.9", build: func(t *testing.T, s *setup) *rsp.AuthenticateClientRequest {
			s.e.now = s.e.now.Add(11 * time.Minute)
			return s.eu.authenticate(t, s.ia.TransactionID, s.eu.authSigned1(s.ia, &s.mid), s.eu.cert, s.eu.eum)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts...)
			iccid := e.addProfileMeta(t, tc.meta)
			var mid string
			if tc.order != nil {
				mid = tc.order(t, e, iccid)
			} else {
				mid = e.order(t, iccid, "", nil, "").MatchingID
			}
			eu := newTestEUICC(t, esim.CurveP256)
			s := &setup{e: e, eu: eu, ia: initiated(t, e, eu), mid: mid}
			req := eu.authenticate(t, s.ia.TransactionID, eu.authSigned1(s.ia, &mid), eu.cert, eu.eum)
			if tc.build != nil {
				req = tc.build(t, s)
			}
			resp, st := call[*rsp.AuthenticateClientResponse](t, e, req)
			wantStatus(t, st, tc.want)
			if tc.after != nil {
				tc.after(t, s, iccid)
			}
			if tc.want != "" {
				return
			}
			if resp.SmdpSigned2.CCRequired || !resp.TransactionID.Equal(s.ia.TransactionID) {
				t.Fatalf("smdpSigned2 %+v", resp.SmdpSigned2)
			}
			// A replay of the same call is refused.
			_, st = call[*rsp.AuthenticateClientResponse](t, e, req)
			wantStatus(t, st, "8.10.1/3.9")
		})
	}
}

// invalidCertificates maps every file of sgp26/invalid to where it is
// presented and the SGP.22 code the server must answer
// (es2-es10-codes.md §3.2, §3.3). TestInvalidCertificates fails on a file
// without an entry and on an entry without a file.
var invalidCertificates = map[string]struct {
	slot  string // "eUICC", "EUM" (AuthenticateClient) or "CI" (its PKID in InitiateAuthentication)
	bound bool   // the order is bound to testEID, not the certificate's EID
	want  string // "" : accepted (the certificate is valid in this use)
}{
	"CERT_EUM_ECDSA_NIST_INVALID.der":    {slot: "EUM", want: "8.1.2/6.1"},   // self-signed, no AKI (row 2, not 8.11.1)
	"CERT_EUM_ECDSA_NIST_UNKNOWN_CI.der": {slot: "EUM", want: "8.11.1/3.9"},  // row 3
	"CERT_EUM_ECDSA_NIST_EXPIRED.der":    {slot: "EUM", want: "8.1.2/6.3"},   // row 4; its policy is also wrong: expiry first
	"CERT_EUICC_ECDSA_NIST_EXPIRED.der":  {slot: "eUICC", want: "8.1.3/6.3"}, // row 5
	"CERT_EUICC_ECDSA_NIST_INVALID.der":  {slot: "eUICC", want: "8.1.3/6.1"}, // self-signed (row 8)
	// EID outside the EUM's permitted range (row 10), DER and PEM.
	"CERT_EUICC_ECDSA_NIST_INVALID_EID.der": {slot: "eUICC", want: "8.1.3/6.1"},
	"CERT_EUICC_ECDSA_NIST_INVALID_EID.pem": {slot: "eUICC", want: "8.1.3/6.1"},
	// Another eUICC of the EUM: an order bound to the first eUICC's EID
	// is not its (row 16), DER and PEM.
	"CERT_EUICC_ECDSA_NIST_UNMATCHED_EID.der": {slot: "eUICC", bound: true, want: "8.1.1/3.8"},
	"CERT_EUICC_ECDSA_NIST_UNMATCHED_EID.pem": {slot: "eUICC", bound: true, want: "8.1.1/3.8"},
	// A CI the server does not know: no PKID in the signing list is
	// supported (§3.2).
	"CERT_UNKNOWN_CI_ECDSA_NIST.der": {slot: "CI", want: "8.8.2/3.1"},
}

// TestInvalidCertificates presents every certificate of sgp26/invalid
// (the repository's copy of ../shared/sgp26/invalid) where its entry in
// invalidCertificates says and checks the code, then the same call with
// the valid certificate in that place (so that the code is the
// certificate's doing).
func TestInvalidCertificates(t *testing.T) {
	dir := testenv.Path(t, "sgp26", "invalid")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, de := range entries {
		name := de.Name()
		if de.IsDir() || (!strings.HasSuffix(name, ".der") && !strings.HasSuffix(name, ".pem")) {
			continue
		}
		seen[name] = true
		tc, ok := invalidCertificates[name]
		if !ok {
			t.Errorf("%s: no expected SGP.22 code in invalidCertificates", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			der := certDER(t, filepath.Join(dir, name))
			e := newEnv(t)
			iccid := e.addProfile(t)
			eid := ""
			if tc.bound {
				eid = testEID
			}
			mid := e.order(t, iccid, eid, nil, "").MatchingID
			eu := newTestEUICC(t, esim.CurveP256)
			if tc.slot == "CI" {
				c, err := rsp.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				for _, bad := range []bool{true, false} {
					req := eu.initiate()
					if bad {
						req.EUICCInfo1.CIPKIDsForSigning, req.EUICCInfo1.CIPKIDsForVerification = [][]byte{c.SKI}, [][]byte{c.SKI}
					}
					_, st := call[*rsp.InitiateAuthenticationResponse](t, e, req)
					wantStatus(t, st, map[bool]string{true: tc.want, false: ""}[bad])
				}
				return
			}
			for _, bad := range []bool{true, false} {
				cert, eum := eu.cert, eu.eum
				switch {
				case !bad:
				case tc.slot == "eUICC":
					cert = der
				case tc.slot == "EUM":
					eum = der
				default:
					t.Fatalf("slot %q", tc.slot)
				}
				ia := initiated(t, e, eu)
				_, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &mid), cert, eum))
				wantStatus(t, st, map[bool]string{true: tc.want, false: ""}[bad])
			}
			if tc.bound { // the certificate is valid: an unbound order is its
				mid := e.order(t, e.addProfile(t), "", nil, "").MatchingID
				ia := initiated(t, e, eu)
				_, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &mid), der, eu.eum))
				wantStatus(t, st, "")
			}
		})
	}
	for name := range invalidCertificates {
		if !seen[name] {
			t.Errorf("%s: in invalidCertificates but not in %s", name, dir)
		}
	}
}

// certDER reads a certificate file: DER, or PEM with one CERTIFICATE block.
func certDER(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".pem") {
		return b
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: not one PEM CERTIFICATE block", path)
	}
	return blk.Bytes
}

// acSetup is a TestAuthenticateClientChecks case's state: its
// InitiateAuthentication answer and the order's matching ID.
type acSetup struct {
	e   *env
	eu  *testEUICC
	ia  *rsp.InitiateAuthenticationResponse
	mid string
}

// eidOrder places a released order bound to testEID without matching ID
// (found by EID: rows 14/15).
func eidOrder(t *testing.T, e *env, iccid string) string {
	return e.order(t, iccid, testEID, new(string), "").MatchingID
}

// otherCtxParams1 is the regular request with ctxParams1 another CHOICE
// alternative (a later version's [1]): no matchingId.
func otherCtxParams1(t *testing.T, s *acSetup) *rsp.AuthenticateClientRequest {
	s1 := s.eu.authSigned1(s.ia, &s.mid)
	s1.CtxParams1 = rsp.CtxParams1{Raw: []byte{0xA1, 0x00}}
	return s.eu.authenticate(t, s.ia.TransactionID, s1, s.eu.cert, s.eu.eum)
}

// pprMeta is a profile's metadata with profilePolicyRules ppr1 (99 BIT
// STRING, named bit 1) after profileClass.
var pprMeta = &store.Metadata{ServiceProviderName: "perso", ProfileName: "with ppr1", ProfileClass: 2,
	DER: []byte{0x99, 0x02, 0x06, 0x40}}

// The metadata AuthenticateClient sends carries the stored extra elements
// (here the policy rules) in the module's order; malformed ones are
// refused at the source, not sent to the eUICC.
func TestProfileMetadataExtraElements(t *testing.T) {
	p := store.Profile{ICCID: "89494499999999900012", Metadata: *pprMeta}
	der, pprs, err := profileMetadata(p)
	if err != nil {
		t.Fatal(err)
	}
	md, err := bpp.ParseStoreMetadata(der)
	if err != nil || md.PolicyRules != bpp.PPR1 || pprs != bpp.PPR1 || md.ProfileName != "with ppr1" {
		t.Fatalf("metadata %+v, rules %v, err %v", md, pprs, err)
	}
	for _, bad := range [][]byte{{0x99, 0x05}, {0x91, 0x01, 'x'}, {0x04, 0x00}} {
		p.Metadata.DER = bad
		if _, _, err := profileMetadata(p); err == nil {
			t.Errorf("extra elements % X accepted", bad)
		}
	}
}

func TestDownloadLimits(t *testing.T) {
	t.Run("second download of a downloaded profile", func(t *testing.T) {
		e := newEnv(t)
		p := e.order(t, e.addProfile(t), "", nil, "")
		eu := newTestEUICC(t, esim.CurveP256)
		download(t, e, eu, &p.MatchingID, "")
		ia := initiated(t, e, eu)
		_, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &p.MatchingID), eu.cert, eu.eum))
		wantStatus(t, st, "8.2/1.2")
	})
	t.Run("download attempts exhausted", func(t *testing.T) {
		e := newEnv(t, store.WithMaxDownloadAttempts(2))
		p := e.order(t, e.addProfile(t), "", nil, "")
		eu := newTestEUICC(t, esim.CurveP256)
		for i, want := range []string{"", "", "8.8.5/6.4"} {
			ia := initiated(t, e, eu)
			_, st := call[*rsp.AuthenticateClientResponse](t, e, eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &p.MatchingID), eu.cert, eu.eum))
			if st.Code() != want && !(want == "" && st.IsZero()) {
				t.Fatalf("attempt %d: %v, want %q", i+1, st, want)
			}
		}
	})
}

func TestGetBoundProfilePackageChecks(t *testing.T) {
	type setup struct {
		e  *env
		eu *testEUICC
		ac *rsp.AuthenticateClientResponse
	}
	for _, tc := range []struct {
		name  string
		cc    string
		build func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest
		want  string
	}{
		{name: "ok"},
		{name: "ok with confirmation code", cc: "12345678", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			return s.eu.prepare(t, s.ac, "12345678")
		}},
		{name: "confirmation code hex-decoded (conformance suite)", cc: "87654321", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			r := s.eu.prepare(t, s.ac, "")
			h1 := sha256Sum([]byte{0x87, 0x65, 0x43, 0x21})
			r.PrepareDownloadResponse.Ok.EUICCSigned2.HashCc = sha256Sum(append(h1, s.ac.TransactionID...))
			return s.eu.prepareSigned(t, s.ac.TransactionID, r.PrepareDownloadResponse.Ok.EUICCSigned2)
		}},
		{name: "unknown transactionId", want: "8.10.1/3.9", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			r := s.eu.prepare(t, s.ac, "")
			r.TransactionID = rsp.TransactionID{7}
			return r
		}},
		{name: "eUICC error", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			return &rsp.GetBoundProfilePackageRequest{TransactionID: s.ac.TransactionID, PrepareDownloadResponse: rsp.PrepareDownloadResponse{
				Error: &rsp.PrepareDownloadResponseError{TransactionID: s.ac.TransactionID, Code: 127}}}
		}},
		{name: "forged euiccSignature2", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			r := s.eu.prepare(t, s.ac, "")
			sig := append(rsp.Signature(nil), r.PrepareDownloadResponse.Ok.EUICCSignature2...)
			sig[40] ^= 0x80
			r.PrepareDownloadResponse.Ok.EUICCSignature2 = sig
			return r
		}},
		{name: "euiccSignature2 over another smdpSignature2", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			r := s.eu.prepare(t, s.ac, "")
			s.eu.smdpSig2 = append(rsp.Signature(nil), s.eu.smdpSig2...)
			s.eu.smdpSig2[5] ^= 1
			return s.eu.prepareSigned(t, s.ac.TransactionID, r.PrepareDownloadResponse.Ok.EUICCSigned2)
		}},
		{name: "transactionId inside differs", want: "8.10.1/3.9", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			r := s.eu.prepare(t, s.ac, "")
			s2 := r.PrepareDownloadResponse.Ok.EUICCSigned2
			s2.TransactionID = rsp.TransactionID{1}
			return s.eu.prepareSigned(t, s.ac.TransactionID, s2)
		}},
		{name: "confirmation code missing", cc: "12345678", want: "8.2.7/2.2", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			return s.eu.prepare(t, s.ac, "")
		}},
		{name: "confirmation code wrong", cc: "12345678", want: "8.2.7/3.8", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			return s.eu.prepare(t, s.ac, "12345679")
		}},
		{name: "one-time key point not on the curve", want: "8.1/6.1", build: func(t *testing.T, s *setup) *rsp.GetBoundProfilePackageRequest {
			r := s.eu.prepare(t, s.ac, "")
			s2 := r.PrepareDownloadResponse.Ok.EUICCSigned2
			s2.EUICCOtpk = append([]byte{4}, make([]byte, 64)...)
			return s.eu.prepareSigned(t, s.ac.TransactionID, s2)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			iccid := e.addProfile(t)
			p := e.order(t, iccid, "", nil, tc.cc)
			eu := newTestEUICC(t, esim.CurveP256)
			_, ac := authenticated(t, e, eu, p.MatchingID)
			if ac.SmdpSigned2.CCRequired != (tc.cc != "") {
				t.Fatalf("ccRequiredFlag %v", ac.SmdpSigned2.CCRequired)
			}
			req := eu.prepare(t, ac, "")
			if tc.build != nil {
				req = tc.build(t, &setup{e: e, eu: eu, ac: ac})
			}
			resp, st := call[*rsp.GetBoundProfilePackageResponse](t, e, req)
			wantStatus(t, st, tc.want)
			got, _ := e.db.GetProfile(context.Background(), iccid)
			if tc.want != "" {
				if got.State != store.StateReleased {
					t.Fatalf("state %s after a refused call, want Released", got.State)
				}
				return
			}
			if got.State != store.StateDownloaded {
				t.Fatalf("state %s, want Downloaded", got.State)
			}
			if upp, _ := eu.install(t, resp, true); !bytes.Equal(upp, e.upp) {
				t.Fatal("UPP differs")
			}
		})
	}
}

func sha256Sum(b []byte) []byte {
	h := sha256Sum32(b)
	return h[:]
}

func TestConfirmationCodeRetries(t *testing.T) {
	e := newEnv(t, store.WithMaxCCAttempts(3))
	p := e.order(t, e.addProfile(t), "", nil, "1234")
	eu := newTestEUICC(t, esim.CurveP256)
	_, ac := authenticated(t, e, eu, p.MatchingID)
	// A wrong code keeps the session usable; the right one then succeeds.
	_, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, "9999"))
	wantStatus(t, st, "8.2.7/3.8")
	_, st = call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, "1234"))
	wantStatus(t, st, "")

	e = newEnv(t, store.WithMaxCCAttempts(3))
	p = e.order(t, e.addProfile(t), "", nil, "1234")
	_, ac = authenticated(t, e, eu, p.MatchingID)
	for i, want := range []string{"8.2.7/3.8", "8.2.7/2.2", "8.2.7/6.4", "8.10.1/3.9"} {
		cc := "0000"
		if i == 1 {
			cc = ""
		}
		_, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, cc))
		if st.Code() != want {
			// After the limit the profile is in Error; the session is still
			// there but binding is refused by the store's state.
			if !(i == 3 && !st.IsZero()) {
				t.Fatalf("attempt %d: %v, want %s", i+1, st, want)
			}
		}
	}
	got, _ := e.db.GetProfile(context.Background(), p.ICCID)
	if got.State != store.StateError {
		t.Fatalf("state %s after the CC retry limit, want Error", got.State)
	}
}

func TestOneTimeKeyReuse(t *testing.T) {
	e := newEnv(t)
	p := e.order(t, e.addProfile(t), "", nil, "")
	eu := newTestEUICC(t, esim.CurveP256)
	_, ac := authenticated(t, e, eu, p.MatchingID)
	req := eu.prepare(t, ac, "")
	first, st := call[*rsp.GetBoundProfilePackageResponse](t, e, req)
	wantStatus(t, st, "")
	binds := e.hsm.binds.Load()
	// The same call again (a retry after a lost answer): the package bound
	// again from the sealed binding, so the same smdpOtpk and no new key
	// agreement; the eUICC opens either.
	again, st := call[*rsp.GetBoundProfilePackageResponse](t, e, req)
	wantStatus(t, st, "")
	if e.hsm.binds.Load() != binds {
		t.Fatal("a retry with the same euiccOtpk made a new key agreement")
	}
	otpk1 := smdpOtpkOf(t, eu, first.BoundProfilePackage)
	if !bytes.Equal(smdpOtpkOf(t, eu, again.BoundProfilePackage), otpk1) {
		t.Fatal("a retry with the same euiccOtpk got another smdpOtpk")
	}

	// A later session (after CancelSession, postponed) presenting the same
	// euiccOtpk gets a package bound with the same SM-DP+ one-time key, which
	// the eUICC opens with the key pair it kept.
	_, st = call[*rsp.CancelSessionResponseEs9](t, e, eu.cancel(t, ac.TransactionID, rsp.CancelPostponed, asn1.ObjectIdentifier{2, 999, 10}))
	wantStatus(t, st, "")
	if ac.SmdpSigned2.BPPEUICCOtpk != nil {
		t.Fatal("the first session announced a bound eUICC key")
	}
	_, ac = authenticated(t, e, eu, p.MatchingID)
	// The next session names the key the package was bound to
	// (smdpSigned2.bppEuiccOtpk), so that the eUICC reuses its key pair.
	if !bytes.Equal(ac.SmdpSigned2.BPPEUICCOtpk, eu.otk.PublicKey()) {
		t.Fatalf("bppEuiccOtpk %X after a postponed session, want the bound key %X", ac.SmdpSigned2.BPPEUICCOtpk, eu.otk.PublicKey())
	}
	rebound, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, ""))
	wantStatus(t, st, "")
	if got := smdpOtpkOf(t, eu, rebound.BoundProfilePackage); !bytes.Equal(got, otpk1) {
		t.Fatal("re-binding to the same euiccOtpk used another smdpOtpk")
	}
	if bytes.Equal(rebound.BoundProfilePackage, first.BoundProfilePackage) {
		t.Fatal("the re-bound package is the old one (its transactionId is the old session's)")
	}
	if upp, _ := eu.install(t, rebound, true); !bytes.Equal(upp, e.upp) {
		t.Fatal("UPP differs")
	}

	// A new eUICC key in a later session: a new SM-DP+ key.
	p2 := e.order(t, e.addProfile(t), "", nil, "")
	_, ac = authenticated(t, e, eu, p2.MatchingID)
	if ac.SmdpSigned2.BPPEUICCOtpk != nil {
		t.Fatal("a first session of another profile announced a bound eUICC key")
	}
	eu.otk = nil
	fresh, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, ""))
	wantStatus(t, st, "")
	if bytes.Equal(smdpOtpkOf(t, eu, fresh.BoundProfilePackage), otpk1) {
		t.Fatal("a new euiccOtpk got the old smdpOtpk")
	}

	// An eUICC key bound for one profile, presented for another: refused.
	p3 := e.order(t, e.addProfile(t), "", nil, "")
	_, ac = authenticated(t, e, eu, p3.MatchingID)
	_, st = call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, ""))
	wantStatus(t, st, "8.2/3.7")
}

// smdpOtpkOf opens pkg as the eUICC and returns the SM-DP+ one-time key.
func smdpOtpkOf(t *testing.T, eu *testEUICC, pkg []byte) []byte {
	t.Helper()
	bcd := mustEID(t, eu.eid).BCD()
	o, err := bpp.Open(pkg, eu.otk, bcd[:], eu.dppb.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return o.SMDPOtpk
}

func TestHandleNotification(t *testing.T) {
	ctx := context.Background()
	bound := func(t *testing.T) (*env, *testEUICC, string, *rsp.GetBoundProfilePackageResponse) {
		e := newEnv(t)
		p := e.order(t, e.addProfile(t), "", nil, "")
		eu := newTestEUICC(t, esim.CurveP256)
		_, ac := authenticated(t, e, eu, p.MatchingID)
		gb, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, ""))
		wantStatus(t, st, "")
		return e, eu, p.ICCID, gb
	}
	for _, tc := range []struct {
		name    string
		success bool
		mutate  func(*rsp.HandleNotification)
		refused bool
		state   store.State
	}{
		{name: "install success", success: true, state: store.StateInstalled},
		{name: "install failure: back for a re-download", success: false, state: store.StateReleased},
		{name: "forged euiccSignPIR", success: true, refused: true, state: store.StateDownloaded, mutate: func(n *rsp.HandleNotification) {
			n.PendingNotification.PIR.EUICCSignPIR[20] ^= 1
		}},
		{name: "unknown transactionId", success: true, refused: true, state: store.StateDownloaded, mutate: func(n *rsp.HandleNotification) {
			n.PendingNotification.PIR.Data.TransactionID = rsp.TransactionID{5}
			n.PendingNotification.PIR.Data.Raw = nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, eu, iccid, gb := bound(t)
			_, n := eu.install(t, gb, tc.success)
			if tc.mutate != nil {
				tc.mutate(n)
			}
			err := e.srv.HandleNotification(ctx, wire(t, n))
			if (err != nil) != tc.refused {
				t.Fatalf("err %v, refused %v", err, tc.refused)
			}
			got, _ := e.db.GetProfile(ctx, iccid)
			if got.State != tc.state {
				t.Fatalf("state %s, want %s", got.State, tc.state)
			}
		})
	}
	t.Run("other notification", func(t *testing.T) {
		e := newEnv(t)
		for i, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1, esim.CurveP256} {
			op := []rsp.NamedBits{rsp.NotificationEnable, rsp.NotificationDisable, rsp.NotificationDelete}[i]
			eu := newTestEUICC(t, c)
			md := rsp.NotificationMetadata{SeqNumber: 7, Operation: op, NotificationAddress: testAddress,
				ICCID: []byte{0x98, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}}
			raw, err := md.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			n := &rsp.HandleNotification{PendingNotification: rsp.PendingNotification{Other: &rsp.OtherSignedNotification{
				TBSOtherNotification: md, EUICCNotificationSignature: eu.sign(t, raw), EUICCCertificate: eu.cert, EUMCertificate: eu.eum}}}
			if err := e.srv.HandleNotification(ctx, wire(t, n)); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			n.PendingNotification.Other.EUICCNotificationSignature[9] ^= 1
			if err := e.srv.HandleNotification(ctx, wire(t, n)); err == nil {
				t.Fatalf("%s: forged notification accepted", c)
			}
		}
	})
}

func TestCancelSession(t *testing.T) {
	ctx := context.Background()
	oid := asn1.ObjectIdentifier{2, 999, 10}
	for _, reason := range []rsp.CancelSessionReason{0, 1, 2, 3, 4, 5, 127} {
		for _, afterBPP := range []bool{false, true} {
			e := newEnv(t)
			p := e.order(t, e.addProfile(t), "", nil, "")
			eu := newTestEUICC(t, esim.CurveP256)
			_, ac := authenticated(t, e, eu, p.MatchingID)
			if afterBPP {
				_, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, ""))
				wantStatus(t, st, "")
			}
			_, st := call[*rsp.CancelSessionResponseEs9](t, e, eu.cancel(t, ac.TransactionID, reason, oid))
			wantStatus(t, st, "")
			got, _ := e.db.GetProfile(ctx, p.ICCID)
			if got.State != store.StateReleased {
				t.Fatalf("reason %d: state %s, want Released", reason, got.State)
			}
			// The session is gone.
			_, st = call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac, ""))
			wantStatus(t, st, "8.10.1/3.9")
		}
	}
	for _, tc := range []struct {
		name  string
		build func(eu *testEUICC, tid rsp.TransactionID) *rsp.CancelSessionRequestEs9
		want  string
	}{
		{"unknown transactionId", func(eu *testEUICC, tid rsp.TransactionID) *rsp.CancelSessionRequestEs9 {
			return eu.cancel(t, rsp.TransactionID{3}, 1, oid)
		}, "8.10.1/3.9"},
		{"forged signature", func(eu *testEUICC, tid rsp.TransactionID) *rsp.CancelSessionRequestEs9 {
			r := eu.cancel(t, tid, 1, oid)
			r.CancelSessionResponse.Ok.EUICCCancelSessionSignature[30] ^= 1
			return r
		}, "8.1/6.1"},
		{"wrong smdpOid", func(eu *testEUICC, tid rsp.TransactionID) *rsp.CancelSessionRequestEs9 {
			return eu.cancel(t, tid, 1, asn1.ObjectIdentifier{2, 999, 12})
		}, "8.8/3.10"},
		{"signed transactionId differs", func(eu *testEUICC, tid rsp.TransactionID) *rsp.CancelSessionRequestEs9 {
			r := eu.cancel(t, rsp.TransactionID{4, 4}, 1, oid)
			r.TransactionID = tid
			return r
		}, "8.10.1/3.9"},
		{"eUICC error", func(eu *testEUICC, tid rsp.TransactionID) *rsp.CancelSessionRequestEs9 {
			code := rsp.CancelSessionErrUndefined
			return &rsp.CancelSessionRequestEs9{TransactionID: tid, CancelSessionResponse: rsp.CancelSessionResponse{Error: &code}}
		}, "8.1/6.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.order(t, e.addProfile(t), "", nil, "")
			eu := newTestEUICC(t, esim.CurveP256)
			_, ac := authenticated(t, e, eu, p.MatchingID)
			_, st := call[*rsp.CancelSessionResponseEs9](t, e, tc.build(eu, ac.TransactionID))
			wantStatus(t, st, tc.want)
			if _, err := e.db.GetSession(ctx, tidKey(ac.TransactionID)); err != nil {
				t.Fatal("a refused cancel ended the session")
			}
		})
	}
}

func sha256Sum32(b []byte) [32]byte { return sha256.Sum256(b) }

// ActiveSessions counts the sessions opened and not yet ended: a
// CancelSession and an installation result end one, the TTL the rest.
func TestActiveSessions(t *testing.T) {
	e := newEnv(t)
	eu := newTestEUICC(t, esim.CurveP256)
	if n := e.srv.ActiveSessions(); n != 0 {
		t.Fatalf("%d active sessions at start", n)
	}
	p1 := e.order(t, e.addProfile(t), "", nil, "")
	_, ac1 := authenticated(t, e, eu, p1.MatchingID)
	p2 := e.order(t, e.addProfile(t), "", nil, "")
	_, ac2 := authenticated(t, e, eu, p2.MatchingID)
	initiated(t, e, eu) // a third, abandoned after InitiateAuthentication
	if n := e.srv.ActiveSessions(); n != 3 {
		t.Fatalf("%d active sessions after three initiated, want 3", n)
	}
	_, st := call[*rsp.CancelSessionResponseEs9](t, e, eu.cancel(t, ac1.TransactionID, rsp.CancelEndUserRejection, asn1.ObjectIdentifier{2, 999, 10}))
	wantStatus(t, st, "")
	if n := e.srv.ActiveSessions(); n != 2 {
		t.Fatalf("%d active sessions after a cancel, want 2", n)
	}
	gb, st := call[*rsp.GetBoundProfilePackageResponse](t, e, eu.prepare(t, ac2, ""))
	wantStatus(t, st, "")
	_, n := eu.install(t, gb, true)
	if err := e.srv.HandleNotification(context.Background(), wire(t, n)); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.ActiveSessions(); n != 1 {
		t.Fatalf("%d active sessions after an installation, want 1", n)
	}
	e.now = e.now.Add(11 * time.Minute)
	if n := e.srv.ActiveSessions(); n != 0 {
		t.Fatalf("%d active sessions after the TTL, want 0", n)
	}
}
