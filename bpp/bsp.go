package bpp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Segment limits (SGP.22 v3 §2.5.3 as cited by pySim; see spec digest §2.4).
const (
	// MaxSegmentSize is the largest BSP segment, tag, length and MAC included.
	MaxSegmentSize = 1020
	// MaxEncryptedChunk is the largest plaintext of an encrypted segment:
	// 1007 bytes pad to 1008, + 8 MAC + 4 header = 1020.
	MaxEncryptedChunk = 1007
	// MaxMACOnlyChunk is the largest payload of a MAC-only (88) segment.
	MaxMACOnlyChunk = 1008
	macSize         = 8
)

// BSP segment tags.
const (
	tagSegProfile = 0x86 // sequenceOf86 element: encrypted profile segment
	tagSegCmd     = 0x87 // encrypted command (ConfigureISDP, ReplaceSessionKeys)
	tagSegMACOnly = 0x88 // MAC-only command (StoreMetadata)
)

// roundKeysSize is the size of an AES-128 schedule: 11 round keys.
const roundKeysSize = 11 * aes.BlockSize

// bsp is one BSP instance: S-ENC, S-MAC, the MAC chaining value and the
// block counter (starting at 1). It protects segments in order; every
// segment, MAC-only ones included, consumes one counter value.
//
// Two implementations share it. With the amd64 AES-NI kernels (hw) the
// schedules are expanded in assembly into encRK, decRK and mac.rk, inside
// this state, so zero wipes them, and a whole encrypted segment is one
// sealSegmentAsm call. Otherwise (other architectures, the purego tag, CPUs
// without AES-NI) everything goes through crypto/aes.
type bsp struct {
	enc     cipher.Block // !hw
	decCBC  cbcMode      // !hw: created on first use (Open only)
	mac     cmac
	mcv     [aes.BlockSize]byte
	counter uint64
	full    [aes.BlockSize]byte // MAC computed on the receiving side
	icv     [aes.BlockSize]byte // off-stack: slices passed to cipher.Block escape
	scratch [1024]byte

	hw     bool
	hasDec bool                // decRK is set (derived on the first decryption)
	encRK  [roundKeysSize]byte // hw: S-ENC encryption schedule
	decRK  [roundKeysSize]byte // hw: S-ENC decryption schedule
}

func (s *bsp) init(enc, mac, mcv *[16]byte) { s.initImpl(enc, mac, mcv, haveAsm) }

// initImpl is init with the implementation chosen; the tests use hw=false to
// check the kernels against the crypto/aes path.
func (s *bsp) initImpl(enc, mac, mcv *[16]byte, hw bool) {
	s.hw, s.hasDec = hw, false
	s.mcv = *mcv
	s.counter = 1
	if hw {
		s.enc, s.decCBC = nil, nil
		expandKeyAsm(enc, &s.encRK)
		s.mac.initHW(mac)
		return
	}
	eb, err := aes.NewCipher(enc[:])
	if err != nil {
		panic("bpp: AES-128 key rejected: " + err.Error()) // unreachable: the key is 16 bytes
	}
	mb, err := aes.NewCipher(mac[:])
	if err != nil {
		panic("bpp: AES-128 key rejected: " + err.Error())
	}
	s.enc = eb
	s.decCBC = nil
	s.mac.init(mb)
}

// zero wipes the chaining value, subkeys, round keys (hw) and scratch and
// drops the ciphers.
func (s *bsp) zero() {
	s.mac.zero()
	s.mac = cmac{}
	clear(s.mcv[:])
	clear(s.icv[:])
	clear(s.scratch[:])
	clear(s.full[:])
	clear(s.encRK[:])
	clear(s.decRK[:])
	s.hasDec = false
	s.enc, s.decCBC = nil, nil
	s.counter = 0
}

// nextICV returns AES-ECB(S-ENC, counter as a 16-byte big-endian integer)
// and advances the counter.
func (s *bsp) nextICV() []byte {
	icv := s.icv[:]
	clear(icv[:8])
	binary.BigEndian.PutUint64(icv[8:], s.counter)
	if s.hw {
		encryptBlockAsm(&s.encRK, &s.icv, &s.icv)
	} else {
		s.enc.Encrypt(icv, icv)
	}
	s.counter++
	return icv
}

// skipICV advances the counter as a MAC-only segment does.
func (s *bsp) skipICV() { s.counter++ }

// encryptedSegmentSize is the encoded size of an encrypted segment carrying
// n plaintext bytes.
func encryptedSegmentSize(n int) int {
	body := (n/aes.BlockSize+1)*aes.BlockSize + macSize
	return 1 + lengthSize(body) + body
}

func macOnlySegmentSize(n int) int {
	body := n + macSize
	return 1 + lengthSize(body) + body
}

