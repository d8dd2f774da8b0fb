package euiccsim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
)

// The RSP certificates are read here by hand: crypto/x509 refuses every
// brainpoolP256r1 certificate ("unsupported elliptic curve"), and its
// Verify rejects the SGP.26 EUM's directoryName name constraints. The eUICC
// needs only what SGP.22 makes it check on the SM-DP+'s certificates: the
// signature by the CI, validity, AKI/SKI, certificatePolicies (the role) and
// the subjectAltName registeredID (the SM-DP+ OID it signs into PIRs and
// cancellations).

// Certificate-role policies (id-rspRole, 2.23.146.1.2.1.x).
var (
	oidRoleEUM    = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 2}
	oidRoleDPauth = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 4}
	oidRoleDPpb   = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 5}
)

var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSerialNumber    = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidExtSKI          = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtSAN          = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtPolicies     = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidExtAKI          = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// errCertificate is wrapped by every certificate parse or chain failure;
// errUnsupportedCurve too when the key is on neither SGP.22 curve.
var (
	errCertificate      = errors.New("invalid certificate")
	errUnsupportedCurve = errors.New("unsupported curve")
)

// certificate is the part of an RSP X.509 certificate the eUICC acts on.
type certificate struct {
	Raw       []byte
	TBS       []byte // the TBSCertificate element: what the issuer signed
	Signature []byte // DER ECDSA-Sig-Value from the signatureValue BIT STRING
	NotBefore time.Time
	NotAfter  time.Time
	Subject   []byte // raw Name
	Issuer    []byte // raw Name
	// SerialNumberAttr is the subject's serialNumber attribute (the EID in
	// an eUICC certificate), "" when absent.
	SerialNumberAttr string
	Curve            esim.Curve
	Public           *ecdsa.PublicKey
	SKI, AKI         []byte
	Policies         []asn1.ObjectIdentifier
	RegisteredID     asn1.ObjectIdentifier // subjectAltName registeredID, nil when absent
}

func certErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCertificate, fmt.Sprintf(format, args...))
}

// parseCertificate reads one DER certificate with an EC key on P-256 or
// brainpoolP256r1 signed with ecdsa-with-SHA256.
func parseCertificate(der []byte) (*certificate, error) {
	c := &certificate{Raw: der}
	in := cryptobyte.String(der)
	var cert, tbs, sigAlg cryptobyte.String
	var sigBits asn1.BitString
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, certErr("not one DER SEQUENCE")
	}
	var tbsRaw cryptobyte.String
	if !cert.ReadASN1Element(&tbsRaw, cbasn1.SEQUENCE) ||
		!cert.ReadASN1(&sigAlg, cbasn1.SEQUENCE) ||
		!cert.ReadASN1BitString(&sigBits) || !cert.Empty() {
		return nil, certErr("malformed Certificate")
	}
	c.TBS = tbsRaw
	if err := checkAlgorithm(sigAlg); err != nil {
		return nil, err
	}
	if sigBits.BitLength%8 != 0 {
		return nil, certErr("signatureValue is not whole octets")
	}
	c.Signature = sigBits.Bytes
	if !tbsRaw.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, certErr("malformed TBSCertificate")
	}
	var version, serial, alg, issuer, validity, subject, spki cryptobyte.String
	if !tbs.ReadOptionalASN1(&version, nil, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.ReadASN1(&serial, cbasn1.INTEGER) ||
		!tbs.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&validity, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, certErr("malformed TBSCertificate")
	}
	if err := checkAlgorithm(alg); err != nil {
		return nil, err
	}
	c.Issuer, c.Subject = issuer, subject
	var err error
	if c.NotBefore, err = readTime(&validity); err != nil {
		return nil, err
	}
	if c.NotAfter, err = readTime(&validity); err != nil {
		return nil, err
	}
	if c.SerialNumberAttr, err = serialNumberAttr(subject); err != nil {
		return nil, err
	}
	if c.Public, err = bpp.ParsePublicKeyDER(spki); err != nil {
		if errors.Is(err, esim.ErrUnknown) {
			return nil, fmt.Errorf("%w: %w: %v", errCertificate, errUnsupportedCurve, err)
		}
		return nil, certErr("subjectPublicKeyInfo: %v", err)
	}
	if c.Curve, err = esim.CurveOf(c.Public.Curve); err != nil {
		return nil, certErr("%v", err)
	}
	// issuerUniqueID [1], subjectUniqueID [2] are skipped; extensions [3].
	for !tbs.Empty() {
		var ext cryptobyte.String
		var tag cbasn1.Tag
		if !tbs.ReadAnyASN1(&ext, &tag) {
			return nil, certErr("malformed TBSCertificate trailer")
		}
		if tag != cbasn1.Tag(3).Constructed().ContextSpecific() {
			continue
		}
		if err := c.parseExtensions(ext); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func checkAlgorithm(alg cryptobyte.String) error {
	var oid asn1.ObjectIdentifier
	if !alg.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidECDSAWithSHA256) {
		return certErr("signature algorithm is not ecdsa-with-SHA256")
	}
	return nil
}

// readTime reads a UTCTime or a GeneralizedTime (the SGP.26 eUICC
// certificates expire in year 7496).
func readTime(s *cryptobyte.String) (time.Time, error) {
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		if !s.ReadASN1UTCTime(&t) {
			return t, certErr("malformed UTCTime")
		}
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		if !s.ReadASN1GeneralizedTime(&t) {
			return t, certErr("malformed GeneralizedTime")
		}
	default:
		return t, certErr("validity is not a time")
	}
	return t, nil
}

