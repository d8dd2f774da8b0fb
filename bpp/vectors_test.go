package bpp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// hexBytes decodes a JSON hex string.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type bspStep struct {
	Op        string   `json:"op"`
	Tag       hexBytes `json:"tag"`
	Plaintext hexBytes `json:"plaintext"`
	Segment   hexBytes `json:"segment"`
	Note      string   `json:"note"`
}

type bspVectors struct {
	ECDH struct {
		EUICCOtpk hexBytes `json:"euicc_otpk"`
		SMDPOtpk  hexBytes `json:"smdp_otpk"`
		SMDPOtsk  hexBytes `json:"smdp_otsk"`
		Z         hexBytes `json:"shared_secret_z"`
	} `json:"ecdh_p256"`
	KDF []struct {
		Z          hexBytes `json:"z"`
		KeyType    hexBytes `json:"key_type"`
		KeyLength  hexBytes `json:"key_length"`
		HostID     hexBytes `json:"host_id"`
		EID        hexBytes `json:"eid"`
		SEnc       hexBytes `json:"s_enc"`
		SMAC       hexBytes `json:"s_mac"`
		InitialMCV hexBytes `json:"initial_mcv"`
	} `json:"kdf"`
	Session struct {
		SEnc       hexBytes  `json:"s_enc"`
		SMAC       hexBytes  `json:"s_mac"`
		InitialMCV hexBytes  `json:"initial_mcv"`
		Steps      []bspStep `json:"steps"`
	} `json:"mode51_session_chain"`
	PPK struct {
		PPKEnc     hexBytes  `json:"ppk_enc"`
		PPKMAC     hexBytes  `json:"ppk_mac"`
		InitialMCV hexBytes  `json:"initial_mcv"`
		Steps      []bspStep `json:"steps"`
	} `json:"mode51_ppk_chain"`
}

