package bpp

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// tagPaths walks a BER/DER encoding with encoding/asn1 (independent of this
// package's own TLV code) and returns the path of every element, e.g.
// "BF24/B8/80", in order of first appearance. Constructed elements are
// descended into; primitive ones are leaves.
func tagPaths(t testing.TB, der []byte) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	var walk func(b []byte, prefix string)
	walk = func(b []byte, prefix string) {
		for len(b) > 0 {
			var rv asn1.RawValue
			rest, err := asn1.Unmarshal(b, &rv)
			if err != nil {
				t.Fatalf("at %q: %v", prefix, err)
			}
			p := prefix + identifierHex(rv)
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
			if rv.IsCompound {
				walk(rv.Bytes, p+"/")
			}
			b = rest
		}
	}
	walk(der, "")
	return out
}

// identifierHex returns the identifier octets of an element in hex.
func identifierHex(rv asn1.RawValue) string {
	first := byte(rv.Class << 6)
	if rv.IsCompound {
		first |= 0x20
	}
	if rv.Tag < 31 {
		return fmt.Sprintf("%02X", first|byte(rv.Tag))
	}
	var tail []byte
	for n := rv.Tag; ; n >>= 7 {
		tail = append([]byte{byte(n & 0x7F)}, tail...)
		if n < 0x80 {
			break
		}
	}
	for i := range len(tail) - 1 {
		tail[i] |= 0x80
	}
	return strings.ToUpper(hex.EncodeToString(append([]byte{first | 0x1F}, tail...)))
}

// TestSMDPDataObjectTagging checks every component tag of the SM-DP+ data
// objects bpp emits against the SGP.22 ASN.1 module (RSPDefinitions,
// AUTOMATIC TAGS). The expected tags are written from the module: a SEQUENCE
// whose components carry no tag gets [0], [1], … IMPLICIT in order; where
// the module gives tags they are used as written.
func TestSMDPDataObjectTagging(t *testing.T) {
	md := fullMetadata(t, "8949449999999990171")
	md.ProfileOwner.GID2 = []byte{0x34, 0x56}
	mdDER, err := md.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := marshalConfigureISDP(asn1.ObjectIdentifier{2, 999, 10})
	if err != nil {
		t.Fatal(err)
	}
	ppk := PPK{}
	rsk := appendReplaceSessionKeys(nil, &ppk)

	e := newEnv(t, esim.CurveP256, "NIST")
	ppp, _ := smallPPP(t)
	bppDER, _, _ := e.bind(t, ppp, md)

	for _, c := range []struct {
		name string
		der  []byte
		want []string
	}{
		{"ConfigureISDPRequest", cfg, []string{
			"BF24",       // [36] SEQUENCE
			"BF24/B8",    // dpProprietaryData [24] DpProprietaryData
			"BF24/B8/80", // dpOid: DpProprietaryData has no tagged component → [0] IMPLICIT
		}},
		{"ConfigureISDPRequest without dpProprietaryData", []byte{0xBF, 0x24, 0x00}, []string{"BF24"}},
		{"StoreMetadataRequest", mdDER, []string{
			"BF25",    // [37] SEQUENCE
			"BF25/5A", // iccid Iccid ::= [APPLICATION 26]
			"BF25/91", // serviceProviderName [17]
			"BF25/92", // profileName [18]
			"BF25/93", // iconType [19]
			"BF25/94", // icon [20]
			"BF25/95", // profileClass [21]
			"BF25/B6", // notificationConfigurationInfo [22] SEQUENCE OF
			"BF25/B6/30",
			"BF25/B6/30/80", // profileManagementOperation: untagged SEQUENCE → [0]
			"BF25/B6/30/81", // notificationAddress → [1]
			"BF25/B7",       // profileOwner [23] OperatorID
			"BF25/B7/80",    // mccMnc → [0]
			"BF25/B7/81",    // gid1 → [1]
			"BF25/B7/82",    // gid2 → [2]
			"BF25/99",       // profilePolicyRules [25]
		}},
		{"ReplaceSessionKeysRequest", rsk, []string{
			"BF26",    // [38] SEQUENCE
			"BF26/80", // initialMacChainingValue → [0]
			"BF26/81", // ppkEnc → [1]
			"BF26/82", // ppkCmac → [2]
		}},
		{"BoundProfilePackage", bppDER, []string{
			"BF36",         // [54] SEQUENCE
			"BF36/BF23",    // initialiseSecureChannelRequest [35]
			"BF36/BF23/82", // remoteOpId RemoteOpId ::= [2] INTEGER
			"BF36/BF23/80", // transactionId [0]
			"BF36/BF23/A6", // controlRefTemplate [6] IMPLICIT ControlRefTemplate
			"BF36/BF23/A6/80",
			"BF36/BF23/A6/81",
			"BF36/BF23/A6/84",
			"BF36/BF23/5F49", // smdpOtpk [APPLICATION 73]
			"BF36/BF23/5F37", // smdpSign [APPLICATION 55]
			"BF36/A0",        // firstSequenceOf87 [0] SEQUENCE OF [7] OCTET STRING
			"BF36/A0/87",
			"BF36/A1", // sequenceOf88 [1] SEQUENCE OF [8]
			"BF36/A1/88",
			"BF36/A2", // secondSequenceOf87 [2]
			"BF36/A2/87",
			"BF36/A3", // sequenceOf86 [3] SEQUENCE OF [6]
			"BF36/A3/86",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := tagPaths(t, c.der); !slices.Equal(got, c.want) {
				t.Errorf("tags\n got %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestConfigureISDPDpOid(t *testing.T) {
	for _, c := range []struct {
		name, der string
		want      asn1.ObjectIdentifier
		err       bool
	}{
		{"empty", "BF2400", nil, false},
		{"dpOid [0] 2.999.10", "BF2407B80580038837 0A", asn1.ObjectIdentifier{2, 999, 10}, false},
		{"SM-DP+ data after dpOid", "BF240AB80880038837 0A810100", asn1.ObjectIdentifier{2, 999, 10}, false},
		{"universal 06 (the old bpp form)", "BF2407B80506038837 0A", nil, true},
		{"dpOid missing", "BF2402B800", nil, true},
		{"dpOid empty", "BF2404B8028000", nil, true},
		{"trailing element", "BF2409B80580038837 0A8100", nil, true},
		{"malformed data after dpOid", "BF2409B80780038837 0A8105", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			der, err := hex.DecodeString(strings.ReplaceAll(c.der, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseConfigureISDP(der)
			if c.err {
				if err == nil || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.DPOID.Equal(c.want) {
				t.Errorf("dpOid = %v, want %v", got.DPOID, c.want)
			}
		})
	}
	long := make(asn1.ObjectIdentifier, 70)
	long[0], long[1] = 2, 999
	for i := 2; i < len(long); i++ {
		long[i] = 1 << 20
	}
	if _, err := marshalConfigureISDP(long); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("dpOid over 128 bytes: err = %v, want ErrInvalidParams", err)
	}
	der, err := marshalConfigureISDP(asn1.ObjectIdentifier{2, 999, 10})
	if err != nil || hex.EncodeToString(der) != "bf2407b805800388370a" {
		t.Errorf("marshal 2.999.10 = %x, %v; want bf2407b805800388370a", der, err)
	}
}
