package smdp

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

	"github.com/perso-esim/perso/esim"
)

// Certificate is the part of an RSP X.509 certificate the SM-DP+ checks,
// parsed by hand: crypto/x509 refuses every brainpoolP256r1 certificate
// ("unsupported elliptic curve"), and its Verify refuses the EUM's critical
// nameConstraints (a GSMA EID-prefix rule, not an X.509 subtree match)
// (sgp22-saip.md §8).
type Certificate struct {
	Raw       []byte
	TBS       []byte // the TBSCertificate element: what the issuer signed
	Signature []byte // DER ECDSA-Sig-Value (certificates use DER, not r‖s)

	NotBefore, NotAfter time.Time

	SubjectSerialNumber string // the EID on an eUICC certificate
	SubjectO            string

	Curve     esim.Curve
	PublicKey *ecdsa.PublicKey

	SKI, AKI []byte
	Policies []asn1.ObjectIdentifier
	// KeyUsage bits as in X.509 (digitalSignature 0 … keyCertSign 5);
	// hasKeyUsage is false when the extension is absent.
	KeyUsage      uint16
	HasKeyUsage   bool
	IsCA          bool
	MaxPathLen    int // -1 when absent
	RegisteredIDs []asn1.ObjectIdentifier
	// PermittedEIDPrefixes: serialNumber attributes of the nameConstraints'
	// permitted directoryName subtrees (EUM variant O), plus the prefixes
	// of the GSMA extension 2.23.146.1.2.2.0 (newer variants).
	PermittedEIDPrefixes []string
	HasNameConstraints   bool
}

// RSP role policies (SGP.22 §4.5.2.1; sgp22-saip.md §5).
var (
	PolicyCI     = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 0}
	PolicyEUICC  = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 1}
	PolicyEUM    = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 2}
	PolicyDPTLS  = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 3}
	PolicyDPauth = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 4}
	PolicyDPpb   = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 1, 5}

	oidEIDPermittedList = asn1.ObjectIdentifier{2, 23, 146, 1, 2, 2, 0}
	oidECPublicKey      = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSerialNumber     = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidOrganization     = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidSKI              = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidPolicies         = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidAKI              = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// ErrCertificate is wrapped by every certificate parsing error.
var ErrCertificate = errors.New("smdp: malformed certificate")

func certErr(what string) error { return fmt.Errorf("%w: %s", ErrCertificate, what) }

// ParseCertificate parses a DER X.509 certificate with an EC key on P-256
// or brainpoolP256r1.
func ParseCertificate(der []byte) (*Certificate, error) {
	c := &Certificate{Raw: der, MaxPathLen: -1}
	in := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, certErr("not one DER SEQUENCE")
	}
	var tbsRaw cryptobyte.String
	if !cert.ReadASN1Element(&tbsRaw, cbasn1.SEQUENCE) {
		return nil, certErr("no TBSCertificate")
	}
	c.TBS = tbsRaw
	if !tbsRaw.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, certErr("TBSCertificate")
	}
	var sigAlg cryptobyte.String
	var alg asn1.ObjectIdentifier
	if !cert.ReadASN1(&sigAlg, cbasn1.SEQUENCE) || !sigAlg.ReadASN1ObjectIdentifier(&alg) {
		return nil, certErr("signatureAlgorithm")
	}
	if !alg.Equal(oidECDSAWithSHA256) {
		return nil, certErr("signature algorithm is not ecdsa-with-SHA256")
	}
	var sigBits asn1.BitString
	if !cert.ReadASN1BitString(&sigBits) || sigBits.BitLength%8 != 0 || !cert.Empty() {
		return nil, certErr("signatureValue")
	}
	c.Signature = sigBits.Bytes

	var skip cryptobyte.String
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.ReadASN1(&skip, cbasn1.INTEGER) || // serialNumber (may exceed int64)
		!tbs.ReadASN1(&skip, cbasn1.SEQUENCE) || // signature
		!tbs.ReadASN1(&skip, cbasn1.SEQUENCE) { // issuer
		return nil, certErr("TBSCertificate header")
	}
	var validity cryptobyte.String
	if !tbs.ReadASN1(&validity, cbasn1.SEQUENCE) {
		return nil, certErr("validity")
	}
	var err error
	if c.NotBefore, err = readTime(&validity); err != nil {
		return nil, err
	}
	if c.NotAfter, err = readTime(&validity); err != nil {
		return nil, err
	}
	var subject cryptobyte.String
	if !tbs.ReadASN1(&subject, cbasn1.SEQUENCE) {
		return nil, certErr("subject")
	}
	attrs, err := nameAttributes(subject)
	if err != nil {
		return nil, err
	}
	for _, a := range attrs {
		switch {
		case a.oid.Equal(oidSerialNumber):
			c.SubjectSerialNumber = a.value
		case a.oid.Equal(oidOrganization):
			c.SubjectO = a.value
		}
	}
	if err := c.parseSPKI(&tbs); err != nil {
		return nil, err
	}
	tbs.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific())
	tbs.SkipOptionalASN1(cbasn1.Tag(2).ContextSpecific())
	var extsOuter cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&extsOuter, &hasExts, cbasn1.Tag(3).Constructed().ContextSpecific()) || !tbs.Empty() {
		return nil, certErr("TBSCertificate trailer")
	}
	if hasExts {
		var exts cryptobyte.String
		if !extsOuter.ReadASN1(&exts, cbasn1.SEQUENCE) {
			return nil, certErr("extensions")
		}
		for !exts.Empty() {
			if err := c.parseExtension(&exts); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func readTime(s *cryptobyte.String) (time.Time, error) {
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		if !s.ReadASN1UTCTime(&t) {
			return t, certErr("UTCTime")
		}
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		// The SGP.26 eUICC certificate runs to year 7496.
		if !s.ReadASN1GeneralizedTime(&t) {
			return t, certErr("GeneralizedTime")
		}
	default:
		return t, certErr("validity time")
	}
	return t, nil
}

type attribute struct {
	oid   asn1.ObjectIdentifier
	value string
}

// nameAttributes flattens a Name's RDNs. String values of any ASN.1
// string type are taken as their bytes (the attributes used here are
// PrintableString or UTF8String).
func nameAttributes(name cryptobyte.String) ([]attribute, error) {
	var out []attribute
	for !name.Empty() {
		var set cryptobyte.String
		if !name.ReadASN1(&set, cbasn1.SET) {
			return nil, certErr("Name RDN")
		}
		for !set.Empty() {
			var atv cryptobyte.String
			var a attribute
			var tag cbasn1.Tag
			var v cryptobyte.String
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&a.oid) ||
				!atv.ReadAnyASN1(&v, &tag) {
				return nil, certErr("Name attribute")
			}
			a.value = string(v)
			out = append(out, a)
		}
	}
	return out, nil
}

