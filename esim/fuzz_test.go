package esim

import (
	"bytes"
	"testing"
)

// Every parser: no panic, and whatever it accepts survives a round trip
// through its canonical text and its card coding.

func FuzzParseICCID(f *testing.F) {
	for _, s := range []string{"8944150000000000017", "89000123456789012341", "894415000000000013", "", "89441500000000000A7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseICCID(s)
		if (err == nil) != (CheckICCID([]byte(s)) == nil) {
			t.Fatalf("ParseICCID and CheckICCID disagree on %q", s)
		}
		if err != nil {
			return
		}
		if c.String() != s || !c.LuhnValid() {
			t.Fatalf("%q parsed as %q", s, c)
		}
		b, sw := c.BCD(), c.SwappedBCD()
		if d, err := ICCIDFromBCD(b[:]); err != nil || d != c {
			t.Fatalf("%q: BCD round trip %v, %v", s, d, err)
		}
		if d, err := ICCIDFromSwappedBCD(sw[:]); err != nil || d != c {
			t.Fatalf("%q: swapped BCD round trip %v, %v", s, d, err)
		}
	})
}

func FuzzICCIDFromBCD(f *testing.F) {
	f.Add(mustHex("8944150000000000017f"))
	f.Add(mustHex("8944150000000000f017"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ICCIDFromBCD(b)
		if err != nil {
			return
		}
		if got := c.BCD(); !bytes.Equal(got[:], b) {
			t.Fatalf("%x decoded as %s re-encodes as %x", b, c, got)
		}
	})
}

func FuzzParseIMSI(f *testing.F) {
	for _, s := range []string{"001010123456789", "001011", "00101", "0010101234567890", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseIMSI(s)
		if (err == nil) != (CheckIMSI([]byte(s)) == nil) {
			t.Fatalf("ParseIMSI and CheckIMSI disagree on %q", s)
		}
		if err != nil {
			return
		}
		ef := m.EF()
		if back, err := IMSIFromEF(ef[:]); err != nil || back != m || m.String() != s {
			t.Fatalf("%q: EF round trip %v, %v", s, back, err)
		}
	})
}

func FuzzIMSIFromEF(f *testing.F) {
	f.Add(mustHex("080910101032547698"))
	f.Add(mustHex("04011010f1ffffffff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := IMSIFromEF(b)
		if err != nil {
			return
		}
		if _, err := ParseIMSI(m.String()); err != nil {
			t.Fatalf("%x decoded to an invalid IMSI: %v", b, err)
		}
	})
}

func FuzzParseEID(f *testing.F) {
	f.Add("89049032123451234512345678901235")
	f.Add("89049032123451234512345678901236")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEID(s)
		if err != nil {
			return
		}
		b := e.BCD()
		if back, err := EIDFromBCD(b[:]); err != nil || back != e || e.String() != s {
			t.Fatalf("%q: BCD round trip %v, %v", s, back, err)
		}
		cd, err := EIDCheckDigits(s[:30])
		if err != nil || cd != s[30:] {
			t.Fatalf("%q: EIDCheckDigits = %q, %v", s, cd, err)
		}
	})
}

func FuzzEncodeCode(f *testing.F) {
	for _, s := range []string{"1234", "12345678", "0102030405060708", "0a0B0c0D0e0F1011", "123", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range []CodeKind{PIN, PUK, ADM} {
			card, err := k.EncodeString(s)
			if err != nil {
				if card != [CodeSize]byte{} {
					t.Fatalf("%v %q: card form left behind on error", k, s)
				}
				continue
			}
			if err := k.Check(card[:]); err != nil {
				t.Fatalf("%v %q: own encoding fails Check: %v", k, s, err)
			}
			back, err := k.EncodeString(CodeText(card[:]))
			if err != nil || back != card {
				t.Fatalf("%v %q: text round trip %x, %v", k, s, back, err)
			}
		}
	})
}

func FuzzCheckCode(f *testing.F) {
	f.Add(mustHex("31323334ffffffff"))
	f.Add(mustHex("0102030405060708"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range []CodeKind{PIN, PUK, ADM} {
			if k.Check(b) != nil {
				continue
			}
			// Every valid card form has a text form that encodes back to it.
			back, err := k.EncodeString(CodeText(b))
			if err != nil || !bytes.Equal(back[:], b) {
				t.Fatalf("%v %x: text form %q encodes to %x, %v", k, b, CodeText(b), back, err)
			}
		}
	})
}

func FuzzParseAlgorithm(f *testing.F) {
	for _, s := range []string{"milenage", "TUAK", "3", "xor", "", "unset"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAlgorithm(s)
		if err != nil {
			if a != AlgorithmUnset {
				t.Fatalf("%q: %v with an error", s, a)
			}
			return
		}
		if !a.Valid() {
			t.Fatalf("%q parsed as %v", s, a)
		}
		if back, err := ParseAlgorithm(a.String()); back != a || err != nil {
			t.Fatalf("%v does not read back", a)
		}
	})
}

func FuzzParseCurve(f *testing.F) {
	for _, s := range []string{"P-256", "brp", "", "secp384r1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCurve(s)
		if err != nil {
			return
		}
		if back, err := CurveFromOID(c.OID()); back != c || err != nil {
			t.Fatalf("%q: OID round trip %v, %v", s, back, err)
		}
	})
}
