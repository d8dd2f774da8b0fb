package rsp

import "fmt"

// EUICCInfo1 tags.
const (
	tagEUICCInfo1             = 0xBF20 // EUICCInfo1 ::= [32] SEQUENCE
	tagSVN                    = 0x82   // svn [2] VersionType
	tagCIPKIDsForVerification = 0xA9   // euiccCiPKIdListForVerification [9] SEQUENCE OF
	tagCIPKIDsForSigning      = 0xAA   // euiccCiPKIdListForSigning [10] SEQUENCE OF
)

// EUICCInfo1 is ES10b GetEUICCInfo1's answer, sent to the SM-DP+ in
// InitiateAuthentication:
//
//	EUICCInfo1 ::= [32] SEQUENCE {                         -- BF20
//	  svn [2] VersionType,                                  -- 82
//	  euiccCiPKIdListForVerification [9] SEQUENCE OF SubjectKeyIdentifier, -- A9 { 04 … }
//	  euiccCiPKIdListForSigning [10] SEQUENCE OF SubjectKeyIdentifier      -- AA { 04 … }
//	}
//
// SGP.22 v3 appends components (euiccCiPKIdListForSigningV3 …); they are
// accepted and kept in Raw only.
type EUICCInfo1 struct {
	SVN                    Version
	CIPKIDsForVerification [][]byte // CI SubjectKeyIdentifiers, usually 20 bytes each
	CIPKIDsForSigning      [][]byte
	Raw                    []byte // the BF20 element as received; Marshal emits it when set
}

// ParseEUICCInfo1 decodes a DER EUICCInfo1 (BF20).
func ParseEUICCInfo1(der []byte) (*EUICCInfo1, error) {
	top, err := parseTop(der, tagEUICCInfo1, "EUICCInfo1")
	if err != nil {
		return nil, err
	}
	return parseEUICCInfo1(top)
}

func parseEUICCInfo1(top element) (*EUICCInfo1, error) {
	r := newReader(top.value, "EUICCInfo1")
	m := &EUICCInfo1{Raw: top.raw}
	var err error
	if m.SVN, err = r.version(tagSVN, "svn"); err != nil {
		return nil, err
	}
	e, err := r.expect(tagCIPKIDsForVerification, "euiccCiPKIdListForVerification")
	if err != nil {
		return nil, err
	}
	if m.CIPKIDsForVerification, err = subjectKeyIdentifiers(e.value, "EUICCInfo1.euiccCiPKIdListForVerification"); err != nil {
		return nil, err
	}
	if e, err = r.expect(tagCIPKIDsForSigning, "euiccCiPKIdListForSigning"); err != nil {
		return nil, err
	}
	if m.CIPKIDsForSigning, err = subjectKeyIdentifiers(e.value, "EUICCInfo1.euiccCiPKIdListForSigning"); err != nil {
		return nil, err
	}
	return m, r.end()
}

// Marshal returns the DER EUICCInfo1 (Raw if set).
func (m *EUICCInfo1) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	return tlv(tagEUICCInfo1,
		tlv(tagSVN, m.SVN[:]),
		tlv(tagCIPKIDsForVerification, subjectKeyIdentifiersContents(m.CIPKIDsForVerification)),
		tlv(tagCIPKIDsForSigning, subjectKeyIdentifiersContents(m.CIPKIDsForSigning)),
	), nil
}

// EUICCInfo2 tags. The SEQUENCE has tagged components, so its two untagged
// ones (ppVersion, sasAcreditationNumber) keep their universal tags.
const (
	tagEUICCInfo2         = 0xBF22 // EUICCInfo2 ::= [34] SEQUENCE
	tagProfileVersion     = 0x81   // profileVersion [1] VersionType
	tagFirmwareVersion    = 0x83   // euiccFirmwareVer [3] VersionType
	tagExtCardResource    = 0x84   // extCardResource [4] OCTET STRING
	tagUICCCapability     = 0x85   // uiccCapability [5] UICCCapability
	tagTS102241Version    = 0x86   // ts102241Version (javacardVersion) [6] VersionType OPTIONAL
	tagGPVersion          = 0x87   // globalplatformVersion [7] VersionType OPTIONAL
	tagRSPCapability      = 0x88   // rspCapability [8] RspCapability
	tagEUICCCategory      = 0x8B   // euiccCategory [11] INTEGER OPTIONAL
	tagForbiddenPPR       = 0x99   // forbiddenProfilePolicyRules [25] PprIds OPTIONAL
	tagPPVersion          = 0x04   // ppVersion VersionType (untagged)
	tagSASAccreditation   = 0x0C   // sasAcreditationNumber UTF8String (SIZE(0..64)) (untagged)
	tagCertificationData  = 0xAC   // certificationDataObject [12] OPTIONAL
	maxSASAccreditationNo = 64
)

