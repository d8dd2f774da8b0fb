package bpp

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/perso-esim/perso/esim"
)

// The curves are esim.Curve (NIST P-256 and brainpoolP256r1, SGP.22's two):
// their names, OIDs, crypto/elliptic curves and point checks live there.

// OneTimeKey is an ephemeral ECKA key pair: the eUICC's otSK/otPK.EUICC.ECKA
// in Open and the virtual eUICC, or the SM-DP+'s in the software
// KeyAgreement. Public keys travel as 65-byte uncompressed points.
type OneTimeKey struct {
	curve esim.Curve
	p256  *ecdh.PrivateKey // esim.CurveP256
	d     []byte           // esim.CurveBrainpoolP256r1 scalar, 32 bytes
	pub   [PointSize]byte
}

// GenerateOneTimeKey makes a fresh key pair on c, reading randomness from r
// (nil means crypto/rand).
func GenerateOneTimeKey(c esim.Curve, r io.Reader) (*OneTimeKey, error) {
	if r == nil {
		r = rand.Reader
	}
	switch c {
	case esim.CurveP256:
		k, err := ecdh.P256().GenerateKey(r)
		if err != nil {
			return nil, fmt.Errorf("bpp: generate P-256 one-time key: %w", err)
		}
		return p256OneTimeKey(k), nil
	case esim.CurveBrainpoolP256r1:
		n := c.Elliptic().Params().N
		d := make([]byte, 32)
		for range 64 {
			if _, err := io.ReadFull(r, d); err != nil {
				return nil, fmt.Errorf("bpp: generate brainpool one-time key: %w", err)
			}
			if k := new(big.Int).SetBytes(d); k.Sign() > 0 && k.Cmp(n) < 0 {
				o, err := NewOneTimeKey(c, d)
				clear(d)
				return o, err
			}
		}
		clear(d)
		return nil, errors.New("bpp: generate brainpool one-time key: random source keeps failing")
	}
	return nil, fmt.Errorf("%w: curve %v", ErrInvalidParams, c)
}

func p256OneTimeKey(k *ecdh.PrivateKey) *OneTimeKey {
	o := &OneTimeKey{curve: esim.CurveP256, p256: k}
	copy(o.pub[:], k.PublicKey().Bytes())
	return o
}

// NewOneTimeKey builds a key pair from a 32-byte private scalar (for known-
// answer tests and for an eUICC simulator that stores its key).
func NewOneTimeKey(c esim.Curve, scalar []byte) (*OneTimeKey, error) {
	if len(scalar) != 32 {
		return nil, fmt.Errorf("%w: private scalar is %d bytes, want 32", ErrInvalidParams, len(scalar))
	}
	switch c {
	case esim.CurveP256:
		k, err := ecdh.P256().NewPrivateKey(scalar)
		if err != nil {
			return nil, fmt.Errorf("%w: P-256 private scalar out of range", ErrInvalidParams)
		}
		return p256OneTimeKey(k), nil
	case esim.CurveBrainpoolP256r1:
		ec := c.Elliptic()
		k := new(big.Int).SetBytes(scalar)
		if k.Sign() <= 0 || k.Cmp(ec.Params().N) >= 0 {
			return nil, fmt.Errorf("%w: brainpool private scalar out of range", ErrInvalidParams)
		}
		x, y := ec.ScalarBaseMult(scalar)
		o := &OneTimeKey{curve: c, d: append([]byte(nil), scalar...)}
		o.pub[0] = 4
		x.FillBytes(o.pub[1:33])
		y.FillBytes(o.pub[33:65])
		return o, nil
	}
	return nil, fmt.Errorf("%w: curve %v", ErrInvalidParams, c)
}

// Curve returns the key's curve.
func (k *OneTimeKey) Curve() esim.Curve { return k.curve }

// PublicKey returns a copy of the uncompressed public point (65 bytes).
func (k *OneTimeKey) PublicKey() []byte { return append([]byte(nil), k.pub[:]...) }

// ECDH returns Z, the 32-byte x-coordinate of d·peer, after checking that
// peer is a valid uncompressed point on the key's curve.
func (k *OneTimeKey) ECDH(peer []byte) ([]byte, error) {
	if k == nil || (k.p256 == nil && k.d == nil) {
		return nil, fmt.Errorf("%w: no private key", ErrKeyAgreement)
	}
	if len(peer) != PointSize || peer[0] != 4 {
		return nil, fmt.Errorf("%w: peer key is not a %d-byte uncompressed point", ErrKeyAgreement, PointSize)
	}
	switch k.curve {
	case esim.CurveP256:
		pub, err := ecdh.P256().NewPublicKey(peer)
		if err != nil {
			return nil, fmt.Errorf("%w: peer key is not on P-256", ErrKeyAgreement)
		}
		z, err := k.p256.ECDH(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: P-256 ECDH failed", ErrKeyAgreement)
		}
		return z, nil
	case esim.CurveBrainpoolP256r1:
		ec := k.curve.Elliptic()
		pub, err := k.curve.PublicKey(peer)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeyAgreement, err)
		}
		x, y := pub.X, pub.Y
		zx, zy := ec.ScalarMult(x, y, k.d)
		if zx.Sign() == 0 && zy.Sign() == 0 {
			return nil, fmt.Errorf("%w: shared point at infinity", ErrKeyAgreement)
		}
		z := make([]byte, SharedSecretSize)
		zx.FillBytes(z)
		return z, nil
	}
	return nil, fmt.Errorf("%w: curve %v", ErrKeyAgreement, k.curve)
}

// Zero wipes the private scalar (brainpool). A P-256 key lives in
// crypto/ecdh, whose memory cannot be wiped from outside; it is dropped.
func (k *OneTimeKey) Zero() {
	clear(k.d)
	k.d = nil
	k.p256 = nil
}

// VerifySignature checks a raw r||s ECDSA signature (64 bytes) over a SHA-256
// digest with pub, on P-256 or brainpoolP256r1.
func VerifySignature(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	if pub == nil || pub.Curve == nil || len(sig) != SignatureSize {
		return false
	}
	if _, err := esim.CurveOf(pub.Curve); err != nil {
		return false
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest, r, s)
}
