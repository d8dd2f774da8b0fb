package esim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
)

// EC keys of the SGP.26 test PKI and of operators' key files, read by hand:
// crypto/x509 refuses every brainpoolP256r1 key ("unsupported elliptic
// curve"). bpp, hsmpool, smdp and euiccsim all read their keys here. Errors
// never carry key material.

// oidECPublicKey is id-ecPublicKey, the algorithm of PKCS#8 and SPKI EC keys.
var oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}

// sec1Key is RFC 5915 ECPrivateKey.
type sec1Key struct {
	Version    int
	PrivateKey []byte
	Params     asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

type algorithmIdentifier struct {
	Algorithm asn1.ObjectIdentifier
	Params    asn1.ObjectIdentifier `asn1:"optional"`
}

// pkcs8Key is RFC 5208 PrivateKeyInfo (attributes, if any, are refused).
type pkcs8Key struct {
	Version    int
	Algo       algorithmIdentifier
	PrivateKey []byte
}

type subjectPublicKeyInfo struct {
	Algo      algorithmIdentifier
	PublicKey asn1.BitString
}

// ECPrivateKey is a parsed EC private key on P-256 or brainpoolP256r1.
// The scalar is a plain byte slice so that its holder can wipe it (Zero);
// an *ecdsa.PrivateKey's big.Int cannot be wiped reliably.
type ECPrivateKey struct {
	Curve Curve
	D     []byte // 32 bytes, big-endian
	Point []byte // 65 bytes, uncompressed: the public key
}

// Zero wipes the scalar.
func (k *ECPrivateKey) Zero() { clear(k.D) }

// ECDSA returns the key as a crypto/ecdsa key (software signing, tests).
func (k *ECPrivateKey) ECDSA() *ecdsa.PrivateKey {
	pub, _ := k.Curve.PublicKey(k.Point) // checked when parsed
	return &ecdsa.PrivateKey{PublicKey: *pub, D: new(big.Int).SetBytes(k.D)}
}

// ParseECPrivateKeyPEM reads the first EC private key of a PEM file: SEC1
// ("EC PRIVATE KEY", as in the SGP.26 SK_*.pem files; an "EC PARAMETERS"
// block before it is skipped) or PKCS#8 ("PRIVATE KEY"). The PEM block's
// bytes are wiped after parsing.
func ParseECPrivateKeyPEM(data []byte) (*ECPrivateKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, valueErr("private key", ErrMissing, "no EC PRIVATE KEY or PRIVATE KEY block in the PEM data")
		}
		switch b.Type {
		case "EC PRIVATE KEY":
			k, err := parseSEC1(b.Bytes, nil)
			clear(b.Bytes)
			return k, err
		case "PRIVATE KEY":
			var p8 pkcs8Key
			rest, err := asn1.Unmarshal(b.Bytes, &p8)
			if err != nil || len(rest) != 0 {
				clear(b.Bytes)
				return nil, valueErr("private key", ErrSyntax, "malformed PKCS#8 PrivateKeyInfo")
			}
			if !p8.Algo.Algorithm.Equal(oidECPublicKey) {
				clear(b.Bytes)
				return nil, valueErr("private key", ErrUnknown, "PKCS#8 key is not an EC key")
			}
			k, err := parseSEC1(p8.PrivateKey, p8.Algo.Params)
			clear(p8.PrivateKey)
			clear(b.Bytes)
			return k, err
		}
	}
}

// ParsePrivateKeyPEM is ParseECPrivateKeyPEM returning a crypto/ecdsa key.
func ParsePrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	k, err := ParseECPrivateKeyPEM(data)
	if err != nil {
		return nil, err
	}
	defer k.Zero()
	return k.ECDSA(), nil
}

// parseSEC1 reads an RFC 5915 key; outer is the PKCS#8 algorithm's curve,
// used when the SEC1 structure names none.
func parseSEC1(der []byte, outer asn1.ObjectIdentifier) (*ECPrivateKey, error) {
	var k sec1Key
	rest, err := asn1.Unmarshal(der, &k)
	if err != nil || len(rest) != 0 || k.Version != 1 {
		clear(k.PrivateKey)
		return nil, valueErr("private key", ErrSyntax, "malformed SEC1 ECPrivateKey")
	}
	defer clear(k.PrivateKey)
	oid := k.Params
	if len(oid) == 0 {
		oid = outer
	}
	c, err := CurveFromOID(oid)
	if err != nil {
		return nil, err
	}
	if len(k.PrivateKey) > 32 {
		return nil, valueErr("private key", ErrLength, "EC private scalar longer than 32 bytes")
	}
	ec := c.Elliptic()
	d := make([]byte, 32)
	copy(d[32-len(k.PrivateKey):], k.PrivateKey)
	if n := new(big.Int).SetBytes(d); n.Sign() <= 0 || n.Cmp(ec.Params().N) >= 0 {
		clear(d)
		return nil, valueErr("private key", ErrSyntax, "EC private scalar out of range")
	}
	x, y := ec.ScalarBaseMult(d)
	point := elliptic.Marshal(ec, x, y) //nolint:staticcheck // generic encoding, brainpool included
	if len(k.PublicKey.Bytes) > 0 && string(k.PublicKey.Bytes) != string(point) {
		clear(d)
		return nil, valueErr("private key", ErrPoint, "EC private key does not match its embedded public key")
	}
	return &ECPrivateKey{Curve: c, D: d, Point: point}, nil
}

// ParsePublicKeyPEM reads the first "PUBLIC KEY" (SubjectPublicKeyInfo)
// block of a PEM file.
func ParsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, valueErr("public key", ErrMissing, "no PUBLIC KEY block in the PEM data")
		}
		if b.Type == "PUBLIC KEY" {
			return ParsePublicKeyDER(b.Bytes)
		}
	}
}

// ParsePublicKeyDER parses a DER SubjectPublicKeyInfo holding a P-256 or
// brainpoolP256r1 key; the point is checked (CheckPoint). An unsupported
// curve wraps ErrUnknown.
func ParsePublicKeyDER(der []byte) (*ecdsa.PublicKey, error) {
	var k subjectPublicKeyInfo
	if rest, err := asn1.Unmarshal(der, &k); err != nil || len(rest) != 0 {
		return nil, valueErr("public key", ErrSyntax, "malformed SubjectPublicKeyInfo")
	}
	if !k.Algo.Algorithm.Equal(oidECPublicKey) {
		return nil, valueErr("public key", ErrUnknown, "SubjectPublicKeyInfo is not an EC key")
	}
	c, err := CurveFromOID(k.Algo.Params)
	if err != nil {
		return nil, err
	}
	if k.PublicKey.BitLength%8 != 0 {
		return nil, valueErr("public key", ErrSyntax, "subjectPublicKey is not whole octets")
	}
	return c.PublicKey(k.PublicKey.Bytes)
}

// PointOf returns the uncompressed point of a P-256 or brainpoolP256r1
// public key and its curve.
func PointOf(pub *ecdsa.PublicKey) (Curve, []byte, error) {
	if pub == nil {
		return CurveUnset, nil, valueErr("public key", ErrMissing, "missing")
	}
	c, err := CurveOf(pub.Curve)
	if err != nil {
		return c, nil, err
	}
	p := make([]byte, PointSize)
	p[0] = 4
	pub.X.FillBytes(p[1:33])
	pub.Y.FillBytes(p[33:])
	return c, p, nil
}
