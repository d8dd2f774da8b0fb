package rsp

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	dertlv "github.com/perso-esim/perso/esim/tlv"
)

// ErrMalformed is wrapped by every decoding error: the input is not the DER
// encoding of the message the SGP.22 module defines. The binding maps it to
// the function's "invalid format" status; a handler never sees a half-parsed
// message.
var ErrMalformed = errors.New("rsp: malformed message")

// ErrInvalid is wrapped by every encoding error: a value built in code
// breaks a constraint of the module (a 17-byte transactionId, a missing
// mandatory field).
var ErrInvalid = errors.New("rsp: invalid message value")

// Tags are handled as their identifier octets packed big-endian into a
// uint32 (esim/tlv's Tag): 0x80 is [0] primitive, 0xBF38 is [56]
// constructed, 0x5F37 is [APPLICATION 55]. cryptobyte's asn1.Tag cannot
// express tag numbers above 30, which SGP.22 uses throughout, so headers are
// read by esim/tlv (the project's one DER header codec) and walked with a
// cryptobyte.String cursor.

// element is one decoded TLV. raw is the whole element exactly as received
// (identifier, length and contents); value aliases its contents.
type element struct {
	tag   uint32
	value []byte
	raw   []byte
}

// readElement reads one element from s. esim/tlv enforces DER framing
// (identifier in minimal high-tag form of at most three octets, definite
// minimal length of at most three octets, length within the input);
// contents are checked by the caller. It never panics.
func readElement(s *cryptobyte.String) (element, error) {
	b := []byte(*s)
	t, h, n, err := dertlv.ReadHeader(b, 0, len(b))
	if err != nil {
		return element{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	s.Skip(h + n)
	return element{tag: uint32(t), value: b[h : h+n : h+n], raw: b[: h+n : h+n]}, nil
}

// reader walks the components of one constructed value.
type reader struct {
	s    cryptobyte.String
	what string // the enclosing type, for error messages
}

func newReader(value []byte, what string) *reader {
	return &reader{s: cryptobyte.String(value), what: what}
}

// parseTop reads der as exactly one element with the given tag and returns
// it; trailing bytes are an error.
func parseTop(der []byte, tag uint32, what string) (element, error) {
	s := cryptobyte.String(der)
	e, err := readElement(&s)
	if err != nil {
		return element{}, fmt.Errorf("%s: %w", what, err)
	}
	if e.tag != tag {
		return element{}, fmt.Errorf("%w: %s: tag %02X, want %02X", ErrMalformed, what, e.tag, tag)
	}
	if !s.Empty() {
		return element{}, fmt.Errorf("%w: %s: %d bytes after the element", ErrMalformed, what, len(s))
	}
	return e, nil
}

// peek returns the tag of the next component, 0 at the end or on a framing
// error (which the following read then reports).
func (r *reader) peek() uint32 {
	s := r.s
	e, err := readElement(&s)
	if err != nil {
		return 0
	}
	return e.tag
}

func (r *reader) empty() bool { return r.s.Empty() }

// next reads the next component whatever its tag.
func (r *reader) next() (element, error) {
	e, err := readElement(&r.s)
	if err != nil {
		return element{}, fmt.Errorf("%s: %w", r.what, err)
	}
	return e, nil
}

// expect reads a mandatory component.
func (r *reader) expect(tag uint32, field string) (element, error) {
	if r.s.Empty() {
		return element{}, fmt.Errorf("%w: %s.%s (%02X) missing", ErrMalformed, r.what, field, tag)
	}
	e, err := readElement(&r.s)
	if err != nil {
		return element{}, fmt.Errorf("%s.%s: %w", r.what, field, err)
	}
	if e.tag != tag {
		return element{}, fmt.Errorf("%w: %s.%s: tag %02X, want %02X", ErrMalformed, r.what, field, e.tag, tag)
	}
	return e, nil
}

// optional reads a component if the next one carries tag.
func (r *reader) optional(tag uint32) (element, bool, error) {
	if r.peek() != tag || tag == 0 {
		return element{}, false, nil
	}
	e, err := r.next()
	return e, err == nil, err
}

// end accepts what follows the known components: the module is
// EXTENSIBILITY IMPLIED, so later versions may append components (SGP.22 v3
// adds several). They must be well-formed and are otherwise ignored; the
// parsed value's Raw keeps them.
func (r *reader) end() error {
	for !r.s.Empty() {
		if _, err := r.next(); err != nil {
			return err
		}
	}
	return nil
}

// Content decoders. They take an element's contents whatever its tag, since
// SGP.22 tags most of its fields implicitly.

func (r *reader) octets(tag uint32, field string, min, max int) ([]byte, error) {
	e, err := r.expect(tag, field)
	if err != nil {
		return nil, err
	}
	if len(e.value) < min || len(e.value) > max {
		return nil, sizeError(r.what+"."+field, len(e.value), min, max)
	}
	return e.value, nil
}

func (r *reader) utf8(tag uint32, field string) (string, error) {
	e, err := r.expect(tag, field)
	if err != nil {
		return "", err
	}
	return utf8Value(e.value, r.what+"."+field)
}

func utf8Value(v []byte, what string) (string, error) {
	if !utf8.Valid(v) {
		return "", fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, what)
	}
	return string(v), nil
}

func sizeError(what string, n, min, max int) error {
	if min == max {
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrMalformed, what, n, min)
	}
	return fmt.Errorf("%w: %s is %d bytes, want %d..%d", ErrMalformed, what, n, min, max)
}

