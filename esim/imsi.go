package esim

// IMSI is an International Mobile Subscriber Identity (ITU-T E.212): 6 to
// 15 decimal digits, MCC (3) + MNC (2 or 3) + MSIN. The zero IMSI is "not
// set". 6 is the shortest the card coding can express with an MCC, an MNC
// and one MSIN digit; networks use 14–15.
type IMSI struct{ digits string }

// IMSI digit counts.
const (
	MinIMSIDigits = 6
	MaxIMSIDigits = 15
)

// ParseIMSI validates an IMSI: 6–15 decimal digits.
func ParseIMSI(s string) (IMSI, error) {
	if err := CheckIMSI(s); err != nil {
		return IMSI{}, err
	}
	return IMSI{s}, nil
}

// CheckIMSI is ParseIMSI for callers that hold the digits in a buffer; it
// does not allocate unless it fails.
func CheckIMSI[S ~string | ~[]byte](s S) error {
	return checkDigits("IMSI", s, MinIMSIDigits, MaxIMSIDigits, "6-15 digits")
}

// String returns the digits ("" for the zero IMSI).
func (m IMSI) String() string { return m.digits }

// IsZero reports whether the IMSI is not set.
func (m IMSI) IsZero() bool { return m.digits == "" }

// MCC returns the mobile country code (the first three digits).
func (m IMSI) MCC() string {
	if len(m.digits) < 3 {
		return ""
	}
	return m.digits[:3]
}

// EF is the content of EF.IMSI (TS 31.102 §4.2.2): 9 bytes, byte 0 the
// number of bytes in use, byte 1 the first digit in its high nibble with the
// parity/type nibble (9 for an odd digit count, 1 for even), then the
// remaining digits two per byte, low nibble first, F padded.
func (m IMSI) EF() [9]byte {
	var out [9]byte
	n := len(m.digits)
	if n == 0 {
		return out
	}
	out[0] = byte((n + 2) / 2)
	parity := byte(0x1)
	if n%2 == 1 {
		parity = 0x9
	}
	out[1] = (m.digits[0]-'0')<<4 | parity
	for i := 1; i < MaxIMSIDigits; i += 2 {
		out[1+(i+1)/2] = nibble(m.digits, i+1)<<4 | nibble(m.digits, i)
	}
	return out
}

// ACC is the EF.ACC content derived from the IMSI (TS 22.011 §4.2: access
// classes 0–9 are allocated at random; by convention the IMSI's last digit
// picks it): the 16-bit big-endian value 1 << digit.
func (m IMSI) ACC() [2]byte {
	if m.digits == "" {
		return [2]byte{}
	}
	v := uint16(1) << (m.digits[len(m.digits)-1] - '0')
	return [2]byte{byte(v >> 8), byte(v)}
}

// IMSIFromEF decodes EF.IMSI content (see EF).
func IMSIFromEF(b []byte) (IMSI, error) {
	if len(b) != 9 {
		return IMSI{}, valueErr("EF.IMSI", ErrLength, "wrong length, want 9 bytes")
	}
	l := int(b[0])
	if l < 1 || l > 8 {
		return IMSI{}, valueErr("EF.IMSI", ErrLength, "length byte out of range 1-8")
	}
	ds := make([]byte, 0, 2*l)
	ds = append(ds, b[1]>>4)
	for _, c := range b[2 : 1+l] {
		ds = append(ds, c&0x0F, c>>4)
	}
	out := make([]byte, 0, len(ds))
	for i, d := range ds {
		if d == 0xF {
			if i != len(ds)-1 {
				return IMSI{}, valueErr("EF.IMSI", ErrSyntax, "F padding inside the digits")
			}
			break
		}
		if d > 9 {
			return IMSI{}, valueErr("EF.IMSI", ErrSyntax, "a nibble that is not a decimal digit")
		}
		out = append(out, '0'+d)
	}
	odd := len(out)%2 == 1
	if (odd && b[1]&0x0F != 0x9) || (!odd && b[1]&0x0F != 0x1) {
		return IMSI{}, valueErr("EF.IMSI", ErrSyntax, "parity nibble does not match the digit count")
	}
	if err := CheckIMSI(out); err != nil {
		return IMSI{}, err
	}
	return IMSI{string(out)}, nil
}

// MarshalText gives the digits.
func (m IMSI) MarshalText() ([]byte, error) { return []byte(m.digits), nil }

// UnmarshalText parses with ParseIMSI; empty text is the zero IMSI.
func (m *IMSI) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = IMSI{}
		return nil
	}
	v, err := ParseIMSI(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