// ExtCardResource tags inside extCardResource (ETSI TS 102 226).
const (
	tagECRInstalledApps   = 0x81
	tagECRFreeNonVolatile = 0x82
	tagECRFreeVolatile    = 0x83
)

// EUICCInfo2 is ES10b GetEUICCInfo2's answer, carried inside EUICCSigned1.
// The fields an SM-DP+ acts on are decoded; every other component
// (certificationDataObject, treProperties, v3 additions …) stays in Raw,
// which is what is signed and forwarded.
//
//	EUICCInfo2 ::= [34] SEQUENCE {                -- BF22
//	  profileVersion [1] VersionType,              -- 81
//	  svn [2] VersionType,                         -- 82
//	  euiccFirmwareVer [3] VersionType,            -- 83
//	  extCardResource [4] OCTET STRING,            -- 84
//	  uiccCapability [5] UICCCapability,           -- 85
//	  ts102241Version [6] VersionType OPTIONAL,    -- 86
//	  globalplatformVersion [7] VersionType OPTIONAL, -- 87
//	  rspCapability [8] RspCapability,             -- 88
//	  euiccCiPKIdListForVerification [9] …,        -- A9
//	  euiccCiPKIdListForSigning [10] …,            -- AA
//	  euiccCategory [11] INTEGER OPTIONAL,         -- 8B
//	  forbiddenProfilePolicyRules [25] PprIds OPTIONAL, -- 99
//	  ppVersion VersionType,                       -- 04
//	  sasAcreditationNumber UTF8String (SIZE(0..64)), -- 0C
//	  certificationDataObject [12] … OPTIONAL,     -- AC
//	  …                                            -- later versions
//	}
type EUICCInfo2 struct {
	ProfileVersion         Version // SAIP version supported
	SVN                    Version // clients may report another svn than in EUICCInfo1; do not cross-check
	FirmwareVersion        Version
	ExtCardResource        []byte    // TS 102 226 TLVs; see FreeNonVolatileMemory
	UICCCapability         NamedBits // usim(1), isim(2), milenage(4), tuak128(6) …
	TS102241Version        *Version  // optional
	GlobalPlatformVersion  *Version  // optional
	RSPCapability          NamedBits // additionalProfile(0), crlSupport(1), rpmSupport(2), testProfileSupport(3)
	CIPKIDsForVerification [][]byte
	CIPKIDsForSigning      [][]byte
	EUICCCategory          *int64    // optional: other(0), basic(1), medium(2), contactless(3)
	ForbiddenPPRs          NamedBits // forbiddenProfilePolicyRules; 0 when absent
	PPVersion              Version
	SASAccreditationNumber string
	Raw                    []byte // the BF22 element as received; Marshal emits it when set
}

// FreeNonVolatileMemory returns the free non-volatile memory in bytes from
// extCardResource (tag 82), and false when the eUICC did not report it.
func (m *EUICCInfo2) FreeNonVolatileMemory() (uint64, bool) {
	r := newReader(m.ExtCardResource, "extCardResource")
	for !r.empty() {
		e, err := r.next()
		if err != nil {
			return 0, false
		}
		if e.tag == tagECRFreeNonVolatile && len(e.value) >= 1 && len(e.value) <= 8 {
			var n uint64
			for _, b := range e.value {
				n = n<<8 | uint64(b)
			}
			return n, true
		}
	}
	return 0, false
}

// ParseEUICCInfo2 decodes a DER EUICCInfo2 (BF22).
func ParseEUICCInfo2(der []byte) (*EUICCInfo2, error) {
	top, err := parseTop(der, tagEUICCInfo2, "EUICCInfo2")
	if err != nil {
		return nil, err
	}
	return parseEUICCInfo2(top)
}

// eUICCInfo2Order is the module's order of the components decoded here.
var eUICCInfo2Order = [...]uint32{
	tagProfileVersion, tagSVN, tagFirmwareVersion, tagExtCardResource, tagUICCCapability,
	tagTS102241Version, tagGPVersion, tagRSPCapability, tagCIPKIDsForVerification,
	tagCIPKIDsForSigning, tagEUICCCategory, tagForbiddenPPR, tagPPVersion, tagSASAccreditation,
}

