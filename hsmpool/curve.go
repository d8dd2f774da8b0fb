package hsmpool

import (
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

// ecPrivate is a parsed EC private key as the backends import it (the PEM
// parsing is esim's, shared with bpp and the SM-DP+).
type ecPrivate = esim.ECPrivateKey

// PublicKeyFromPEM returns the curve and uncompressed point of a PEM public
// key (SubjectPublicKeyInfo) or private key, for P-256 and brainpoolP256r1.
func PublicKeyFromPEM(data []byte) (esim.Curve, []byte, error) {
	if blk, _ := pem.Decode(data); blk != nil && blk.Type == "PUBLIC KEY" {
		pub, err := esim.ParsePublicKeyDER(blk.Bytes)
		if err != nil {
			return 0, nil, keyErr(err)
		}
		return esim.PointOf(pub)
	}
	k, err := esim.ParseECPrivateKeyPEM(data)
	if err != nil {
		return 0, nil, keyErr(err)
	}
	k.Zero()
	return k.Curve, k.Point, nil
}

// keyErr wraps a key-parsing error, adding ErrUnknownCurve for a key on
// neither SGP.22 curve (callers test for it).
func keyErr(err error) error {
	if errors.Is(err, esim.ErrUnknown) {
		return fmt.Errorf("hsmpool: %w: %w", ErrUnknownCurve, err)
	}
	return fmt.Errorf("hsmpool: %w", err)
}
