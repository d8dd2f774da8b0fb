package bpp

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"

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

// oidECPublicKey is id-ecPublicKey (the curve OIDs are esim's).
var oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}

func curveFromOID(oid asn1.ObjectIdentifier) (esim.Curve, error) {
	c, err := esim.CurveFromOID(oid)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	return c, nil
}

type sec1Key struct {
	Version       int
	PrivateKey    []byte
	NamedCurveOID asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey     asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

type pkcs8Key struct {
	Version    int
	Algo       algorithmIdentifier
	PrivateKey []byte
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.ObjectIdentifier
}

type spki struct {
	Algo      algorithmIdentifier
	PublicKey asn1.BitString
}

// ParsePrivateKeyPEM reads the first EC private key of a PEM file: SEC1
// ("EC PRIVATE KEY", as in the SGP.26 SK_*.pem files, an "EC PARAMETERS"
// block before it is skipped) or PKCS#8 ("PRIVATE KEY"), on P-256 or
// brainpoolP256r1 (which crypto/x509 cannot parse).
func ParsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("bpp: no EC private key in PEM input")
		}
		switch b.Type {
		case "EC PRIVATE KEY":
			return parseSEC1(b.Bytes, nil)
		case "PRIVATE KEY":
			var k pkcs8Key
			if rest, err := asn1.Unmarshal(b.Bytes, &k); err != nil || len(rest) != 0 {
				return nil, errors.New("bpp: malformed PKCS#8 private key")
			}
			if !k.Algo.Algorithm.Equal(oidECPublicKey) {
				return nil, errors.New("bpp: PKCS#8 key is not an EC key")
			}
			return parseSEC1(k.PrivateKey, k.Algo.Parameters)
		}
	}
}

func parseSEC1(der []byte, outerOID asn1.ObjectIdentifier) (*ecdsa.PrivateKey, error) {
	var k sec1Key
	if rest, err := asn1.Unmarshal(der, &k); err != nil || len(rest) != 0 || k.Version != 1 {
		return nil, errors.New("bpp: malformed SEC1 EC private key")
	}
	oid := k.NamedCurveOID
	if len(oid) == 0 {
		oid = outerOID
	}
	c, err := curveFromOID(oid)
	if err != nil {
		return nil, err
	}
	ec := c.Elliptic()
	d := new(big.Int).SetBytes(k.PrivateKey)
	clear(k.PrivateKey)
	if d.Sign() <= 0 || d.Cmp(ec.Params().N) >= 0 {
		return nil, errors.New("bpp: EC private scalar out of range")
	}
	var scalar [32]byte
	d.FillBytes(scalar[:])
	x, y := ec.ScalarBaseMult(scalar[:])
	clear(scalar[:])
	priv := &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: ec, X: x, Y: y}, D: d}
	if len(k.PublicKey.Bytes) > 0 {
		pub, err := c.PublicKey(k.PublicKey.Bytes)
		if err != nil || pub.X.Cmp(x) != 0 || pub.Y.Cmp(y) != 0 {
			return nil, errors.New("bpp: EC private key does not match its embedded public key")
		}
	}
	return priv, nil
}

// ParsePublicKeyPEM reads a "PUBLIC KEY" (SubjectPublicKeyInfo) PEM block
// holding a P-256 or brainpoolP256r1 key.
func ParsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("bpp: no PUBLIC KEY in PEM input")
		}
		if b.Type == "PUBLIC KEY" {
			return ParsePublicKeyDER(b.Bytes)
		}
	}
}

// ParsePublicKeyDER parses a DER SubjectPublicKeyInfo holding a P-256 or
// brainpoolP256r1 key.
func ParsePublicKeyDER(der []byte) (*ecdsa.PublicKey, error) {
	var k spki
	if rest, err := asn1.Unmarshal(der, &k); err != nil || len(rest) != 0 {
		return nil, errors.New("bpp: malformed SubjectPublicKeyInfo")
	}
	if !k.Algo.Algorithm.Equal(oidECPublicKey) {
		return nil, errors.New("bpp: SubjectPublicKeyInfo is not an EC key")
	}
	c, err := curveFromOID(k.Algo.Parameters)
	if err != nil {
		return nil, err
	}
	return c.PublicKey(k.PublicKey.Bytes)
}
