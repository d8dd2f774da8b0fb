package smdp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

const testAddress = "testsmdpplus1.example.com"

var testEID = "89049032123451234512345678901235"

func sgp26(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.Path(t, append([]string{"sgp26"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustCert(t testing.TB, elem ...string) *rsp.Certificate {
	t.Helper()
	c, err := rsp.ParseCertificate(sgp26(t, elem...))
	if err != nil {
		t.Fatalf("%v: %v", elem, err)
	}
	return c
}

func mustKey(t testing.TB, elem ...string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := esim.ParsePrivateKeyPEM(sgp26(t, elem...))
	if err != nil {
		t.Fatalf("%v: %v", elem, err)
	}
	return k
}

func curveName(c esim.Curve) string {
	if c == esim.CurveP256 {
		return "NIST"
	}
	return "BRP"
}

// testCredentials are the SGP.26 CI, DPauth and DPpb certificates of a curve.
func testCredentials(t testing.TB, c esim.Curve) Credentials {
	n := curveName(c)
	return Credentials{
		CI:     mustCert(t, "CertificateIssuer", "CERT_CI_ECDSA_"+n+".der"),
		DPauth: mustCert(t, "DPauth", "CERT_S_SM_DPauth_ECDSA_"+n+".der"),
		DPpb:   mustCert(t, "DPpb", "CERT_S_SM_DPpb_ECDSA_"+n+".der"),
	}
}

// softHSM is the test HSM: the SGP.26 DPauth/DPpb keys in memory, software
// ECDH, and a PPK "protection" that is the identity (the store's protected
// PPK is the PPK itself in these tests only).
type softHSM struct {
	signers map[string]bpp.Signer
	binds   atomic.Int64
	seal    cipher.AEAD // seals one-time secrets (an HSM-held key in PoolHSM)
}

func (h *softHSM) SealSecret(_ context.Context, label string, secret []byte) (string, error) {
	nonce := make([]byte, h.seal.NonceSize())
	rand.Read(nonce)
	return hex.EncodeToString(h.seal.Seal(nonce, nonce, secret, []byte(label))), nil
}

func (h *softHSM) OpenSecret(_ context.Context, label, ref string) ([]byte, error) {
	b, err := hex.DecodeString(ref)
	if err != nil || len(b) < h.seal.NonceSize() {
		return nil, fmt.Errorf("bad reference")
	}
	n := h.seal.NonceSize()
	return h.seal.Open(nil, b[:n], b[n:], []byte(label))
}

func newSoftHSM(t testing.TB) *softHSM {
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	h := &softHSM{signers: map[string]bpp.Signer{}, seal: gcm}
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		n := curveName(c)
		for role, file := range map[Role]string{RoleDPauth: "DPauth/SK_S_SM_DPauth_ECDSA_" + n + ".pem", RoleDPpb: "DPpb/SK_S_SM_DPpb_ECDSA_" + n + ".pem"} {
			s, err := bpp.NewSoftwareSigner(mustKey(t, strings.Split(file, "/")...))
			if err != nil {
				t.Fatal(err)
			}
			h.signers[fmt.Sprint(role, c)] = s
		}
	}
	return h
}

func (h *softHSM) Signer(role Role, c esim.Curve) bpp.Signer { return h.signers[fmt.Sprint(role, c)] }
func (h *softHSM) KeyAgreement(c esim.Curve) bpp.KeyAgreement {
	h.binds.Add(1)
	ka, err := bpp.NewSoftwareKeyAgreement(c)
	if err != nil {
		panic(err)
	}
	return ka
}
func (h *softHSM) UnprotectPPK(_ context.Context, _ []byte, _ string, protected []byte) ([]byte, error) {
	return append([]byte(nil), protected...), nil
}

type env struct {
	srv   *Server
	db    *store.DB
	hsm   *softHSM
	upp   []byte
	now   time.Time
	next  int
	batch string
}

func newEnv(t testing.TB, opts ...store.Option) *env {
	t.Helper()
	e := &env{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	opts = append([]store.Option{store.WithClock(func() time.Time { return e.now })}, opts...)
	db, err := store.Open(context.Background(), "sqlite", filepath.Join(t.TempDir(), "perso.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db, e.hsm = db, newSoftHSM(t)
	e.srv, err = NewServer(Config{
		Address:     testAddress,
		Credentials: []Credentials{testCredentials(t, esim.CurveP256), testCredentials(t, esim.CurveBrainpoolP256r1)},
		Store:       db, HSM: e.hsm,
		Now: func() time.Time { return e.now },
		Log: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.upp, err = os.ReadFile(testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")); err != nil {
		t.Fatal(err)
	}
	e.batch = "b1"
	if _, err := db.CreateBatch(context.Background(), store.Batch{ID: e.batch, ProfileType: "test", KeyBlob: []byte("blob"), KEKLabel: "kek-1"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// addProfile stores the test UPP under a new ICCID and returns it.
func (e *env) addProfile(t testing.TB) string {
	t.Helper()
	return e.addProfileMeta(t, nil)
}

// addProfileMeta stores a profile with the given metadata (nil: the
// default one).
func (e *env) addProfileMeta(t testing.TB, md *store.Metadata) string {
	t.Helper()
	e.next++
	payload := fmt.Sprintf("894944999999999%04d", e.next)
	d, err := esim.LuhnDigit(payload)
	if err != nil {
		t.Fatal(err)
	}
	iccid := payload + string(rune(d))
	ppp, err := bpp.Protect(e.upp, nil)
	if err != nil {
		t.Fatal(err)
	}
	var flat [bpp.PPKSize]byte
	ppp.PPK.Put(&flat)
	p := store.Profile{
		ICCID: iccid, IMSI: "001010123456789", ProfileType: "test", BatchID: e.batch,
		Segments: ppp.Segments, ProtectedPPK: flat[:], PPKKeyRef: "test",
		Metadata: store.Metadata{ServiceProviderName: "perso", ProfileName: "test " + iccid, ProfileClass: 2},
	}
	if md != nil {
		p.Metadata = *md
	}
	if _, err := e.db.PutBatch(context.Background(), e.batch, []store.Profile{p}); err != nil {
		t.Fatal(err)
	}
	return iccid
}

// order runs ES2+ DownloadOrder and ConfirmOrder (released) through the store.
func (e *env) order(t testing.TB, iccid, eid string, matchingID *string, cc string) store.Profile {
	t.Helper()
	ctx := context.Background()
	if _, err := e.db.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid, EID: eid}); err != nil {
		t.Fatal(err)
	}
	var h []byte
	if cc != "" {
		h = store.HashConfirmationCode(cc)
	}
	p, err := e.db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, EID: eid, MatchingID: matchingID, CCHash: h, ReleaseFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testEUICC plays the eUICC and the LPA with the SGP.26 eUICC key: it builds
// each request from the previous answer as an SGP.22 eUICC would, and signs
// with the eUICC key.
type testEUICC struct {
	curve     esim.Curve
	key       *ecdsa.PrivateKey
	cert, eum []byte
	eid       string
	info1     rsp.EUICCInfo1

	challenge [16]byte
	tid       rsp.TransactionID
	sig1      rsp.Signature
	smdpSig2  rsp.Signature
	dppb      *rsp.Certificate
	otk       *bpp.OneTimeKey
}

func newTestEUICC(t testing.TB, c esim.Curve) *testEUICC {
	n := curveName(c)
	ci := mustCert(t, "CertificateIssuer", "CERT_CI_ECDSA_"+n+".der")
	e := &testEUICC{curve: c, key: mustKey(t, "eUICC", "SK_EUICC_ECDSA_"+n+".pem"),
		cert: sgp26(t, "eUICC", "CERT_EUICC_ECDSA_"+n+".der"), eum: sgp26(t, "EUM", "CERT_EUM_ECDSA_"+n+".der"),
		eid: testEID}
	e.info1 = rsp.EUICCInfo1{SVN: rsp.Version{2, 2, 0}, CIPKIDsForVerification: [][]byte{ci.SKI}, CIPKIDsForSigning: [][]byte{ci.SKI}}
	return e
}

func (e *testEUICC) sign(t testing.TB, data []byte) rsp.Signature {
	t.Helper()
	s, err := bpp.NewSoftwareSigner(e.key)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(data)
	rs, err := s.SignDigest(context.Background(), d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig, err := rsp.NewSignature(rs)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func (e *testEUICC) initiate() *rsp.InitiateAuthenticationRequest {
	rand.Read(e.challenge[:])
	return &rsp.InitiateAuthenticationRequest{EUICCChallenge: e.challenge, SMDPAddress: testAddress, EUICCInfo1: e.info1}
}

func testInfo2() rsp.EUICCInfo2 {
	return rsp.EUICCInfo2{ProfileVersion: rsp.Version{2, 3, 1}, SVN: rsp.Version{2, 2, 0}, FirmwareVersion: rsp.Version{1, 0, 0},
		ExtCardResource: []byte{0x81, 0x01, 0x00}, UICCCapability: 1<<1 | 1<<4, RSPCapability: 1,
		PPVersion: rsp.Version{1, 0, 0}, SASAccreditationNumber: "GI-BA-UP-0419"}
}

// authSigned1 is the EUICCSigned1 the eUICC builds from serverSigned1.
func (e *testEUICC) authSigned1(r *rsp.InitiateAuthenticationResponse, matchingID *string) rsp.EUICCSigned1 {
	e.tid = r.TransactionID
	return rsp.EUICCSigned1{
		TransactionID: r.ServerSigned1.TransactionID, ServerAddress: r.ServerSigned1.ServerAddress,
		ServerChallenge: r.ServerSigned1.ServerChallenge, EUICCInfo2: testInfo2(),
		CtxParams1: rsp.CtxParams1{Common: &rsp.CtxParamsForCommonAuthentication{MatchingID: matchingID,
			DeviceInfo: rsp.DeviceInfo{TAC: [4]byte{0x35, 0x29, 0x06, 0x11}, DeviceCapabilities: []byte{}}}},
	}
}

// authenticate signs s1 and wraps it with the given certificates.
func (e *testEUICC) authenticate(t testing.TB, tid rsp.TransactionID, s1 rsp.EUICCSigned1, cert, eum []byte) *rsp.AuthenticateClientRequest {
	t.Helper()
	raw, err := s1.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	e.sig1 = e.sign(t, raw)
	return &rsp.AuthenticateClientRequest{TransactionID: tid, AuthenticateServerResponse: rsp.AuthenticateServerResponse{
		Ok: &rsp.AuthenticateResponseOk{EUICCSigned1: s1, EUICCSignature1: e.sig1, EUICCCertificate: cert, EUMCertificate: eum}}}
}

// prepare checks smdpSignature2 as the eUICC does and answers PrepareDownload.
func (e *testEUICC) prepare(t testing.TB, r *rsp.AuthenticateClientResponse, cc string) *rsp.GetBoundProfilePackageRequest {
	t.Helper()
	dppb, err := rsp.ParseCertificate(r.SmdpCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if !verifyRS(dppb.PublicKey, rsp.SmdpSignature2Data(r.SmdpSigned2.Raw, e.sig1), r.SmdpSignature2) {
		t.Fatal("eUICC: smdpSignature2 does not verify")
	}
	e.dppb, e.smdpSig2 = dppb, r.SmdpSignature2
	if e.otk == nil {
		if e.otk, err = bpp.GenerateOneTimeKey(e.curve, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	s2 := rsp.EUICCSigned2{TransactionID: r.TransactionID, EUICCOtpk: e.otk.PublicKey()}
	if cc != "" {
		s2.HashCc = hashCc(cc, r.TransactionID)
	}
	return e.prepareSigned(t, r.TransactionID, s2)
}

func (e *testEUICC) prepareSigned(t testing.TB, tid rsp.TransactionID, s2 rsp.EUICCSigned2) *rsp.GetBoundProfilePackageRequest {
	raw, err := s2.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig := e.sign(t, rsp.EUICCSignature2Data(raw, e.smdpSig2))
	return &rsp.GetBoundProfilePackageRequest{TransactionID: tid, PrepareDownloadResponse: rsp.PrepareDownloadResponse{
		Ok: &rsp.PrepareDownloadResponseOk{EUICCSigned2: s2, EUICCSignature2: sig}}}
}

// hashCc as lpac computes it (ASCII digits).
func hashCc(cc string, tid []byte) []byte {
	h1 := sha256.Sum256([]byte(cc))
	h := sha256.Sum256(append(h1[:], tid...))
	return h[:]
}

// install opens the BPP and returns the UPP and the signed PIR.
func (e *testEUICC) install(t testing.TB, r *rsp.GetBoundProfilePackageResponse, success bool) ([]byte, *rsp.HandleNotification) {
	t.Helper()
	bcd := mustEID(t, e.eid).BCD()
	opened, err := bpp.Open(r.BoundProfilePackage, e.otk, bcd[:], e.dppb.PublicKey)
	if err != nil {
		t.Fatalf("eUICC: opening the BPP: %v", err)
	}
	d := rsp.ProfileInstallationResultData{TransactionID: e.tid,
		NotificationMetadata: rsp.NotificationMetadata{SeqNumber: 1, Operation: rsp.NotificationInstall, NotificationAddress: testAddress},
		SMDPOID:              e.dppb.SMDPOID()}
	if success {
		d.Success = &rsp.SuccessResult{AID: []byte{0xA0, 0, 0, 5, 0x59, 0x10, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x89, 0, 0, 0x10, 0}, SIMAResponse: []byte{0x90, 0x00}}
	} else {
		d.Error = &rsp.ErrorResult{BPPCommandID: 5, ErrorReason: 12}
	}
	raw, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pir := &rsp.ProfileInstallationResult{Data: d, EUICCSignPIR: e.sign(t, raw)}
	return opened.UPP, &rsp.HandleNotification{PendingNotification: rsp.PendingNotification{PIR: pir}}
}

// cancel is the eUICC's signed CancelSession answer forwarded by the LPA.
func (e *testEUICC) cancel(t testing.TB, tid rsp.TransactionID, reason rsp.CancelSessionReason, oid asn1.ObjectIdentifier) *rsp.CancelSessionRequestEs9 {
	t.Helper()
	signed := rsp.EUICCCancelSessionSigned{TransactionID: tid, SMDPOID: oid, Reason: reason}
	raw, err := signed.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &rsp.CancelSessionRequestEs9{TransactionID: tid, CancelSessionResponse: rsp.CancelSessionResponse{
		Ok: &rsp.CancelSessionResponseOk{EUICCCancelSessionSigned: signed, EUICCCancelSessionSignature: e.sign(t, raw)}}}
}

func mustEID(t testing.TB, s string) esim.EID {
	t.Helper()
	eid, err := esim.ParseEID(s)
	if err != nil {
		t.Fatal(err)
	}
	return eid
}

// wire sends req through the JSON binding (encode, decode), so that the
// handler sees parsed messages with the received bytes in their Raw fields.
func wire[T rsp.Request](t testing.TB, req T) T {
	t.Helper()
	body, err := rsp.EncodeJSONRequest(req, nil)
	if err != nil {
		t.Fatalf("encoding %T: %v", req, err)
	}
	got, _, err := rsp.DecodeJSONRequest(req.Function(), body)
	if err != nil {
		t.Fatalf("decoding %T: %v", req, err)
	}
	return got.(T)
}

// call executes req through the JSON binding and returns the answer or status.
func call[R rsp.Response](t testing.TB, e *env, req rsp.Request) (R, rsp.Status) {
	t.Helper()
	var zero R
	req = wireAny(t, req)
	resp, err := e.srv.Execute(context.Background(), req)
	if err != nil {
		st, ok := err.(rsp.Status)
		if !ok {
			t.Fatalf("%v: error without status: %v", req.Function(), err)
		}
		return zero, st
	}
	if resp == nil {
		return zero, rsp.Status{}
	}
	// Through the client's strict decoder too.
	body, err := rsp.EncodeJSONResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	back, st, err := rsp.DecodeJSONResponse(req.Function(), body)
	if err != nil || !st.IsZero() {
		t.Fatalf("strict client refuses the answer: %v %v", st, err)
	}
	return back.(R), rsp.Status{}
}

func wireAny(t testing.TB, req rsp.Request) rsp.Request {
	t.Helper()
	body, err := rsp.EncodeJSONRequest(req, nil)
	if err != nil {
		t.Fatalf("encoding %T: %v", req, err)
	}
	got, _, err := rsp.DecodeJSONRequest(req.Function(), body)
	if err != nil {
		t.Fatalf("decoding %T: %v", req, err)
	}
	return got
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
