package esim

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseICCID(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		err      error
		reason   string
	}{
		{"18 digits", "894415000000000013", nil, ""},
		{"19 digits", "8944150000000000017", nil, ""},
		{"20 digits", "89441500000000000013", nil, ""},
		{"20 digits, SGP.22 example", "89000123456789012341", nil, ""},
		{"bad Luhn digit", "8944150000000000018", ErrCheckDigit, "bad Luhn check digit"},
		{"bad Luhn digit, 20", "89441500000000000014", ErrCheckDigit, "bad Luhn check digit"},
		{"17 digits", "89441500000000016", ErrLength, "wrong length, want 18-20 digits"},
		{"21 digits", "894415000000000000013", ErrLength, "wrong length, want 18-20 digits"},
		{"letter", "89441500000000000A7", ErrSyntax, "not decimal digits"},
		{"F padding in text", "894415000000000001F", ErrSyntax, "not decimal digits"},
		{"space", "8944150000000000017 ", ErrSyntax, "not decimal digits"},
		{"empty", "", ErrMissing, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseICCID(tc.in)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("ParseICCID(%q) error %v, want %v", tc.in, err, tc.err)
			}
			if err != nil {
				if Reason(err) != tc.reason || !c.IsZero() {
					t.Errorf("reason %q, want %q (value %v)", Reason(err), tc.reason, c)
				}
				if tc.in != "" && strings.Contains(err.Error(), tc.in) {
					t.Errorf("error %q echoes the value", err)
				}
				if CheckICCID([]byte(tc.in)) == nil {
					t.Error("CheckICCID([]byte) accepts what ParseICCID rejects")
				}
				return
			}
			if c.String() != tc.in || c.IsZero() || !c.LuhnValid() {
				t.Errorf("ParseICCID(%q) = %q", tc.in, c)
			}
		})
	}
}

