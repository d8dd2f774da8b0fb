package bpp

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// NotificationEvent bit strings as given in the spec digest §3.
func TestNotificationEventEncoding(t *testing.T) {
	for _, tc := range []struct {
		ev   NotificationEvent
		want string
	}{
		{NotifyInstall, "80020780"},
		{NotifyEnable, "80020640"},
		{NotifyDisable, "80020520"},
		{NotifyDelete, "80020410"},
		{NotifyInstall | NotifyDelete, "80020490"},
		{0, "800100"},
	} {
		got := appendBitString(nil, 0x80, uint8(tc.ev))
		if !bytes.Equal(got, mustDecode(tc.want)) {
			t.Errorf("events %04b: %x, want %s", tc.ev, got, tc.want)
		}
		back, err := parseBitString(got[2:], "test")
		if err != nil || NotificationEvent(back) != tc.ev {
			t.Errorf("events %04b: parsed back %04b, %v", tc.ev, back, err)
		}
	}
}

// The iccid goes out in EF.ICCID coding and comes back as the same ICCID.
func TestStoreMetadataICCIDCoding(t *testing.T) {
	for _, tc := range []struct {
		digits, want string
	}{
		{"89000123456789012341", "98001032547698103214"}, // bsp.json StoreMetadata
		{"8949449999999990023", "989444999999990920f3"},  // 19 digits: F filler
		{"894944999999999002", "989444999999990920ff"},   // 18 digits
	} {
		ic, err := esim.ICCIDFromSwappedBCD(mustDecode(tc.want))
		if err != nil || ic.String() != tc.digits {
			t.Fatalf("%s: %v, %v", tc.want, ic, err)
		}
		m := &StoreMetadata{ICCID: ic}
		der, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(der, mustDecode("5a0a"+tc.want)) {
			t.Errorf("%s: %x does not carry 5A 0A %s", tc.digits, der, tc.want)
		}
		back, err := ParseStoreMetadata(der)
		if err != nil || back.ICCID != ic {
			t.Errorf("%s: parsed back as %v, %v", tc.digits, back, err)
		}
	}
	if _, err := (&StoreMetadata{}).Marshal(); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("Marshal without an ICCID: %v", err)
	}
}

func TestStoreMetadataRoundTrip(t *testing.T) {
	iccid, _ := esim.ParseICCID("89000123456789012341")
	base := func() *StoreMetadata {
		return &StoreMetadata{ICCID: iccid, ServiceProviderName: "SPN", ProfileName: "Name"}
	}
	for _, tc := range []struct {
		name   string
		edit   func(m *StoreMetadata)
		starts string // expected prefix of the content after 5A 0A iccid
	}{
		{"mandatory only, class operational omitted", func(*StoreMetadata) {}, "9103"},
		{"empty strings", func(m *StoreMetadata) { m.ServiceProviderName, m.ProfileName = "", "" }, "91009200"},
		{"class provisioning", func(m *StoreMetadata) { m.ProfileClass = ClassProvisioning }, "9103"},
		{"icon", func(m *StoreMetadata) { m.Icon = &Icon{Type: IconJPG, Data: []byte{0xFF, 0xD8}} }, "9103"},
		{"max icon", func(m *StoreMetadata) { m.Icon = &Icon{Type: IconPNG, Data: make([]byte, MaxIconSize)} }, "9103"},
		{"notifications", func(m *StoreMetadata) {
			m.Notifications = []NotificationConfig{{NotifyInstall | NotifyEnable, "a.example"}, {NotifyDelete, "b.example"}}
		}, "9103"},
		{"owner without GIDs", func(m *StoreMetadata) { m.ProfileOwner = &ProfileOwner{MCCMNC: [3]byte{0x32, 0xF4, 0x51}} }, "9103"},
		{"owner with GIDs", func(m *StoreMetadata) {
			m.ProfileOwner = &ProfileOwner{MCCMNC: [3]byte{0x32, 0xF4, 0x51}, GID1: []byte{1}, GID2: []byte{2, 3}}
		}, "9103"},
		{"policy rules", func(m *StoreMetadata) { m.PolicyRules = PPRUpdateControl | PPR2 }, "9103"},
		{"max names", func(m *StoreMetadata) {
			m.ServiceProviderName = strings.Repeat("é", MaxServiceProviderName)
			m.ProfileName = strings.Repeat("ü", MaxProfileName)
		}, "9140"},
		{"extension element kept raw", func(m *StoreMetadata) { m.Extensions = mustDecode("bf220330010a") }, "9103"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(m)
			der, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			content := parseOne(t, der).Value
			if !bytes.HasPrefix(content, mustDecode("5a0a98001032547698103214")) ||
				!bytes.HasPrefix(content[12:], mustDecode(tc.starts)) {
				t.Errorf("encoding %x", der)
			}
			if bytes.Contains(content, []byte{0x95, 0x01, 0x02}) {
				t.Errorf("DEFAULT operational encoded: %x", der)
			}
			back, err := ParseStoreMetadata(der)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Errorf("parsed %+v, want %+v", back, m)
			}
		})
	}
}

