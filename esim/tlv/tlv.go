// Package tlv holds the one BER-TLV (DER) codec primitives of the project:
// the Tag type, the header reader with its limits, length encoding and the
// append helpers. template (SAIP profiles) and bpp (SGP.22 packages) build
// their parsers on it, so both accept exactly the same tags and lengths.
//
// The reader is strict DER: definite lengths in minimal form, tag numbers
// above 30 in minimal high-tag form, no zero (end-of-contents) tag. The
// limits are deliberately explicit: MaxTagOctets identifier octets and
// MaxLength content octets, generous for every structure SAIP and SGP.22
// define and far enough from int overflow that offset arithmetic on lengths
// needs no further checks.
package tlv

import (
	"errors"
	"fmt"
	"strconv"
)

// Limits of the reader.
const (
	// MaxTagOctets is the longest identifier accepted: three octets carry
	// tag numbers up to 16383. SAIP and SGP.22 use at most two (BF25, 5F49).
	MaxTagOctets = 3
	// MaxLengthOctets is the longest long-form length accepted (81, 82, 83).
	MaxLengthOctets = 3
	// MaxLength is the largest content length accepted: 16 MiB - 1, what
	// three length octets carry. No profile or package comes near it.
	MaxLength = 1<<(8*MaxLengthOctets) - 1
)

// Sentinel errors; every error of this package wraps exactly one of them.
var (
	// ErrTruncated: a tag, a length or a value runs past the end of its
	// enclosing element or of the input.
	ErrTruncated = errors.New("truncated TLV")
	// ErrIndefiniteLength: BER indefinite length (0x80); DER forbids it.
	ErrIndefiniteLength = errors.New("indefinite length is not allowed in DER")
	// ErrNotDER: a tag or length not in its minimal DER form, or a length
	// beyond MaxLength.
	ErrNotDER = errors.New("not DER")
	// ErrBadTag: a tag that cannot occur (zero tag, more than MaxTagOctets).
	ErrBadTag = errors.New("invalid tag")
)

// Tag is a BER tag, its identifier octets read as a big-endian number:
// 0xA0 for [0] constructed, 0xBF25 for [37] constructed, 0x5F49 for
// [APPLICATION 73], 0x30 for SEQUENCE.
type Tag uint32

// Constructed reports whether the tag has the constructed bit set.
func (t Tag) Constructed() bool { return t.first()&0x20 != 0 }

// Len is the number of identifier octets.
func (t Tag) Len() int {
	switch {
	case t > 0xFFFFFF:
		return 4
	case t > 0xFFFF:
		return 3
	case t > 0xFF:
		return 2
	}
	return 1
}

// Class returns the class bits of the first identifier octet: 0x00
// universal, 0x40 application, 0x80 context-specific, 0xC0 private.
func (t Tag) Class() byte { return t.first() & 0xC0 }

// Number returns the tag number: 34 for BF22, 73 for 5F49, 0 for A0.
func (t Tag) Number() int {
	n := t.Len()
	if n == 1 {
		return int(t & 0x1F)
	}
	num := 0
	for i := n - 2; i >= 0; i-- {
		num = num<<7 | int(byte(t>>(8*uint(i)))&0x7F)
	}
	return num
}

func (t Tag) first() byte { return byte(t >> (8 * uint(t.Len()-1))) }

// String is the identifier octets in upper-case hex, as SGP.22 and SAIP
// write tags ("BF25", "87").
func (t Tag) String() string {
	const hx = "0123456789ABCDEF"
	var b [8]byte
	n := t.Len()
	for i := 0; i < n; i++ {
		c := byte(t >> (8 * uint(n-1-i)))
		b[2*i], b[2*i+1] = hx[c>>4], hx[c&0x0F]
	}
	return string(b[:2*n])
}

// Append appends the identifier octets.
func (t Tag) Append(dst []byte) []byte {
	switch t.Len() {
	case 1:
		return append(dst, byte(t))
	case 2:
		return append(dst, byte(t>>8), byte(t))
	case 3:
		return append(dst, byte(t>>16), byte(t>>8), byte(t))
	}
	return append(dst, byte(t>>24), byte(t>>16), byte(t>>8), byte(t))
}

// HeaderError is a syntax error in one element's header, located by the
// absolute offset of its first tag octet. It never contains content octets.
type HeaderError struct {
	Offset int   // offset of the element whose header is bad
	Tag    Tag   // the element's tag when it could be read, else 0
	Err    error // wraps one of the sentinels, with the detail
}

func (e *HeaderError) Error() string {
	return "TLV at offset " + strconv.Itoa(e.Offset) + ": " + e.Err.Error()
}

func (e *HeaderError) Unwrap() error { return e.Err }

