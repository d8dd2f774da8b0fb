package esim_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// Every SGP.26 private key (SK_*.pem, both curves, SEC1 with an EC
// PARAMETERS block) parses and matches its published public key (PK_*.pem).
func TestParseSGP26Keys(t *testing.T) {
	sks, err := filepath.Glob(testenv.Path(t, "sgp26", "*", "SK_*.pem"))
	if err != nil || len(sks) < 10 {
		t.Fatalf("SGP.26 keys: %v (%d files)", err, len(sks))
	}
	seen := map[esim.Curve]int{}
	for _, sk := range sks {
		pk := filepath.Join(filepath.Dir(sk), "PK_"+strings.TrimPrefix(filepath.Base(sk), "SK_"))
		skPEM, _ := os.ReadFile(sk)
		k, err := esim.ParseECPrivateKeyPEM(skPEM)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(sk), err)
			continue
		}
		seen[k.Curve]++
		priv := k.ECDSA()
		if c, p, err := esim.PointOf(&priv.PublicKey); err != nil || c != k.Curve || string(p) != string(k.Point) {
			t.Errorf("%s: ECDSA form differs from the parsed point (%v)", filepath.Base(sk), err)
		}
		pkPEM, err := os.ReadFile(pk)
		if err != nil {
			continue // a few SK files have no PK counterpart
		}
		pub, err := esim.ParsePublicKeyPEM(pkPEM)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(pk), err)
			continue
		}
		if pub.X.Cmp(priv.X) != 0 || pub.Y.Cmp(priv.Y) != 0 {
			t.Errorf("%s does not match %s", filepath.Base(sk), filepath.Base(pk))
		}
	}
	if seen[esim.CurveP256] == 0 || seen[esim.CurveBrainpoolP256r1] == 0 {
		t.Errorf("curves seen: %v", seen)
	}
}

// PKCS#8 keys parse on both curves (crypto/x509 cannot do brainpool);
// malformed, non-EC and mismatched keys are refused with the right sentinel.
func TestParsePKCS8(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	got, err := esim.ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil || got.D.Cmp(p256.D) != 0 {
		t.Fatalf("P-256 PKCS#8: %v", err)
	}

	type sec1 struct {
		Version    int
		PrivateKey []byte
		PublicKey  asn1.BitString `asn1:"optional,explicit,tag:1"`
	}
	type algo struct{ Algorithm, Params asn1.ObjectIdentifier }
	type pkcs8 struct {
		Version    int
		Algo       algo
		PrivateKey []byte
	}
	bp := esim.CurveBrainpoolP256r1.Elliptic()
	d := make([]byte, 32)
	d[31] = 7
	x, y := bp.ScalarBaseMult(d)
	wrap := func(inner any, alg asn1.ObjectIdentifier) []byte {
		s, _ := asn1.Marshal(inner)
		der, _ := asn1.Marshal(pkcs8{Algo: algo{alg, esim.CurveBrainpoolP256r1.OID()}, PrivateKey: s})
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ecOID := asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	got, err = esim.ParsePrivateKeyPEM(wrap(sec1{Version: 1, PrivateKey: d}, ecOID))
	if err != nil {
		t.Fatalf("brainpool PKCS#8: %v", err)
	}
	if got.X.Cmp(x) != 0 || got.Y.Cmp(y) != 0 {
		t.Fatal("brainpool PKCS#8: wrong public key")
	}
	ox, oy := bp.ScalarBaseMult([]byte{8})
	mismatch := sec1{Version: 1, PrivateKey: d, PublicKey: asn1.BitString{Bytes: elliptic.Marshal(bp, ox, oy), BitLength: 520}} //nolint:staticcheck // brainpool

	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, esim.ErrMissing},
		{"certificate only", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), esim.ErrMissing},
		{"empty SEC1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{0x30, 0x00}}), esim.ErrSyntax},
		{"RSA PKCS#8", wrap(sec1{Version: 1, PrivateKey: d}, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}), esim.ErrUnknown},
		{"zero scalar", wrap(sec1{Version: 1, PrivateKey: make([]byte, 32)}, ecOID), esim.ErrSyntax},
		{"public key of another scalar", wrap(mismatch, ecOID), esim.ErrPoint},
	} {
		if _, err := esim.ParsePrivateKeyPEM(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// A SubjectPublicKeyInfo on an unsupported curve or with a point off the
// curve is refused.
func TestParsePublicKeyDER(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	if _, err := esim.ParsePublicKeyDER(der); !errors.Is(err, esim.ErrUnknown) {
		t.Errorf("P-384 key: err = %v, want ErrUnknown", err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ = x509.MarshalPKIXPublicKey(&p256.PublicKey)
	if pub, err := esim.ParsePublicKeyDER(der); err != nil || !pub.Equal(&p256.PublicKey) {
		t.Errorf("P-256 key: %v", err)
	}
	der[len(der)-1] ^= 1
	if _, err := esim.ParsePublicKeyDER(der); !errors.Is(err, esim.ErrPoint) {
		t.Errorf("point off the curve: err = %v, want ErrPoint", err)
	}
}
