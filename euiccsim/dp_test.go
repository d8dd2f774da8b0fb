package euiccsim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/template"
)

// testDP is a minimal SM-DP+ for the eUICC's tests, built from rsp, bpp and
// the SGP.26 DPauth/DPpb keys. It does what the eUICC and the LPA need to
// see (signatures, transaction ids, the bound package) and checks what the
// eUICC sends (euiccSignature1/2, serverChallenge, hashCc, the PIR
// signature); it is not the product's SM-DP+ (smdp/) and checks far less.
const testAddress = "testsmdpplus1.example.com"

type testDP struct {
	t          testing.TB
	curve      esim.Curve
	address    string
	authSigner *bpp.SoftwareSigner
	authCert   []byte
	pbSigner   *bpp.SoftwareSigner
	pbCert     []byte
	ciSKI      []byte
	upp        []byte
	iccid      esim.ICCID
	matchingID string
	cc         string // confirmation code; "" = none required

	mu       sync.Mutex
	protos   map[string]int // HTTP versions of the calls received
	sessions map[string]*dpSession
	pirs     []*rsp.ProfileInstallationResult
	others   []*rsp.OtherSignedNotification
	cancels  []rsp.CancelSessionReason
	// ccAttempts counts wrong confirmation codes.
	ccAttempts int
}

type dpSession struct {
	tid             rsp.TransactionID
	euiccChallenge  [16]byte
	serverChallenge [16]byte
	euiccPub        *ecdsa.PublicKey
	eid             []byte
	euiccSignature1 rsp.Signature
	smdpSignature2  rsp.Signature
	metadata        []byte
}

