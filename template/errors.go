package template

import (
	"errors"
	"fmt"

	"github.com/perso-esim/perso/esim/tlv"
)

// Sentinel errors. Every error returned by this package wraps one of them
// (test with errors.Is) inside an *Error that says where the problem is.
var (
	// ErrTruncated, ErrIndefiniteLength, ErrNotDER and ErrBadTag are the
	// DER syntax errors of esim/tlv (the same values): a TLV running past
	// its parent or the input; an indefinite length; a tag or length not in
	// minimal form or a length beyond tlv.MaxLength; a zero tag or one longer
	// than tlv.MaxTagOctets.
	ErrTruncated        = tlv.ErrTruncated
	ErrIndefiniteLength = tlv.ErrIndefiniteLength
	ErrNotDER           = tlv.ErrNotDER
	ErrBadTag           = tlv.ErrBadTag
	// ErrTooDeep: elements nested deeper than MaxDepth.
	ErrTooDeep = errors.New("nesting too deep")
	// ErrStructure: an element is missing, unexpected, of the wrong
	// primitive/constructed form or of the wrong size for its ASN.1 type.
	ErrStructure = errors.New("malformed element")
	// ErrOrder: PEs in the wrong order (header first, end last, exactly once).
	ErrOrder = errors.New("wrong profile element order")
	// ErrDuplicateID: two PEs carry the same identification number.
	ErrDuplicateID = errors.New("duplicate PE identification")
	// ErrMissingPE: the header declares a mandatory service whose PE is absent.
	ErrMissingPE = errors.New("mandatory service without its profile element")
	// ErrUndeclaredService: a PE needs a service (e.g. its AKA algorithm)
	// that the header's eUICC-Mandatory-services does not declare.
	ErrUndeclaredService = errors.New("service used but not declared mandatory")
	// ErrNoSlot: a value was given for a field the template has no slot for,
	// or the template lacks a slot every personalisation record needs.
	ErrNoSlot = errors.New("template has no slot for this field")
	// ErrValue: a personalisation value is malformed (wrong digits, length…).
	// The message never contains the value of a secret.
	ErrValue = errors.New("invalid value")
	// ErrUndeclaredAlgorithm: a record sets an algorithm the template's
	// header does not declare (also ErrValue). It is a template setting
	// to fix (switch the template, Options.Algorithm, or keep its
	// algorithm), not a bad record.
	ErrUndeclaredAlgorithm = errors.New("algorithm not declared by the template")
)

// Error locates a problem in a profile: the PE (index in the profile, 0 =
// header), its type, and the absolute byte offset in the DER input.
type Error struct {
	PE     int    // index of the profile element, -1 when not inside one
	Type   string // PE type name ("pinCodes", "usim" …), "" when unknown
	Offset int    // absolute byte offset of the offending element, -1 if none
	Field  string // optional path inside the PE, e.g. "pinconfig[1].pinValue"
	Err    error  // the cause; wraps one of the sentinel errors
}

func (e *Error) Error() string {
	s := "template: "
	if e.PE >= 0 {
		s += fmt.Sprintf("PE #%d", e.PE)
		if e.Type != "" {
			s += " (" + e.Type + ")"
		}
		if e.Offset >= 0 {
			s += " "
		}
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf("at offset 0x%x", e.Offset)
	}
	if e.PE >= 0 || e.Offset >= 0 {
		s += ": "
	}
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// errAt builds a located error; cause is usually a sentinel or a
// fmt.Errorf("...: %w", sentinel).
func errAt(pe int, typ PEType, off int, field string, cause error) *Error {
	name := ""
	if pe >= 0 {
		name = typ.String()
	}
	return &Error{PE: pe, Type: name, Offset: off, Field: field, Err: cause}
}

// structErr is shorthand for a located ErrStructure with a reason.
func structErr(pe int, typ PEType, off int, field, format string, args ...any) *Error {
	return errAt(pe, typ, off, field, fmt.Errorf(format+": %w", append(args, ErrStructure)...))
}

// valueErr reports a bad personalisation value without echoing it.
func valueErr(field, format string, args ...any) *Error {
	return &Error{PE: -1, Offset: -1, Field: field, Err: fmt.Errorf(format+": %w", append(args, ErrValue)...)}
}