func loadVectors(t testing.TB) *bspVectors {
	t.Helper()
	raw, err := os.ReadFile(testenv.Path(t, "vectors", "bsp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v bspVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("bsp.json: %v", err)
	}
	if len(v.KDF) == 0 || len(v.Session.Steps) == 0 || len(v.PPK.Steps) == 0 {
		t.Fatal("bsp.json: missing vectors")
	}
	return &v
}

func key16(t testing.TB, b []byte) *[16]byte {
	t.Helper()
	if len(b) != 16 {
		t.Fatalf("key is %d bytes, want 16", len(b))
	}
	return (*[16]byte)(b)
}

// The SM-DP+ one-time key from the vector reproduces its public point, and
// ECDH with the eUICC's one-time key, from either side, gives Z.
func TestVectorECDH(t *testing.T) {
	v := loadVectors(t).ECDH
	smdp, err := NewOneTimeKey(esim.CurveP256, v.SMDPOtsk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(smdp.PublicKey(), v.SMDPOtpk) {
		t.Errorf("smdpOtpk = %x, want %x", smdp.PublicKey(), v.SMDPOtpk)
	}
	z, err := smdp.ECDH(v.EUICCOtpk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(z, v.Z) {
		t.Errorf("Z = %x, want %x", z, v.Z)
	}
}

func TestVectorKDF(t *testing.T) {
	for i, v := range loadVectors(t).KDF {
		if !bytes.Equal(v.KeyType, []byte{KeyTypeAES}) || !bytes.Equal(v.KeyLength, []byte{KeyLengthAES128}) {
			t.Fatalf("vector %d: keyType %x keyLength %x: only AES-128 (88 10) is defined", i, v.KeyType, v.KeyLength)
		}
		k, err := DeriveSessionKeys(v.Z, v.HostID, v.EID)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		for _, c := range []struct {
			name      string
			got, want []byte
		}{
			{"initial MCV", k.InitialMCV[:], v.InitialMCV},
			{"S-ENC", k.Enc[:], v.SEnc},
			{"S-MAC", k.MAC[:], v.SMAC},
		} {
			if !bytes.Equal(c.got, c.want) {
				t.Errorf("vector %d: %s = %x, want %x", i, c.name, c.got, c.want)
			}
		}
	}
}

// SharedInfo layout example from the spec digest §2.2.
func TestSharedInfoLayout(t *testing.T) {
	hostID := bytes.Repeat([]byte{0x80}, 8)
	eid, _ := hex.DecodeString("89049032123451234512345678901335")
	want, _ := hex.DecodeString(strings.ReplaceAll("88 10 08 8080808080808080 10 89049032123451234512345678901335", " ", ""))
	if got := AppendSharedInfo(nil, KeyTypeAES, KeyLengthAES128, hostID, eid); !bytes.Equal(got, want) {
		t.Errorf("SharedInfo = %x, want %x", got, want)
	}
}

// runChain protects each step's plaintext with one BSP instance, in order,
// and compares each segment byte for byte.
func runChain(t *testing.T, name string, enc, mac, mcv *[16]byte, steps []bspStep) {
	var s bsp
	s.init(enc, mac, mcv)
	for i, st := range steps {
		if len(st.Tag) != 1 {
			t.Fatalf("%s step %d: bad tag %x", name, i, st.Tag)
		}
		var got []byte
		switch st.Op {
		case "encrypt_and_mac":
			got = s.appendEncrypted(nil, st.Tag[0], st.Plaintext)
		case "mac_only":
			got = s.appendMACOnly(nil, st.Tag[0], st.Plaintext)
		default:
			t.Fatalf("%s step %d: unknown op %q", name, i, st.Op)
		}
		if !bytes.Equal(got, st.Segment) {
			t.Errorf("%s step %d (%s):\n got %x\nwant %x", name, i, st.Note, got, st.Segment)
		}
		if len(got) > MaxSegmentSize {
			t.Errorf("%s step %d: segment of %d bytes", name, i, len(got))
		}
	}
}

// openChain verifies and decrypts each expected segment with a fresh
// instance (the eUICC side) and compares the plaintext.
func openChain(t *testing.T, name string, enc, mac, mcv *[16]byte, steps []bspStep) {
	var s bsp
	s.init(enc, mac, mcv)
	for i, st := range steps {
		seg := parseOne(t, st.Segment)
		got, err := s.openSegment(nil, seg, st.Op == "encrypt_and_mac")
		if err != nil {
			t.Fatalf("%s step %d: open: %v", name, i, err)
		}
		if !bytes.Equal(got, st.Plaintext) {
			t.Errorf("%s step %d: opened %x, want %x", name, i, got, st.Plaintext)
		}
	}
}

func TestVectorSessionChain(t *testing.T) {
	v := loadVectors(t).Session
	runChain(t, "87/88/87", key16(t, v.SEnc), key16(t, v.SMAC), key16(t, v.InitialMCV), v.Steps)
	openChain(t, "87/88/87", key16(t, v.SEnc), key16(t, v.SMAC), key16(t, v.InitialMCV), v.Steps)
}

// The PPK keys of the vector are exactly what the session chain's
// ReplaceSessionKeys step carries (MCV first), and a new instance from them,
// counter back at 1, gives the two 86 segments.
func TestVectorPPKChain(t *testing.T) {
	all := loadVectors(t)
	v := all.PPK
	ppk := PPK{Enc: *key16(t, v.PPKEnc), MAC: *key16(t, v.PPKMAC), InitialMCV: *key16(t, v.InitialMCV)}
	rsk := all.Session.Steps[2].Plaintext
	if got := appendReplaceSessionKeys(nil, &ppk); !bytes.Equal(got, rsk) {
		t.Errorf("ReplaceSessionKeysRequest = %x, want %x", got, rsk)
	}
	runChain(t, "PPK 86", &ppk.Enc, &ppk.MAC, &ppk.InitialMCV, v.Steps)
	openChain(t, "PPK 86", &ppk.Enc, &ppk.MAC, &ppk.InitialMCV, v.Steps)

	// Protect with the same PPK over the concatenated plaintexts produces
	// exactly the concatenated segments.
	var upp, want []byte
	for _, st := range v.Steps {
		upp = append(upp, st.Plaintext...)
		want = append(want, st.Segment...)
	}
	ppp, err := ProtectWithPPK(upp, &ppk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ppp.Segments, want) || ppp.SegmentCount != len(v.Steps) {
		t.Errorf("ProtectWithPPK: %d segments, %d bytes; want %d segments, %d bytes (equal: %v)",
			ppp.SegmentCount, len(ppp.Segments), len(v.Steps), len(want), bytes.Equal(ppp.Segments, want))
	}
}

// The vector's StoreMetadata plaintext is what StoreMetadata.Marshal makes
// from its decoded fields, and Parse gives those fields back.
func TestVectorStoreMetadata(t *testing.T) {
	der := loadVectors(t).Session.Steps[1].Plaintext
	md, err := ParseStoreMetadata(der)
	if err != nil {
		t.Fatal(err)
	}
	if got := md.ICCID.String(); got != "89000123456789012341" {
		t.Errorf("ICCID = %q", got)
	}
	if md.ServiceProviderName != "GSMA_TEST" || md.ProfileName != "GSMA_TEST_PROFILE" || md.ProfileClass != ClassTest {
		t.Errorf("decoded %+v", md)
	}
	got, err := md.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, der) {
		t.Errorf("Marshal = %x, want %x", got, der)
	}
}

func parseOne(t testing.TB, b []byte) tlv {
	t.Helper()
	s := cryptoString(b)
	seg, err := readTLV(&s)
	if err != nil || !s.Empty() {
		t.Fatalf("segment %x: %v", b, err)
	}
	return seg
}
