package bpp

import (
	"fmt"
	"unicode/utf8"

	"github.com/perso-esim/perso/esim"
)

// StoreMetadataRequest field tags (SGP.22 §2.5.3, tag BF25).
const (
	tagMDICCID         = 0x5A
	tagMDSPN           = 0x91
	tagMDProfileName   = 0x92
	tagMDIconType      = 0x93
	tagMDIcon          = 0x94
	tagMDProfileClass  = 0x95
	tagMDNotifications = 0xB6
	tagMDProfileOwner  = 0xB7
	tagMDPolicyRules   = 0x99
	tagSequence        = 0x30
)

// Size limits of StoreMetadataRequest fields.
const (
	MaxServiceProviderName = 32   // characters
	MaxProfileName         = 64   // characters
	MaxIconSize            = 1024 // bytes
	maxAddressSize         = 255  // bytes of a notification address (FQDN)
	maxGIDSize             = 255
)

// ProfileClass is the StoreMetadata profileClass. The Go zero value is
// ClassOperational, the ASN.1 DEFAULT, which DER omits from the encoding.
// (Wire values: test 0, provisioning 1, operational 2.)
type ProfileClass uint8

const (
	ClassOperational  ProfileClass = iota // wire value 2, the default
	ClassTest                             // wire value 0
	ClassProvisioning                     // wire value 1
)

func (c ProfileClass) String() string {
	switch c {
	case ClassOperational:
		return "operational"
	case ClassTest:
		return "test"
	case ClassProvisioning:
		return "provisioning"
	}
	return fmt.Sprintf("ProfileClass(%d)", uint8(c))
}

func (c ProfileClass) wire() (byte, bool) {
	switch c {
	case ClassOperational:
		return 2, true
	case ClassTest:
		return 0, true
	case ClassProvisioning:
		return 1, true
	}
	return 0, false
}

// IconType is the StoreMetadata iconType.
type IconType uint8

const (
	IconJPG IconType = 0
	IconPNG IconType = 1
)

// Icon is the profile icon (iconType 93 and icon 94).
type Icon struct {
	Type IconType
	Data []byte // at most 1024 bytes
}

// NotificationEvent is a set of NotificationEvent bits (BIT STRING).
type NotificationEvent uint8

const (
	NotifyInstall NotificationEvent = 1 << iota // notificationInstall(0)
	NotifyEnable                                // notificationEnable(1)
	NotifyDisable                               // notificationDisable(2)
	NotifyDelete                                // notificationDelete(3)
)

// NotificationConfig is one NotificationConfigurationInformation:
// 30 { 80 profileManagementOperation, 81 notificationAddress }.
type NotificationConfig struct {
	Events  NotificationEvent
	Address string // FQDN of the receiving SM-DP+
}

// ProfileOwner is the OperatorId profileOwner: B7 { 80 mccMnc, 81 gid1, 82 gid2 }.
type ProfileOwner struct {
	MCCMNC [3]byte // as in EF.IMSI / PLMN coding
	GID1   []byte  // optional
	GID2   []byte  // optional
}

// PolicyRules is the set of profile policy rules (PprIds BIT STRING).
type PolicyRules uint8

const (
	PPRUpdateControl PolicyRules = 1 << iota // pprUpdateControl(0)
	PPR1                                     // ppr1(1): disabling not allowed
	PPR2                                     // ppr2(2): deletion not allowed
)

// StoreMetadata is StoreMetadataRequest (BF25).
type StoreMetadata struct {
	ICCID               esim.ICCID // required; sent in EF.ICCID coding (esim.ICCID.SwappedBCD)
	ServiceProviderName string     // at most 32 characters
	ProfileName         string     // at most 64 characters
	Icon                *Icon      // optional
	ProfileClass        ProfileClass
	Notifications       []NotificationConfig // optional
	ProfileOwner        *ProfileOwner        // optional
	PolicyRules         PolicyRules          // zero: absent
	// Extensions holds the raw TLVs of later elements this package does not
	// decode (SGP.22 v3 serviceSpecificData ...), in order; Marshal re-emits them.
	Extensions []byte
}