func headerErr(off int, t Tag, format string, args ...any) error {
	return &HeaderError{Offset: off, Tag: t, Err: fmt.Errorf(format, args...)}
}

// ReadHeader parses the tag and length of the element at b[off:end] and
// returns the tag, the header length (tag and length octets) and the content
// length, which it guarantees to fit within end. Errors are *HeaderError.
// It never panics for 0 <= off <= end <= len(b) and never allocates unless it
// fails.
func ReadHeader(b []byte, off, end int) (t Tag, hdrLen, valLen int, err error) {
	p := off
	if p >= end {
		return 0, 0, 0, headerErr(off, 0, "missing tag: %w", ErrTruncated)
	}
	if b[p] == 0 {
		return 0, 0, 0, headerErr(off, 0, "zero tag (end-of-contents): %w", ErrBadTag)
	}
	t = Tag(b[p])
	p++
	if t&0x1F == 0x1F {
		for n := 1; ; n++ {
			if p >= end {
				return 0, 0, 0, headerErr(off, 0, "tag %s…: %w", t, ErrTruncated)
			}
			c := b[p]
			if n == 1 && (c == 0x80 || c < 0x1F) {
				return 0, 0, 0, headerErr(off, 0, "tag %s%02X… not minimal: %w", t, c, ErrNotDER)
			}
			t = t<<8 | Tag(c)
			p++
			if c&0x80 == 0 {
				break
			}
			if n+1 == MaxTagOctets {
				return 0, 0, 0, headerErr(off, 0, "tag %s… longer than %d octets: %w", t, MaxTagOctets, ErrBadTag)
			}
		}
	}
	if p >= end {
		return 0, 0, 0, headerErr(off, t, "tag %s: missing length: %w", t, ErrTruncated)
	}
	l := int(b[p])
	p++
	if l == 0x80 {
		return 0, 0, 0, headerErr(off, t, "tag %s: %w", t, ErrIndefiniteLength)
	}
	if l > 0x80 {
		n := l & 0x7F
		if n > MaxLengthOctets {
			return 0, 0, 0, headerErr(off, t, "tag %s: %d length octets, at most %d: %w", t, n, MaxLengthOctets, ErrNotDER)
		}
		if n > end-p {
			return 0, 0, 0, headerErr(off, t, "tag %s: length octets: %w", t, ErrTruncated)
		}
		l = 0
		for i := 0; i < n; i++ {
			l = l<<8 | int(b[p+i])
		}
		p += n
		if l < 0x80 || l < 1<<(8*uint(n-1)) {
			return 0, 0, 0, headerErr(off, t, "tag %s: length %d not minimally encoded: %w", t, l, ErrNotDER)
		}
	}
	if l > end-p {
		return 0, 0, 0, headerErr(off, t, "tag %s: length %d exceeds the %d bytes available: %w", t, l, end-p, ErrTruncated)
	}
	return t, p - off, l, nil
}

// ReadHeaderFast is ReadHeader with the common case (one-octet tag, short
// length) decided in a few comparisons before the full reader runs.
func ReadHeaderFast(b []byte, off, end int) (Tag, int, int, error) {
	if off+2 <= end {
		t0, l0 := b[off], b[off+1]
		if t0 != 0 && t0&0x1F != 0x1F && l0 < 0x80 && int(l0) <= end-off-2 {
			return Tag(t0), 2, int(l0), nil
		}
	}
	return ReadHeader(b, off, end)
}

// LenSize is the number of octets the DER length l takes.
func LenSize(l int) int {
	switch {
	case l < 0x80:
		return 1
	case l <= 0xFF:
		return 2
	case l <= 0xFFFF:
		return 3
	case l <= 0xFFFFFF:
		return 4
	}
	return 5
}

// AppendLen appends the DER (definite, minimal) length octets of l.
func AppendLen(dst []byte, l int) []byte {
	switch {
	case l < 0x80:
		return append(dst, byte(l))
	case l <= 0xFF:
		return append(dst, 0x81, byte(l))
	case l <= 0xFFFF:
		return append(dst, 0x82, byte(l>>8), byte(l))
	case l <= 0xFFFFFF:
		return append(dst, 0x83, byte(l>>16), byte(l>>8), byte(l))
	}
	return append(dst, 0x84, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
}

// Size is the encoded size of an element with tag t and content length l.
func Size(t Tag, l int) int { return t.Len() + LenSize(l) + l }

// AppendHeader appends the tag and length octets of an element.
func AppendHeader(dst []byte, t Tag, l int) []byte { return AppendLen(t.Append(dst), l) }

// AppendTLV appends a whole element.
func AppendTLV(dst []byte, t Tag, value []byte) []byte {
	return append(AppendHeader(dst, t, len(value)), value...)
}
