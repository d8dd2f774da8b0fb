package esim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
)

func TestCurves(t *testing.T) {
	for _, tc := range []struct {
		c     Curve
		names []string
		oid   string
		sgp26 string
	}{
		{CurveP256, []string{"P-256", "p256", "nist", "NIST", "secp256r1", "prime256v1"}, "1.2.840.10045.3.1.7", "NIST"},
		{CurveBrainpoolP256r1, []string{"brainpoolP256r1", "brp", "BRP", "brainpool"}, "1.3.36.3.3.2.8.1.1.7", "BRP"},
	} {
		for _, n := range append(tc.names, tc.c.String()) {
			if c, err := ParseCurve(n); c != tc.c || err != nil {
				t.Errorf("ParseCurve(%q) = %v, %v; want %v", n, c, err, tc.c)
			}
		}
		if tc.c.OID().String() != tc.oid || tc.c.SGP26Name() != tc.sgp26 {
			t.Errorf("%v: OID %v, SGP.26 name %s", tc.c, tc.c.OID(), tc.c.SGP26Name())
		}
		if c, err := CurveFromOID(tc.c.OID()); c != tc.c || err != nil {
			t.Errorf("CurveFromOID(%v) = %v, %v", tc.c.OID(), c, err)
		}
		if c, err := CurveOf(tc.c.Elliptic()); c != tc.c || err != nil {
			t.Errorf("CurveOf(%v) = %v, %v", tc.c, c, err)
		}
		// A key pair on the curve: its point passes, a changed one fails.
		k, err := ecdsa.GenerateKey(tc.c.Elliptic(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p := elliptic.Marshal(tc.c.Elliptic(), k.X, k.Y) //nolint:staticcheck // generic encoding for both curves
		pub, err := tc.c.PublicKey(p)
		if err != nil {
			t.Fatalf("%v: PublicKey: %v", tc.c, err)
		}
		d := sha256.Sum256([]byte("x"))
		sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
		if !ecdsa.VerifyASN1(pub, d[:], sig) {
			t.Errorf("%v: signature does not verify with the rebuilt key", tc.c)
		}
		bad := append([]byte(nil), p...)
		bad[64] ^= 1
		for name, q := range map[string][]byte{"off the curve": bad, "compressed": p[:33], "empty": nil, "x too large": append([]byte{4}, make([]byte, 64)...)} {
			if name == "x too large" {
				for i := 1; i < 33; i++ {
					q[i] = 0xFF
				}
			}
			if err := tc.c.CheckPoint(q); !errors.Is(err, ErrPoint) {
				t.Errorf("%v %s: CheckPoint = %v, want ErrPoint", tc.c, name, err)
			}
		}
	}
	if _, err := ParseCurve("secp384r1"); !errors.Is(err, ErrUnknown) {
		t.Errorf("ParseCurve(secp384r1): %v", err)
	}
	if _, err := CurveOf(elliptic.P384()); !errors.Is(err, ErrUnknown) {
		t.Errorf("CurveOf(P-384): %v", err)
	}
	if _, err := CurveFromOID([]int{1, 3, 132, 0, 34}); !errors.Is(err, ErrUnknown) {
		t.Errorf("CurveFromOID(secp384r1): %v", err)
	}
	if CurveUnset.Elliptic() != nil || CurveUnset.OID() != nil || CurveUnset.String() != "unset" {
		t.Error("CurveUnset must have no curve")
	}
	if err := CurveUnset.CheckPoint(make([]byte, 65)); err == nil {
		t.Error("CheckPoint on CurveUnset")
	}
}
