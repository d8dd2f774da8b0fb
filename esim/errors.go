package esim

import "errors"

// Sentinel errors: every error of this package wraps exactly one of them
// inside a *ValueError.
var (
	// ErrMissing: the value is empty.
	ErrMissing = errors.New("missing")
	// ErrSyntax: a character that the value cannot contain (a non-digit in
	// an ICCID, a non-hex character in an ADM key …).
	ErrSyntax = errors.New("bad characters")
	// ErrLength: the value has the wrong number of digits or bytes.
	ErrLength = errors.New("wrong length")
	// ErrCheckDigit: the Luhn digit of an ICCID or the check digits of an
	// EID do not match.
	ErrCheckDigit = errors.New("bad check digit")
	// ErrUnknown: a name or number that is not one of the defined values
	// (algorithm, curve).
	ErrUnknown = errors.New("unknown value")
	// ErrPoint: an elliptic-curve public key that is not a valid
	// uncompressed point on its curve.
	ErrPoint = errors.New("not a valid point on the curve")
)

// ValueError says which kind of value is wrong and why, without the value.
type ValueError struct {
	What   string // "ICCID", "IMSI", "EID", "PIN", "PUK", "ADM", "algorithm", "curve"
	Reason string // e.g. "wrong length, want 18-20 digits"; never the value itself
	Err    error  // one of the sentinels
}

func (e *ValueError) Error() string { return e.What + ": " + e.Reason }

func (e *ValueError) Unwrap() error { return e.Err }

// Reason returns the reason of a *ValueError inside err (for messages that
// name the field themselves), or err's text when there is none.
func Reason(err error) string {
	var ve *ValueError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return err.Error()
}

func valueErr(what string, sentinel error, reason string) error {
	return &ValueError{What: what, Reason: reason, Err: sentinel}
}

// digits reports whether s is all decimal digits (true for "").
func digits[S ~string | ~[]byte](s S) bool {
	for i := 0; i < len(s); i++ {
		if s[i]-'0' > 9 {
			return false
		}
	}
	return true
}

// checkDigits is the shared shape check of the numeric identifiers.
func checkDigits[S ~string | ~[]byte](what string, s S, minLen, maxLen int, want string) error {
	switch {
	case len(s) == 0:
		return valueErr(what, ErrMissing, "missing")
	case !digits(s):
		return valueErr(what, ErrSyntax, "not decimal digits")
	case len(s) < minLen || len(s) > maxLen:
		return valueErr(what, ErrLength, "wrong length, want "+want)
	}
	return nil
}
