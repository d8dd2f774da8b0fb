package rsp

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

// This is the one RSP certificate reader of the project: the SM-DP+ checks
// the eUICC → EUM → CI chain with it, the virtual eUICC the CI → DPauth and
// CI → DPpb ones.

// Certificate is the part of an RSP X.509 certificate SGP.22 makes the
// SM-DP+ and the eUICC check, parsed by hand: crypto/x509 refuses every brainpoolP256r1 certificate
// ("unsupported elliptic curve"), and its Verify refuses the EUM's critical
// nameConstraints (a GSMA EID-prefix rule, not an X.509 subtree match)
// (sgp22-saip.md §8).
type Certificate struct {
	Raw       []byte
	TBS       []byte // the TBSCertificate element: what the issuer signed
	Signature []byte // DER ECDSA-Sig-Value (certificates use DER, not r‖s)
	// Issuer and Subject are the raw Name elements (compared as bytes).
	Issuer, Subject []byte

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

// ErrCertificate is wrapped by every certificate parse or chain failure;
// ErrUnsupportedCurve too when the key is on neither SGP.22 curve (the
// eUICC answers unsupportedCurve then, not invalidCertificate).
var (
	ErrCertificate      = errors.New("invalid certificate")
	ErrUnsupportedCurve = errors.New("unsupported curve")
)

func certErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCertificate, fmt.Sprintf(format, args...))
}

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

	var skip, tbsAlg, issuer cryptobyte.String
	var tbsAlgOID asn1.ObjectIdentifier
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.ReadASN1(&skip, cbasn1.INTEGER) || // serialNumber (may exceed int64)
		!tbs.ReadASN1(&tbsAlg, cbasn1.SEQUENCE) || !tbsAlg.ReadASN1ObjectIdentifier(&tbsAlgOID) ||
		!tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) {
		return nil, certErr("TBSCertificate header")
	}
	if !tbsAlgOID.Equal(oidECDSAWithSHA256) {
		return nil, certErr("TBSCertificate signature algorithm is not ecdsa-with-SHA256")
	}
	c.Issuer = issuer
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
	var subjectRaw, subject cryptobyte.String
	if !tbs.ReadASN1Element(&subjectRaw, cbasn1.SEQUENCE) {
		return nil, certErr("subject")
	}
	c.Subject = subjectRaw // kept whole: issuer names are compared as bytes
	if outer := subjectRaw; !outer.ReadASN1(&subject, cbasn1.SEQUENCE) {
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
		return fmt.Errorf("%w: %w: public key is not an EC key", ErrCertificate, ErrUnsupportedCurve)
	}
	curve, err := esim.CurveFromOID(curveOID)
	if err != nil {
		return fmt.Errorf("%w: %w: %w", ErrCertificate, ErrUnsupportedCurve, err)
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
	bad := func() error { return certErr("extension %v", oid) }
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
		ok := eachElement(val, func(gn cryptobyte.String, tag cbasn1.Tag) bool {
			if tag != cbasn1.Tag(8).ContextSpecific() { // registeredID [8] IMPLICIT OID
				return true
			}
			var o asn1.ObjectIdentifier
			if len(gn) > 127 {
				return false
			}
			full := append([]byte{0x06, byte(len(gn))}, gn...)
			if rest, err := asn1.Unmarshal(full, &o); err != nil || len(rest) != 0 {
				return false
			}
			c.RegisteredIDs = append(c.RegisteredIDs, o)
			return true
		})
		if !ok {
			return bad()
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
		if !eachElement(val, func(p cryptobyte.String, _ cbasn1.Tag) bool {
			c.PermittedEIDPrefixes = append(c.PermittedEIDPrefixes, string(p))
			return true
		}) {
			return bad()
		}
	}
	return nil
}

