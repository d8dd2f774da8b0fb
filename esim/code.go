package esim

// CodeKind is the kind of a secret code held on the card: PIN, PUK or ADM
// (TS 102 221 §9, SAIP pinCodes/pukCodes). All three are stored in the same
// 8-byte card form, the SAIP pinValue/pukValue: ASCII digits padded with
// FF ("1234" → 31 32 33 34 FF FF FF FF); an ADM code may also be an
// arbitrary 8-byte binary key, written as 16 hex digits. The kinds differ
// only in what they accept:
//
//	PIN  4–8 digits
//	PUK  exactly 8 digits
//	ADM  4–8 digits, or 16 hex digits (binary key)
//
// Errors name the kind and the rule, never the code.
type CodeKind uint8

// Code kinds.
const (
	PIN CodeKind = iota + 1
	PUK
	ADM
)

// CodeSize is the size of the card form.
const CodeSize = 8

func (k CodeKind) String() string {
	switch k {
	case PIN:
		return "PIN"
	case PUK:
		return "PUK"
	case ADM:
		return "ADM"
	}
	return "code"
}

func (k CodeKind) minDigits() int {
	if k == PUK {
		return CodeSize
	}
	return 4
}

// textRule is the rule a text code breaks, as the error reason.
func (k CodeKind) textRule() string {
	switch k {
	case PUK:
		return "want exactly 8 digits"
	case ADM:
		return "want 4-8 digits or 16 hex digits"
	}
	return "want 4-8 digits"
}

// Encode writes the card form of the text code into dst (CodeSize bytes).
// On error dst is left zeroed.
func (k CodeKind) Encode(dst, text []byte) error {
	if len(dst) != CodeSize {
		return valueErr(k.String(), ErrLength, "destination is not 8 bytes")
	}
	if k == ADM && len(text) == 2*CodeSize {
		// 16 hex digits (decimal ones included) are a binary key.
		for i := range dst {
			h, l := hexVal(text[2*i]), hexVal(text[2*i+1])
			if h|l == 0xFF {
				clear(dst)
				return valueErr(k.String(), ErrSyntax, k.textRule())
			}
			dst[i] = h<<4 | l
		}
		return nil
	}
	if !digits(text) {
		clear(dst)
		return valueErr(k.String(), ErrSyntax, k.textRule())
	}
	if len(text) < k.minDigits() || len(text) > CodeSize {
		clear(dst)
		return valueErr(k.String(), ErrLength, k.textRule())
	}
	n := copy(dst, text)
	for i := n; i < CodeSize; i++ {
		dst[i] = 0xFF
	}
	return nil
}

// EncodeString is Encode for a code given as a string (a flag, a config
// value) returning the card form by value.
func (k CodeKind) EncodeString(text string) ([CodeSize]byte, error) {
	var out [CodeSize]byte
	err := k.Encode(out[:], []byte(text))
	return out, err
}

// Check validates a code already in card form: CodeSize bytes of minimum
// digit count ASCII digits padded with FF, or, for ADM, any CodeSize bytes.
func (k CodeKind) Check(card []byte) error {
	if len(card) != CodeSize {
		return valueErr(k.String(), ErrLength, "wrong length, want the 8-byte card value")
	}
	if k == ADM {
		return nil
	}
	n, ok := cardDigits(card)
	if !ok {
		return valueErr(k.String(), ErrSyntax, "not ASCII digits padded with FF")
	}
	if n < k.minDigits() {
		return valueErr(k.String(), ErrLength, k.textRule())
	}
	return nil
}

// cardDigits returns the number of leading ASCII digits of card and whether
// everything after them is FF padding.
func cardDigits(card []byte) (int, bool) {
	n := 0
	for n < len(card) && card[n]-'0' <= 9 {
		n++
	}
	for _, c := range card[n:] {
		if c != 0xFF {
			return n, false
		}
	}
	return n, true
}

// CodeIsDigits reports whether a card-form value is written as digits in
// text form (4–8 ASCII digits padded with FF), as CodeText does.
func CodeIsDigits(card []byte) bool {
	n, ok := cardDigits(card)
	return ok && n >= 4 && len(card) == CodeSize
}

// AppendCodeText appends the text form of a card-form code: its digits when
// it is 4–8 ASCII digits padded with FF, otherwise its bytes in upper-case
// hex (a binary ADM key). Encode of the text gives back the same card form
// for every code valid for its kind. Nothing is appended for an empty value.
func AppendCodeText(dst, card []byte) []byte {
	if len(card) == 0 {
		return dst
	}
	if CodeIsDigits(card) {
		for _, c := range card {
			if c != 0xFF {
				dst = append(dst, c)
			}
		}
		return dst
	}
	const hx = "0123456789ABCDEF"
	for _, c := range card {
		dst = append(dst, hx[c>>4], hx[c&0x0F])
	}
	return dst
}

// CodeText is AppendCodeText returning a string ("" for an empty value).
// The result is the secret itself: callers keep it out of logs and errors.
func CodeText(card []byte) string { return string(AppendCodeText(nil, card)) }

// hexVal is the value of a hex digit, or 0xFF.
func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0xFF
}
