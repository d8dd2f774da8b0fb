// Package activation is the SGP.22 activation code (§4.1): the string an
// operator hands to the end user, printed or shown as a QR code, from which
// the LPA learns the SM-DP+ address and the matching ID of a download
// order:
//
//	LPA:1$<SM-DP+ address>$<matching ID>[$<SM-DP+ OID>[$<CC required flag>]]
//
// The "LPA:" prefix belongs to the QR code and text forms a user scans or
// pastes; the activation code proper starts at the format "1".
package activation

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"unicode"

	qrcode "github.com/skip2/go-qrcode"
)

// Prefix precedes the activation code in QR codes.
const Prefix = "LPA:"

// ErrSyntax is wrapped by every parse and build error.
var ErrSyntax = errors.New("activation: malformed activation code")

// Code is an activation code.
type Code struct {
	SMDPAddress string // FQDN, optionally with :port
	MatchingID  string // may be empty (the SM-DP+ then finds the order by EID)
	SMDPOID     string // optional dotted OID of the SM-DP+ (its certificates' registeredID)
	CCRequired  bool   // the user must enter a confirmation code
}

// String returns the code with its "LPA:" prefix. Optional fields are
// written only as far as needed: the OID field stays (empty) when only the
// CC flag follows it. Validate first; String does not.
func (c Code) String() string {
	s := Prefix + "1$" + c.SMDPAddress + "$" + c.MatchingID
	switch {
	case c.CCRequired:
		s += "$" + c.SMDPOID + "$1"
	case c.SMDPOID != "":
		s += "$" + c.SMDPOID
	}
	return s
}

// Validate checks what would make the code ambiguous or unusable: an empty
// address, a '$' inside a field, an OID that is not dotted digits.
func (c Code) Validate() error {
	if c.SMDPAddress == "" {
		return fmt.Errorf("%w: empty SM-DP+ address", ErrSyntax)
	}
	for name, v := range map[string]string{"SM-DP+ address": c.SMDPAddress, "matching ID": c.MatchingID, "SM-DP+ OID": c.SMDPOID} {
		if strings.ContainsAny(v, "$\r\n") {
			return fmt.Errorf("%w: the %s contains '$' or a line break", ErrSyntax, name)
		}
	}
	// An FQDN or IP literal with an optional :port: the LPA dials it and
	// checks the TLS certificate against it.
	for _, r := range c.SMDPAddress {
		if !(r == '.' || r == '-' || r == ':' || r == '[' || r == ']' || r == '_' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("%w: SM-DP+ address %q holds %q", ErrSyntax, c.SMDPAddress, r)
		}
	}
	for _, r := range c.MatchingID {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: the matching ID holds a control character", ErrSyntax)
		}
	}
	if c.SMDPOID != "" && !dottedDigits(c.SMDPOID) {
		return fmt.Errorf("%w: SM-DP+ OID %q is not dotted decimal", ErrSyntax, c.SMDPOID)
	}
	return nil
}

func dottedDigits(s string) bool {
	for _, part := range strings.Split(s, ".") {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return false
		}
	}
	return true
}

// Parse reads an activation code, with or without the "LPA:" prefix (in
// either case: QR readers and users retype it).
func Parse(s string) (Code, error) {
	if len(s) >= len(Prefix) && strings.EqualFold(s[:len(Prefix)], Prefix) {
		s = s[len(Prefix):]
	}
	f := strings.Split(s, "$")
	if len(f) < 3 || len(f) > 5 {
		return Code{}, fmt.Errorf("%w: want 3 to 5 '$'-separated fields, got %d", ErrSyntax, len(f))
	}
	if f[0] != "1" {
		return Code{}, fmt.Errorf("%w: format %q (only 1 is defined)", ErrSyntax, f[0])
	}
	c := Code{SMDPAddress: f[1], MatchingID: f[2]}
	if len(f) > 3 {
		c.SMDPOID = f[3]
	}
	if len(f) > 4 {
		switch f[4] {
		case "1":
			c.CCRequired = true
		case "0", "":
		default:
			return Code{}, fmt.Errorf("%w: confirmation code flag %q (want 1 or 0)", ErrSyntax, f[4])
		}
	}
	return c, c.Validate()
}

// QRPNG returns the code as a QR code PNG of size×size pixels (with the
// quiet zone), at error correction level M: readable from paper and
// screens without growing dense.
func QRPNG(text string, size int) ([]byte, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("activation: QR code: %w", err)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, q.Image(size)); err != nil {
		return nil, fmt.Errorf("activation: QR code PNG: %w", err)
	}
	return b.Bytes(), nil
}
