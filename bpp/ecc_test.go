package bpp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
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
		priv, err := ParsePrivateKeyPEM(skPEM)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(sk), err)
			continue
		}
		c, _ := esim.CurveOf(priv.Curve)
		seen[c]++
		pkPEM, err := os.ReadFile(pk)
		if err != nil {
			continue // a few SK files have no PK counterpart
		}
		pub, err := ParsePublicKeyPEM(pkPEM)
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

// PKCS#8 keys parse on both curves (crypto/x509 cannot do brainpool).
func TestParsePKCS8(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil || got.D.Cmp(p256.D) != 0 {
		t.Fatalf("P-256 PKCS#8: %v", err)
	}

	bpk, _ := GenerateOneTimeKey(esim.CurveBrainpoolP256r1, nil)
	sec1, _ := asn1.Marshal(sec1Key{Version: 1, PrivateKey: bpk.d})
	der, _ = asn1.Marshal(pkcs8Key{Algo: algorithmIdentifier{oidECPublicKey, esim.CurveBrainpoolP256r1.OID()}, PrivateKey: sec1})
	got, err = ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatalf("brainpool PKCS#8: %v", err)
	}
	pt, _ := esim.CurveBrainpoolP256r1.PublicKey(bpk.PublicKey())
	if got.X.Cmp(pt.X) != 0 || got.Y.Cmp(pt.Y) != 0 {
		t.Fatal("brainpool PKCS#8: wrong public key")
	}

	for _, bad := range []string{
		"",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{0x30, 0x00}})),
	} {
		if _, err := ParsePrivateKeyPEM([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// Software signatures verify on both curves, fail for another digest, and
// VerifySignature refuses malformed signatures and keys.
func TestSoftwareSignerAndVerify(t *testing.T) {
	for _, c := range curves {
		s, pub := dppb(t, c.sgp26)
		d := sha256.Sum256([]byte("smdpSigned"))
		sig, err := s.SignDigest(context.Background(), d[:])
		if err != nil || len(sig) != SignatureSize {
			t.Fatalf("%v: %d bytes, %v", c.curve, len(sig), err)
		}
		if !VerifySignature(pub, d[:], sig) {
			t.Errorf("%v: own signature rejected", c.curve)
		}
		d2 := sha256.Sum256([]byte("other"))
		if VerifySignature(pub, d2[:], sig) || VerifySignature(pub, d[:], sig[:63]) || VerifySignature(nil, d[:], sig) {
			t.Errorf("%v: bad signature accepted", c.curve)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.SignDigest(ctx, d[:]); !errors.Is(err, context.Canceled) {
			t.Errorf("%v: cancelled context: %v", c.curve, err)
		}
	}
}

// ECDH agrees from both sides on both curves, and invalid peer points are
// refused (wrong length, compressed, not on the curve, other curve).
func TestOneTimeKeyECDH(t *testing.T) {
	for _, c := range curves {
		a, err := GenerateOneTimeKey(c.curve, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := GenerateOneTimeKey(c.curve, nil)
		za, err1 := a.ECDH(b.PublicKey())
		zb, err2 := b.ECDH(a.PublicKey())
		if err1 != nil || err2 != nil || !bytes.Equal(za, zb) || len(za) != SharedSecretSize {
			t.Fatalf("%v: %v %v", c.curve, err1, err2)
		}
		other := esim.CurveP256
		if c.curve == esim.CurveP256 {
			other = esim.CurveBrainpoolP256r1
		}
		o, _ := GenerateOneTimeKey(other, nil)
		offCurve := a.PublicKey()
		offCurve[64] ^= 1
		for name, p := range map[string][]byte{
			"64 bytes":     a.PublicKey()[:64],
			"compressed":   append([]byte{2}, a.PublicKey()[1:]...),
			"not on curve": offCurve,
			"other curve":  o.PublicKey(),
			"zero point":   append([]byte{4}, make([]byte, 64)...),
		} {
			if _, err := a.ECDH(p); !errors.Is(err, ErrKeyAgreement) {
				t.Errorf("%v %s: %v", c.curve, name, err)
			}
		}
		a.Zero()
		if _, err := a.ECDH(b.PublicKey()); !errors.Is(err, ErrKeyAgreement) {
			t.Errorf("%v: zeroed key still agrees: %v", c.curve, err)
		}
	}
}