func TestStoreMetadataParseAcceptsExplicitOperational(t *testing.T) {
	// osmo-smdpp sends 95 01 02 although DER omits the DEFAULT.
	der := mustDecode("bf25155a0a98001032547698103214910141920142950102")
	m, err := ParseStoreMetadata(der)
	if err != nil {
		t.Fatal(err)
	}
	if m.ProfileClass != ClassOperational || m.ServiceProviderName != "A" || m.ProfileName != "B" {
		t.Errorf("%+v", m)
	}
}

func TestStoreMetadataRejects(t *testing.T) {
	const iccid = "5a0a98001032547698103214"
	wrap := func(content string) []byte {
		return appendTLV(nil, tagStoreMetadata, mustDecode(content))
	}
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"not BF25", mustDecode("bf2400")},
		{"trailing data", append(wrap(iccid+"91014192014"+"2"), 0)},
		{"profileName missing", wrap(iccid + "910141")},
		{"iccid missing", wrap("910141920142")},
		{"iccid of 9 bytes", wrap("5a09980010325476981032" + "910141920142")},
		{"names out of order", wrap(iccid + "920142910141")},
		{"duplicate element", wrap(iccid + "910141910141920142")},
		{"unknown context tag", wrap(iccid + "910141920142960100")},
		{"profileClass 3", wrap(iccid + "910141920142950103")},
		{"iconType without icon", wrap(iccid + "910141920142930101")},
		{"icon without iconType", wrap(iccid + "9101419201429401ff")},
		{"iconType 2", wrap(iccid + "910141920142930102940100")},
		{"SPN of 33 characters", wrap(iccid + "9121" + strings.Repeat("41", 33) + "920142")},
		{"SPN not UTF-8", wrap(iccid + "9101ff920142")},
		{"bit string with non-zero unused bits", wrap(iccid + "910141920142990206ff")},
		{"notification without address", wrap(iccid + "910141920142b606300480020780")},
		{"mccMnc of 2 bytes", wrap(iccid + "910141920142b70480020102")},
		{"indefinite length", mustDecode("bf2580" + iccid + "0000")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := ParseStoreMetadata(tc.der); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseStoreMetadata(%x) = %+v, %v; want ErrMalformed", tc.der, m, err)
			}
		})
	}
}

func TestStoreMetadataMarshalValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    StoreMetadata
	}{
		{"SPN too long", StoreMetadata{ServiceProviderName: strings.Repeat("x", 33)}},
		{"profile name too long", StoreMetadata{ProfileName: strings.Repeat("x", 65)}},
		{"icon too large", StoreMetadata{Icon: &Icon{Data: make([]byte, 1025)}}},
		{"bad icon type", StoreMetadata{Icon: &Icon{Type: 7}}},
		{"bad class", StoreMetadata{ProfileClass: 9}},
		{"bad event bits", StoreMetadata{Notifications: []NotificationConfig{{Events: 0x10}}}},
		{"bad PPR bits", StoreMetadata{PolicyRules: 0x08}},
	} {
		if _, err := tc.m.Marshal(); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
