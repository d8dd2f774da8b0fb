package bpp

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 4493 §4: AES-128 subkeys and the four examples.
func TestCMACRFC4493(t *testing.T) {
	key := mustHex(t, "2b7e151628aed2a6abf7158809cf4f3c")
	msg := mustHex(t, "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	b, _ := aes.NewCipher(key)
	var c cmac
	c.init(b)
	if want := mustHex(t, "fbeed618357133667c85e08f7236a8de"); !bytes.Equal(c.k1[:], want) {
		t.Errorf("K1 = %x, want %x", c.k1, want)
	}
	if want := mustHex(t, "f7ddac306ae266ccf90bc11ee46d513b"); !bytes.Equal(c.k2[:], want) {
		t.Errorf("K2 = %x, want %x", c.k2, want)
	}
	for _, tc := range []struct {
		name string
		n    int
		want string
	}{
		{"example 1: empty", 0, "bb1d6929e95937287fa37d129b756746"},
		{"example 2: 16 bytes", 16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{"example 3: 40 bytes", 40, "dfa66747de9ae63030ca32611497c827"},
		{"example 4: 64 bytes", 64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		got, err := CMAC(key, msg[:tc.n])
		if err != nil {
			t.Fatal(err)
		}
		if want := mustHex(t, tc.want); !bytes.Equal(got[:], want) {
			t.Errorf("%s: CMAC = %x, want %x", tc.name, got, want)
		}
	}
}

// The BSP form CMAC(prefix block || msg), computed without concatenating
// and with any scratch size, equals CMAC over the concatenation.
func TestCMACPrefixAndScratch(t *testing.T) {
	key := mustHex(t, "9ec07f5b36a13e12a991d66e294e6242")
	b, _ := aes.NewCipher(key)
	var c cmac
	c.init(b)
	var prefix [16]byte
	for i := range prefix {
		prefix[i] = byte(0xA0 + i)
	}
	msg := make([]byte, 1100)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	for _, n := range []int{0, 1, 3, 15, 16, 17, 31, 32, 33, 255, 1020, 1100} {
		want, _ := CMAC(key, append(prefix[:], msg[:n]...))
		for _, scratch := range []int{16, 48, 1024} {
			var got [16]byte
			c.sum(&got, &prefix, msg[:n], make([]byte, scratch))
			if got != want {
				t.Errorf("len %d scratch %d: %x, want %x", n, scratch, got, want)
			}
		}
	}
}