// segmentsSize returns the total encoded size and count of the segments that
// appendSegments produces for len(data) = n.
func segmentsSize(n int, encrypt bool) (size, count int) {
	chunk := MaxMACOnlyChunk
	if encrypt {
		chunk = MaxEncryptedChunk
	}
	for n > 0 {
		k := min(n, chunk)
		if encrypt {
			size += encryptedSegmentSize(k)
		} else {
			size += macOnlySegmentSize(k)
		}
		count++
		n -= k
	}
	return size, count
}

// finishMAC computes the CMAC over MCV || dst[start:], chains it and appends
// the 8-byte truncation.
func (s *bsp) finishMAC(dst []byte, start int) []byte {
	s.mac.sum(&s.mcv, &s.mcv, dst[start:], s.scratch[:])
	return append(dst, s.mcv[:macSize]...)
}

// appendEncrypted appends one encrypted-and-MACed segment T || L || C || MAC:
// C = AES-CBC(S-ENC, ICV = E(counter), P || 80 00..), MAC = CMAC(S-MAC,
// MCV || T || L || C) chained.
//
// The CBC chain and the CMAC chain are two serial AES chains under different
// keys; both implementations interleave them so that the CPU overlaps the
// two AES latencies. The two-pass form is kept in the tests as the reference
// both are checked against byte for byte.
func (s *bsp) appendEncrypted(dst []byte, tag byte, p []byte) []byte {
	if len(p) > MaxEncryptedChunk {
		panic("bpp: internal error: encrypted chunk too large")
	}
	if s.hw {
		return s.appendEncryptedAsm(dst, tag, p)
	}
	return s.appendEncryptedGeneric(dst, tag, p)
}

// appendEncryptedGeneric is appendEncrypted through crypto/aes. The chains
// are interleaved block by block, the MAC trailing by macLag blocks (a MAC
// block straddles two cipher blocks, and its loads should not hit stores
// still in flight): about 30% less CPU per profile than CBC then CMAC,
// measured, but the per-call overhead of crypto/aes (two calls per block)
// still dominates. subtle.XORBytes keeps the 16-byte-wide stores that let
// its loads forward.
func (s *bsp) appendEncryptedGeneric(dst []byte, tag byte, p []byte) []byte {
	padded := (len(p)/aes.BlockSize + 1) * aes.BlockSize
	start := len(dst)
	dst = append(dst, tag)
	dst = appendLength(dst, padded+macSize)
	c := len(dst)
	dst = append(dst, p...)
	dst = append(dst, 0x80)
	dst = append(dst, zeroBlock[:padded-len(p)-1]...)

	r := dst[start:] // T || L || C: MACed after the MCV block
	m := padded / aes.BlockSize
	x := s.mac.x[:]
	enc, mac := s.enc, s.mac.b
	mac.Encrypt(x, s.mcv[:])
	prev := s.nextICV()
	j := 0
	for i := 0; i < m; i++ {
		blk := dst[c+i*aes.BlockSize : c+(i+1)*aes.BlockSize]
		subtle.XORBytes(blk, blk, prev)
		enc.Encrypt(blk, blk)
		prev = blk
		if i >= macLag {
			subtle.XORBytes(x, x, r[j*aes.BlockSize:(j+1)*aes.BlockSize])
			mac.Encrypt(x, x)
			j++
		}
	}
	for ; j < m; j++ {
		subtle.XORBytes(x, x, r[j*aes.BlockSize:(j+1)*aes.BlockSize])
		mac.Encrypt(x, x)
	}
	last := s.mac.m[:]
	clear(last)
	hl := copy(last, r[m*aes.BlockSize:])
	last[hl] = 0x80
	subtle.XORBytes(last, last, s.mac.k2[:])
	subtle.XORBytes(x, x, last)
	mac.Encrypt(s.mcv[:], x)
	return append(dst, s.mcv[:macSize]...)
}

// appendEncryptedAsm is appendEncrypted as one sealSegmentAsm call, which
// runs the CBC and CMAC chains with their AES rounds interleaved: one call
// per segment instead of two crypto/aes calls per block, and the two
// latencies overlap inside the AES unit. The kernel builds the CMAC input
// blocks, which straddle ciphertext blocks by the header length h = len(T ||
// L), from registers with PSHUFB (sealMasks), rather than reloading them
// from just-stored ciphertext (a store-forwarding stall on every block).
func (s *bsp) appendEncryptedAsm(dst []byte, tag byte, p []byte) []byte {
	padded := (len(p)/aes.BlockSize + 1) * aes.BlockSize
	start := len(dst)
	dst = append(dst, tag)
	dst = appendLength(dst, padded+macSize)
	c := len(dst)
	h := c - start // 2..4: padded+8 <= 1016 has a 1..3-byte length
	dst = append(dst, p...)
	dst = append(dst, 0x80)
	dst = append(dst, zeroBlock[:padded-len(p)-1]...)

	hdr, fin := &s.mac.x, &s.mac.m // wiped by zero
	*hdr = zeroBlock
	copy(hdr[aes.BlockSize-h:], dst[start:c])
	// The final CMAC block is the last h ciphertext bytes, 80 00.., XOR K2
	// (never a complete block: h < 16).
	*fin = s.mac.k2
	fin[h] ^= 0x80
	clear(s.icv[:8])
	binary.BigEndian.PutUint64(s.icv[8:], s.counter)
	s.counter++
	sealSegmentAsm(&s.encRK, &s.mac.rk, &s.mcv, &s.icv, hdr, &sealMasks[h-2], fin, dst[c:])
	return append(dst, s.mcv[:macSize]...)
}