func (c *Certificate) parseSPKI(tbs *cryptobyte.String) error {
	var spki, algID cryptobyte.String
	var alg, curveOID asn1.ObjectIdentifier
	var point asn1.BitString
	if !tbs.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.ReadASN1(&algID, cbasn1.SEQUENCE) ||
		!algID.ReadASN1ObjectIdentifier(&alg) || !algID.ReadASN1ObjectIdentifier(&curveOID) ||
		!spki.ReadASN1BitString(&point) {
		return certErr("subjectPublicKeyInfo")
	}
	if !alg.Equal(oidECPublicKey) {
		return certErr("public key is not an EC key")
	}
	curve, err := esim.CurveFromOID(curveOID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	pub, err := curve.PublicKey(point.Bytes)
	if err != nil {
		return fmt.Errorf("%w: public key: %w", ErrCertificate, err)
	}
	c.Curve, c.PublicKey = curve, pub
	return nil
}

func (c *Certificate) parseExtension(exts *cryptobyte.String) error {
	var ext cryptobyte.String
	var oid asn1.ObjectIdentifier
	var critical bool
	var val cryptobyte.String
	if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) ||
		!readOptionalBool(&ext, &critical) || !ext.ReadASN1(&val, cbasn1.OCTET_STRING) {
		return certErr("extension")
	}
	bad := func() error { return certErr("extension " + oid.String()) }
	switch {
	case oid.Equal(oidSKI):
		var v cryptobyte.String
		if !val.ReadASN1(&v, cbasn1.OCTET_STRING) {
			return bad()
		}
		c.SKI = v
	case oid.Equal(oidAKI):
		var seq, kid cryptobyte.String
		var has bool
		if !val.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadOptionalASN1(&kid, &has, cbasn1.Tag(0).ContextSpecific()) {
			return bad()
		}
		c.AKI = kid
	case oid.Equal(oidKeyUsage):
		var bits asn1.BitString
		if !val.ReadASN1BitString(&bits) {
			return bad()
		}
		c.HasKeyUsage = true
		for i := range 9 {
			if bits.At(i) == 1 {
				c.KeyUsage |= 1 << i
			}
		}
	case oid.Equal(oidPolicies):
		var seq cryptobyte.String
		if !val.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return bad()
		}
		for !seq.Empty() {
			var pi cryptobyte.String
			var p asn1.ObjectIdentifier
			if !seq.ReadASN1(&pi, cbasn1.SEQUENCE) || !pi.ReadASN1ObjectIdentifier(&p) {
				return bad()
			}
			c.Policies = append(c.Policies, p)
		}
	case oid.Equal(oidBasicConstraints):
		var seq cryptobyte.String
		if !val.ReadASN1(&seq, cbasn1.SEQUENCE) || !readOptionalBool(&seq, &c.IsCA) {
			return bad()
		}
		if seq.PeekASN1Tag(cbasn1.INTEGER) {
			var n int
			if !seq.ReadASN1Integer(&n) {
				return bad()
			}
			c.MaxPathLen = n
		}
	case oid.Equal(oidSAN):
		var seq cryptobyte.String
		if !val.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return bad()
		}
		for !seq.Empty() {
			var gn cryptobyte.String
			var tag cbasn1.Tag
			if !seq.ReadAnyASN1(&gn, &tag) {
				return bad()
			}
			if tag == cbasn1.Tag(8).ContextSpecific() { // registeredID [8] IMPLICIT OID
				full := append([]byte{0x06, byte(len(gn))}, gn...)
				var o asn1.ObjectIdentifier
				if len(gn) > 127 {
					return bad()
				}
				if rest, err := asn1.Unmarshal(full, &o); err != nil || len(rest) != 0 {
					return bad()
				}
				c.RegisteredIDs = append(c.RegisteredIDs, o)
			}
		}
	case oid.Equal(oidNameConstraints):
		c.HasNameConstraints = true
		var seq, permitted cryptobyte.String
		var has bool
		if !val.ReadASN1(&seq, cbasn1.SEQUENCE) ||
			!seq.ReadOptionalASN1(&permitted, &has, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return bad()
		}
		for !permitted.Empty() {
			var subtree, dn, name cryptobyte.String
			var tag cbasn1.Tag
			if !permitted.ReadASN1(&subtree, cbasn1.SEQUENCE) || !subtree.ReadAnyASN1(&dn, &tag) {
				return bad()
			}
			if tag != cbasn1.Tag(4).Constructed().ContextSpecific() { // directoryName [4] EXPLICIT Name
				continue
			}
			if !dn.ReadASN1(&name, cbasn1.SEQUENCE) {
				return bad()
			}
			attrs, err := nameAttributes(name)
			if err != nil {
				return err
			}
			for _, a := range attrs {
				if a.oid.Equal(oidSerialNumber) {
					c.PermittedEIDPrefixes = append(c.PermittedEIDPrefixes, a.value)
				}
			}
		}
	case oid.Equal(oidEIDPermittedList):
		c.HasNameConstraints = true
		var seq cryptobyte.String
		if !val.ReadASN1(&seq, cbasn1.SEQUENCE) {
			return bad()
		}
		for !seq.Empty() {
			var p cryptobyte.String
			var tag cbasn1.Tag
			if !seq.ReadAnyASN1(&p, &tag) {
				return bad()
			}
			c.PermittedEIDPrefixes = append(c.PermittedEIDPrefixes, string(p))
		}
	}
	return nil
}

