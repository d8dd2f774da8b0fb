package bpp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"math/rand/v2"
	"testing"
)

// appendEncryptedReference is the straightforward two-pass form of
// appendEncrypted: CBC under S-ENC from ICV = E(counter) in place, then the
// CMAC over MCV || T || L || C. It needs a crypto/aes state
// (initImpl(..., false)), so that it shares no code with the AES-NI kernels.
func (s *bsp) appendEncryptedReference(dst []byte, tag byte, p []byte) []byte {
	if len(p) > MaxEncryptedChunk {
		panic("bpp: internal error: encrypted chunk too large")
	}
	if s.hw {
		panic("bpp: the reference runs on crypto/aes")
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

// bspTrio is the same BSP state three times: the default implementation
// (the AES-NI kernels where available), the pure-Go interleaved path and the
// two-pass reference, both on crypto/aes.
type bspTrio struct{ fast, generic, ref bsp }

func (t *bspTrio) init(enc, mac, mcv *[16]byte, counter uint64) {
	t.fast.init(enc, mac, mcv)
	t.generic.initImpl(enc, mac, mcv, false)
	t.ref.initImpl(enc, mac, mcv, false)
	t.fast.counter, t.generic.counter, t.ref.counter = counter, counter, counter
}

// seal protects p with all three and fails unless they agree byte for byte
// (segment, MCV, counter). It returns the segment.
func (t *bspTrio) seal(tb testing.TB, tag byte, p []byte) []byte {
	tb.Helper()
	a := t.fast.appendEncrypted(nil, tag, p)
	g := t.generic.appendEncryptedGeneric(nil, tag, p)
	r := t.ref.appendEncryptedReference(nil, tag, p)
	if !bytes.Equal(a, r) || !bytes.Equal(g, r) {
		tb.Fatalf("%d bytes (hw %v): fast %x\ngeneric %x\nreference %x", len(p), t.fast.hw, a, g, r)
	}
	if t.fast.mcv != t.ref.mcv || t.generic.mcv != t.ref.mcv ||
		t.fast.counter != t.ref.counter || t.generic.counter != t.ref.counter {
		tb.Fatalf("%d bytes: state diverged", len(p))
	}
	return a
}

func randBlock(r *rand.Rand, b *[16]byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

// The fast path (the AES-NI kernel on amd64) and the pure-Go interleaved
// path equal the two-pass reference for every plaintext length 0..1007,
// over chains of segments that carry the counter and MCV, with random keys,
// MCVs and starting counters; the segments open again on both
// implementations.
func TestEncryptMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(4493, 22))
	var enc, mac, mcv [16]byte
	for round := range 4 {
		randBlock(r, &enc)
		randBlock(r, &mac)
		randBlock(r, &mcv)
		counter := r.Uint64()
		if round == 0 {
			counter = 1
		}
		var tr bspTrio
		tr.init(&enc, &mac, &mcv, counter)
		var openHW, openGo bsp
		openHW.init(&enc, &mac, &mcv)
		openGo.initImpl(&enc, &mac, &mcv, false)
		openHW.counter, openGo.counter = counter, counter
		for n := 0; n <= MaxEncryptedChunk; n++ {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(r.Uint32())
			}
			tag := byte(0x86 + n%2)
			seg := tr.seal(t, tag, p)
			for _, o := range []*bsp{&openHW, &openGo} {
				got, err := o.openSegment(nil, parseOne(t, seg), true)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("round %d, %d bytes: open (hw %v): %v", round, n, o.hw, err)
				}
			}
		}
	}
}

// MAC-only segments and encrypted ones, mixed, keep all implementations in
// step (the CMAC of a MAC-only segment runs on cbcMACAsm on amd64).
func TestMACOnlyMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(800, 38))
	var enc, mac, mcv [16]byte
	randBlock(r, &enc)
	randBlock(r, &mac)
	randBlock(r, &mcv)
	var tr bspTrio
	tr.init(&enc, &mac, &mcv, 1)
	for n := 0; n <= MaxMACOnlyChunk; n += 1 + n%7 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		a := tr.fast.appendMACOnly(nil, tagSegMACOnly, p)
		g := tr.generic.appendMACOnly(nil, tagSegMACOnly, p)
		if !bytes.Equal(a, g) || tr.fast.mcv != tr.generic.mcv {
			t.Fatalf("MAC-only %d bytes: fast %x\ngeneric %x", n, a, g)
		}
		tr.ref.appendMACOnly(nil, tagSegMACOnly, p)
		tr.seal(t, tagSegProfile, p[:min(n, MaxEncryptedChunk)])
	}
}