func TestICCIDCodings(t *testing.T) {
	for _, tc := range []struct{ in, bcd, swapped string }{
		{"89000123456789012341", "89000123456789012341", "98001032547698103214"},
		{"8944150000000000017", "8944150000000000017f", "984451000000000010f7"},
		{"894415000000000013", "894415000000000013ff", "984451000000000031ff"},
	} {
		c, err := ParseICCID(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		b, s := c.BCD(), c.SwappedBCD()
		if hex.EncodeToString(b[:]) != tc.bcd || hex.EncodeToString(s[:]) != tc.swapped {
			t.Errorf("%s: BCD %x, swapped %x; want %s, %s", tc.in, b, s, tc.bcd, tc.swapped)
		}
		if d, err := ICCIDFromBCD(b[:]); err != nil || d != c {
			t.Errorf("%s: ICCIDFromBCD = %v, %v", tc.in, d, err)
		}
		if d, err := ICCIDFromSwappedBCD(s[:]); err != nil || d != c {
			t.Errorf("%s: ICCIDFromSwappedBCD = %v, %v", tc.in, d, err)
		}
	}
	for _, tc := range []struct {
		name, bcd string
		err       error
	}{
		{"digits after padding", "8944150000000000f017", ErrSyntax},
		{"non-decimal nibble", "89441500000000000a17", ErrSyntax},
		{"9 bytes", "894415000000000001", ErrLength},
		{"too few digits", "8944150000000000ffff", ErrLength},
	} {
		if _, err := ICCIDFromBCD(mustHex(tc.bcd)); !errors.Is(err, tc.err) {
			t.Errorf("%s: ICCIDFromBCD error %v, want %v", tc.name, err, tc.err)
		}
	}
	// A template's placeholder ICCID is decoded as it is, Luhn or not.
	c, err := ICCIDFromBCD(mustHex("89441500000000000018"))
	if err != nil || c.LuhnValid() {
		t.Errorf("decoded placeholder: %v, %v, LuhnValid %v", c, err, c.LuhnValid())
	}
}

// The codings of the SAIP spec digest (section 1.4), byte for byte.
func TestSpecDigestCodings(t *testing.T) {
	for _, c := range []struct{ iccid, header, ef string }{
		{"8949449999999990171", "8949449999999990171f", "989444999999990971f1"},
		{"89000123456789012341", "89000123456789012341", "98001032547698103214"},
		{"894944999999999017", "894944999999999017ff", "989444999999990971ff"},
	} {
		ic, err := ICCIDFromBCD(mustHex(c.header))
		if err != nil || ic.String() != c.iccid {
			t.Fatalf("ICCIDFromBCD(%s) = %v, %v", c.header, ic, err)
		}
		if h, ef := ic.BCD(), ic.SwappedBCD(); hex.EncodeToString(h[:]) != c.header || hex.EncodeToString(ef[:]) != c.ef {
			t.Fatalf("%s: BCD %x, swapped %x", c.iccid, h, ef)
		}
	}
	for _, c := range []struct{ imsi, ef, acc string }{
		{"001010123456789", "080910101032547698", "0200"},
		{"00101012345678", "0801101010325476f8", "0100"},
		{"310150123456789", "083901511032547698", "0200"},
		{"001010123456063", "080910101032540636", "0008"},
		{"123456", "04113254f6ffffffff", "0040"},
	} {
		m, err := ParseIMSI(c.imsi)
		if err != nil {
			t.Fatal(err)
		}
		if ef, acc := m.EF(), m.ACC(); hex.EncodeToString(ef[:]) != c.ef || hex.EncodeToString(acc[:]) != c.acc {
			t.Fatalf("%s: EF.IMSI %x EF.ACC %x, want %s %s", c.imsi, ef, acc, c.ef, c.acc)
		}
	}
}

func TestLuhnDigit(t *testing.T) {
	for _, tc := range []struct {
		payload string
		digit   byte
	}{
		{"894415000000000001", '7'},
		{"8900012345678901234", '1'},
		{"7992739871", '3'}, // the classic example
		{"8944150000000000000", '5'},
		{"898821000000000010", '3'},
		{"0", '0'},
	} {
		d, err := LuhnDigit(tc.payload)
		if err != nil || d != tc.digit {
			t.Errorf("LuhnDigit(%s) = %c, %v; want %c", tc.payload, d, err, tc.digit)
		}
		if !LuhnValid(tc.payload + string(d)) {
			t.Errorf("%s%c must pass Luhn", tc.payload, d)
		}
		for w := byte('0'); w <= '9'; w++ {
			if w != d && LuhnValid(tc.payload+string(w)) {
				t.Errorf("%s%c must fail Luhn", tc.payload, w)
			}
		}
	}
	for _, bad := range []string{"", "12a4"} {
		if _, err := LuhnDigit(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("LuhnDigit(%q) error %v, want ErrSyntax", bad, err)
		}
	}
}

func TestParseIMSI(t *testing.T) {
	for _, tc := range []struct {
		in  string
		err error
		ef  string
		acc string
	}{
		{"001010123456789", nil, "080910101032547698", "0200"},
		{"23415123456789", nil, "0821435121436587f9", "0200"},
		{"001011", nil, "04011010f1ffffffff", "0002"},
		{"0010112", nil, "0409101021ffffffff", "0004"},
		{"00101", ErrLength, "", ""},
		{"0010101234567890", ErrLength, "", ""},
		{"00101012345678a", ErrSyntax, "", ""},
		{"", ErrMissing, "", ""},
	} {
		m, err := ParseIMSI(tc.in)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("ParseIMSI(%q) error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		ef, acc := m.EF(), m.ACC()
		if hex.EncodeToString(ef[:]) != tc.ef || hex.EncodeToString(acc[:]) != tc.acc {
			t.Errorf("%s: EF %x ACC %x, want %s %s", tc.in, ef, acc, tc.ef, tc.acc)
		}
		if back, err := IMSIFromEF(ef[:]); err != nil || back != m {
			t.Errorf("%s: IMSIFromEF = %v, %v", tc.in, back, err)
		}
		if m.MCC() != tc.in[:3] {
			t.Errorf("%s: MCC %s", tc.in, m.MCC())
		}
	}
	for _, tc := range []struct {
		name, ef string
	}{
		{"8 bytes", "0809101010325476"},
		{"length byte 0", "000910101032547698"},
		{"length byte 9", "090910101032547698"},
		{"parity of an even count for 15 digits", "080110101032547698"},
		{"F inside", "0809f0101032547698"},
		{"non-decimal", "080910101032547a98"},
		{"too short", "0209ffffffffffffff"},
	} {
		if _, err := IMSIFromEF(mustHex(tc.ef)); err == nil {
			t.Errorf("%s: IMSIFromEF accepted %s", tc.name, tc.ef)
		}
	}
}

func TestParseEID(t *testing.T) {
	const sgp26 = "89049032123451234512345678901235" // the SGP.26 test eUICC
	for _, tc := range []struct {
		name, in string
		err      error
	}{
		{"SGP.26 test eUICC", sgp26, nil},
		{"check digits off by one", "89049032123451234512345678901236", ErrCheckDigit},
		{"digits swapped", "89049032123451234512345678910235", ErrCheckDigit},
		{"31 digits", sgp26[:31], ErrLength},
		{"33 digits", sgp26 + "0", ErrLength},
		{"hex letter", "8904903212345123451234567890123A", ErrSyntax},
		{"empty", "", ErrMissing},
	} {
		e, err := ParseEID(tc.in)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: ParseEID error %v, want %v", tc.name, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		b := e.BCD()
		if hex.EncodeToString(b[:]) != tc.in || e.String() != tc.in {
			t.Errorf("%s: BCD %x", tc.name, b)
		}
		if back, err := EIDFromBCD(b[:]); err != nil || back != e {
			t.Errorf("%s: EIDFromBCD = %v, %v", tc.name, back, err)
		}
	}
	if cd, err := EIDCheckDigits(sgp26[:30]); err != nil || cd != "35" {
		t.Errorf("EIDCheckDigits = %q, %v; want 35", cd, err)
	}
	if _, err := EIDCheckDigits(sgp26[:29]); !errors.Is(err, ErrLength) {
		t.Errorf("EIDCheckDigits(29 digits) error %v", err)
	}
	if _, err := EIDFromBCD(mustHex("8904903212345123451234567890123f")); !errors.Is(err, ErrSyntax) {
		t.Errorf("EIDFromBCD with F nibble: %v", err)
	}
}

func TestCodes(t *testing.T) {
	for _, tc := range []struct {
		kind CodeKind
		text string
		card string // hex; "" = rejected
		err  error
	}{
		{PIN, "1234", "31323334ffffffff", nil},
		{PIN, "12345678", "3132333435363738", nil},
		{PIN, "123", "", ErrLength},
		{PIN, "123456789", "", ErrLength},
		{PIN, "12a4", "", ErrSyntax},
		{PIN, "0102030405060708", "", ErrLength},
		{PIN, "0A02030405060708", "", ErrSyntax},
		{PUK, "12345678", "3132333435363738", nil},
		{PUK, "1234567", "", ErrLength},
		{PUK, "", "", ErrLength},
		{ADM, "1234", "31323334ffffffff", nil},
		{ADM, "0102030405060708", "0102030405060708", nil},
		{ADM, "0A0b0C0d0E0f1011", "0a0b0c0d0e0f1011", nil},
		{ADM, "0A0b0C0d0E0f101g", "", ErrSyntax},
		{ADM, "123456789", "", ErrLength},
	} {
		var dst [CodeSize]byte
		err := tc.kind.Encode(dst[:], []byte(tc.text))
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%v %q: error %v, want %v", tc.kind, tc.text, err, tc.err)
			continue
		}
		if err != nil {
			if dst != [CodeSize]byte{} {
				t.Errorf("%v %q: dst not cleared on error", tc.kind, tc.text)
			}
			if tc.text != "" && strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q echoes the code", err)
			}
			continue
		}
		if hex.EncodeToString(dst[:]) != tc.card {
			t.Errorf("%v %q: card %x, want %s", tc.kind, tc.text, dst, tc.card)
		}
		if err := tc.kind.Check(dst[:]); err != nil {
			t.Errorf("%v %q: Check of its own encoding: %v", tc.kind, tc.text, err)
		}
		// Round trip through the one text form (upper-case hex for keys).
		text := CodeText(dst[:])
		if want := strings.ToUpper(tc.text); text != want {
			t.Errorf("%v %q: CodeText = %q, want %q", tc.kind, tc.text, text, want)
		}
		back, err := tc.kind.EncodeString(text)
		if err != nil || back != dst {
			t.Errorf("%v %q: re-encoding %q gives %x, %v", tc.kind, tc.text, text, back, err)
		}
	}
	for _, tc := range []struct {
		kind CodeKind
		card string
		err  error
	}{
		{PIN, "31323334ffffffff", nil},
		{PIN, "313233ffffffffff", ErrLength},
		{PIN, "31323334ff35ffff", ErrSyntax},
		{PIN, "31323334ffffff", ErrLength},
		{PUK, "3132333435363738", nil},
		{PUK, "31323334ffffffff", ErrLength},
		{ADM, "0102030405060708", nil},
		{ADM, "01020304050607", ErrLength},
	} {
		if err := tc.kind.Check(mustHex(tc.card)); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%v Check(%s) = %v, want %v", tc.kind, tc.card, err, tc.err)
		}
	}
	if CodeText(nil) != "" || CodeText(mustHex("313233ffffffffff")) != "313233FFFFFFFFFF" {
		t.Error("CodeText of an empty or short value")
	}
}

func TestAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Algorithm
		err  error
	}{
		{"milenage", AlgorithmMilenage, nil},
		{"MILENAGE", AlgorithmMilenage, nil},
		{" 1 ", AlgorithmMilenage, nil},
		{"mil", AlgorithmMilenage, nil},
		{"tuak", AlgorithmTUAK, nil},
		{"2", AlgorithmTUAK, nil},
		{"test", AlgorithmTest, nil},
		{"XOR", AlgorithmTest, nil},
		{"usim-test-algorithm", AlgorithmTest, nil},
		{"3", AlgorithmTest, nil},
		{"", AlgorithmUnset, ErrMissing},
		{"0", AlgorithmUnset, ErrUnknown},
		{"unset", AlgorithmUnset, ErrUnknown},
		{"comp128", AlgorithmUnset, ErrUnknown},
	} {
		a, err := ParseAlgorithm(tc.in)
		if a != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v, %v", tc.in, a, err, tc.want, tc.err)
		}
	}
	for a := AlgorithmMilenage; a <= AlgorithmTest; a++ {
		if back, err := ParseAlgorithm(a.String()); back != a || err != nil || !a.Valid() {
			t.Errorf("%v does not read back: %v, %v", a, back, err)
		}
	}
	if AlgorithmUnset.Valid() || Algorithm(4).Valid() || Algorithm(4).String() != "algorithm(4)" || AlgorithmUnset.String() != "unset" {
		t.Error("unset and unknown algorithms")
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

var _ = bytes.Equal

func TestTextMarshalling(t *testing.T) {
	var v struct {
		ICCID ICCID
		IMSI  IMSI
		EID   EID
		Unset ICCID
	}
	in := `{"ICCID":"8944150000000000017","IMSI":"001010123456789","EID":"89049032123451234512345678901235","Unset":""}`
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil || string(out) != in {
		t.Fatalf("round trip %s, %v", out, err)
	}
	for _, bad := range []string{`{"ICCID":"8944150000000000018"}`, `{"IMSI":"12"}`, `{"EID":"1"}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
