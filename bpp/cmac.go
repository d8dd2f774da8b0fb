package bpp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
)

// cmac is AES-CMAC (NIST SP 800-38B, RFC 4493) over one expanded key. It is
// computed as a CBC-MAC through crypto/aes' CBC mode (the AES-NI path on
// amd64) into a caller-provided scratch buffer, so it allocates nothing.
type cmac struct {
	b      cipher.Block
	cbc    cbcMode
	k1, k2 [aes.BlockSize]byte
	// x and m are the working blocks; they live here rather than on the stack
	// because slices of them passed to cipher.Block's methods would escape.
	x, m [aes.BlockSize]byte
	// hw: the AES-NI kernels run the CMAC on rk, the S-MAC schedule kept
	// here (not inside crypto/aes) so that zero wipes it.
	hw bool
	rk [roundKeysSize]byte
}

var zeroBlock [aes.BlockSize]byte

// cbcMode is a CBC mode whose IV can be replaced without allocating
// (crypto/aes' CBC modes implement SetIV).
type cbcMode interface {
	cipher.BlockMode
	SetIV([]byte)
}

// newCBC returns an encrypting or decrypting CBC mode on b.
func newCBC(b cipher.Block, decrypt bool) cbcMode {
	var m cipher.BlockMode
	if decrypt {
		m = cipher.NewCBCDecrypter(b, zeroBlock[:])
	} else {
		m = cipher.NewCBCEncrypter(b, zeroBlock[:])
	}
	if s, ok := m.(cbcMode); ok {
		return s
	}
	// Not reached with crypto/aes; kept so that any other Block still works.
	return &resettableCBC{b: b, decrypt: decrypt, m: m}
}

type resettableCBC struct {
	b       cipher.Block
	decrypt bool
	m       cipher.BlockMode
}

func (r *resettableCBC) BlockSize() int              { return r.b.BlockSize() }
func (r *resettableCBC) CryptBlocks(dst, src []byte) { r.m.CryptBlocks(dst, src) }
func (r *resettableCBC) SetIV(iv []byte) {
	if r.decrypt {
		r.m = cipher.NewCBCDecrypter(r.b, iv)
	} else {
		r.m = cipher.NewCBCEncrypter(r.b, iv)
	}
}

func (c *cmac) init(b cipher.Block) {
	c.b = b
	c.hw = false
	c.cbc = nil // created on first use: the interleaved segment path never needs it
	c.subkeys()
}

// initHW expands key into c.rk for the AES-NI kernels (haveAsm only).
func (c *cmac) initHW(key *[aes.BlockSize]byte) {
	c.b, c.cbc = nil, nil
	c.hw = true
	expandKeyAsm(key, &c.rk)
	c.subkeys()
}

// subkeys derives K1 and K2 from L = E(0).
func (c *cmac) subkeys() {
	l := &c.x
	*l = zeroBlock
	c.encrypt(l, l)
	dbl(&c.k1, l)
	dbl(&c.k2, &c.k1)
	clear(l[:])
}

// encrypt sets dst = E(src); dst may alias src.
func (c *cmac) encrypt(dst, src *[aes.BlockSize]byte) {
	if c.hw {
		encryptBlockAsm(&c.rk, dst, src)
		return
	}
	c.b.Encrypt(dst[:], src[:])
}

// dbl is multiplication by x in GF(2^128) (the CMAC subkey doubling).
func dbl(dst, src *[aes.BlockSize]byte) {
	carry := src[0] >> 7
	for i := 0; i < aes.BlockSize-1; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[aes.BlockSize-1] = src[aes.BlockSize-1]<<1 ^ (0-carry)&0x87 // constant time
}

func (c *cmac) zero() {
	clear(c.k1[:])
	clear(c.k2[:])
	clear(c.x[:])
	clear(c.m[:])
	clear(c.rk[:])
}

// sum writes AES-CMAC(prefix || msg) to out. prefix is an optional complete
// first block (the BSP MAC chaining value); out may alias prefix. scratch must
// be a non-empty multiple of 16 bytes; larger is faster.
func (c *cmac) sum(out, prefix *[aes.BlockSize]byte, msg []byte, scratch []byte) {
	x, m := &c.x, &c.m
	*x = zeroBlock
	if prefix != nil {
		if len(msg) == 0 {
			subtle.XORBytes(m[:], prefix[:], c.k1[:])
			c.encrypt(out, m)
			return
		}
		c.encrypt(x, prefix)
	}
	n := len(msg)
	lastLen := 0
	if n > 0 {
		lastLen = n - (n-1)/aes.BlockSize*aes.BlockSize // 1..16
	}
	head := msg[:n-lastLen]
	if c.hw && len(head) > 0 {
		cbcMACAsm(&c.rk, x, head)
		head = nil
	}
	if len(head) > 0 && c.cbc == nil {
		c.cbc = newCBC(c.b, false)
	}
	for len(head) > 0 {
		k := min(len(head), len(scratch)&^(aes.BlockSize-1))
		c.cbc.SetIV(x[:])
		c.cbc.CryptBlocks(scratch[:k], head[:k])
		copy(x[:], scratch[k-aes.BlockSize:k])
		head = head[k:]
	}
	last := msg[n-lastLen:]
	if lastLen == aes.BlockSize {
		subtle.XORBytes(m[:], last, c.k1[:])
	} else {
		*m = zeroBlock
		copy(m[:], last)
		m[lastLen] = 0x80
		subtle.XORBytes(m[:], m[:], c.k2[:])
	}
	subtle.XORBytes(m[:], m[:], x[:])
	c.encrypt(out, m)
}

// CMAC returns the full 16-byte AES-CMAC of msg under key (16, 24 or 32
// bytes). The BSP uses AES-128 and keeps the full value as the next MAC
// chaining value while sending its first 8 bytes.
func CMAC(key, msg []byte) ([aes.BlockSize]byte, error) {
	var out [aes.BlockSize]byte
	b, err := aes.NewCipher(key)
	if err != nil {
		return out, err
	}
	var c cmac
	c.init(b)
	var scratch [256]byte
	c.sum(&out, nil, msg, scratch[:])
	c.zero()
	return out, nil
}