// appendBitString appends a DER named-bit BIT STRING holding bits 0..7 of v
// (bit 0 = most significant bit of the first octet, trailing zeros removed).
func appendBitString(dst []byte, tag uint32, v uint8) []byte {
	if v == 0 {
		return appendTLV(dst, tag, []byte{0})
	}
	var octet byte
	hi := 0
	for i := range 8 {
		if v&(1<<i) != 0 {
			octet |= 0x80 >> i
			hi = i
		}
	}
	return appendTLV(dst, tag, []byte{byte(7 - hi), octet})
}

// parseBitString decodes a named-bit BIT STRING of at most 8 bits.
func parseBitString(b []byte, what string) (uint8, error) {
	if len(b) == 1 && b[0] == 0 {
		return 0, nil
	}
	if len(b) != 2 || b[0] > 7 || b[1]&(1<<b[0]-1) != 0 {
		return 0, fmt.Errorf("%w: %s is not a DER bit string of at most 8 bits", ErrMalformed, what)
	}
	var v uint8
	for i := range 8 {
		if b[1]&(0x80>>i) != 0 {
			v |= 1 << i
		}
	}
	return v, nil
}

func checkUTF8(s string, maxChars int, what string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > maxChars {
		return fmt.Errorf("%s has %d characters, the maximum is %d", what, n, maxChars)
	}
	return nil
}

// Validate checks every size and range constraint of the fields.
func (m *StoreMetadata) Validate() error {
	if m.ICCID.IsZero() {
		return fmt.Errorf("%w: StoreMetadata: iccid not set", ErrInvalidParams)
	}
	if err := checkUTF8(m.ServiceProviderName, MaxServiceProviderName, "serviceProviderName"); err != nil {
		return fmt.Errorf("%w: StoreMetadata: %s", ErrInvalidParams, err)
	}
	if err := checkUTF8(m.ProfileName, MaxProfileName, "profileName"); err != nil {
		return fmt.Errorf("%w: StoreMetadata: %s", ErrInvalidParams, err)
	}
	if m.Icon != nil {
		if m.Icon.Type > IconPNG {
			return fmt.Errorf("%w: StoreMetadata: iconType %d", ErrInvalidParams, m.Icon.Type)
		}
		if len(m.Icon.Data) > MaxIconSize {
			return fmt.Errorf("%w: StoreMetadata: icon of %d bytes, the maximum is %d", ErrInvalidParams, len(m.Icon.Data), MaxIconSize)
		}
	}
	if _, ok := m.ProfileClass.wire(); !ok {
		return fmt.Errorf("%w: StoreMetadata: %v", ErrInvalidParams, m.ProfileClass)
	}
	for i, n := range m.Notifications {
		if n.Events&^(NotifyInstall|NotifyEnable|NotifyDisable|NotifyDelete) != 0 {
			return fmt.Errorf("%w: StoreMetadata: notification %d: unknown event bits", ErrInvalidParams, i)
		}
		if !utf8.ValidString(n.Address) || len(n.Address) > maxAddressSize {
			return fmt.Errorf("%w: StoreMetadata: notification %d: bad address", ErrInvalidParams, i)
		}
	}
	if o := m.ProfileOwner; o != nil && (len(o.GID1) > maxGIDSize || len(o.GID2) > maxGIDSize) {
		return fmt.Errorf("%w: StoreMetadata: profileOwner GID too long", ErrInvalidParams)
	}
	if m.PolicyRules&^(PPRUpdateControl|PPR1|PPR2) != 0 {
		return fmt.Errorf("%w: StoreMetadata: unknown profile policy rule bits", ErrInvalidParams)
	}
	return nil
}

