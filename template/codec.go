package template

import (
	"fmt"
)

// ICCIDs, IMSIs and PINs have fixed encodings inside a UPP. These helpers
// are shared by Compile/Apply, by the read-back accessors and by callers
// such as bpp (StoreMetadata carries the ICCID in EF.ICCID coding).

// EncodeICCID encodes an ICCID (18–20 decimal digits, taken as given: no
// Luhn digit is added or checked) in the ProfileHeader coding: plain BCD in
// reading order, padded with F on the right to 10 bytes.
func EncodeICCID(iccid string) ([10]byte, error) {
	var out [10]byte
	if err := checkDigits("ICCID", iccid, 18, 20); err != nil {
		return out, err
	}
	for i := range out {
		out[i] = nibble(iccid, 2*i)<<4 | nibble(iccid, 2*i+1)
	}
	return out, nil
}

// EncodeEFICCID encodes an ICCID in EF.ICCID coding (also used by the SGP.22
// StoreMetadata iccid field): BCD with the nibbles of each byte swapped, so
// the F padding ends up in the high nibble of the last byte.
func EncodeEFICCID(iccid string) ([10]byte, error) {
	b, err := EncodeICCID(iccid)
	if err != nil {
		return b, err
	}
	return SwapICCID(b), nil
}

// SwapICCID converts between the header (plain BCD) and EF.ICCID (swapped
// BCD) codings; it is its own inverse.
func SwapICCID(b [10]byte) [10]byte {
	for i, c := range b {
		b[i] = c<<4 | c>>4
	}
	return b
}

// DecodeICCID decodes the header coding (plain BCD, F padded) to digits.
func DecodeICCID(b []byte) (string, error) {
	if len(b) != 10 {
		return "", fmt.Errorf("ICCID is %d bytes, want 10: %w", len(b), ErrValue)
	}
	out := make([]byte, 0, 20)
	for i := 0; i < 20; i++ {
		d := b[i/2] >> 4
		if i%2 == 1 {
			d = b[i/2] & 0x0F
		}
		switch {
		case d == 0xF:
			if !allF(b, i) {
				return "", fmt.Errorf("ICCID has digits after F padding: %w", ErrValue)
			}
			return string(out), nil
		case d > 9:
			return "", fmt.Errorf("ICCID has a non-decimal nibble: %w", ErrValue)
		}
		out = append(out, '0'+d)
	}
	return string(out), nil
}