// intValue decodes INTEGER contents (two's complement, 1..8 octets). A
// non-minimal encoding is accepted: it is harmless here, and signatures are
// verified over the received bytes anyway.
func intValue(v []byte, what string) (int64, error) {
	if len(v) == 0 || len(v) > 8 {
		return 0, fmt.Errorf("%w: %s: INTEGER of %d octets", ErrMalformed, what, len(v))
	}
	n := int64(int8(v[0]))
	for _, b := range v[1:] {
		n = n<<8 | int64(b)
	}
	return n, nil
}

// appendInt appends the minimal two's-complement contents of n.
func intContents(n int64) []byte {
	var b [8]byte
	for i := range b {
		b[7-i] = byte(n >> (8 * i))
	}
	i := 0
	for i < 7 && ((b[i] == 0 && b[i+1]&0x80 == 0) || (b[i] == 0xFF && b[i+1]&0x80 != 0)) {
		i++
	}
	return append([]byte(nil), b[i:]...)
}

// boolValue decodes BOOLEAN contents; BER allows any non-zero octet for TRUE.
func boolValue(v []byte, what string) (bool, error) {
	if len(v) != 1 {
		return false, fmt.Errorf("%w: %s: BOOLEAN of %d octets", ErrMalformed, what, len(v))
	}
	return v[0] != 0, nil
}

// oidValue decodes OBJECT IDENTIFIER contents, whatever the tag they came
// under (06, or 81 when implicitly tagged).
func oidValue(v []byte, what string) (asn1.ObjectIdentifier, error) {
	if len(v) == 0 || len(v) > 127 {
		return nil, fmt.Errorf("%w: %s: OBJECT IDENTIFIER of %d octets", ErrMalformed, what, len(v))
	}
	full := make([]byte, 0, 2+len(v))
	full = append(append(full, 0x06, byte(len(v))), v...)
	s := cryptobyte.String(full)
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1ObjectIdentifier(&oid) || !s.Empty() {
		return nil, fmt.Errorf("%w: %s is not an OBJECT IDENTIFIER", ErrMalformed, what)
	}
	return oid, nil
}

// oidContents returns the contents octets of an OBJECT IDENTIFIER.
func oidContents(oid asn1.ObjectIdentifier, what string) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(oid)
	der, err := b.Bytes()
	if err != nil || len(oid) < 2 {
		return nil, fmt.Errorf("%w: %s %v is not a valid OBJECT IDENTIFIER", ErrInvalid, what, oid)
	}
	s := cryptobyte.String(der)
	var c cryptobyte.String
	if !s.ReadASN1(&c, cbasn1.OBJECT_IDENTIFIER) {
		return nil, fmt.Errorf("%w: %s %v", ErrInvalid, what, oid)
	}
	return c, nil
}

// Encoding. Messages are small (a few kilobytes apart from the BPP, which is
// carried as one opaque element), so they are built by nesting: tlv(tag,
// parts...) returns one element holding the concatenated parts. It reads
// like the module's SEQUENCE definitions.

// tlv returns one element with tag whose contents are the parts in order.
func tlv(tag uint32, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := dertlv.AppendHeader(make([]byte, 0, dertlv.Size(dertlv.Tag(tag), n)), dertlv.Tag(tag), n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// opt returns tlv(tag, v) when present, else nothing.
func opt(present bool, tag uint32, v []byte) []byte {
	if !present {
		return nil
	}
	return tlv(tag, v)
}

// checkSize reports a built value whose length breaks the module.
func checkSize(what string, n, min, max int) error {
	if n < min || n > max {
		if min == max {
			return fmt.Errorf("%w: %s is %d bytes, want %d", ErrInvalid, what, n, min)
		}
		return fmt.Errorf("%w: %s is %d bytes, want %d..%d", ErrInvalid, what, n, min, max)
	}
	return nil
}

// checkElement checks that b is exactly one element with the given tag: the
// opaque values (certificates, metadata, BPP) that a message carries whole.
// Used when encoding, so the error wraps ErrInvalid.
func checkElement(b []byte, tag uint32, what string) error {
	if _, err := parseTop(b, tag, what); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