// Marshal returns the DER StoreMetadataRequest (BF25).
func (m *StoreMetadata) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	c := make([]byte, 0, 96+len(m.ServiceProviderName)+len(m.ProfileName)+len(m.Extensions))
	iccid := m.ICCID.SwappedBCD()
	c = appendTLV(c, tagMDICCID, iccid[:])
	c = appendTLV(c, tagMDSPN, []byte(m.ServiceProviderName))
	c = appendTLV(c, tagMDProfileName, []byte(m.ProfileName))
	if m.Icon != nil {
		c = appendTLV(c, tagMDIconType, []byte{byte(m.Icon.Type)})
		c = appendTLV(c, tagMDIcon, m.Icon.Data)
	}
	if m.ProfileClass != ClassOperational {
		w, _ := m.ProfileClass.wire()
		c = appendTLV(c, tagMDProfileClass, []byte{w})
	}
	if len(m.Notifications) > 0 {
		var seq []byte
		for _, n := range m.Notifications {
			var e []byte
			e = appendBitString(e, 0x80, uint8(n.Events))
			e = appendTLV(e, 0x81, []byte(n.Address))
			seq = appendTLV(seq, tagSequence, e)
		}
		c = appendTLV(c, tagMDNotifications, seq)
	}
	if o := m.ProfileOwner; o != nil {
		var e []byte
		e = appendTLV(e, 0x80, o.MCCMNC[:])
		if o.GID1 != nil {
			e = appendTLV(e, 0x81, o.GID1)
		}
		if o.GID2 != nil {
			e = appendTLV(e, 0x82, o.GID2)
		}
		c = appendTLV(c, tagMDProfileOwner, e)
	}
	if m.PolicyRules != 0 {
		c = appendBitString(c, tagMDPolicyRules, uint8(m.PolicyRules))
	}
	c = append(c, m.Extensions...)
	return appendTLV(make([]byte, 0, tlvSize(tagStoreMetadata, len(c))), tagStoreMetadata, c), nil
}

// metadataOrder lists the decoded fields in their SEQUENCE order.
var metadataOrder = [...]uint32{
	tagMDICCID, tagMDSPN, tagMDProfileName, tagMDIconType, tagMDIcon,
	tagMDProfileClass, tagMDNotifications, tagMDProfileOwner, tagMDPolicyRules,
}

