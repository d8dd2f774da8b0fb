package bpp

import (
	"bytes"
	"errors"
	"testing"
)

// The DER reader accepts exactly the minimal definite encodings, with tags
// of up to three octets, and reports everything else as ErrMalformed.
func TestReadTLV(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		tag   uint32
		value string
		ok    bool
	}{
		{"short form", "8703010203", 0x87, "010203", true},
		{"two-octet tag", "bf360100", 0xBF36, "00", true},
		{"application tag 5F49", "5f490104", 0x5F49, "04", true},
		{"three-octet tag", "bf810001aa", 0xBF8100, "aa", true},
		{"81 form", "8681" + "80" + string(bytes.Repeat([]byte("00"), 128)), 0x86, string(bytes.Repeat([]byte("00"), 128)), true},
		{"empty value", "a000", 0xA0, "", true},
		{"empty input", "", 0, "", false},
		{"missing length", "87", 0, "", false},
		{"indefinite length", "a080870100" + "0000", 0, "", false},
		{"81 for a short length", "87817f" + string(bytes.Repeat([]byte("00"), 127)), 0, "", false},
		{"82 with a leading zero", "8782007f", 0, "", false},
		{"four length octets", "878400000001" + "00", 0, "", false},
		{"length beyond input", "870500", 0, "", false},
		{"truncated length", "8782", 0, "", false},
		{"non-minimal high tag", "bf1e00", 0, "", false},
		{"high tag with 80 padding", "bf803600", 0, "", false},
		{"tag of four octets", "bf81818100", 0, "", false},
		{"truncated tag", "bf", 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := cryptoString(mustDecode(tc.in))
			e, err := readTLV(&s)
			if !tc.ok {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("readTLV(%s) = %X %x, %v; want ErrMalformed", tc.in, e.Tag, e.Value, err)
				}
				return
			}
			if err != nil || e.Tag != tc.tag || !bytes.Equal(e.Value, mustDecode(tc.value)) || !bytes.Equal(e.Raw, mustDecode(tc.in)) {
				t.Fatalf("readTLV(%s) = %X %x, %v", tc.in, e.Tag, e.Value, err)
			}
			// The writer produces the same bytes.
			if got := appendTLV(nil, e.Tag, e.Value); !bytes.Equal(got, e.Raw) {
				t.Errorf("appendTLV = %x, want %s", got, tc.in)
			}
		})
	}
}

// Segment sizes: the encoded size of a segment for n plaintext bytes, at the
// boundaries of the length encodings and of the 1020-byte limit.
func TestSegmentSizes(t *testing.T) {
	for _, tc := range []struct {
		n, enc, mac int
	}{
		{1, 1 + 1 + 16 + 8, 1 + 1 + 1 + 8},
		{15, 1 + 1 + 16 + 8, 1 + 1 + 15 + 8},
		{16, 1 + 1 + 32 + 8, 1 + 1 + 16 + 8},
		{103, 1 + 1 + 112 + 8, 1 + 1 + 103 + 8},
		{112, 1 + 2 + 128 + 8, 1 + 1 + 112 + 8},
		{119, 1 + 2 + 128 + 8, 1 + 1 + 119 + 8},
		{120, 1 + 2 + 128 + 8, 1 + 2 + 120 + 8},
		{MaxEncryptedChunk, MaxSegmentSize, 1 + 3 + 1007 + 8},
		{MaxMACOnlyChunk, 1 + 3 + 1024 + 8, MaxSegmentSize},
	} {
		if got := encryptedSegmentSize(tc.n); got != tc.enc {
			t.Errorf("encrypted %d: %d bytes, want %d", tc.n, got, tc.enc)
		}
		if got := macOnlySegmentSize(tc.n); got != tc.mac {
			t.Errorf("MAC-only %d: %d bytes, want %d", tc.n, got, tc.mac)
		}
		var s bsp
		var k [16]byte
		s.init(&k, &k, &k)
		if tc.n <= MaxEncryptedChunk {
			if got := len(s.appendEncrypted(nil, 0x86, make([]byte, tc.n))); got != tc.enc {
				t.Errorf("appendEncrypted %d: %d bytes, want %d", tc.n, got, tc.enc)
			}
		}
		if got := len(s.appendMACOnly(nil, 0x88, make([]byte, tc.n))); got != tc.mac {
			t.Errorf("appendMACOnly %d: %d bytes, want %d", tc.n, got, tc.mac)
		}
	}
	// A UPP is cut into ceil(n/1007) segments, all but the last full.
	for _, n := range []int{1, 1006, 1007, 1008, 2014, 12163} {
		size, count := ProtectedSize(n)
		full := n / MaxEncryptedChunk
		want := full * MaxSegmentSize
		if r := n % MaxEncryptedChunk; r > 0 {
			want += encryptedSegmentSize(r)
		}
		if count != (n+MaxEncryptedChunk-1)/MaxEncryptedChunk || size != want {
			t.Errorf("ProtectedSize(%d) = %d, %d; want %d, %d", n, size, count, want, (n+MaxEncryptedChunk-1)/MaxEncryptedChunk)
		}
	}
}
