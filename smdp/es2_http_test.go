package smdp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// testCA is a certificate authority made at test time (the SGP.26 operator
// certificate has expired).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
}

// issue makes a client (and server, for "localhost") certificate.
func (ca *testCA) issue(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// selfSigned makes a self-signed operator certificate (as SGP.26's) and
// its PEM.
func selfSigned(t *testing.T, cn string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// es2Server starts the ES2+ handler over TLS that requests (not requires)
// client certificates, as on the listener shared with ES9+.
func es2Server(t *testing.T, s *store.DB) *httptest.Server {
	t.Helper()
	e := newES2(t, s, nil)
	srv := httptest.NewUnstartedServer(NewES2Handler(e, ES2HTTPOptions{Operators: s}))
	srv.TLS = &tls.Config{}
	RequestClientCertificates(srv.TLS)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func clientWith(srv *httptest.Server, certs ...tls.Certificate) *http.Client {
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = certs
	return &http.Client{Transport: tr}
}

// TestES2MutualTLS: only a registered operator's certificate, with its own
// functionRequesterIdentifier, reaches the functions.
func TestES2MutualTLS(t *testing.T) {
	ctx := context.Background()
	s := openFilled(t)
	opCA, rogueCA := newTestCA(t, "Operator A CA"), newTestCA(t, "Rogue CA")
	selfCert, selfPEM := selfSigned(t, "test.operator.com")
	must := func(_ store.Operator, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: opCA.pem()}))
	must(s.AddOperator(ctx, store.Operator{ID: "op-self", TrustPEM: selfPEM}))
	srv := es2Server(t, s)
	good := opCA.issue(t, "bss.operator-a.example")

	for _, tc := range []struct {
		name      string
		certs     []tls.Certificate
		requester string
		wantHTTP  int // 0: the function answered (HTTP 200)
	}{
		{"operator certificate from its CA", []tls.Certificate{good}, "op-a", 0},
		{"self-signed operator certificate", []tls.Certificate{selfCert}, "op-self", 0},
		{"certificate of an unknown CA", []tls.Certificate{rogueCA.issue(t, "bss.operator-a.example")}, "op-a", http.StatusForbidden},
		{"requester id of another operator", []tls.Certificate{good}, "op-self", http.StatusForbidden},
		{"requester id of nobody", []tls.Certificate{good}, "op-z", http.StatusForbidden},
		{"no client certificate", nil, "op-a", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &ES2Client{BaseURL: srv.URL, HTTP: clientWith(srv, tc.certs...), RequesterID: tc.requester}
			_, err := c.DownloadOrder(ctx, rsp.DownloadOrderRequest{ProfileType: "t1"})
			var st rsp.Status
			switch {
			case tc.wantHTTP == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantHTTP != 0 && (err == nil || errors.As(err, &st)):
				t.Fatalf("got %v, want HTTP %d", err, tc.wantHTTP)
			case tc.wantHTTP != 0 && !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", tc.wantHTTP)):
				t.Fatalf("got %v, want HTTP %d", err, tc.wantHTTP)
			}
		})
	}
}

// TestES2HTTP: a Failed status travels as HTTP 200 with the header only;
// transport errors (content type, size, malformed JSON) too; an order and
// its confirmation give a usable activation code.
func TestES2HTTP(t *testing.T) {
	ctx := context.Background()
	s := openFilled(t)
	ca := newTestCA(t, "Operator CA")
	if _, err := s.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: ca.pem()}); err != nil {
		t.Fatal(err)
	}
	srv := es2Server(t, s)
	hc := clientWith(srv, ca.issue(t, "bss"))
	c := &ES2Client{BaseURL: srv.URL, HTTP: hc, RequesterID: "op-a"}

	d, err := c.DownloadOrder(ctx, rsp.DownloadOrderRequest{ICCID: storetest.ICCID(1)})
	if err != nil || d.ICCID != storetest.ICCID(1) {
		t.Fatalf("DownloadOrder: %+v %v", d, err)
	}
	co, err := c.ConfirmOrder(ctx, rsp.ConfirmOrderRequest{ICCID: d.ICCID, ReleaseFlag: true})
	if err != nil || co.MatchingID == "" || co.SMDPAddress != smdpAddr {
		t.Fatalf("ConfirmOrder: %+v %v", co, err)
	}
	_, err = c.DownloadOrder(ctx, rsp.DownloadOrderRequest{ICCID: "89880000000000000999"})
	var st rsp.Status
	if !errors.As(err, &st) || st.Code() != "8.2.1/3.9" {
		t.Fatalf("unknown ICCID over HTTP: %v", err)
	}

	post := func(ct, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+rsp.ES2DownloadOrder.Path(), strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(res.Body)
		return res.StatusCode, b.String()
	}
	for _, tc := range []struct{ name, ct, body, want string }{
		{"wrong content type", "text/plain", `{}`, `"subjectCode":"1.2.1","reasonCode":"2.1"`},
		{"malformed JSON", "application/json", `{"header":`, `"subjectCode":"1.2.1","reasonCode":"2.1"`},
		{"no header", "application/json", `{"iccid":"1"}`, `"subjectCode":"1.2.1","reasonCode":"2.2"`},
		{"oversized body", "application/json", `{"x":"` + strings.Repeat("a", DefaultMaxBody) + `"}`, `"reasonCode":"2.1"`},
	} {
		code, body := post(tc.ct, tc.body)
		if code != http.StatusOK || !strings.Contains(body, tc.want) || !strings.Contains(body, `"status":"Failed"`) {
			t.Errorf("%s: HTTP %d %s, want 200 with %s", tc.name, code, body, tc.want)
		}
	}
}

// TestES2OperatorTTL: within OperatorTTL an operator's record is not read
// again, so a removal by another process is seen once it has passed; a
// handler without a TTL refuses at once.
func TestES2OperatorTTL(t *testing.T) {
	ctx := context.Background()
	s := openFilled(t)
	ca := newTestCA(t, "Operator CA")
	if _, err := s.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: ca.pem()}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	start := func(ttl time.Duration) *ES2Client {
		srv := httptest.NewUnstartedServer(NewES2Handler(newES2(t, s, nil), ES2HTTPOptions{Operators: s, OperatorTTL: ttl, Now: clock}))
		srv.TLS = &tls.Config{}
		RequestClientCertificates(srv.TLS)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return &ES2Client{BaseURL: srv.URL, HTTP: clientWith(srv, ca.issue(t, "bss")), RequesterID: "op-a"}
	}
	cached, uncached := start(time.Second), start(0)
	order := func(c *ES2Client) error {
		_, err := c.DownloadOrder(ctx, rsp.DownloadOrderRequest{ProfileType: "t1"})
		return err
	}
	for _, c := range []*ES2Client{cached, uncached} {
		if err := order(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveOperator(ctx, "op-a"); err != nil {
		t.Fatal(err)
	}
	if err := order(uncached); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("without a TTL, a removed operator: %v; want HTTP 403", err)
	}
	now = now.Add(999 * time.Millisecond)
	if err := order(cached); err != nil {
		t.Fatalf("within the TTL: %v", err)
	}
	now = now.Add(time.Millisecond)
	if err := order(cached); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("after the TTL, a removed operator: %v; want HTTP 403", err)
	}
}
