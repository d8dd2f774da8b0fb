package hsmpool

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/ProtonMail/go-crypto/brainpool"
)

// Curve names an elliptic curve the pool signs and agrees keys on.
type Curve int

const (
	// P256 is NIST P-256 (secp256r1), SGP.26 "NIST".
	P256 Curve = iota + 1
	// BrainpoolP256r1 is brainpoolP256r1 (RFC 5639), SGP.26 "BRP".
	BrainpoolP256r1
)

// Object identifiers of the supported curves.
var (
	oidP256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidBrainpool = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}
	oidECPublic  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// String returns the curve's conventional name.
func (c Curve) String() string {
	switch c {
	case P256:
		return "P-256"
	case BrainpoolP256r1:
		return "brainpoolP256r1"
	}
	return fmt.Sprintf("Curve(%d)", int(c))
}

// Suffix is the label suffix used for keys on this curve ("nist" or "brp"),
// following the SGP.26 file names.
func (c Curve) Suffix() string {
	switch c {
	case P256:
		return "nist"
	case BrainpoolP256r1:
		return "brp"
	}
	return "unknown"
}

// ParseCurve accepts "P-256", "p256", "nist", "secp256r1", "prime256v1",
// "brainpoolP256r1", "brp" and "brainpool".
func ParseCurve(s string) (Curve, error) {
	switch s {
	case "P-256", "p256", "P256", "nist", "NIST", "secp256r1", "prime256v1":
		return P256, nil
	case "brainpoolP256r1", "brp", "BRP", "brainpool":
		return BrainpoolP256r1, nil
	}
	return 0, fmt.Errorf("hsmpool: unknown curve %q", s)
}

func (c Curve) oid() asn1.ObjectIdentifier {
	if c == BrainpoolP256r1 {
		return oidBrainpool
	}
	return oidP256
}

// ecParams is the DER encoding of the curve OID, as PKCS#11 CKA_EC_PARAMS wants it.
func (c Curve) ecParams() []byte {
	b, _ := asn1.Marshal(c.oid())
	return b
}

func curveFromParams(der []byte) (Curve, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(der, &oid); err != nil {
		return 0, errors.New("hsmpool: EC parameters are not a named curve")
	}
	return curveFromOID(oid)
}

func curveFromOID(oid asn1.ObjectIdentifier) (Curve, error) {
	switch {
	case oid.Equal(oidP256):
		return P256, nil
	case oid.Equal(oidBrainpool):
		return BrainpoolP256r1, nil
	}
	return 0, fmt.Errorf("hsmpool: unsupported curve OID %s", oid)
}

// Elliptic returns the curve as a crypto/elliptic curve (brainpool through
// github.com/ProtonMail/go-crypto/brainpool, usable with crypto/ecdsa's
// generic path for verification).
func (c Curve) Elliptic() elliptic.Curve {
	if c == BrainpoolP256r1 {
		return brainpool.P256r1()
	}
	return elliptic.P256()
}

// checkPoint verifies that p is an uncompressed point (04||X||Y, 65 bytes)
// on curve c and not the point at infinity. It never trusts the HSM to do so.
func (c Curve) checkPoint(p []byte) error {
	if len(p) != 65 || p[0] != 4 {
		return ErrBadPoint
	}
	switch c {
	case P256:
		if _, err := ecdh.P256().NewPublicKey(p); err != nil {
			return ErrBadPoint
		}
		return nil
	case BrainpoolP256r1:
		cv := brainpool.P256r1()
		x := new(big.Int).SetBytes(p[1:33])
		y := new(big.Int).SetBytes(p[33:])
		pp := cv.Params().P
		if x.Cmp(pp) >= 0 || y.Cmp(pp) >= 0 || !cv.IsOnCurve(x, y) {
			return ErrBadPoint
		}
		return nil
	}
	return ErrUnknownCurve
}

// PublicKeyECDSA converts an uncompressed point on c into an *ecdsa.PublicKey
// (for verification with crypto/ecdsa).
func PublicKeyECDSA(c Curve, point []byte) (*ecdsa.PublicKey, error) {
	if err := c.checkPoint(point); err != nil {
		return nil, err
	}
	return &ecdsa.PublicKey{
		Curve: c.Elliptic(),
		X:     new(big.Int).SetBytes(point[1:33]),
		Y:     new(big.Int).SetBytes(point[33:]),
	}, nil
}