// eachElement calls fn with the content and tag of every element of the
// SEQUENCE in val, stopping at the first false; it reports whether the
// SEQUENCE was well formed and fn accepted every element.
func eachElement(val cryptobyte.String, fn func(cryptobyte.String, cbasn1.Tag) bool) bool {
	var seq cryptobyte.String
	if !val.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return false
	}
	for !seq.Empty() {
		var e cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&e, &tag) || !fn(e, tag) {
			return false
		}
	}
	return true
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

// CheckSignatureFrom verifies that issuer's key signed c (the signature
// only; CheckSignedBy adds the key identifier and name).
func (c *Certificate) CheckSignatureFrom(issuer *Certificate) bool {
	if issuer.PublicKey == nil || c.Curve != issuer.Curve {
		return false
	}
	d := sha256.Sum256(c.TBS)
	return ecdsa.VerifyASN1(issuer.PublicKey, d[:], c.Signature)
}

// CheckSignedBy verifies that issuer issued c: the AKI names the issuer's
// SKI, the issuer Name is the issuer's subject, and the ECDSA signature
// over the TBSCertificate verifies with the issuer's key.
func (c *Certificate) CheckSignedBy(issuer *Certificate) error {
	switch {
	case len(c.AKI) == 0:
		return certErr("no authorityKeyIdentifier")
	case !SameKeyID(c.AKI, issuer.SKI):
		return certErr("authorityKeyIdentifier %X is not the issuer's %X", c.AKI, issuer.SKI)
	case !bytes.Equal(c.Issuer, issuer.Subject):
		return certErr("issuer name differs from the issuer's subject")
	case !c.CheckSignatureFrom(issuer):
		return certErr("signature does not verify with the issuer's key")
	}
	return nil
}

// ValidAt reports whether t lies in the certificate's validity period.
func (c *Certificate) ValidAt(t time.Time) bool {
	return !t.Before(c.NotBefore) && !t.After(c.NotAfter)
}

