package tlv

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The reader accepts exactly the minimal definite encodings with tags of up
// to MaxTagOctets octets and lengths up to MaxLength, and the writer
// produces the same bytes back.
func TestReadHeader(t *testing.T) {
	long := strings.Repeat("00", 128)
	for _, tc := range []struct {
		name   string
		in     string
		tag    Tag
		hdr    int
		err    error
		errTag Tag // tag reported in the HeaderError
	}{
		{"short form", "8703010203", 0x87, 2, nil, 0},
		{"two-octet tag", "bf2501" + "00", 0xBF25, 3, nil, 0},
		{"application tag 5F49", "5f490104", 0x5F49, 3, nil, 0},
		{"three-octet tag", "bf810001aa", 0xBF8100, 4, nil, 0},
		{"tag number 31", "bf1f00", 0xBF1F, 3, nil, 0},
		{"81 form", "8681" + "80" + long, 0x86, 3, nil, 0},
		{"empty value", "a000", 0xA0, 2, nil, 0},
		{"empty input", "", 0, 0, ErrTruncated, 0},
		{"zero tag", "0000", 0, 0, ErrBadTag, 0},
		{"missing length", "87", 0, 0, ErrTruncated, 0x87},
		{"indefinite length", "a080870100" + "0000", 0, 0, ErrIndefiniteLength, 0xA0},
		{"81 for a short length", "87817f" + strings.Repeat("00", 127), 0, 0, ErrNotDER, 0x87},
		{"82 with a leading zero", "8782007f" + strings.Repeat("00", 127), 0, 0, ErrNotDER, 0x87},
		{"four length octets", "878400000001" + "00", 0, 0, ErrNotDER, 0x87},
		{"length beyond input", "870500", 0, 0, ErrTruncated, 0x87},
		{"truncated length", "8782", 0, 0, ErrTruncated, 0x87},
		{"non-minimal high tag", "bf1e00", 0, 0, ErrNotDER, 0},
		{"high tag with 80 padding", "bf803600", 0, 0, ErrNotDER, 0},
		{"tag of four octets", "bf81818100", 0, 0, ErrBadTag, 0},
		{"truncated tag", "bf", 0, 0, ErrTruncated, 0},
		{"truncated second tag octet", "bf81", 0, 0, ErrTruncated, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, _ := hex.DecodeString(tc.in)
			// Place the element after a prefix to check offsets.
			b := append([]byte{0xEE, 0xEE}, in...)
			for _, read := range []func([]byte, int, int) (Tag, int, int, error){ReadHeader, ReadHeaderFast} {
				tag, hdr, vl, err := read(b, 2, len(b))
				if tc.err != nil {
					var he *HeaderError
					if !errors.Is(err, tc.err) || !errors.As(err, &he) || he.Offset != 2 || he.Tag != tc.errTag {
						t.Fatalf("error %v (%#v), want %v at offset 2 with tag %v", err, he, tc.err, tc.errTag)
					}
					continue
				}
				if err != nil || tag != tc.tag || hdr != tc.hdr || hdr+vl != len(in) {
					t.Fatalf("= %v, %d, %d, %v; want %v, %d, %d", tag, hdr, vl, err, tc.tag, tc.hdr, len(in)-tc.hdr)
				}
				if got := AppendTLV(nil, tag, in[hdr:]); !bytes.Equal(got, in) {
					t.Errorf("AppendTLV = %x, want %s", got, tc.in)
				}
				if Size(tag, vl) != len(in) {
					t.Errorf("Size = %d, want %d", Size(tag, vl), len(in))
				}
			}
		})
	}
}

// The end bound is honoured: an element that fits the input but not its
// enclosing element is truncated.
func TestReadHeaderEnd(t *testing.T) {
	b := []byte{0x30, 0x03, 0x87, 0x02, 0x01, 0x02}
	if _, _, _, err := ReadHeader(b, 2, 5); !errors.Is(err, ErrTruncated) {
		t.Errorf("inner element past its parent: %v", err)
	}
	if _, _, _, err := ReadHeaderFast(b, 2, 5); !errors.Is(err, ErrTruncated) {
		t.Errorf("fast path: inner element past its parent: %v", err)
	}
}

func TestLengths(t *testing.T) {
	for _, tc := range []struct {
		l   int
		enc string
	}{
		{0, "00"}, {0x7F, "7f"}, {0x80, "8180"}, {0xFF, "81ff"}, {0x100, "820100"},
		{0xFFFF, "82ffff"}, {0x10000, "83010000"}, {MaxLength, "83ffffff"},
	} {
		got := AppendLen(nil, tc.l)
		if hex.EncodeToString(got) != tc.enc || LenSize(tc.l) != len(got) {
			t.Errorf("AppendLen(%d) = %x (size %d), want %s", tc.l, got, LenSize(tc.l), tc.enc)
		}
	}
}

func TestTag(t *testing.T) {
	for _, tc := range []struct {
		t           Tag
		s           string
		n           int
		constructed bool
		class       byte
		number      int
	}{
		{0x80, "80", 1, false, 0x80, 0}, {0xA0, "A0", 1, true, 0x80, 0}, {0x30, "30", 1, true, 0x00, 16},
		{0xBF25, "BF25", 2, true, 0x80, 37}, {0x5F49, "5F49", 2, false, 0x40, 73}, {0x9F70, "9F70", 2, false, 0x80, 112},
		{0xBF8100, "BF8100", 3, true, 0x80, 128}, {0xBF1F, "BF1F", 2, true, 0x80, 31},
	} {
		if tc.t.String() != tc.s || tc.t.Len() != tc.n || tc.t.Constructed() != tc.constructed || tc.t.Class() != tc.class || tc.t.Number() != tc.number {
			t.Errorf("%#x: %s %d %v class %#x number %d", uint32(tc.t), tc.t, tc.t.Len(), tc.t.Constructed(), tc.t.Class(), tc.t.Number())
		}
		if got := hex.EncodeToString(tc.t.Append(nil)); got != strings.ToLower(tc.s) {
			t.Errorf("%s.Append = %s", tc.s, got)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{"8703010203", "bf250100", "8681", "a080", "bf81818100", "878400000001"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tag, hdr, vl, err := ReadHeader(b, 0, len(b))
		t2, h2, v2, err2 := ReadHeaderFast(b, 0, len(b))
		if tag != t2 || hdr != h2 || vl != v2 || (err == nil) != (err2 == nil) {
			t.Fatalf("ReadHeader and ReadHeaderFast disagree on %x", b)
		}
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("%x: error %v is not a *HeaderError", b, err)
			}
			return
		}
		if hdr+vl > len(b) || vl > MaxLength || tag.Len() > MaxTagOctets {
			t.Fatalf("%x: header %d + value %d beyond the input or the limits", b, hdr, vl)
		}
		// DER is canonical: re-encoding the header gives the same bytes.
		if got := AppendHeader(nil, tag, vl); !bytes.Equal(got, b[:hdr]) {
			t.Fatalf("%x: header re-encodes as %x", b[:hdr], got)
		}
	})
}
