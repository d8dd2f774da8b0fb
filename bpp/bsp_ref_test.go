package bpp

import (
	"bytes"
	"crypto/aes"
	"math/rand/v2"
	"testing"
)

// appendEncryptedReference is the straightforward two-pass form of
// appendEncrypted: CBC under S-ENC from ICV = E(counter) in place, then the
// CMAC over MCV || T || L || C.
func (s *bsp) appendEncryptedReference(dst []byte, tag byte, p []byte) []byte {
	if len(p) > MaxEncryptedChunk {
		panic("bpp: internal error: encrypted chunk too large")
	}
	padded := (len(p)/aes.BlockSize + 1) * aes.BlockSize
	start := len(dst)
	dst = append(dst, tag)
	dst = appendLength(dst, padded+macSize)
	c := len(dst)
	dst = append(dst, p...)
	dst = append(dst, 0x80)
	dst = append(dst, zeroBlock[:padded-len(p)-1]...)
	cbc := newCBC(s.enc, false)
	cbc.SetIV(s.nextICV())
	cbc.CryptBlocks(dst[c:], dst[c:])
	return s.finishMAC(dst, start)
}

// The interleaved hot path equals the two-pass reference for every
// plaintext length 0..1007, over chains of segments that carry the counter
// and MCV, with random keys.
func TestEncryptMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(4493, 22))
	var enc, mac, mcv [16]byte
	for round := range 4 {
		for i := range 16 {
			enc[i], mac[i], mcv[i] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
		}
		var fast, ref bsp
		fast.init(&enc, &mac, &mcv)
		ref.init(&enc, &mac, &mcv)
		var a, b []byte
		for n := 0; n <= MaxEncryptedChunk; n++ {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			tag := byte(0x86 + n%2)
			a = fast.appendEncrypted(a[:0], tag, p)
			b = ref.appendEncryptedReference(b[:0], tag, p)
			if !bytes.Equal(a, b) {
				t.Fatalf("round %d, %d bytes: interleaved %x\nreference %x", round, n, a, b)
			}
		}
		if fast.mcv != ref.mcv || fast.counter != ref.counter {
			t.Fatalf("round %d: state diverged", round)
		}
	}
}
