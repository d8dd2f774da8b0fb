package esim

// EID is the eUICC identifier (GSMA SGP.29): 32 decimal digits whose last
// two are check digits computed as in ISO 7064 MOD 97-10 (the whole number
// mod 97 is 1). The zero EID is "not set".
type EID struct{ digits string }

// EIDDigits is the length of an EID.
const EIDDigits = 32

// ParseEID validates an EID: 32 decimal digits with valid check digits.
func ParseEID(s string) (EID, error) {
	if err := checkDigits("EID", s, EIDDigits, EIDDigits, "32 digits"); err != nil {
		return EID{}, err
	}
	if mod97(s) != 1 {
		return EID{}, valueErr("EID", ErrCheckDigit, "bad check digits (SGP.29: the number mod 97 must be 1)")
	}
	return EID{s}, nil
}

// EIDCheckDigits returns the two check digits for the first 30 digits of an
// EID (SGP.29 §2.2: 98 minus the 30 digits followed by "00", mod 97).
func EIDCheckDigits(first30 string) (string, error) {
	if err := checkDigits("EID", first30, EIDDigits-2, EIDDigits-2, "30 digits before the check digits"); err != nil {
		return "", err
	}
	c := 98 - mod97(first30+"00")
	return string([]byte{'0' + byte(c/10), '0' + byte(c%10)}), nil
}

// mod97 is the decimal number s mod 97.
func mod97(s string) int {
	r := 0
	for i := 0; i < len(s); i++ {
		r = (r*10 + int(s[i]-'0')) % 97
	}
	return r
}

// String returns the digits ("" for the zero EID).
func (e EID) String() string { return e.digits }

// IsZero reports whether the EID is not set.
func (e EID) IsZero() bool { return e.digits == "" }

// BCD is the 16-byte binary form of SGP.22 (ASN.1 Octet16, plain BCD in
// reading order): the EID in GetEUICCInfo, certificates and the SharedInfo
// of the session-key derivation.
func (e EID) BCD() [16]byte {
	var out [16]byte
	if e.digits == "" {
		return out
	}
	for i := range out {
		out[i] = (e.digits[2*i]-'0')<<4 | (e.digits[2*i+1] - '0')
	}
	return out
}

// EIDFromBCD decodes the 16-byte form and checks it as ParseEID does.
func EIDFromBCD(b []byte) (EID, error) {
	if len(b) != 16 {
		return EID{}, valueErr("EID", ErrLength, "wrong length, want 16 bytes of BCD")
	}
	s, err := decodeBCD("EID", b, true)
	if err != nil {
		return EID{}, err
	}
	return ParseEID(s)
}

// MarshalText gives the digits.
func (e EID) MarshalText() ([]byte, error) { return []byte(e.digits), nil }

// UnmarshalText parses with ParseEID; empty text is the zero EID.
func (e *EID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*e = EID{}
		return nil
	}
	v, err := ParseEID(string(b))
	if err != nil {
		return err
	}
	*e = v
	return nil
}