// ecPrivate is a parsed EC private key: curve, 32-byte scalar, public point.
type ecPrivate struct {
	curve Curve
	d     []byte // 32 bytes, big-endian; zero after use
	point []byte // 65 bytes uncompressed
}

func (k *ecPrivate) zero() { clear(k.d) }

// sec1Key is RFC 5915 ECPrivateKey.
type sec1Key struct {
	Version    int
	PrivateKey []byte
	Params     asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

type pkcs8Key struct {
	Version    int
	Algo       struct{ Algorithm, Params asn1.ObjectIdentifier }
	PrivateKey []byte
}

// parseECPrivateKeyPEM parses a SEC1 ("EC PRIVATE KEY") or PKCS#8
// ("PRIVATE KEY") EC key on P-256 or brainpoolP256r1, as the SGP.26 files
// are. crypto/x509 cannot parse brainpool keys, hence the hand parser. Errors
// never include key material.
func parseECPrivateKeyPEM(data []byte) (*ecPrivate, error) {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, errors.New("hsmpool: no EC private key in PEM data")
		}
		switch blk.Type {
		case "EC PRIVATE KEY":
			k, err := parseSEC1(blk.Bytes, nil)
			clear(blk.Bytes)
			return k, err
		case "PRIVATE KEY":
			var p8 pkcs8Key
			if _, err := asn1.Unmarshal(blk.Bytes, &p8); err != nil || !p8.Algo.Algorithm.Equal(oidECPublic) {
				return nil, errors.New("hsmpool: PKCS#8 key is not an EC key")
			}
			k, err := parseSEC1(p8.PrivateKey, p8.Algo.Params)
			clear(blk.Bytes)
			return k, err
		}
	}
}

func parseSEC1(der []byte, oid asn1.ObjectIdentifier) (*ecPrivate, error) {
	var k sec1Key
	if _, err := asn1.Unmarshal(der, &k); err != nil || k.Version != 1 {
		return nil, errors.New("hsmpool: malformed EC private key")
	}
	if len(k.Params) > 0 {
		oid = k.Params
	}
	c, err := curveFromOID(oid)
	if err != nil {
		return nil, err
	}
	if len(k.PrivateKey) > 32 {
		return nil, errors.New("hsmpool: EC private key too long")
	}
	d := make([]byte, 32)
	copy(d[32-len(k.PrivateKey):], k.PrivateKey)
	clear(k.PrivateKey)
	x, y := c.Elliptic().ScalarBaseMult(d)
	point := elliptic.Marshal(c.Elliptic(), x, y) //nolint:staticcheck // generic curve encoding
	if len(k.PublicKey.Bytes) > 0 && string(k.PublicKey.Bytes) != string(point) {
		clear(d)
		return nil, errors.New("hsmpool: EC private key does not match its public key")
	}
	return &ecPrivate{curve: c, d: d, point: point}, nil
}

// PublicKeyFromPEM returns the curve and uncompressed point of a PEM public
// key (SubjectPublicKeyInfo) or private key, for P-256 and brainpoolP256r1.
func PublicKeyFromPEM(data []byte) (Curve, []byte, error) {
	blk, _ := pem.Decode(data)
	if blk == nil {
		return 0, nil, errors.New("hsmpool: no PEM block")
	}
	if blk.Type == "PUBLIC KEY" {
		var spki struct {
			Algo struct{ Algorithm, Params asn1.ObjectIdentifier }
			Key  asn1.BitString
		}
		if _, err := asn1.Unmarshal(blk.Bytes, &spki); err != nil {
			return 0, nil, errors.New("hsmpool: malformed public key")
		}
		c, err := curveFromOID(spki.Algo.Params)
		if err != nil {
			return 0, nil, err
		}
		return c, spki.Key.Bytes, c.checkPoint(spki.Key.Bytes)
	}
	k, err := parseECPrivateKeyPEM(data)
	if err != nil {
		return 0, nil, err
	}
	k.zero()
	return k.curve, k.point, nil
}
