package bpp

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Tags are handled as their encoded identifier octets packed big-endian into a
// uint32: 0x87 is tag 87, 0xBF36 is the two-octet tag BF 36, 0x5F49 is 5F 49.
// cryptobyte's asn1.Tag cannot express tag numbers above 30, which SGP.22 uses
// throughout (BF36, BF23, 5F49 ...), so the identifier and length octets are
// decoded here on top of a cryptobyte.String cursor.

// maxTLVLength bounds any single length field accepted by the parser. A
// BoundProfilePackage is at most a few hundred kilobytes; 16 MiB-1 is the
// largest value a 3-octet long-form length can carry.
const maxTLVLength = 1<<24 - 1

// tagSize returns the number of identifier octets of a packed tag.
func tagSize(tag uint32) int {
	switch {
	case tag > 0xFFFF:
		return 3
	case tag > 0xFF:
		return 2
	default:
		return 1
	}
}

func appendTag(dst []byte, tag uint32) []byte {
	switch tagSize(tag) {
	case 3:
		return append(dst, byte(tag>>16), byte(tag>>8), byte(tag))
	case 2:
		return append(dst, byte(tag>>8), byte(tag))
	default:
		return append(dst, byte(tag))
	}
}

// lengthSize returns the number of DER length octets for a content length n.
func lengthSize(n int) int {
	switch {
	case n < 0x80:
		return 1
	case n < 0x100:
		return 2
	case n < 0x10000:
		return 3
	default:
		return 4
	}
}

// appendLength appends the DER (minimal, definite) length octets of n.
func appendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n < 0x100:
		return append(dst, 0x81, byte(n))
	case n < 0x10000:
		return append(dst, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// tlvSize is the encoded size of a TLV with the given tag and content length.
func tlvSize(tag uint32, n int) int { return tagSize(tag) + lengthSize(n) + n }

func appendTLV(dst []byte, tag uint32, value []byte) []byte {
	dst = appendTag(dst, tag)
	dst = appendLength(dst, len(value))
	return append(dst, value...)
}

// appendHeader appends tag and length octets only.
func appendHeader(dst []byte, tag uint32, n int) []byte {
	return appendLength(appendTag(dst, tag), n)
}

// tlv is one decoded DER element. Raw is the whole element as received
// (identifier, length and contents); Value aliases its contents.
type tlv struct {
	Tag   uint32
	Value []byte
	Raw   []byte
}

// readTLV reads one strictly DER-encoded element from s: at most three
// identifier octets in minimal form, definite minimal length octets, length
// within the remaining input. It never panics and never allocates.
func readTLV(s *cryptobyte.String) (tlv, error) {
	start := *s
	var b uint8
	if !s.ReadUint8(&b) {
		return tlv{}, fmt.Errorf("%w: missing tag", ErrMalformed)
	}
	tag := uint32(b)
	if b&0x1F == 0x1F {
		for i := 0; ; i++ {
			if i == 2 {
				return tlv{}, fmt.Errorf("%w: tag longer than 3 octets", ErrMalformed)
			}
			if !s.ReadUint8(&b) {
				return tlv{}, fmt.Errorf("%w: truncated tag", ErrMalformed)
			}
			if i == 0 && (b == 0x80 || b < 0x1F) {
				return tlv{}, fmt.Errorf("%w: non-minimal tag %X%02X", ErrMalformed, tag, b)
			}
			tag = tag<<8 | uint32(b)
			if b&0x80 == 0 {
				break
			}
		}
	}
	if !s.ReadUint8(&b) {
		return tlv{}, fmt.Errorf("%w: tag %X: missing length", ErrMalformed, tag)
	}
	n := int(b)
	if b >= 0x80 {
		k := int(b & 0x7F)
		if k == 0 {
			return tlv{}, fmt.Errorf("%w: tag %X: indefinite length", ErrMalformed, tag)
		}
		if k > 3 {
			return tlv{}, fmt.Errorf("%w: tag %X: length field of %d octets", ErrMalformed, tag, k)
		}
		n = 0
		for i := 0; i < k; i++ {
			if !s.ReadUint8(&b) {
				return tlv{}, fmt.Errorf("%w: tag %X: truncated length", ErrMalformed, tag)
			}
			if i == 0 && b == 0 {
				return tlv{}, fmt.Errorf("%w: tag %X: non-minimal length", ErrMalformed, tag)
			}
			n = n<<8 | int(b)
		}
		if n < 0x80 {
			return tlv{}, fmt.Errorf("%w: tag %X: non-minimal length", ErrMalformed, tag)
		}
	}
	if n > maxTLVLength {
		return tlv{}, fmt.Errorf("%w: tag %X: length %d too large", ErrMalformed, tag, n)
	}
	var v []byte
	if !s.ReadBytes(&v, n) {
		return tlv{}, fmt.Errorf("%w: tag %X: length %d exceeds the %d remaining octets", ErrMalformed, tag, n, len(*s))
	}
	hdr := len(start) - len(*s) - n
	return tlv{Tag: tag, Value: v, Raw: start[:hdr+n]}, nil
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
