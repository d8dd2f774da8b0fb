package hsmpool

import (
	"crypto/elliptic"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/perso-esim/perso/esim"
)

// The pool's curves are esim.Curve (NIST P-256 and brainpoolP256r1): their
// names, OIDs and point checks live there. What is the pool's own is how a
// curve appears in PKCS#11 (CKA_EC_PARAMS) and in key labels.

// oidECPublic is id-ecPublicKey, the algorithm of PKCS#8 and SPKI EC keys.
var oidECPublic = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}

// labelSuffix is the label suffix of keys on c ("nist" or "brp"), after the
// SGP.26 file names.
func labelSuffix(c esim.Curve) string {
	if n := c.SGP26Name(); n != "" {
		return strings.ToLower(n)
	}
	return "unknown"
}

// ecParams is the DER encoding of the curve OID, as PKCS#11 CKA_EC_PARAMS wants it.
func ecParams(c esim.Curve) []byte {
	b, _ := asn1.Marshal(c.OID())
	return b
}

func curveFromParams(der []byte) (esim.Curve, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(der, &oid); err != nil {
		return esim.CurveUnset, errors.New("hsmpool: EC parameters are not a named curve")
	}
	return curveFromOID(oid)
}

func curveFromOID(oid asn1.ObjectIdentifier) (esim.Curve, error) {
	c, err := esim.CurveFromOID(oid)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrUnknownCurve, err)
	}
	return c, nil
}

// checkPoint verifies that p is an uncompressed point on c and not the
// point at infinity (esim's check). It never trusts the HSM to do so.
func checkPoint(c esim.Curve, p []byte) error {
	if c.Elliptic() == nil {
		return ErrUnknownCurve
	}
	if err := c.CheckPoint(p); err != nil {
		return ErrBadPoint
	}
	return nil
}

// ecPrivate is a parsed EC private key: curve, 32-byte scalar, public point.
type ecPrivate struct {
	curve esim.Curve
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
func PublicKeyFromPEM(data []byte) (esim.Curve, []byte, error) {
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
		return c, spki.Key.Bytes, checkPoint(c, spki.Key.Bytes)
	}
	k, err := parseECPrivateKeyPEM(data)
	if err != nil {
		return 0, nil, err
	}
	k.zero()
	return k.curve, k.point, nil
}
