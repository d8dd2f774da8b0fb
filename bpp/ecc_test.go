package bpp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/perso-esim/perso/esim"
)

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