// sealMasks[h-2] are the PSHUFB masks with which sealSegmentAsm assembles a
// CMAC input block from two consecutive ciphertext blocks: [0] moves the last
// h bytes of the earlier block to the front, [1] moves the first 16-h bytes
// of the later block behind them (0x80 entries give zeros).
var sealMasks = func() (t [3][2][aes.BlockSize]byte) {
	for h := 2; h <= 4; h++ {
		a, b := &t[h-2][0], &t[h-2][1]
		for k := range aes.BlockSize {
			if k < h {
				a[k], b[k] = byte(aes.BlockSize-h+k), 0x80
			} else {
				a[k], b[k] = 0x80, byte(k-h)
			}
		}
	}
	return t
}()

// macLag is how many cipher blocks the MAC chain trails the CBC chain.
const macLag = 2

// appendMACOnly appends one MAC-only segment T || L || P || MAC.
func (s *bsp) appendMACOnly(dst []byte, tag byte, p []byte) []byte {
	if len(p) > MaxMACOnlyChunk {
		panic("bpp: internal error: MAC-only chunk too large")
	}
	start := len(dst)
	dst = append(dst, tag)
	dst = appendLength(dst, len(p)+macSize)
	dst = append(dst, p...)
	s.skipICV()
	return s.finishMAC(dst, start)
}

// appendSegments splits data into chunks of at most 1007 (encrypted) or
// 1008 (MAC-only) bytes and appends one segment per chunk.
func (s *bsp) appendSegments(dst []byte, tag byte, data []byte, encrypt bool) []byte {
	chunk := MaxMACOnlyChunk
	if encrypt {
		chunk = MaxEncryptedChunk
	}
	for len(data) > 0 {
		k := min(len(data), chunk)
		if encrypt {
			dst = s.appendEncrypted(dst, tag, data[:k])
		} else {
			dst = s.appendMACOnly(dst, tag, data[:k])
		}
		data = data[k:]
	}
	return dst
}

// openSegment checks the size and MAC of one received segment (the MAC covers
// MCV || the tag, length and body octets exactly as received), advances the
// counter and chaining value, and when decrypt is set appends the decrypted,
// unpadded plaintext to dst; otherwise it appends the MAC-only payload.
func (s *bsp) openSegment(dst []byte, seg tlv, decrypt bool) ([]byte, error) {
	if len(seg.Raw) > MaxSegmentSize {
		return dst, fmt.Errorf("%w: %d bytes, the maximum is %d", ErrSegmentSize, len(seg.Raw), MaxSegmentSize)
	}
	body := len(seg.Value) - macSize
	if body < 0 {
		return dst, fmt.Errorf("%w: %d content bytes cannot hold an 8-byte MAC", ErrSegmentSize, len(seg.Value))
	}
	if decrypt && (body == 0 || body%aes.BlockSize != 0) {
		return dst, fmt.Errorf("%w: ciphertext of %d bytes is not a positive multiple of 16", ErrSegmentSize, body)
	}
	full := &s.full
	s.mac.sum(full, &s.mcv, seg.Raw[:len(seg.Raw)-macSize], s.scratch[:])
	if subtle.ConstantTimeCompare(full[:macSize], seg.Value[body:]) != 1 {
		return dst, ErrMAC
	}
	s.mcv = *full
	if !decrypt {
		s.skipICV()
		return append(dst, seg.Value[:body]...), nil
	}
	icv := s.nextICV()
	if s.hw {
		if !s.hasDec {
			invertKeyAsm(&s.encRK, &s.decRK)
			s.hasDec = true
		}
		off := len(dst)
		dst = append(dst, seg.Value[:body]...)
		cbcDecryptAsm(&s.decRK, &s.icv, dst[off:])
		return s.unpad(dst, off)
	}
	if s.decCBC == nil {
		s.decCBC = newCBC(s.enc, true)
	}
	off := len(dst)
	dst = append(dst, seg.Value[:body]...)
	s.decCBC.SetIV(icv)
	s.decCBC.CryptBlocks(dst[off:], dst[off:])
	return s.unpad(dst, off)
}

// unpad strips the 80 00.. padding of the plaintext just decrypted into
// dst[off:], wiping it if the padding is wrong.
func (s *bsp) unpad(dst []byte, off int) ([]byte, error) {
	// Strip 80 00..: the padding is 1..16 bytes and lies in the last block.
	i := len(dst) - 1
	for i > len(dst)-aes.BlockSize && dst[i] == 0 {
		i--
	}
	if dst[i] != 0x80 {
		clear(dst[off:])
		return dst[:off], ErrPadding
	}
	return dst[:i], nil
}