// serialNumberAttr returns the serialNumber attribute of a Name element.
func serialNumberAttr(name cryptobyte.String) (string, error) {
	var rdns cryptobyte.String
	if !name.ReadASN1(&rdns, cbasn1.SEQUENCE) {
		return "", certErr("malformed Name")
	}
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) {
			return "", certErr("malformed RelativeDistinguishedName")
		}
		for !set.Empty() {
			var atv cryptobyte.String
			var oid asn1.ObjectIdentifier
			var val cryptobyte.String
			var tag cbasn1.Tag
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&oid) || !atv.ReadAnyASN1(&val, &tag) {
				return "", certErr("malformed AttributeTypeAndValue")
			}
			if oid.Equal(oidSerialNumber) {
				return string(val), nil
			}
		}
	}
	return "", nil
}

func (c *certificate) parseExtensions(ext cryptobyte.String) error {
	var exts cryptobyte.String
	if !ext.ReadASN1(&exts, cbasn1.SEQUENCE) || !ext.Empty() {
		return certErr("malformed extensions")
	}
	for !exts.Empty() {
		var e cryptobyte.String
		var oid asn1.ObjectIdentifier
		var val cryptobyte.String
		if !exts.ReadASN1(&e, cbasn1.SEQUENCE) || !e.ReadASN1ObjectIdentifier(&oid) ||
			!e.SkipOptionalASN1(cbasn1.BOOLEAN) || !e.ReadASN1(&val, cbasn1.OCTET_STRING) || !e.Empty() {
			return certErr("malformed extension")
		}
		var ok bool
		switch {
		case oid.Equal(oidExtSKI):
			var ski cryptobyte.String
			ok = val.ReadASN1(&ski, cbasn1.OCTET_STRING)
			c.SKI = ski
		case oid.Equal(oidExtAKI):
			var seq, kid cryptobyte.String
			ok = val.ReadASN1(&seq, cbasn1.SEQUENCE) &&
				seq.ReadOptionalASN1(&kid, nil, cbasn1.Tag(0).ContextSpecific())
			c.AKI = kid
		case oid.Equal(oidExtPolicies):
			var seq cryptobyte.String
			ok = val.ReadASN1(&seq, cbasn1.SEQUENCE)
			for ok && !seq.Empty() {
				var pi cryptobyte.String
				var p asn1.ObjectIdentifier
				ok = seq.ReadASN1(&pi, cbasn1.SEQUENCE) && pi.ReadASN1ObjectIdentifier(&p)
				c.Policies = append(c.Policies, p)
			}
		case oid.Equal(oidExtSAN):
			var seq cryptobyte.String
			ok = val.ReadASN1(&seq, cbasn1.SEQUENCE)
			for ok && !seq.Empty() {
				var gn cryptobyte.String
				var tag cbasn1.Tag
				if ok = seq.ReadAnyASN1(&gn, &tag); ok && tag == cbasn1.Tag(8).ContextSpecific() {
					// registeredID [8] IMPLICIT OBJECT IDENTIFIER: re-tag to parse.
					b := cryptobyte.String(append([]byte{0x06, byte(len(gn))}, gn...))
					var rid asn1.ObjectIdentifier
					if len(gn) > 127 || !b.ReadASN1ObjectIdentifier(&rid) {
						return certErr("malformed subjectAltName registeredID")
					}
					c.RegisteredID = rid
				}
			}
		default:
			ok = true
		}
		if !ok {
			return certErr("malformed extension %v", oid)
		}
	}
	return nil
}

func (c *certificate) hasPolicy(oid asn1.ObjectIdentifier) bool {
	for _, p := range c.Policies {
		if p.Equal(oid) {
			return true
		}
	}
	return false
}

// checkSignedBy verifies that issuer signed c: the AKI names the issuer's
// SKI, the issuer Name matches, and the ECDSA signature over the
// TBSCertificate verifies with the issuer's key.
func (c *certificate) checkSignedBy(issuer *certificate) error {
	if len(c.AKI) == 0 {
		return certErr("no authorityKeyIdentifier")
	}
	if !bytes.Equal(c.AKI, issuer.SKI) {
		return certErr("authorityKeyIdentifier %X is not the issuer's %X", c.AKI, issuer.SKI)
	}
	if !bytes.Equal(c.Issuer, issuer.Subject) {
		return certErr("issuer name differs from the issuer's subject")
	}
	r, s, ok := parseECDSASig(c.Signature)
	if !ok {
		return certErr("malformed ECDSA signature")
	}
	digest := sha256.Sum256(c.TBS)
	if !bpp.VerifySignature(issuer.Public, digest[:], append(r, s...)) {
		return certErr("signature does not verify with the issuer's key")
	}
	return nil
}

// checkValidAt refuses a certificate outside its validity period.
func (c *certificate) checkValidAt(now time.Time) error {
	if now.Before(c.NotBefore) {
		return certErr("not valid before %s", c.NotBefore.Format(time.DateOnly))
	}
	if now.After(c.NotAfter) {
		return certErr("expired on %s", c.NotAfter.Format(time.DateOnly))
	}
	return nil
}

// parseECDSASig returns r and s of a DER ECDSA-Sig-Value, each as 32
// big-endian bytes.
func parseECDSASig(der []byte) (r, s []byte, ok bool) {
	in := cryptobyte.String(der)
	var seq, ri, si cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&ri, cbasn1.INTEGER) || !seq.ReadASN1(&si, cbasn1.INTEGER) || !seq.Empty() {
		return nil, nil, false
	}
	r, ok1 := fixed32(ri)
	s, ok2 := fixed32(si)
	return r, s, ok1 && ok2
}

func fixed32(b []byte) ([]byte, bool) {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) > 32 {
		return nil, false
	}
	out := make([]byte, 32)
	copy(out[32-len(b):], b)
	return out, true
}