func sgp26(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.Path(t, append([]string{"sgp26"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sgp26Signer(t testing.TB, elem ...string) *bpp.SoftwareSigner {
	t.Helper()
	k, err := esim.ParsePrivateKeyPEM(sgp26(t, elem...))
	if err != nil {
		t.Fatal(err)
	}
	s, err := bpp.NewSoftwareSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestDP(t testing.TB, curve esim.Curve) *testDP {
	t.Helper()
	n := curve.SGP26Name()
	upp, err := os.ReadFile(testenv.Path(t, "ts48", "TS48V2-SAIP2-3-BERTLV-UNIQUE.der"))
	if err != nil {
		t.Fatal(err)
	}
	prof, err := template.Decode(upp)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := rsp.ParseCertificate(sgp26(t, "CertificateIssuer", "CERT_CI_ECDSA_"+n+".der"))
	if err != nil {
		t.Fatal(err)
	}
	return &testDP{
		t: t, curve: curve, address: testAddress,
		authSigner: sgp26Signer(t, "DPauth", "SK_S_SM_DPauth_ECDSA_"+n+".pem"),
		authCert:   sgp26(t, "DPauth", "CERT_S_SM_DPauth_ECDSA_"+n+".der"),
		pbSigner:   sgp26Signer(t, "DPpb", "SK_S_SM_DPpb_ECDSA_"+n+".pem"),
		pbCert:     sgp26(t, "DPpb", "CERT_S_SM_DPpb_ECDSA_"+n+".der"),
		ciSKI:      ci.SKI,
		upp:        upp,
		iccid:      prof.ICCID(),
		matchingID: "MATCH-" + n,
		sessions:   map[string]*dpSession{},
	}
}

func dpSign(t testing.TB, s *bpp.SoftwareSigner, msg []byte) rsp.Signature {
	t.Helper()
	d := sha256Sum(msg)
	rs, err := s.SignDigest(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := rsp.NewSignature(rs)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func st(s rsp.SubjectCode, r rsp.ReasonCode, msg string) rsp.Status {
	return rsp.Status{Subject: s, Reason: r, Message: msg}
}

func (d *testDP) initiate(req *rsp.InitiateAuthenticationRequest) (*rsp.InitiateAuthenticationResponse, rsp.Status) {
	if !strings.EqualFold(req.SMDPAddress, d.address) {
		return nil, st(rsp.SubjectSMDPAddress, rsp.ReasonRefused, "wrong address")
	}
	found := false
	for _, id := range req.EUICCInfo1.CIPKIDsForSigning {
		found = found || bytes.Equal(id, d.ciSKI)
	}
	if !found {
		return nil, st(rsp.SubjectSecurityConfiguration, rsp.ReasonUnknownUnsupported, "no common CI")
	}
	s := &dpSession{tid: make(rsp.TransactionID, 16), euiccChallenge: req.EUICCChallenge}
	rand.Read(s.tid)
	rand.Read(s.serverChallenge[:])
	s1 := &rsp.ServerSigned1{TransactionID: s.tid, EUICCChallenge: req.EUICCChallenge, ServerAddress: d.address, ServerChallenge: s.serverChallenge}
	var err error
	if s1.Raw, err = s1.Marshal(); err != nil {
		d.t.Fatal(err)
	}
	d.mu.Lock()
	d.sessions[string(s.tid)] = s
	d.mu.Unlock()
	return &rsp.InitiateAuthenticationResponse{TransactionID: s.tid, ServerSigned1: *s1,
		ServerSignature1: dpSign(d.t, d.authSigner, s1.Raw), EUICCCIPKIDToBeUsed: d.ciSKI, ServerCertificate: d.authCert}, rsp.Status{}
}

func (d *testDP) session(tid rsp.TransactionID) *dpSession {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sessions[string(tid)]
}

func (d *testDP) authenticate(req *rsp.AuthenticateClientRequest) (*rsp.AuthenticateClientResponse, rsp.Status) {
	s := d.session(req.TransactionID)
	if s == nil {
		return nil, st(rsp.SubjectTransactionID, rsp.ReasonUnknown, "")
	}
	ok := req.AuthenticateServerResponse.Ok
	if ok == nil {
		return nil, st(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "authenticateResponseError")
	}
	cert, err := rsp.ParseCertificate(ok.EUICCCertificate)
	if err != nil {
		return nil, st(rsp.SubjectEUICCCertificate, rsp.ReasonVerificationFailed, err.Error())
	}
	if !verify(cert.PublicKey, ok.EUICCSigned1.Raw, ok.EUICCSignature1) {
		return nil, st(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccSignature1")
	}
	if ok.EUICCSigned1.ServerChallenge != s.serverChallenge || !ok.EUICCSigned1.TransactionID.Equal(s.tid) {
		return nil, st(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "serverChallenge/tid")
	}
	c := ok.EUICCSigned1.CtxParams1.Common
	if c == nil || c.MatchingID == nil || *c.MatchingID != d.matchingID {
		return nil, st(rsp.SubjectMatchingID, rsp.ReasonRefused, "")
	}
	eid, err := esim.ParseEID(cert.SubjectSerialNumber)
	if err != nil {
		d.t.Fatal(err)
	}
	bcd := eid.BCD()
	s.eid, s.euiccPub, s.euiccSignature1 = bcd[:], cert.PublicKey, ok.EUICCSignature1
	md := &bpp.StoreMetadata{ICCID: d.iccid, ServiceProviderName: "perso test", ProfileName: "TS.48 " + d.curve.SGP26Name(),
		ProfileClass:  bpp.ClassTest,
		Notifications: []bpp.NotificationConfig{{Events: bpp.NotifyInstall | bpp.NotifyEnable | bpp.NotifyDelete, Address: d.address}}}
	if s.metadata, err = md.Marshal(); err != nil {
		d.t.Fatal(err)
	}
	s2 := &rsp.SmdpSigned2{TransactionID: s.tid, CCRequired: d.cc != ""}
	if s2.Raw, err = s2.Marshal(); err != nil {
		d.t.Fatal(err)
	}
	s.smdpSignature2 = dpSign(d.t, d.pbSigner, rsp.SmdpSignature2Data(s2.Raw, ok.EUICCSignature1))
	return &rsp.AuthenticateClientResponse{TransactionID: s.tid, ProfileMetadata: s.metadata, SmdpSigned2: *s2,
		SmdpSignature2: s.smdpSignature2, SmdpCertificate: d.pbCert}, rsp.Status{}
}

func (d *testDP) getBPP(req *rsp.GetBoundProfilePackageRequest) (*rsp.GetBoundProfilePackageResponse, rsp.Status) {
	s := d.session(req.TransactionID)
	if s == nil || s.euiccPub == nil {
		return nil, st(rsp.SubjectTransactionID, rsp.ReasonUnknown, "")
	}
	ok := req.PrepareDownloadResponse.Ok
	if ok == nil {
		return nil, st(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "downloadResponseError")
	}
	if !verify(s.euiccPub, rsp.EUICCSignature2Data(ok.EUICCSigned2.Raw, s.smdpSignature2), ok.EUICCSignature2) {
		return nil, st(rsp.SubjectEUICC, rsp.ReasonVerificationFailed, "euiccSignature2")
	}
	if d.cc != "" {
		if ok.EUICCSigned2.HashCc == nil {
			return nil, st(rsp.SubjectConfirmationCode, rsp.ReasonMissing, "")
		}
		if !bytes.Equal(ok.EUICCSigned2.HashCc, HashCC(d.cc, s.tid)) {
			d.mu.Lock()
			d.ccAttempts++
			d.mu.Unlock()
			return nil, st(rsp.SubjectConfirmationCode, rsp.ReasonRefused, "")
		}
	}
	ka, err := bpp.NewSoftwareKeyAgreement(d.curve)
	if err != nil {
		d.t.Fatal(err)
	}
	pkg, err := bpp.BindUnprotected(context.Background(), d.pbSigner, ka, &bpp.BindParams{
		TransactionID: s.tid, HostID: []byte("perso-test-dp"), EID: s.eid, EUICCOtpk: ok.EUICCSigned2.EUICCOtpk,
		MetadataDER: s.metadata}, d.upp)
	if err != nil {
		d.t.Fatal(err)
	}
	return &rsp.GetBoundProfilePackageResponse{TransactionID: s.tid, BoundProfilePackage: pkg}, rsp.Status{}
}

// notify verifies a notification's signature before recording it.
func (d *testDP) notify(req *rsp.HandleNotification) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := req.PendingNotification.PIR; p != nil {
		s := d.sessions[string(p.Data.TransactionID)]
		if s == nil || !verify(s.euiccPub, p.Data.Raw, p.EUICCSignPIR) {
			d.t.Errorf("test SM-DP+: PIR for an unknown session or with a bad signature")
			return
		}
		d.pirs = append(d.pirs, p)
		return
	}
	o := req.PendingNotification.Other
	cert, err := rsp.ParseCertificate(o.EUICCCertificate)
	if err != nil || !verify(cert.PublicKey, o.TBSOtherNotification.Raw, o.EUICCNotificationSignature) {
		d.t.Errorf("test SM-DP+: other notification with a bad certificate or signature")
		return
	}
	d.others = append(d.others, o)
}

func (d *testDP) cancel(req *rsp.CancelSessionRequestEs9) rsp.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[string(req.TransactionID)]
	ok := req.CancelSessionResponse.Ok
	if s == nil || ok == nil || !verify(s.euiccPub, ok.EUICCCancelSessionSigned.Raw, ok.EUICCCancelSessionSignature) {
		return st(rsp.SubjectTransactionID, rsp.ReasonUnknown, "")
	}
	delete(d.sessions, string(req.TransactionID))
	d.cancels = append(d.cancels, ok.EUICCCancelSessionSigned.Reason)
	return rsp.Status{}
}

// dispatch runs one decoded request.
func (d *testDP) dispatch(req rsp.Request) (rsp.Response, rsp.Status) {
	switch r := req.(type) {
	case *rsp.InitiateAuthenticationRequest:
		return d.initiate(r)
	case *rsp.AuthenticateClientRequest:
		return d.authenticate(r)
	case *rsp.GetBoundProfilePackageRequest:
		return d.getBPP(r)
	case *rsp.HandleNotification:
		d.notify(r)
		return nil, rsp.Status{}
	case *rsp.CancelSessionRequestEs9:
		if s := d.cancel(r); !s.IsZero() {
			return nil, s
		}
		return &rsp.CancelSessionResponseEs9{}, rsp.Status{}
	}
	d.t.Fatalf("test SM-DP+: unexpected request %T", req)
	return nil, rsp.Status{}
}

// ServeHTTP speaks both bindings.
func (d *testDP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	if d.protos == nil {
		d.protos = map[string]int{}
	}
	d.protos[r.Proto]++
	d.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Path == rsp.ASN1Path {
		req, err := rsp.DecodeASN1Request(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, status := d.dispatch(req)
		if req.Function() == rsp.HandleNotificationFunction {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		out, err := rsp.EncodeASN1Response(req.Function(), resp, status)
		if err != nil {
			d.t.Errorf("test SM-DP+: %v", err)
		}
		w.Header().Set("Content-Type", rsp.ASN1ContentType)
		w.Write(out)
		return
	}
	var f rsp.Function
	for _, g := range []rsp.Function{rsp.InitiateAuthentication, rsp.AuthenticateClient, rsp.GetBoundProfilePackage, rsp.HandleNotificationFunction, rsp.CancelSession} {
		if g.Path() == r.URL.Path {
			f = g
		}
	}
	req, _, err := rsp.DecodeJSONRequest(f, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, status := d.dispatch(req)
	if f == rsp.HandleNotificationFunction {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var out []byte
	if !status.IsZero() || resp == nil {
		out, err = rsp.EncodeJSONStatus(status)
	} else {
		out, err = rsp.EncodeJSONResponse(resp)
	}
	if err != nil {
		d.t.Errorf("test SM-DP+: %v", err)
	}
	w.Header().Set("Content-Type", rsp.JSONContentType)
	w.Write(out)
}

// serveTLS starts d on a loopback HTTPS listener with the SGP.26 DPtls
// certificate for testsmdpplus1.example.com, and returns an LPA config
// that trusts that certificate and resolves the name to the listener.
func (d *testDP) serveTLS(t testing.TB) LPAConfig {
	t.Helper()
	der := sgp26(t, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der")
	key, err := esim.ParsePrivateKeyPEM(sgp26(t, "DPtls", "SK_S_SM_DP_TLS_NIST.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(d)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.EnableHTTP2 = true // as perso serve: the LPA's client chooses
	srv.StartTLS()
	t.Cleanup(srv.Close)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return LPAConfig{RootCAs: roots, Resolve: map[string]string{testAddress: srv.Listener.Addr().String()}}
}

func newTestEUICC(t testing.TB, curve esim.Curve) *EUICC {
	t.Helper()
	c, err := LoadSGP26(filepath.Dir(testenv.Path(t, "sgp26", "eUICC")), curve)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var curves = []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1}