// CheckValidAt refuses a certificate outside its validity period, saying
// which end it missed.
func (c *Certificate) CheckValidAt(t time.Time) error {
	if t.Before(c.NotBefore) {
		return certErr("not valid before %s", c.NotBefore.Format(time.DateOnly))
	}
	if t.After(c.NotAfter) {
		return certErr("expired on %s", c.NotAfter.Format(time.DateOnly))
	}
	return nil
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

// SMDPOID returns the certificate's subjectAltName registeredID (the
// SM-DP+ OID of a DPauth/DPpb certificate), nil when absent.
func (c *Certificate) SMDPOID() asn1.ObjectIdentifier {
	if len(c.RegisteredIDs) == 0 {
		return nil
	}
	return c.RegisteredIDs[0]
}

// SameKeyID reports whether two key identifiers (SKI, AKI, CI PKIDs) are
// the same and not empty.
func SameKeyID(a, b []byte) bool { return len(a) > 0 && bytes.Equal(a, b) }

// VerifyServerCertificate applies the checks the eUICC makes on
// CERT.DPauth (AuthenticateServer) and CERT.DPpb (PrepareDownload): parsed,
// on a supported curve, issued by ci, valid at now, carrying the role
// policy (PolicyDPauth or PolicyDPpb). Errors wrap ErrCertificate, and
// ErrUnsupportedCurve for a key on another curve.
func VerifyServerCertificate(der []byte, ci *Certificate, role asn1.ObjectIdentifier, now time.Time) (*Certificate, error) {
	c, err := ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := c.CheckSignedBy(ci); err != nil {
		return nil, fmt.Errorf("does not chain to the CI %X: %w", ci.SKI, err)
	}
	if err := c.CheckValidAt(now); err != nil {
		return nil, err
	}
	if !c.HasPolicy(role) {
		return nil, fmt.Errorf("%w: lacks the role policy %v", ErrCertificate, role)
	}
	return c, nil
}

// VerifyEUICCChain checks CI → EUM → eUICC by hand, in the order of rows
// 2–8 of ES9+.AuthenticateClient (es2-es10-codes.md §3.3), and returns both
// parsed certificates. A failure is a Status naming the certificate
// (8.1.2 EUM, 8.1.3 eUICC) and the reason (6.1 verification failed, 6.3
// expired). The EID range (row 10) is the caller's: EIDPermitted.
func VerifyEUICCChain(ci *Certificate, eumDER, euiccDER []byte, now time.Time) (eum, euicc *Certificate, err error) {
	return VerifyEUICCChainCached(ci, eumDER, euiccDER, now, nil)
}

// VerifyEUICCChainCached is VerifyEUICCChain with the EUM certificate's
// parse and CI signature taken from cache when its exact bytes verified
// with ci before (and remembered there when they verify now). Every other
// check, in the same order, runs on every call; a nil cache caches nothing.
// The returned EUM certificate may be shared: read it only.
func VerifyEUICCChainCached(ci *Certificate, eumDER, euiccDER []byte, now time.Time, cache *EUMCache) (eum, euicc *Certificate, err error) {
	fail := func(s SubjectCode, r ReasonCode, msg string) (*Certificate, *Certificate, error) {
		return nil, nil, Status{Subject: s, Reason: r, Message: msg}
	}
	var key [32]byte
	if cache != nil {
		key = sha256.Sum256(eumDER)
		eum = cache.get(key, ci)
	}
	eumVerified := eum != nil
	if eum == nil {
		var perr error
		if eum, perr = ParseCertificate(eumDER); perr != nil {
			return fail(SubjectEUMCertificate, ReasonVerificationFailed, "EUM certificate malformed")
		}
	}
	euicc, perr := ParseCertificate(euiccDER)
	if perr != nil {
		return fail(SubjectEUICCCertificate, ReasonVerificationFailed, "eUICC certificate malformed")
	}
	switch {
	case len(eum.AKI) == 0: // row 2
		return fail(SubjectEUMCertificate, ReasonVerificationFailed, "EUM certificate has no authorityKeyIdentifier")
	case !SameKeyID(eum.AKI, ci.SKI): // row 3
		return fail(SubjectCIPublicKey, ReasonUnknown, "EUM certificate not issued by the CI chosen in InitiateAuthentication")
	case !eum.ValidAt(now): // row 4
		return fail(SubjectEUMCertificate, ReasonExpired, "EUM certificate expired or not yet valid")
	case !euicc.ValidAt(now): // row 5
		return fail(SubjectEUICCCertificate, ReasonExpired, "eUICC certificate expired or not yet valid")
	case !eum.HasKeyUsage || eum.KeyUsage&(1<<5) == 0 || !eum.HasPolicy(PolicyEUM) || !eum.IsCA || eum.MaxPathLen != 0: // row 6
		return fail(SubjectEUMCertificate, ReasonVerificationFailed, "EUM certificate extensions wrong (keyCertSign, EUM policy, CA pathlen 0)")
	case !eumVerified && !eum.CheckSignatureFrom(ci):
		return fail(SubjectEUMCertificate, ReasonVerificationFailed, "EUM certificate signature does not verify with the CI")
	}
	if !eumVerified {
		cache.put(key, ci, eum) // after the EUM's own checks passed
	}
	switch {
	case !euicc.HasKeyUsage || euicc.KeyUsage&1 == 0 || !euicc.HasPolicy(PolicyEUICC) || euicc.SubjectO == "" || !isEIDDigits(euicc.SubjectSerialNumber): // row 7
		return fail(SubjectEUICCCertificate, ReasonVerificationFailed, "eUICC certificate extensions or subject wrong (digitalSignature, eUICC policy, O, EID)")
	case !SameKeyID(euicc.AKI, eum.SKI) || !euicc.CheckSignatureFrom(eum): // row 8
		return fail(SubjectEUICCCertificate, ReasonVerificationFailed, "eUICC certificate not signed by the EUM")
	}
	return eum, euicc, nil
}

// isEIDDigits: 32 decimal digits. The check digits are not verified here:
// the certificate's signature vouches for the EID, and SGP.26 test eUICCs
// carry EIDs whose check digits are wrong (…901299); the order binding
// decides.
func isEIDDigits(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
