package esim

// ICCID is an Integrated Circuit Card Identifier (ITU-T E.118): 18 to 20
// decimal digits, the last one a Luhn check digit over the others. The zero
// ICCID is "not set".
//
// ParseICCID (input from operators) requires the Luhn digit. An ICCID
// decoded from card coding (ICCIDFromBCD, ICCIDFromSwappedBCD) is taken as
// the card holds it, digits only: a template may carry any placeholder, so
// the Luhn digit is reported by LuhnValid rather than enforced.
type ICCID struct{ digits string }

// ICCID digit counts.
const (
	MinICCIDDigits = 18
	MaxICCIDDigits = 20
)

// ParseICCID validates an ICCID: 18–20 decimal digits with a valid Luhn
// check digit.
func ParseICCID(s string) (ICCID, error) {
	if err := CheckICCID(s); err != nil {
		return ICCID{}, err
	}
	return ICCID{s}, nil
}

// CheckICCID is ParseICCID for callers that hold the digits in a buffer
// (record readers); it does not allocate unless it fails.
func CheckICCID[S ~string | ~[]byte](s S) error {
	if err := checkDigits("ICCID", s, MinICCIDDigits, MaxICCIDDigits, "18-20 digits"); err != nil {
		return err
	}
	if !LuhnValid(s) {
		return valueErr("ICCID", ErrCheckDigit, "bad Luhn check digit")
	}
	return nil
}

// String returns the digits ("" for the zero ICCID).
func (c ICCID) String() string { return c.digits }

// IsZero reports whether the ICCID is not set.
func (c ICCID) IsZero() bool { return c.digits == "" }

// LuhnValid reports whether the last digit is the Luhn digit of the others.
func (c ICCID) LuhnValid() bool { return LuhnValid(c.digits) }

// BCD is the coding of the SAIP ProfileHeader iccid: plain BCD in reading
// order, padded on the right with F to 10 bytes.
func (c ICCID) BCD() [10]byte {
	var out [10]byte
	for i := range out {
		out[i] = nibble(c.digits, 2*i)<<4 | nibble(c.digits, 2*i+1)
	}
	return out
}

// SwappedBCD is the coding of EF.ICCID (TS 102 221) and of the SGP.22
// StoreMetadataRequest iccid: BCD with the nibbles of each byte swapped, so
// that the F padding ends up in the high nibble of the last byte.
func (c ICCID) SwappedBCD() [10]byte { return SwapNibbles(c.BCD()) }

// SwapNibbles converts between the plain and the swapped BCD codings; it is
// its own inverse.
func SwapNibbles(b [10]byte) [10]byte {
	for i, c := range b {
		b[i] = c<<4 | c>>4
	}
	return b
}

// ICCIDFromBCD decodes the plain BCD coding (see BCD).
func ICCIDFromBCD(b []byte) (ICCID, error) {
	if len(b) != 10 {
		return ICCID{}, valueErr("ICCID", ErrLength, "wrong length, want 10 bytes of BCD")
	}
	s, err := decodeBCD("ICCID", b, false)
	if err != nil {
		return ICCID{}, err
	}
	if len(s) < MinICCIDDigits {
		return ICCID{}, valueErr("ICCID", ErrLength, "wrong length, want 18-20 digits")
	}
	return ICCID{s}, nil
}

// ICCIDFromSwappedBCD decodes the swapped coding of EF.ICCID (see SwappedBCD).
func ICCIDFromSwappedBCD(b []byte) (ICCID, error) {
	if len(b) != 10 {
		return ICCID{}, valueErr("ICCID", ErrLength, "wrong length, want 10 bytes of BCD")
	}
	var a [10]byte
	copy(a[:], b)
	a = SwapNibbles(a)
	return ICCIDFromBCD(a[:])
}

// decodeBCD reads plain BCD digits up to the F padding, which must run to
// the end. full requires every nibble to be a digit.
func decodeBCD(what string, b []byte, full bool) (string, error) {
	out := make([]byte, 0, 2*len(b))
	for i := 0; i < 2*len(b); i++ {
		d := b[i/2] >> 4
		if i%2 == 1 {
			d = b[i/2] & 0x0F
		}
		switch {
		case d == 0xF && !full:
			if !allF(b, i) {
				return "", valueErr(what, ErrSyntax, "digits after the F padding")
			}
			return string(out), nil
		case d > 9:
			return "", valueErr(what, ErrSyntax, "a nibble that is not a decimal digit")
		}
		out = append(out, '0'+d)
	}
	return string(out), nil
}

// allF reports whether every nibble from nibble index i on is F.
func allF(b []byte, i int) bool {
	for ; i < 2*len(b); i++ {
		c := b[i/2]
		if i%2 == 0 {
			c >>= 4
		}
		if c&0x0F != 0x0F {
			return false
		}
	}
	return true
}

// nibble returns digit i of s, or F beyond its end.
func nibble(s string, i int) byte {
	if i < len(s) {
		return s[i] - '0'
	}
	return 0xF
}

// LuhnDigit returns the Luhn check digit ('0'-'9') of a payload of decimal
// digits (an ICCID without its last digit).
func LuhnDigit[S ~string | ~[]byte](payload S) (byte, error) {
	if len(payload) == 0 || !digits(payload) {
		return 0, valueErr("Luhn payload", ErrSyntax, "not decimal digits")
	}
	return '0' + luhn(payload, true), nil
}

// LuhnValid reports whether s (decimal digits) ends in the Luhn digit of the
// digits before it.
func LuhnValid[S ~string | ~[]byte](s S) bool {
	return len(s) >= 2 && digits(s) && luhn(s, false) == 0
}

// luhn returns the Luhn sum mod 10 complement over the digits of s: with
// payload true s is a payload (its last digit is doubled) and the result is
// its check digit; with payload false s ends in a check digit and the result
// is 0 when it is right.
func luhn[S ~string | ~[]byte](s S, payload bool) byte {
	sum := 0
	double := payload
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return byte((10 - sum%10) % 10)
}

// MarshalText gives the digits, so that JSON and log handlers print the
// ICCID rather than an empty struct.
func (c ICCID) MarshalText() ([]byte, error) { return []byte(c.digits), nil }

// UnmarshalText parses with ParseICCID; empty text is the zero ICCID.
func (c *ICCID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*c = ICCID{}
		return nil
	}
	v, err := ParseICCID(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