// ParseStoreMetadata decodes a DER StoreMetadataRequest (BF25). Elements
// must appear in SEQUENCE order; elements after profilePolicyRules that this
// package does not know are kept raw in Extensions. An explicit
// profileClass operational (95 01 02, which DER would omit but osmo-smdpp
// sends) is accepted.
func ParseStoreMetadata(der []byte) (*StoreMetadata, error) {
	s := cryptoString(der)
	top, err := expectTLV(&s, tagStoreMetadata, "StoreMetadataRequest")
	if err != nil {
		return nil, err
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: StoreMetadataRequest: trailing data", ErrMalformed)
	}
	m := new(StoreMetadata)
	in := cryptoString(top.Value)
	pos := 0 // next admissible index in metadataOrder
	var seen uint16
	var iconType *IconType
	var iconSeen bool
	for !in.Empty() {
		e, err := readTLV(&in)
		if err != nil {
			return nil, fmt.Errorf("StoreMetadataRequest: %w", err)
		}
		idx := -1
		for i := pos; i < len(metadataOrder); i++ {
			if metadataOrder[i] == e.Tag {
				idx = i
				break
			}
		}
		if idx < 0 {
			known := false
			for _, t := range metadataOrder {
				known = known || t == e.Tag
			}
			if known || e.Tag < 0xBF00 {
				return nil, fmt.Errorf("%w: StoreMetadataRequest: element %X out of order or unexpected", ErrMalformed, e.Tag)
			}
			m.Extensions = append(m.Extensions, e.Raw...)
			pos = len(metadataOrder)
			continue
		}
		if len(m.Extensions) > 0 {
			return nil, fmt.Errorf("%w: StoreMetadataRequest: element %X after extensions", ErrMalformed, e.Tag)
		}
		pos = idx + 1
		seen |= 1 << idx
		v := e.Value
		switch e.Tag {
		case tagMDICCID:
			// Decoded as sent: the Luhn digit is the operator's business.
			ic, err := esim.ICCIDFromSwappedBCD(v)
			if err != nil {
				return nil, fmt.Errorf("%w: StoreMetadataRequest.iccid: %w", ErrMalformed, err)
			}
			m.ICCID = ic
		case tagMDSPN:
			m.ServiceProviderName = string(v)
		case tagMDProfileName:
			m.ProfileName = string(v)
		case tagMDIconType:
			if len(v) != 1 || v[0] > byte(IconPNG) {
				return nil, fmt.Errorf("%w: StoreMetadataRequest.iconType", ErrMalformed)
			}
			t := IconType(v[0])
			iconType = &t
		case tagMDIcon:
			if len(v) > MaxIconSize {
				return nil, fmt.Errorf("%w: StoreMetadataRequest.icon of %d bytes exceeds %d", ErrMalformed, len(v), MaxIconSize)
			}
			iconSeen = true
			m.Icon = &Icon{Data: append([]byte{}, v...)}
		case tagMDProfileClass:
			if len(v) != 1 || v[0] > 2 {
				return nil, fmt.Errorf("%w: StoreMetadataRequest.profileClass", ErrMalformed)
			}
			m.ProfileClass = [...]ProfileClass{ClassTest, ClassProvisioning, ClassOperational}[v[0]]
		case tagMDNotifications:
			if m.Notifications, err = parseNotifications(v); err != nil {
				return nil, err
			}
		case tagMDProfileOwner:
			if m.ProfileOwner, err = parseProfileOwner(v); err != nil {
				return nil, err
			}
		case tagMDPolicyRules:
			b, err := parseBitString(v, "StoreMetadataRequest.profilePolicyRules")
			if err != nil {
				return nil, err
			}
			m.PolicyRules = PolicyRules(b)
		}
	}
	if seen&0b111 != 0b111 {
		return nil, fmt.Errorf("%w: StoreMetadataRequest: iccid, serviceProviderName and profileName are mandatory", ErrMalformed)
	}
	if iconSeen != (iconType != nil) {
		return nil, fmt.Errorf("%w: StoreMetadataRequest: iconType and icon must come together", ErrMalformed)
	}
	if iconType != nil {
		m.Icon.Type = *iconType
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return m, nil
}

func parseNotifications(b []byte) ([]NotificationConfig, error) {
	var out []NotificationConfig
	s := cryptoString(b)
	for i := 0; !s.Empty(); i++ {
		seq, err := expectTLV(&s, tagSequence, fmt.Sprintf("StoreMetadataRequest.notificationConfigurationInfo[%d]", i))
		if err != nil {
			return nil, err
		}
		in := cryptoString(seq.Value)
		ev, err := expectTLV(&in, 0x80, "NotificationConfigurationInformation.profileManagementOperation")
		if err != nil {
			return nil, err
		}
		bits, err := parseBitString(ev.Value, "profileManagementOperation")
		if err != nil {
			return nil, err
		}
		addr, err := expectTLV(&in, 0x81, "NotificationConfigurationInformation.notificationAddress")
		if err != nil {
			return nil, err
		}
		if !in.Empty() {
			return nil, fmt.Errorf("%w: NotificationConfigurationInformation: trailing data", ErrMalformed)
		}
		out = append(out, NotificationConfig{Events: NotificationEvent(bits), Address: string(addr.Value)})
	}
	return out, nil
}

func parseProfileOwner(b []byte) (*ProfileOwner, error) {
	s := cryptoString(b)
	mm, err := expectTLV(&s, 0x80, "StoreMetadataRequest.profileOwner.mccMnc")
	if err != nil {
		return nil, err
	}
	if len(mm.Value) != 3 {
		return nil, fmt.Errorf("%w: profileOwner.mccMnc is %d bytes, want 3", ErrMalformed, len(mm.Value))
	}
	o := &ProfileOwner{MCCMNC: [3]byte(mm.Value)}
	if t, ok := peekTag(s); ok && t == 0x81 {
		e, _ := readTLV(&s)
		o.GID1 = append([]byte{}, e.Value...)
	}
	if t, ok := peekTag(s); ok && t == 0x82 {
		e, _ := readTLV(&s)
		o.GID2 = append([]byte{}, e.Value...)
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: StoreMetadataRequest.profileOwner: unexpected element", ErrMalformed)
	}
	return o, nil
}
