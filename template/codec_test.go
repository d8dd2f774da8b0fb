package template

import (
	"encoding/hex"
	"strings"
	"testing"
)

func stripSpace(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
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
