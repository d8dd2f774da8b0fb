package template

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The codings from the spec digest (section 1.4), byte for byte.
func TestICCIDCodings(t *testing.T) {
	for _, c := range []struct{ iccid, header, ef string }{
		{"8949449999999990171", "894944999999999017 1f", "989444999999990971 f1"},
		{"89000123456789012341", "89000123456789012341", "98001032547698103214"},
		{"894944999999999017", "894944999999999017ff", "989444999999990971ff"},
	} {
		h, err := EncodeICCID(c.iccid)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := hex.DecodeString(stripSpace(c.header))
		if string(h[:]) != string(want) {
			t.Fatalf("EncodeICCID(%s) = %x, want %x", c.iccid, h, want)
		}
		ef, _ := EncodeEFICCID(c.iccid)
		wantEF, _ := hex.DecodeString(stripSpace(c.ef))
		if string(ef[:]) != string(wantEF) || SwapICCID(h) != ef || SwapICCID(ef) != h {
			t.Fatalf("EncodeEFICCID(%s) = %x, want %x", c.iccid, ef, wantEF)
		}
		if got, err := DecodeICCID(h[:]); err != nil || got != c.iccid {
			t.Fatalf("DecodeICCID = %q, %v", got, err)
		}
		if got, err := DecodeEFICCID(ef[:]); err != nil || got != c.iccid {
			t.Fatalf("DecodeEFICCID = %q, %v", got, err)
		}
	}
	for _, bad := range []string{"", "89494499999999901", "894944999999999017123", "89494499999999901x1"} {
		if _, err := EncodeICCID(bad); !errors.Is(err, ErrValue) {
			t.Fatalf("EncodeICCID(%q) error %v, want ErrValue", bad, err)
		}
	}
	if _, err := DecodeICCID([]byte{0x89, 0xF4, 0, 0, 0, 0, 0, 0, 0, 0}); !errors.Is(err, ErrValue) {
		t.Fatal("digits after F padding accepted")
	}
}

func stripSpace(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

func TestIMSIAndACCCodings(t *testing.T) {
	for _, c := range []struct{ imsi, ef, acc string }{
		{"001010123456789", "080910101032547698", "0200"},
		{"00101012345678", "0801101010325476f8", "0100"},
		{"310150123456789", "083901511032547698", "0200"},
		{"001010123456063", "080910101032540636", "0008"},
		{"123456", "04113254f6ffffffff", "0040"},
	} {
		b, err := EncodeIMSI(c.imsi)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(b[:]) != c.ef {
			t.Fatalf("EncodeIMSI(%s) = %x, want %s", c.imsi, b, c.ef)
		}
		if got, err := DecodeIMSI(b[:]); err != nil || got != c.imsi {
			t.Fatalf("DecodeIMSI(%x) = %q, %v", b, got, err)
		}
		a, _ := EncodeACC(c.imsi)
		if hex.EncodeToString(a[:]) != c.acc {
			t.Fatalf("EncodeACC(%s) = %x, want %s", c.imsi, a, c.acc)
		}
	}
}

func TestPINCodings(t *testing.T) {
	for _, c := range []struct {
		code   string
		min    int
		hexOK  bool
		want   string
		errors bool
	}{
		{"1234", 4, false, "31323334ffffffff", false},
		{"12345678", 8, false, "3132333435363738", false},
		{"0102030405060708", 4, true, "0102030405060708", false},
		{"0102030405060708", 4, false, "", true},
		{"123", 4, false, "", true},
		{"1234567", 8, false, "", true},
		{"12a4", 4, false, "", true},
	} {
		b, err := EncodePIN("PIN", c.code, c.min, c.hexOK)
		if c.errors {
			if !errors.Is(err, ErrValue) {
				t.Fatalf("EncodePIN(%q) error %v, want ErrValue", c.code, err)
			}
			continue
		}
		if err != nil || hex.EncodeToString(b[:]) != c.want {
			t.Fatalf("EncodePIN(%q) = %x, %v, want %s", c.code, b, err, c.want)
		}
		if got := DecodePIN(b[:]); got != c.code && got != stripSpace(c.want) {
			t.Fatalf("DecodePIN(%x) = %q", b, got)
		}
	}
}

func TestSMSPAndSPNCodings(t *testing.T) {
	rec := make([]byte, 42)
	if err := encodeSMSP(rec, "+447700900123"); err != nil {
		t.Fatal(err)
	}
	// 14 bytes alpha FF, indicators FD, TP-DA FF×12, SCA 07 91 44 77 00 09 10 32 FF.., PID/DCS/VP FF.
	want := strings.Repeat("ff", 14) + "fd" + strings.Repeat("ff", 12) + "0791447700091032" + strings.Repeat("ff", 4) + "ffffff"
	if got := hex.EncodeToString(rec); got != want {
		t.Fatalf("EF.SMSP record\n got %s\nwant %s", got, want)
	}
	if s, err := DecodeSMSP(rec); err != nil || s != "+447700900123" {
		t.Fatalf("DecodeSMSP = %q, %v", s, err)
	}
	msisdn := make([]byte, 39)
	if err := encodeMSISDN(msisdn, "0170123"); err != nil {
		t.Fatal(err)
	}
	// 25 bytes alpha FF, 05 81 10 07 21 F3, FF padding, CCP FF, Ext FF.
	if got, want := hex.EncodeToString(msisdn), strings.Repeat("ff", 25)+"0581100721f3"+strings.Repeat("ff", 8); got != want {
		t.Fatalf("EF.MSISDN record\n got %s\nwant %s", got, want)
	}
	if s, err := DecodeMSISDN(msisdn); err != nil || s != "0170123" {
		t.Fatalf("DecodeMSISDN = %q, %v", s, err)
	}
	var spn [17]byte
	if err := encodeSPN(&spn, "Op$_@", 1); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(spn[:]); got != "014f70021100ffffffffffffffffffffff" {
		t.Fatalf("EF.SPN = %s", got)
	}
	if err := encodeSPN(&spn, "€uro", 0); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(spn[:6]); got != "008020ac0075" {
		t.Fatalf("UCS-2 EF.SPN = %s", got)
	}
	if c, s, err := DecodeSPN(spn[:]); err != nil || s != "€uro" || c != 0 {
		t.Fatalf("DecodeSPN = %x %q %v", c, s, err)
	}
}
