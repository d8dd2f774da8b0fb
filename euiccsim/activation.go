package euiccsim

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ActivationCode is an SGP.22 §4.1 activation code:
//
//	[LPA:]1$<SM-DP+ address>$<matching ID>[$<SM-DP+ OID>[$<confirmation code required flag>]]
//
// The address may carry a :port. "$" cannot occur inside a field.
type ActivationCode struct {
	SMDPAddress string
	MatchingID  string // the AC_Token; may be empty (the SM-DP+ then finds the order by EID)
	SMDPOID     string // optional, dotted
	CCRequired  bool   // the trailing flag is "1"
}

// ErrActivationCode is wrapped by every activation-code parse error.
var ErrActivationCode = errors.New("invalid activation code")

func acErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s (want LPA:1$<SM-DP+ address>$<matching ID>[$<OID>[$1]])", ErrActivationCode, fmt.Sprintf(format, args...))
}

// ParseActivationCode parses an activation code, with or without the
// "LPA:" prefix of its QR-code form.
func ParseActivationCode(s string) (ActivationCode, error) {
	var ac ActivationCode
	body := s
	if len(body) >= 4 && strings.EqualFold(body[:4], "LPA:") {
		body = body[4:]
	}
	f := strings.Split(body, "$")
	if f[0] != "1" {
		return ac, acErr("format %q is not 1", f[0])
	}
	if len(f) < 3 {
		return ac, acErr("needs at least the address and the matching ID fields")
	}
	if len(f) > 5 {
		return ac, acErr("%d fields, at most 5", len(f))
	}
	ac.SMDPAddress, ac.MatchingID = f[1], f[2]
	if err := checkAddress(ac.SMDPAddress); err != nil {
		return ActivationCode{}, err
	}
	for _, r := range ac.MatchingID {
		if unicode.IsControl(r) {
			return ActivationCode{}, acErr("matching ID holds a control character")
		}
	}
	if len(f) >= 4 {
		ac.SMDPOID = f[3]
		if ac.SMDPOID != "" && strings.Trim(ac.SMDPOID, "0123456789.") != "" {
			return ActivationCode{}, acErr("SM-DP+ OID %q is not a dotted object identifier", ac.SMDPOID)
		}
	}
	if len(f) == 5 {
		switch f[4] {
		case "1":
			ac.CCRequired = true
		case "0", "":
		default:
			return ActivationCode{}, acErr("confirmation code flag %q is not 1", f[4])
		}
	}
	return ac, nil
}

// checkAddress accepts an FQDN (or IP literal) with an optional :port.
func checkAddress(a string) error {
	if a == "" {
		return acErr("empty SM-DP+ address")
	}
	for _, r := range a {
		if !(r == '.' || r == '-' || r == ':' || r == '[' || r == ']' || r == '_' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return acErr("SM-DP+ address %q holds %q", a, r)
		}
	}
	return nil
}

// String returns the activation code in its QR-code form, "LPA:1$…".
func (ac ActivationCode) String() string {
	s := "LPA:1$" + ac.SMDPAddress + "$" + ac.MatchingID
	switch {
	case ac.CCRequired:
		s += "$" + ac.SMDPOID + "$1"
	case ac.SMDPOID != "":
		s += "$" + ac.SMDPOID
	}
	return s
}
