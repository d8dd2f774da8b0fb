//go:build amd64 && !purego

package bpp

import "golang.org/x/sys/cpu"

// haveAsm reports whether the AES-NI kernels in aes_amd64.s can run here:
// AES-NI for the rounds and AESKEYGENASSIST, SSSE3 for PSHUFB. SSE4.1 is
// not used but is present on every AES-NI CPU; requiring it keeps the check
// aligned with crypto/aes'.
var haveAsm = cpu.X86.HasAES && cpu.X86.HasSSSE3 && cpu.X86.HasSSE41

// expandKeyAsm writes the AES-128 encryption schedule of key to enc, with
// AESKEYGENASSIST: constant time, no tables.
//
//go:noescape
func expandKeyAsm(key *[16]byte, enc *[roundKeysSize]byte)

// invertKeyAsm derives the decryption (AESDEC) schedule from enc.
//
//go:noescape
func invertKeyAsm(enc, dec *[roundKeysSize]byte)

// encryptBlockAsm sets dst = E(src); dst may alias src.
//
//go:noescape
func encryptBlockAsm(rk *[roundKeysSize]byte, dst, src *[16]byte)

// cbcMACAsm sets x = E(x ^ m) for every block m of src, a positive multiple
// of 16 bytes.
//
//go:noescape
func cbcMACAsm(rk *[roundKeysSize]byte, x *[16]byte, src []byte)

// cbcDecryptAsm decrypts buf (a positive multiple of 16 bytes) in place in
// CBC mode under the decryption schedule dec.
//
//go:noescape
func cbcDecryptAsm(dec *[roundKeysSize]byte, iv *[16]byte, buf []byte)

// sealSegmentAsm encrypts and MACs one segment; see aes_amd64.s.
//
//go:noescape
func sealSegmentAsm(encRK, macRK *[roundKeysSize]byte, mcv, ctr, hdr *[16]byte, masks *[2][16]byte, fin *[16]byte, buf []byte)
