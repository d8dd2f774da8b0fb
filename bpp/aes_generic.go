//go:build !amd64 || purego

package bpp

// haveAsm is false: the BSP runs on crypto/aes (see bsp.go).
const haveAsm = false

// The kernels below are never called when haveAsm is false; they exist so
// that the dispatching code compiles on every architecture.

func expandKeyAsm(key *[16]byte, enc *[roundKeysSize]byte) { panic("bpp: no AES kernel") }

func invertKeyAsm(enc, dec *[roundKeysSize]byte) { panic("bpp: no AES kernel") }

func encryptBlockAsm(rk *[roundKeysSize]byte, dst, src *[16]byte) { panic("bpp: no AES kernel") }

func cbcMACAsm(rk *[roundKeysSize]byte, x *[16]byte, src []byte) { panic("bpp: no AES kernel") }

func cbcDecryptAsm(dec *[roundKeysSize]byte, iv *[16]byte, buf []byte) {
	panic("bpp: no AES kernel")
}

func sealSegmentAsm(encRK, macRK *[roundKeysSize]byte, mcv, ctr, hdr *[16]byte, masks *[2][16]byte, fin *[16]byte, buf []byte) {
	panic("bpp: no AES kernel")
}
