package bpp

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	ber "github.com/perso-esim/perso/esim/tlv"
)

// Tags are handled as their encoded identifier octets packed big-endian into a
// uint32, esim/tlv's Tag representation: 0x87 is tag 87, 0xBF36 is the
// two-octet tag BF 36, 0x5F49 is 5F 49. cryptobyte's asn1.Tag cannot express
// tag numbers above 30, which SGP.22 uses throughout (BF36, BF23, 5F49 ...),
// so headers are read by esim/tlv (the project's one DER header reader, with
// its tag and length limits) on top of a cryptobyte.String cursor.

// tagSize returns the number of identifier octets of a packed tag.
func tagSize(tag uint32) int { return ber.Tag(tag).Len() }

func appendTag(dst []byte, tag uint32) []byte { return ber.Tag(tag).Append(dst) }

// lengthSize returns the number of DER length octets for a content length n.
func lengthSize(n int) int { return ber.LenSize(n) }

// appendLength appends the DER (minimal, definite) length octets of n.
func appendLength(dst []byte, n int) []byte { return ber.AppendLen(dst, n) }

// tlvSize is the encoded size of a TLV with the given tag and content length.
func tlvSize(tag uint32, n int) int { return ber.Size(ber.Tag(tag), n) }

func appendTLV(dst []byte, tag uint32, value []byte) []byte {
	return ber.AppendTLV(dst, ber.Tag(tag), value)
}

// appendHeader appends tag and length octets only.
func appendHeader(dst []byte, tag uint32, n int) []byte {
	return ber.AppendHeader(dst, ber.Tag(tag), n)
}

// tlv is one decoded DER element. Raw is the whole element as received
// (identifier, length and contents); Value aliases its contents.
type tlv struct {
	Tag   uint32
	Value []byte
	Raw   []byte
}

// readTLV reads one strictly DER-encoded element from s by esim/tlv's rules
// (minimal definite lengths up to tlv.MaxLength, tags of up to
// tlv.MaxTagOctets octets in minimal form). It never panics and never
// allocates unless it fails; errors wrap ErrMalformed and the tlv sentinel.
func readTLV(s *cryptobyte.String) (tlv, error) {
	b := []byte(*s)
	tag, hl, vl, err := ber.ReadHeader(b, 0, len(b))
	if err != nil {
		return tlv{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	s.Skip(hl + vl)
	return tlv{Tag: uint32(tag), Value: b[hl : hl+vl : hl+vl], Raw: b[: hl+vl : hl+vl]}, nil
}

// expectTLV reads one element and checks its tag.
func expectTLV(s *cryptobyte.String, tag uint32, what string) (tlv, error) {
	if s.Empty() {
		return tlv{}, fmt.Errorf("%w: %s (%X) missing", ErrMalformed, what, tag)
	}
	t, err := readTLV(s)
	if err != nil {
		return tlv{}, fmt.Errorf("%s: %w", what, err)
	}
	if t.Tag != tag {
		return tlv{}, fmt.Errorf("%w: %s: tag %X, want %X", ErrMalformed, what, t.Tag, tag)
	}
	return t, nil
}

// peekTag returns the tag of the next element without consuming it.
func peekTag(s cryptobyte.String) (uint32, bool) {
	if s.Empty() {
		return 0, false
	}
	t, err := readTLV(&s)
	if err != nil {
		return 0, false
	}
	return t.Tag, true
}
