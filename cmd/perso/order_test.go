package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"image/png"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/smdp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// testPKI makes a CA and certificates it issues, as PEM files in dir.
type testPKI struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Operator CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: dir, cert: c, key: key}
	writeFile(t, filepath.Join(dir, "ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return p
}

// issue writes name.pem and name.key and returns the pair.
func (p *testPKI) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writeFile(t, filepath.Join(p.dir, name+".pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(p.dir, name+".key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	pair, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// TestOperatorAndOrder: perso operator add/list/remove manage who may
// order; perso order runs DownloadOrder + ConfirmOrder over mutual TLS and
// prints the activation code, and its QR PNG decodes to the same text.
func TestOperatorAndOrder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dsn := filepath.Join(dir, "perso.db")
	db, err := store.Open(ctx, "sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.CreateBatch(ctx, store.Batch{ID: "b1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutBatch(ctx, "b1", append(storetest.Profiles("t1", 0, 3, 8), storetest.Profiles("t2", 10, 2, 8)...)); err != nil {
		t.Fatal(err)
	}
	pki := newTestPKI(t, dir)
	pki.issue(t, "operator")
	es2, err := smdp.NewES2(smdp.ES2Config{Address: "testsmdpplus1.example.com", Desk: db})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(smdp.NewES2Handler(es2, smdp.ES2HTTPOptions{Operators: db}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.issue(t, "server")}}
	smdp.RequestClientCertificates(srv.TLS)
	srv.StartTLS()
	defer srv.Close()

	out := runInDir(t, dir, nil, "operator", "add", "op-a", "--trust", "ca.pem", "--callback-url", "https://bss.example/cb", "--store.dsn", dsn)
	if !strings.Contains(out, "operator op-a: 1 trusted certificate(s), callbacks to https://bss.example/cb") {
		t.Fatalf("operator add: %s", out)
	}
	if _, err := execInDir(t, dir, nil, "operator", "add", "op-b", "--trust", "operator.key", "--store.dsn", dsn); err == nil ||
		!strings.Contains(err.Error(), "private key") && !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("operator add with a key file: %v", err)
	}
	if out := runInDir(t, dir, nil, "operator", "list", "--store.dsn", dsn); !strings.Contains(out, "op-a") || !strings.Contains(out, "CN=Test Operator CA") {
		t.Fatalf("operator list: %s", out)
	}

	order := []string{"order", "--server", srv.URL, "--requester", "op-a", "--client-cert", "operator.pem", "--client-key", "operator.key",
		"--server-ca", "ca.pem", "--profile-type", "t1", "--confirmation-code", "8787", "--qr", "code.png"}
	out = runInDir(t, dir, nil, order...)
	m := regexp.MustCompile(`activation code: (\S+)`).FindStringSubmatch(out)
	if m == nil || strings.Contains(out, "8787") {
		t.Fatalf("perso order printed:\n%s", out)
	}
	code, err := activation.Parse(m[1])
	if err != nil || code.SMDPAddress != "testsmdpplus1.example.com" || !code.CCRequired {
		t.Fatalf("activation code %q: %+v %v", m[1], code, err)
	}
	p, err := db.ProfileByMatchingID(ctx, code.MatchingID)
	if err != nil || p.State != store.StateReleased || !p.CCRequired() {
		t.Fatalf("ordered profile: %+v %v", p, err)
	}
	f, err := os.Open(filepath.Join(dir, "code.png"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	bmp, _ := gozxing.NewBinaryBitmapFromImage(img)
	// PURE_BARCODE: see activation.TestQRRoundTrip (gozxing's finder
	// heuristics miss about 1 in 100 clean symbols).
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil || res.GetText() != m[1] {
		t.Fatalf("QR code decodes to %v, %v; want %q", res, err, m[1])
	}

	// Bulk: two good rows and an unknown ICCID; the good ones get codes
	// and PNGs, the bad one a line in errors.csv, exit status 3.
	writeFile(t, filepath.Join(dir, "orders.csv"), "Profile_Type,iccid,note\n,"+storetest.ICCID(10)+",a\n,89880000000000000999,b\nt2,,c\n")
	bulk := append(append([]string{}, order[:11]...), "--from", "orders.csv", "--out-dir", "out", "--qr-png")
	out, err = execInDir(t, dir, nil, bulk...)
	if exitCode(err) != exitPartial || !strings.Contains(out, "2 of 3 orders placed") {
		t.Fatalf("bulk order: %v\n%s", err, out)
	}
	codes, _ := os.ReadFile(filepath.Join(dir, "out", "activation-codes.csv"))
	errs, _ := os.ReadFile(filepath.Join(dir, "out", "errors.csv"))
	if strings.Count(string(codes), "LPA:1$testsmdpplus1.example.com$") != 2 || !strings.Contains(string(codes), "2,"+storetest.ICCID(10)+",,LPA:1$") ||
		!strings.Contains(string(codes), "4,"+storetest.ICCID(11)+",,LPA:1$") || !strings.Contains(string(errs), "3,89880000000000000999,,") ||
		!strings.Contains(string(errs), "8.2.1/3.9") {
		t.Fatalf("activation-codes.csv:\n%s\nerrors.csv:\n%s", codes, errs)
	}
	for _, iccid := range []string{storetest.ICCID(10), storetest.ICCID(11)} {
		if _, err := os.Stat(filepath.Join(dir, "out", iccid+".png")); err != nil {
			t.Errorf("QR PNG of %s: %v", iccid, err)
		}
	}

	// Without --force the QR file is not replaced; a removed operator is refused.
	if _, err := execInDir(t, dir, nil, order...); err == nil || exitCode(err) != exitUsage {
		t.Fatalf("second order onto an existing --qr: %v", err)
	}
	runInDir(t, dir, nil, "operator", "remove", "op-a", "--store.dsn", dsn)
	_, err = execInDir(t, dir, nil, order[:len(order)-2]...)
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("order by a removed operator: %v", err)
	}
}

// TestOrderResolve: --resolve takes curl's HOST:PORT:ADDR (that port
// only) and perso euicc download's HOST:ADDR[:PORT] (any port), and
// refuses anything else as a usage error.
func TestOrderResolve(t *testing.T) {
	m, err := parseResolve([]string{"testsmdpplus1.example.com:8443:127.0.0.1", "Other.example:[::1]:9000", "third.example:10.0.0.7",
		"v6.example:443:[::1]"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dial, want string }{
		{"testsmdpplus1.example.com:8443", "127.0.0.1:8443"},
		{"testsmdpplus1.example.com:443", "testsmdpplus1.example.com:443"}, // curl: that port only
		{"other.example:443", "[::1]:9000"},
		{"third.example:8443", "10.0.0.7:8443"},
		{"v6.example:443", "[::1]:443"},
		{"unlisted.example:443", "unlisted.example:443"},
	} {
		if got := m.dialAddr(tc.dial); got != tc.want {
			t.Errorf("dial %s: %s, want %s", tc.dial, got, tc.want)
		}
	}
	for _, bad := range []string{"", "host", "host:", ":1.2.3.4", "host:8443:not-an-ip", "host:99999:127.0.0.1", "host:name.example"} {
		if _, err := parseResolve([]string{bad}); exitCode(err) != exitUsage {
			t.Errorf("--resolve %q: %v, want a usage error", bad, err)
		}
	}
}