// DecodeEFICCID decodes the EF.ICCID (swapped BCD) coding to digits.
func DecodeEFICCID(b []byte) (string, error) {
	if len(b) != 10 {
		return "", fmt.Errorf("ICCID is %d bytes, want 10: %w", len(b), ErrValue)
	}
	var a [10]byte
	copy(a[:], b)
	a = SwapICCID(a)
	return DecodeICCID(a[:])
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

// EncodeIMSI encodes an IMSI (6–15 digits) as EF.IMSI content: 9 bytes,
// byte 0 the number of bytes in use, byte 1 the first digit with the
// parity/type nibble (9 for an odd digit count, 1 for even), then the
// remaining digits nibble-swapped and F padded.
func EncodeIMSI(imsi string) ([9]byte, error) {
	var out [9]byte
	if err := checkDigits("IMSI", imsi, 6, 15); err != nil {
		return out, err
	}
	n := len(imsi)
	out[0] = byte((n + 2) / 2)
	parity := byte(0x1)
	if n%2 == 1 {
		parity = 0x9
	}
	out[1] = (imsi[0]-'0')<<4 | parity
	for i := 1; i < 15; i += 2 {
		out[1+(i+1)/2] = nibble(imsi, i+1)<<4 | nibble(imsi, i)
	}
	return out, nil
}

// DecodeIMSI decodes EF.IMSI content.
func DecodeIMSI(b []byte) (string, error) {
	if len(b) != 9 {
		return "", fmt.Errorf("EF.IMSI is %d bytes, want 9: %w", len(b), ErrValue)
	}
	l := int(b[0])
	if l < 1 || l > 8 {
		return "", fmt.Errorf("EF.IMSI length byte %d: %w", l, ErrValue)
	}
	digits := make([]byte, 0, 15)
	digits = append(digits, b[1]>>4)
	for _, c := range b[2 : 1+l] {
		digits = append(digits, c&0x0F, c>>4)
	}
	out := make([]byte, 0, 15)
	for i, d := range digits {
		if d == 0xF {
			if i != len(digits)-1 {
				return "", fmt.Errorf("EF.IMSI has F inside the digits: %w", ErrValue)
			}
			break
		}
		if d > 9 {
			return "", fmt.Errorf("EF.IMSI has a non-decimal nibble: %w", ErrValue)
		}
		out = append(out, '0'+d)
	}
	odd := len(out)%2 == 1
	if (odd && b[1]&0x0F != 0x9) || (!odd && b[1]&0x0F != 0x1) {
		return "", fmt.Errorf("EF.IMSI parity nibble %X does not match %d digits: %w", b[1]&0x0F, len(out), ErrValue)
	}
	return string(out), nil
}

// EncodeACC returns EF.ACC for an IMSI: the access class is the IMSI's last
// digit, coded as the 16-bit big-endian value 1 << digit.
func EncodeACC(imsi string) ([2]byte, error) {
	if err := checkDigits("IMSI", imsi, 6, 15); err != nil {
		return [2]byte{}, err
	}
	v := uint16(1) << (imsi[len(imsi)-1] - '0')
	return [2]byte{byte(v >> 8), byte(v)}, nil
}

// EncodePIN encodes a PIN, PUK or ADM code as the 8-byte pinValue/pukValue:
// 4–8 decimal digits (8 for a PUK) as ASCII padded with FF, or, for ADM
// keys only, 16 hex digits giving an 8-byte binary value.
func EncodePIN(field, code string, minDigits int, allowHex bool) ([8]byte, error) {
	var out [8]byte
	if allowHex && len(code) == 16 {
		for i := 0; i < 8; i++ {
			h, ok1 := hexVal(code[2*i])
			l, ok2 := hexVal(code[2*i+1])
			if !ok1 || !ok2 {
				return out, valueErr(field, "want %d–8 decimal digits or 16 hex digits", minDigits)
			}
			out[i] = h<<4 | l
		}
		return out, nil
	}
	if err := checkDigits(field, code, minDigits, 8); err != nil {
		return out, err
	}
	for i := range out {
		out[i] = 0xFF
	}
	copy(out[:], code)
	return out, nil
}

// CheckCardPIN validates a code in card form (see EncodePIN): 8 bytes,
// minDigits–8 ASCII digits padded with FF, or with binaryOK (ADM keys) any
// 8 bytes. Errors never echo the code.
func CheckCardPIN(field string, b []byte, minDigits int, binaryOK bool) error {
	if len(b) != 8 {
		return valueErr(field, "%d bytes, want the 8-byte card form", len(b))
	}
	if binaryOK {
		return nil
	}
	n := 0
	for n < 8 && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	for i := n; i < 8; i++ {
		if b[i] != 0xFF {
			return valueErr(field, "byte %d is neither a decimal digit nor FF padding", i+1)
		}
	}
	if n < minDigits {
		return valueErr(field, "%d digits, want %d–8", n, minDigits)
	}
	return nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DecodePIN returns the digits of an ASCII/FF-padded pinValue, or the hex
// form of a binary value.
func DecodePIN(b []byte) string {
	n := len(b)
	for n > 0 && b[n-1] == 0xFF {
		n--
	}
	ascii := n > 0
	for _, c := range b[:n] {
		if c < '0' || c > '9' {
			ascii = false
		}
	}
	if ascii {
		return string(b[:n])
	}
	const hx = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hx[c>>4], hx[c&0x0F])
	}
	return string(out)
}

// checkDigits validates a decimal string's length without echoing it.
func checkDigits(field, s string, min, max int) error {
	if len(s) < min || len(s) > max {
		return valueErr(field, "%d digits, want %d–%d", len(s), min, max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return valueErr(field, "non-decimal character at position %d", i+1)
		}
	}
	return nil
}

// nibble returns digit i of s, or F beyond its end.
func nibble(s string, i int) byte {
	if i < len(s) {
		return s[i] - '0'
	}
	return 0xF
}