// The AES-NI primitives against crypto/aes.
func TestAESKernels(t *testing.T) {
	if !haveAsm {
		t.Skip("no AES-NI kernels on this build/CPU")
	}
	r := rand.New(rand.NewPCG(197, 2001))
	var key, iv, x, y [16]byte
	var enc, dec [roundKeysSize]byte
	buf := make([]byte, 64*16)
	for range 200 {
		randBlock(r, &key)
		randBlock(r, &iv)
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		b, err := aes.NewCipher(key[:])
		if err != nil {
			t.Fatal(err)
		}
		expandKeyAsm(&key, &enc)
		invertKeyAsm(&enc, &dec)
		if !bytes.Equal(enc[:16], key[:]) {
			t.Fatal("round key 0 is not the key")
		}
		encryptBlockAsm(&enc, &x, &iv)
		b.Encrypt(y[:], iv[:])
		if x != y {
			t.Fatalf("encryptBlockAsm: %x, crypto/aes %x", x, y)
		}
		n := (1 + r.IntN(64)) * 16
		want := make([]byte, n)
		cipher.NewCBCEncrypter(b, iv[:]).CryptBlocks(want, buf[:n])
		x = iv
		cbcMACAsm(&enc, &x, buf[:n])
		if !bytes.Equal(x[:], want[n-16:]) {
			t.Fatalf("cbcMACAsm, %d bytes: %x, want %x", n, x, want[n-16:])
		}
		got := bytes.Clone(want)
		cbcDecryptAsm(&dec, &iv, got)
		if !bytes.Equal(got, buf[:n]) {
			t.Fatalf("cbcDecryptAsm, %d bytes", n)
		}
	}
}

// zero wipes the schedules that the kernels keep in the BSP state.
func TestZeroWipesRoundKeys(t *testing.T) {
	k := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	var s bsp
	s.init(&k, &k, &k)
	seg := s.appendEncrypted(nil, tagSegProfile, []byte("hello"))
	var o bsp
	o.init(&k, &k, &k)
	if _, err := o.openSegment(nil, parseOne(t, seg), true); err != nil {
		t.Fatal(err)
	}
	if haveAsm && (s.encRK == [roundKeysSize]byte{} || s.mac.rk == [roundKeysSize]byte{} || o.decRK == [roundKeysSize]byte{}) {
		t.Fatal("kernel schedules not in the state")
	}
	s.zero()
	o.zero()
	for _, st := range []*bsp{&s, &o} {
		if st.encRK != [roundKeysSize]byte{} || st.decRK != [roundKeysSize]byte{} || st.mac.rk != [roundKeysSize]byte{} ||
			st.mac.k1 != zeroBlock || st.mac.k2 != zeroBlock || st.mcv != zeroBlock {
			t.Fatal("zero left key material")
		}
	}
}

// The batch hot path allocates nothing.
func TestAppendProtectedAllocs(t *testing.T) {
	if !haveAsm {
		t.Skip("crypto/aes allocates its two schedules per PPK")
	}
	upp := bytes.Repeat([]byte{0x42}, 5000)
	p := NewProtector(nil)
	var ppk PPK
	if err := p.NewPPK(&ppk); err != nil {
		t.Fatal(err)
	}
	size, _ := ProtectedSize(len(upp))
	buf := make([]byte, 0, size)
	allocs := testing.AllocsPerRun(20, func() {
		if _, _, err := p.AppendProtected(buf[:0], upp, &ppk); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per profile", allocs)
	}
}

// FuzzSegmentKernel: one segment with fuzzed keys, MCV, counter, tag and
// plaintext, through the fast path, the pure-Go path and the reference, then
// opened again by both implementations.
func FuzzSegmentKernel(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), []byte("fedcba9876543210"), []byte("mcvmcvmcvmcvmcv!"), uint64(1), byte(0x86), []byte{})
	f.Add([]byte{}, []byte{}, []byte{}, uint64(1<<64-1), byte(0x87), bytes.Repeat([]byte{0xA5}, 200))
	f.Add([]byte{0xFF}, []byte{0x00}, []byte{0x80}, uint64(86), byte(0x86), bytes.Repeat([]byte{0}, MaxEncryptedChunk))
	f.Fuzz(func(t *testing.T, enc, mac, mcv []byte, counter uint64, tag byte, p []byte) {
		var e, m, v [16]byte
		copy(e[:], enc)
		copy(m[:], mac)
		copy(v[:], mcv)
		p = p[:min(len(p), MaxEncryptedChunk)]
		tag = tagSegProfile + tag%2 // 86 or 87: what parseOne accepts back
		var tr bspTrio
		tr.init(&e, &m, &v, counter)
		seg := tr.seal(t, tag, p)
		seg2 := tr.seal(t, tag, p) // a second segment: chained MCV and counter
		for _, hw := range []bool{haveAsm, false} {
			var o bsp
			o.initImpl(&e, &m, &v, hw)
			o.counter = counter
			for _, s := range [][]byte{seg, seg2} {
				got, err := o.openSegment(nil, parseOne(t, s), true)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("open (hw %v): %v", hw, err)
				}
			}
		}
	})
}
