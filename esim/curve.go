package esim

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"math/big"
	"strconv"

	"github.com/ProtonMail/go-crypto/brainpool"
)

// Curve is one of the two elliptic curves SGP.22 allows for the SM-DP+ and
// eUICC keys (CERT.DPpb, CERT.DPauth, the ECKA one-time keys). The zero
// value, CurveUnset, means "not set".
type Curve uint8

// Curves.
const (
	CurveUnset           Curve = 0
	CurveP256            Curve = 1 // NIST P-256 (secp256r1, prime256v1), SGP.26 "NIST"
	CurveBrainpoolP256r1 Curve = 2 // brainpoolP256r1 (RFC 5639), SGP.26 "BRP"
)

// PointSize is the size of an uncompressed point on either curve (04||X||Y).
const PointSize = 65

// Object identifiers of the curves (the namedCurve of SGP.22 certificates
// and the PKCS#11 CKA_EC_PARAMS).
var (
	oidP256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidBrainpool = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}
)

// String returns the curve's conventional name: "P-256" or
// "brainpoolP256r1" ("unset" for the zero value).
func (c Curve) String() string {
	switch c {
	case CurveUnset:
		return "unset"
	case CurveP256:
		return "P-256"
	case CurveBrainpoolP256r1:
		return "brainpoolP256r1"
	}
	return "curve(" + strconv.Itoa(int(c)) + ")"
}

// SGP26Name is the curve's name in the SGP.26 test PKI file names: "NIST"
// or "BRP".
func (c Curve) SGP26Name() string {
	switch c {
	case CurveP256:
		return "NIST"
	case CurveBrainpoolP256r1:
		return "BRP"
	}
	return ""
}

// ParseCurve accepts "P-256", "p256", "P256", "nist", "secp256r1",
// "prime256v1", "brainpoolP256r1", "brp" and "brainpool" (names in either
// case, as SGP.26 writes NIST/BRP).
func ParseCurve(s string) (Curve, error) {
	switch s {
	case "P-256", "p256", "P256", "nist", "NIST", "secp256r1", "prime256v1":
		return CurveP256, nil
	case "brainpoolP256r1", "brp", "BRP", "brainpool":
		return CurveBrainpoolP256r1, nil
	case "":
		return CurveUnset, valueErr("curve", ErrMissing, "missing: want P-256 or brainpoolP256r1")
	}
	return CurveUnset, valueErr("curve", ErrUnknown, "unknown: want P-256 or brainpoolP256r1")
}

// OID returns the namedCurve object identifier (nil for an unknown curve).
func (c Curve) OID() asn1.ObjectIdentifier {
	switch c {
	case CurveP256:
		return append(asn1.ObjectIdentifier(nil), oidP256...)
	case CurveBrainpoolP256r1:
		return append(asn1.ObjectIdentifier(nil), oidBrainpool...)
	}
	return nil
}

// CurveFromOID maps a namedCurve object identifier to its curve.
func CurveFromOID(oid asn1.ObjectIdentifier) (Curve, error) {
	switch {
	case oid.Equal(oidP256):
		return CurveP256, nil
	case oid.Equal(oidBrainpool):
		return CurveBrainpoolP256r1, nil
	}
	return CurveUnset, valueErr("curve", ErrUnknown, "unsupported named curve "+oid.String()+", want P-256 or brainpoolP256r1")
}

// Elliptic returns the curve as a crypto/elliptic curve, nil for an unknown
// one. The brainpool curve is github.com/ProtonMail/go-crypto/brainpool's,
// which runs on math/big: variable time, fine for verification, tests and
// development, not for production private-key operations (those belong in
// the HSM).
func (c Curve) Elliptic() elliptic.Curve {
	switch c {
	case CurveP256:
		return elliptic.P256()
	case CurveBrainpoolP256r1:
		return brainpool.P256r1()
	}
	return nil
}

// CurveOf maps a crypto/elliptic curve back to its Curve.
func CurveOf(ec elliptic.Curve) (Curve, error) {
	if ec == nil {
		return CurveUnset, valueErr("curve", ErrMissing, "missing")
	}
	switch ec.Params().Name {
	case elliptic.P256().Params().Name:
		return CurveP256, nil
	case brainpool.P256r1().Params().Name:
		return CurveBrainpoolP256r1, nil
	}
	return CurveUnset, valueErr("curve", ErrUnknown, "unsupported curve "+ec.Params().Name+", want P-256 or brainpoolP256r1")
}

// CheckPoint verifies that p is an uncompressed point (04||X||Y, 65 bytes)
// with coordinates below the field prime, on the curve, and not the point
// at infinity. Peer keys are always checked before use.
func (c Curve) CheckPoint(p []byte) error {
	_, _, err := c.point(p)
	return err
}

func (c Curve) point(p []byte) (x, y *big.Int, err error) {
	if len(p) != PointSize || p[0] != 4 {
		return nil, nil, &ValueError{What: "point", Reason: "not a 65-byte uncompressed point", Err: ErrPoint}
	}
	switch c {
	case CurveP256:
		// crypto/ecdh checks the encoding, range and curve equation in
		// constant time.
		if _, err := ecdh.P256().NewPublicKey(p); err != nil {
			return nil, nil, &ValueError{What: "point", Reason: "not on P-256", Err: ErrPoint}
		}
	case CurveBrainpoolP256r1:
	default:
		return nil, nil, valueErr("curve", ErrUnknown, "unknown curve "+c.String())
	}
	ec := c.Elliptic()
	x = new(big.Int).SetBytes(p[1:33])
	y = new(big.Int).SetBytes(p[33:])
	prime := ec.Params().P
	if x.Cmp(prime) >= 0 || y.Cmp(prime) >= 0 || !ec.IsOnCurve(x, y) {
		return nil, nil, &ValueError{What: "point", Reason: "not on " + c.String(), Err: ErrPoint}
	}
	return x, y, nil
}

// PublicKey builds an ECDSA public key (for verification with crypto/ecdsa)
// from an uncompressed point, after CheckPoint.
func (c Curve) PublicKey(point []byte) (*ecdsa.PublicKey, error) {
	x, y, err := c.point(point)
	if err != nil {
		return nil, err
	}
	return &ecdsa.PublicKey{Curve: c.Elliptic(), X: x, Y: y}, nil
}