// readOptionalBool reads a BOOLEAN DEFAULT FALSE (cryptobyte's
// ReadOptionalASN1Boolean is for explicitly tagged ones).
func readOptionalBool(s *cryptobyte.String, out *bool) bool {
	*out = false
	if !s.PeekASN1Tag(cbasn1.BOOLEAN) {
		return true
	}
	return s.ReadASN1Boolean(out)
}

// HasPolicy reports whether the certificate carries the policy.
func (c *Certificate) HasPolicy(p asn1.ObjectIdentifier) bool {
	for _, q := range c.Policies {
		if q.Equal(p) {
			return true
		}
	}
	return false
}

// CheckSignatureFrom verifies that issuer's key signed c.
func (c *Certificate) CheckSignatureFrom(issuer *Certificate) bool {
	d := sha256.Sum256(c.TBS)
	return ecdsa.VerifyASN1(issuer.PublicKey, d[:], c.Signature)
}

// ValidAt reports whether t lies in the certificate's validity period.
func (c *Certificate) ValidAt(t time.Time) bool {
	return !t.Before(c.NotBefore) && !t.After(c.NotAfter)
}

// EIDPermitted reports whether eid starts with one of the EUM's permitted
// prefixes. An EUM without any constraint permits no EID: SGP.22 requires
// EUM certificates to name their range.
func (c *Certificate) EIDPermitted(eid string) bool {
	for _, p := range c.PermittedEIDPrefixes {
		if p != "" && len(eid) >= len(p) && eid[:len(p)] == p {
			return true
		}
	}
	return false
}

// smdpOID returns the certificate's SAN registeredID (the SM-DP+ OID).
func (c *Certificate) smdpOID() asn1.ObjectIdentifier {
	if len(c.RegisteredIDs) == 0 {
		return nil
	}
	return c.RegisteredIDs[0]
}

func sameKeyID(a, b []byte) bool { return len(a) > 0 && bytes.Equal(a, b) }