func parseEUICCInfo2(top element) (*EUICCInfo2, error) {
	const what = "EUICCInfo2"
	m := &EUICCInfo2{Raw: top.raw}
	r := newReader(top.value, what)
	pos := 0 // next admissible index in eUICCInfo2Order
	var seen uint32
	for !r.empty() {
		e, err := r.next()
		if err != nil {
			return nil, err
		}
		idx := -1
		for i := pos; i < len(eUICCInfo2Order); i++ {
			if eUICCInfo2Order[i] == e.tag {
				idx = i
				break
			}
		}
		if idx < 0 {
			for _, t := range eUICCInfo2Order {
				if t == e.tag {
					return nil, fmt.Errorf("%w: %s: component %X out of order or repeated", ErrMalformed, what, e.tag)
				}
			}
			// Not decoded here (certificationDataObject, treProperties, a
			// later version's addition): kept in Raw.
			continue
		}
		pos, seen = idx+1, seen|1<<idx
		v := e.value
		field := func(n string) string { return what + "." + n }
		switch e.tag {
		case tagProfileVersion, tagSVN, tagFirmwareVersion, tagTS102241Version, tagGPVersion, tagPPVersion:
			if len(v) != 3 {
				return nil, sizeError(fmt.Sprintf("%s version %X", what, e.tag), len(v), 3, 3)
			}
			ver := Version(v)
			switch e.tag {
			case tagProfileVersion:
				m.ProfileVersion = ver
			case tagSVN:
				m.SVN = ver
			case tagFirmwareVersion:
				m.FirmwareVersion = ver
			case tagTS102241Version:
				m.TS102241Version = &ver
			case tagGPVersion:
				m.GlobalPlatformVersion = &ver
			case tagPPVersion:
				m.PPVersion = ver
			}
		case tagExtCardResource:
			m.ExtCardResource = v
		case tagUICCCapability:
			m.UICCCapability, err = namedBitsValue(v, field("uiccCapability"))
		case tagRSPCapability:
			m.RSPCapability, err = namedBitsValue(v, field("rspCapability"))
		case tagCIPKIDsForVerification:
			m.CIPKIDsForVerification, err = subjectKeyIdentifiers(v, field("euiccCiPKIdListForVerification"))
		case tagCIPKIDsForSigning:
			m.CIPKIDsForSigning, err = subjectKeyIdentifiers(v, field("euiccCiPKIdListForSigning"))
		case tagEUICCCategory:
			var c int64
			c, err = intValue(v, field("euiccCategory"))
			m.EUICCCategory = &c
		case tagForbiddenPPR:
			m.ForbiddenPPRs, err = namedBitsValue(v, field("forbiddenProfilePolicyRules"))
		case tagSASAccreditation:
			if len(v) > maxSASAccreditationNo*4 {
				return nil, fmt.Errorf("%w: %s.sasAcreditationNumber is %d bytes", ErrMalformed, what, len(v))
			}
			m.SASAccreditationNumber, err = utf8Value(v, field("sasAcreditationNumber"))
		}
		if err != nil {
			return nil, err
		}
	}
	// Mandatory: everything but ts102241Version, globalplatformVersion,
	// euiccCategory and forbiddenProfilePolicyRules.
	const mandatory = 1<<0 | 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<7 | 1<<8 | 1<<9 | 1<<12 | 1<<13
	if seen&mandatory != mandatory {
		for i, t := range eUICCInfo2Order {
			if mandatory&(1<<i) != 0 && seen&(1<<i) == 0 {
				return nil, fmt.Errorf("%w: %s: mandatory component %X missing", ErrMalformed, what, t)
			}
		}
	}
	return m, nil
}

// Marshal returns the DER EUICCInfo2 (Raw if set).
func (m *EUICCInfo2) Marshal() ([]byte, error) {
	if m.Raw != nil {
		return m.Raw, nil
	}
	if len(m.SASAccreditationNumber) > maxSASAccreditationNo {
		return nil, fmt.Errorf("%w: EUICCInfo2.sasAcreditationNumber longer than %d", ErrInvalid, maxSASAccreditationNo)
	}
	var ts, gp, cat []byte
	if m.TS102241Version != nil {
		ts = tlv(tagTS102241Version, m.TS102241Version[:])
	}
	if m.GlobalPlatformVersion != nil {
		gp = tlv(tagGPVersion, m.GlobalPlatformVersion[:])
	}
	if m.EUICCCategory != nil {
		cat = tlv(tagEUICCCategory, intContents(*m.EUICCCategory))
	}
	return tlv(tagEUICCInfo2,
		tlv(tagProfileVersion, m.ProfileVersion[:]),
		tlv(tagSVN, m.SVN[:]),
		tlv(tagFirmwareVersion, m.FirmwareVersion[:]),
		tlv(tagExtCardResource, m.ExtCardResource),
		tlv(tagUICCCapability, m.UICCCapability.contents()),
		ts, gp,
		tlv(tagRSPCapability, m.RSPCapability.contents()),
		tlv(tagCIPKIDsForVerification, subjectKeyIdentifiersContents(m.CIPKIDsForVerification)),
		tlv(tagCIPKIDsForSigning, subjectKeyIdentifiersContents(m.CIPKIDsForSigning)),
		cat,
		opt(m.ForbiddenPPRs != 0, tagForbiddenPPR, m.ForbiddenPPRs.contents()),
		tlv(tagPPVersion, m.PPVersion[:]),
		tlv(tagSASAccreditation, []byte(m.SASAccreditationNumber)),
	), nil
}
