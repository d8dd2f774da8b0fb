package bpp

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"fmt"
	"io"

	"github.com/perso-esim/perso/esim"
)

// Signer signs a SHA-256 digest with the SM-DP+ (DPpb) private key and
// returns the raw r||s form (64 bytes).
type Signer interface {
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
}

// KeyAgreement is the SM-DP+ side of ECKA-DH: it makes a one-time key pair on
// its curve, derives the shared secret with the peer's uncompressed point (65
// bytes, 04||X||Y) and returns its own one-time public key (uncompressed) and
// Z (the 32-byte x-coordinate). The one-time private key never leaves the
// implementation.
type KeyAgreement interface {
	EphemeralECDH(ctx context.Context, peerPublic []byte) (otpk, z []byte, err error)
}

// SoftwareSigner is a Signer holding the private key in process memory, for
// tests and development. With brainpoolP256r1 keys it uses crypto/ecdsa's
// generic-curve path (math/big, variable time): never use it in production.
type SoftwareSigner struct {
	priv *ecdsa.PrivateKey
	rand io.Reader
}

// NewSoftwareSigner returns a Signer for a P-256 or brainpoolP256r1 key.
func NewSoftwareSigner(priv *ecdsa.PrivateKey) (*SoftwareSigner, error) {
	if priv == nil {
		return nil, fmt.Errorf("%w: nil private key", ErrInvalidParams)
	}
	if _, err := esim.CurveOf(priv.Curve); err != nil {
		return nil, err
	}
	return &SoftwareSigner{priv: priv, rand: rand.Reader}, nil
}

// Public returns the signer's public key.
func (s *SoftwareSigner) Public() *ecdsa.PublicKey { return &s.priv.PublicKey }

// SignDigest implements Signer.
func (s *SoftwareSigner) SignDigest(ctx context.Context, digest []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, ss, err := ecdsa.Sign(s.rand, s.priv, digest)
	if err != nil {
		return nil, fmt.Errorf("bpp: software ECDSA signature: %w", err)
	}
	sig := make([]byte, SignatureSize)
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return sig, nil
}

// SoftwareKeyAgreement is a KeyAgreement that generates its one-time keys in
// process memory, for tests and development (brainpool: variable time).
type SoftwareKeyAgreement struct {
	curve esim.Curve
	rand  io.Reader
}

// NewSoftwareKeyAgreement returns a KeyAgreement on c using crypto/rand.
func NewSoftwareKeyAgreement(c esim.Curve) (*SoftwareKeyAgreement, error) {
	if c.Elliptic() == nil {
		return nil, fmt.Errorf("%w: curve %v", ErrInvalidParams, c)
	}
	return &SoftwareKeyAgreement{curve: c, rand: rand.Reader}, nil
}

// EphemeralECDH implements KeyAgreement; the one-time private key is dropped
// (and, for brainpool, wiped) before returning.
func (s *SoftwareKeyAgreement) EphemeralECDH(ctx context.Context, peerPublic []byte) (otpk, z []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	k, err := GenerateOneTimeKey(s.curve, s.rand)
	if err != nil {
		return nil, nil, err
	}
	defer k.Zero()
	z, err = k.ECDH(peerPublic)
	if err != nil {
		return nil, nil, err
	}
	return k.PublicKey(), z, nil
}
