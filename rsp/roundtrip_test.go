package rsp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"os"
	"strings"
	"testing"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// party is one SGP.26 test key with its certificate.
type party struct {
	signer *bpp.SoftwareSigner
	pub    *ecdsa.PublicKey
	cert   []byte
}

func loadParty(t *testing.T, dir, key, pub, cert string) party {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(testenv.Path(t, "sgp26", dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	priv, err := esim.ParsePrivateKeyPEM(read(key))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	pk, err := esim.ParsePublicKeyPEM(read(pub))
	if err != nil {
		t.Fatalf("%s: %v", pub, err)
	}
	s, err := bpp.NewSoftwareSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return party{signer: s, pub: pk, cert: read(cert)}
}

func (p party) sign(t *testing.T, data []byte) Signature {
	t.Helper()
	d := sha256.Sum256(data)
	rs, err := p.signer.SignDigest(context.Background(), d[:])
	if err != nil {
		t.Fatal(err)
	}
	return mustSig(rs)
}

func (p party) verify(data []byte, sig Signature) bool {
	d := sha256.Sum256(data)
	return bpp.VerifySignature(p.pub, d[:], sig.RS())
}

// nonMinimalEUICCInfo2 returns fullEUICCInfo2's encoding with uiccCapability
// written as a BIT STRING that is not DER-minimal (unused-bits count 0 and
// a trailing zero octet), as some clients' encoders send it.
func nonMinimalEUICCInfo2(t *testing.T) []byte {
	t.Helper()
	der := mustMarshal(t, fullEUICCInfo2())
	minimal := mustHex("85 04 04 68 00 10") // bits 1, 2, 4, 19
	i := bytes.Index(der, minimal)
	if i < 0 {
		t.Fatalf("uiccCapability %x not found in %x", minimal, der)
	}
	body := append(append(append([]byte{}, der[3:i]...), mustHex("85 05 00 68 00 10 00")...), der[i+len(minimal):]...)
	return tlv(tagEUICCInfo2, body)
}

// TestDownloadSignaturesOverReceivedBytes runs the signatures of one
// download through both bindings with the SGP.26 keys of both curves, each
// verified over the bytes as the receiver decoded them.
func TestDownloadSignaturesOverReceivedBytes(t *testing.T) {
	for _, curve := range []string{"NIST", "BRP"} {
		t.Run(curve, func(t *testing.T) {
			dpauth := loadParty(t, "DPauth", "SK_S_SM_DPauth_ECDSA_"+curve+".pem", "PK_S_SM_DPauth_ECDSA_"+curve+".pem", "CERT_S_SM_DPauth_ECDSA_"+curve+".der")
			dppb := loadParty(t, "DPpb", "SK_S_SM_DPpb_ECDSA_"+curve+".pem", "PK_S_SM_DPpb_ECDSA_"+curve+".pem", "CERT_S_SM_DPpb_ECDSA_"+curve+".der")
			euicc := loadParty(t, "eUICC", "SK_EUICC_ECDSA_"+curve+".pem", "PK_EUICC_ECDSA_"+curve+".pem", "CERT_EUICC_ECDSA_"+curve+".der")
			eum, err := os.ReadFile(testenv.Path(t, "sgp26", "EUM", "CERT_EUM_ECDSA_"+curve+".der"))
			if err != nil {
				t.Fatal(err)
			}

			// initiateAuthentication: the server signs ServerSigned1.
			s1 := fullServerSigned1()
			s1DER := mustMarshal(t, s1)
			ia := &InitiateAuthenticationResponse{TransactionID: testTID, ServerSigned1: *s1,
				ServerSignature1: dpauth.sign(t, s1DER), EUICCCIPKIDToBeUsed: testSKINIST, ServerCertificate: dpauth.cert}
			body, err := EncodeJSONResponse(ia)
			if err != nil {
				t.Fatal(err)
			}
			resp, st, err := DecodeJSONResponse(InitiateAuthentication, body)
			if err != nil || !st.IsZero() {
				t.Fatalf("decode initiateAuthentication: %v %v", st, err)
			}
			iaGot := resp.(*InitiateAuthenticationResponse)
			if !dpauth.verify(iaGot.ServerSigned1.Raw, iaGot.ServerSignature1) {
				t.Fatal("serverSignature1 does not verify over the received serverSigned1")
			}
			if !bytes.Equal(iaGot.ServerCertificate, dpauth.cert) || !bytes.Equal(iaGot.EUICCCIPKIDToBeUsed, testSKINIST) {
				t.Fatal("serverCertificate or euiccCiPKIdToBeUsed changed in transit")
			}

			// authenticateClient: the eUICC signs EUICCSigned1 holding an
			// EUICCInfo2 with a non-minimal BIT STRING.
			infoDER := nonMinimalEUICCInfo2(t)
			info, err := ParseEUICCInfo2(infoDER)
			if err != nil {
				t.Fatal(err)
			}
			if info.UICCCapability != fullEUICCInfo2().UICCCapability {
				t.Fatalf("uiccCapability = %b, want %b", info.UICCCapability, fullEUICCInfo2().UICCCapability)
			}
			es1 := fullEUICCSigned1()
			es1.EUICCInfo2 = *info
			es1DER := mustMarshal(t, es1)
			if !bytes.Contains(es1DER, infoDER) {
				t.Fatal("EUICCSigned1 did not carry EUICCInfo2's received bytes")
			}
			sig1 := euicc.sign(t, es1DER)
			ac := &AuthenticateClientRequest{TransactionID: testTID, AuthenticateServerResponse: AuthenticateServerResponse{Ok: &AuthenticateResponseOk{
				EUICCSigned1: *es1, EUICCSignature1: sig1, EUICCCertificate: euicc.cert, EUMCertificate: eum}}}
			// A client that sends lower-case hex: the id is the same bytes.
			body, err = EncodeJSONRequest(ac, nil)
			if err != nil {
				t.Fatal(err)
			}
			body = bytes.Replace(body, []byte(testTID.String()), []byte(strings.ToLower(testTID.String())), 1)
			req, _, err := DecodeJSONRequest(AuthenticateClient, body)
			if err != nil {
				t.Fatal(err)
			}
			acGot := req.(*AuthenticateClientRequest)
			if !acGot.TransactionID.Equal(testTID) {
				t.Fatalf("transactionId %v, want %v", acGot.TransactionID, testTID)
			}
			ok := acGot.AuthenticateServerResponse.Ok
			if !euicc.verify(ok.EUICCSigned1.Raw, ok.EUICCSignature1) {
				t.Fatal("euiccSignature1 does not verify over the received euiccSigned1")
			}
			reenc := *ok
			reenc.EUICCSigned1.Raw, reenc.EUICCSigned1.EUICCInfo2.Raw, reenc.EUICCSigned1.CtxParams1.Raw = nil, nil, nil
			if b := mustMarshal(t, &reenc.EUICCSigned1); euicc.verify(b, ok.EUICCSignature1) {
				t.Fatal("the DER re-encoding verifies too: the test does not exercise a non-minimal encoding")
			}

			// The server signs SmdpSigned2 ‖ euiccSignature1 (as received).
			s2 := &SmdpSigned2{TransactionID: testTID}
			sig2 := dppb.sign(t, SmdpSignature2Data(mustMarshal(t, s2), ok.EUICCSignature1))
			acr := &AuthenticateClientResponse{TransactionID: testTID, ProfileMetadata: testMetadata, SmdpSigned2: *s2, SmdpSignature2: sig2, SmdpCertificate: dppb.cert}
			body, err = EncodeJSONResponse(acr)
			if err != nil {
				t.Fatal(err)
			}
			resp, st, err = DecodeJSONResponse(AuthenticateClient, body)
			if err != nil || !st.IsZero() {
				t.Fatalf("decode authenticateClient: %v %v", st, err)
			}
			acrGot := resp.(*AuthenticateClientResponse)
			if !dppb.verify(SmdpSignature2Data(acrGot.SmdpSigned2.Raw, sig1), acrGot.SmdpSignature2) {
				t.Fatal("smdpSignature2 does not verify over smdpSigned2 ‖ euiccSignature1")
			}

			// getBoundProfilePackage over the ASN.1 binding: the eUICC signs
			// EUICCSigned2 ‖ smdpSignature2.
			// Any point on the curve serves as the one-time key here.
			otpk := append([]byte{0x04}, euicc.pub.X.FillBytes(make([]byte, 32))...)
			otpk = append(otpk, euicc.pub.Y.FillBytes(make([]byte, 32))...)
			es2 := &EUICCSigned2{TransactionID: testTID, EUICCOtpk: otpk}
			sigE2 := euicc.sign(t, EUICCSignature2Data(mustMarshal(t, es2), acrGot.SmdpSignature2))
			gb := &GetBoundProfilePackageRequest{TransactionID: testTID, PrepareDownloadResponse: PrepareDownloadResponse{Ok: &PrepareDownloadResponseOk{EUICCSigned2: *es2, EUICCSignature2: sigE2}}}
			body, err = EncodeASN1Request(gb)
			if err != nil {
				t.Fatal(err)
			}
			req, err = DecodeASN1Request(body)
			if err != nil {
				t.Fatal(err)
			}
			gbGot := req.(*GetBoundProfilePackageRequest).PrepareDownloadResponse.Ok
			if !euicc.verify(EUICCSignature2Data(gbGot.EUICCSigned2.Raw, sig2), gbGot.EUICCSignature2) {
				t.Fatal("euiccSignature2 does not verify over euiccSigned2 ‖ smdpSignature2")
			}
			if !bytes.Equal(gbGot.EUICCSigned2.EUICCOtpk, otpk) {
				t.Fatal("euiccOtpk changed in transit")
			}

			// handleNotification: euiccSignPIR over the BF27 data, through
			// both bindings.
			pir := fullPIR(true)
			pir.Data.SMDPOID = testDPOID
			pir.EUICCSignPIR = euicc.sign(t, mustMarshal(t, &pir.Data))
			hn := &HandleNotification{PendingNotification: PendingNotification{PIR: pir}}
			for name, roundTrip := range map[string]func() (Request, error){
				"JSON": func() (Request, error) {
					b, err := EncodeJSONRequest(hn, &RequestHeader{"perso-test", "call-1"})
					if err != nil {
						return nil, err
					}
					r, _, err := DecodeJSONRequest(HandleNotificationFunction, b)
					return r, err
				},
				"ASN.1": func() (Request, error) {
					b, err := EncodeASN1Request(hn)
					if err != nil {
						return nil, err
					}
					return DecodeASN1Request(b)
				},
			} {
				r, err := roundTrip()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got := r.(*HandleNotification).PendingNotification.PIR
				if got == nil || !euicc.verify(got.Data.Raw, got.EUICCSignPIR) {
					t.Fatalf("%s: euiccSignPIR does not verify over the received BF27", name)
				}
				if !got.Data.TransactionID.Equal(testTID) || !got.Data.SMDPOID.Equal(testDPOID) || got.Data.Success == nil {
					t.Fatalf("%s: PIR data changed: %+v", name, got.Data)
				}
			}

			// An enable notification: signature over the BF2F metadata.
			other := fullOtherNotification()
			other.EUICCCertificate, other.EUMCertificate = euicc.cert, eum
			other.EUICCNotificationSignature = euicc.sign(t, mustMarshal(t, &other.TBSOtherNotification))
			pn, err := ParsePendingNotification(mustMarshal(t, &PendingNotification{Other: other}))
			if err != nil {
				t.Fatal(err)
			}
			if !euicc.verify(pn.Other.TBSOtherNotification.Raw, pn.Other.EUICCNotificationSignature) || pn.Other.TBSOtherNotification.Operation != NotificationEnable {
				t.Fatal("other notification signature or operation lost")
			}

			// cancelSession over the ASN.1 binding (BF41 re-tagged A1) and
			// JSON (the eUICC's BF41 as is).
			cs := fullCancelSessionResponse()
			cs.Ok.EUICCCancelSessionSignature = euicc.sign(t, mustMarshal(t, &cs.Ok.EUICCCancelSessionSigned))
			csReq := &CancelSessionRequestEs9{TransactionID: testTID, CancelSessionResponse: *cs}
			b, err := EncodeASN1Request(csReq)
			if err != nil {
				t.Fatal(err)
			}
			r, err := DecodeASN1Request(b)
			if err != nil {
				t.Fatal(err)
			}
			csGot := r.(*CancelSessionRequestEs9)
			// Re-sent over JSON from the decoded value: the BF41 form again.
			b, err = EncodeJSONRequest(csGot, nil)
			if err != nil {
				t.Fatal(err)
			}
			r, _, err = DecodeJSONRequest(CancelSession, b)
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range []*CancelSessionRequestEs9{csGot, r.(*CancelSessionRequestEs9)} {
				signed := got.CancelSessionResponse.Ok.EUICCCancelSessionSigned
				if !euicc.verify(signed.Raw, got.CancelSessionResponse.Ok.EUICCCancelSessionSignature) {
					t.Fatal("euiccCancelSessionSignature does not verify over the received bytes")
				}
				if !signed.SMDPOID.Equal(testDPOID) || signed.Reason != CancelPostponed || !signed.TransactionID.Equal(testTID) {
					t.Fatalf("cancel session data changed: %+v", signed)
				}
			}
		})
	}
}

// TestParseMarshalRoundTrip parses each full encoding, re-encodes it from
// the fields (Raw cleared) and expects the same DER.
func TestParseMarshalRoundTrip(t *testing.T) {
	type msg interface{ Marshal() ([]byte, error) }
	parsers := []struct {
		name  string
		m     msg
		parse func([]byte) (msg, error)
		clear func(msg)
	}{
		{"EUICCInfo1", fullEUICCInfo1(), func(b []byte) (msg, error) { return ParseEUICCInfo1(b) }, func(m msg) { m.(*EUICCInfo1).Raw = nil }},
		{"EUICCInfo2", fullEUICCInfo2(), func(b []byte) (msg, error) { return ParseEUICCInfo2(b) }, func(m msg) { m.(*EUICCInfo2).Raw = nil }},
		{"ServerSigned1", fullServerSigned1(), func(b []byte) (msg, error) { return ParseServerSigned1(b) }, func(m msg) { m.(*ServerSigned1).Raw = nil }},
		{"SmdpSigned2", fullSmdpSigned2(), func(b []byte) (msg, error) { return ParseSmdpSigned2(b) }, func(m msg) { m.(*SmdpSigned2).Raw = nil }},
		{"AuthenticateServerResponse", fullAuthenticateServerResponse(), func(b []byte) (msg, error) { return ParseAuthenticateServerResponse(b) }, func(m msg) {
			x := m.(*AuthenticateServerResponse)
			x.Raw, x.Ok.EUICCSigned1.Raw, x.Ok.EUICCSigned1.EUICCInfo2.Raw, x.Ok.EUICCSigned1.CtxParams1.Raw = nil, nil, nil, nil
		}},
		{"PrepareDownloadResponse", fullPrepareDownloadResponse(), func(b []byte) (msg, error) { return ParsePrepareDownloadResponse(b) }, func(m msg) {
			x := m.(*PrepareDownloadResponse)
			x.Raw, x.Ok.EUICCSigned2.Raw = nil, nil
		}},
		{"ProfileInstallationResult error", fullPIR(false), func(b []byte) (msg, error) { return ParseProfileInstallationResult(b) }, func(m msg) {
			x := m.(*ProfileInstallationResult)
			x.Raw, x.Data.Raw, x.Data.NotificationMetadata.Raw = nil, nil, nil
		}},
		{"CancelSessionResponse", fullCancelSessionResponse(), func(b []byte) (msg, error) { return ParseCancelSessionResponse(b) }, func(m msg) {
			x := m.(*CancelSessionResponse)
			x.Raw, x.Ok.EUICCCancelSessionSigned.Raw = nil, nil
		}},
	}
	for _, c := range parsers {
		t.Run(c.name, func(t *testing.T) {
			der := mustMarshal(t, c.m)
			got, err := c.parse(der)
			if err != nil {
				t.Fatal(err)
			}
			if b := mustMarshal(t, got); !bytes.Equal(b, der) {
				t.Fatalf("Marshal of the parsed value (Raw) = %x, want %x", b, der)
			}
			c.clear(got)
			if b := mustMarshal(t, got); !bytes.Equal(b, der) {
				t.Fatalf("re-encoding from the fields = %x\nwant %x", b, der)
			}
		})
	}
}
