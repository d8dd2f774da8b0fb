package bpp

import (
	"crypto/rand"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
)

func cryptoString(b []byte) cryptobyte.String { return cryptobyte.String(b) }

// MaxUPPSize bounds the UPP accepted by Protect and produced by Open (4 MiB;
// a TS.48 profile is about 12 KB, profiles with applets a few hundred KB).
const MaxUPPSize = 4 << 20

// PPP is a Protected Profile Package: the UPP cut into 86 segments of at
// most 1007 plaintext bytes (1020-byte segments), encrypted and MACed under
// a fresh PPK with the block counter starting at 1. Segments is the content
// of the BPP's sequenceOf86 (A3), ready to be spliced into any
// BoundProfilePackage by Bind.
//
// The store keeps Segments and SegmentCount as they are and the PPK only
// wrapped under a KEK; at download time the caller unwraps the PPK into
// PPP.PPK, calls Bind, and zeroes it.
type PPP struct {
	Segments     []byte // concatenated 86 TLVs
	SegmentCount int    // number of 86 TLVs; Bind checks it unless 0
	PPK          PPK
}

// Protect protects upp under a fresh random PPK (PPK-ENC, PPK-MAC, initial
// MAC chaining value read from r; nil means crypto/rand). upp must be a
// complete SAIP stream ending with the end PE: Open rejects anything else
// (the BSP cannot detect dropped trailing segments otherwise). Protect is
// safe for concurrent use; the batch hot path is a Protector per worker.
func Protect(upp []byte, r io.Reader) (*PPP, error) {
	return NewProtector(r).Protect(upp)
}

// ProtectWithPPK protects upp under the given PPK (for known-answer tests and
// for re-protecting with a key unwrapped from the HSM).
func ProtectWithPPK(upp []byte, ppk *PPK) (*PPP, error) {
	var p Protector
	ppp := &PPP{PPK: *ppk}
	seg, n, err := p.AppendProtected(nil, upp, ppk)
	if err != nil {
		return nil, err
	}
	ppp.Segments, ppp.SegmentCount = seg, n
	return ppp, nil
}

// Protector protects profiles one after the other, reusing its BSP state and
// scratch buffers. A Protector is not safe for concurrent use; use one per
// worker goroutine.
type Protector struct {
	rand io.Reader
	st   bsp
	rnd  [PPKSize]byte
}

// NewProtector returns a Protector drawing PPKs from r (nil: crypto/rand).
func NewProtector(r io.Reader) *Protector {
	if r == nil {
		r = rand.Reader
	}
	return &Protector{rand: r}
}

// ProtectedSize returns the size of the sequenceOf86 content and the number
// of segments for a UPP of n bytes.
func ProtectedSize(n int) (size, count int) { return segmentsSize(n, true) }

// Protect draws a fresh PPK and protects upp under it.
func (p *Protector) Protect(upp []byte) (*PPP, error) {
	if p.rand == nil {
		p.rand = rand.Reader
	}
	ppp := new(PPP)
	if err := p.NewPPK(&ppp.PPK); err != nil {
		return nil, err
	}
	seg, n, err := p.AppendProtected(nil, upp, &ppp.PPK)
	if err != nil {
		ppp.PPK.Zero()
		return nil, err
	}
	ppp.Segments, ppp.SegmentCount = seg, n
	return ppp, nil
}

// NewPPK fills k with 48 fresh random bytes from the Protector's source.
func (p *Protector) NewPPK(k *PPK) error {
	if p.rand == nil {
		p.rand = rand.Reader
	}
	buf := &p.rnd
	if _, err := io.ReadFull(p.rand, buf[:]); err != nil {
		return fmt.Errorf("bpp: random PPK: %w", err)
	}
	*k, _ = PPKFromBytes(buf[:])
	clear(buf[:])
	return nil
}

// AppendProtected appends the 86 segments of upp under ppk to dst and
// returns the extended buffer and the number of segments. It allocates
// nothing but dst's growth when dst lacks capacity (ProtectedSize gives the
// exact size) on amd64 with AES-NI, where the key schedules live in the
// Protector; elsewhere crypto/aes allocates the two AES key schedules.
func (p *Protector) AppendProtected(dst, upp []byte, ppk *PPK) ([]byte, int, error) {
	if len(upp) == 0 {
		return dst, 0, fmt.Errorf("%w: empty UPP", ErrInvalidParams)
	}
	if len(upp) > MaxUPPSize {
		return dst, 0, fmt.Errorf("%w: UPP of %d bytes exceeds %d", ErrInvalidParams, len(upp), MaxUPPSize)
	}
	size, count := segmentsSize(len(upp), true)
	if cap(dst)-len(dst) < size {
		nd := make([]byte, len(dst), len(dst)+size)
		copy(nd, dst)
		dst = nd
	}
	p.st.init(&ppk.Enc, &ppk.MAC, &ppk.InitialMCV)
	dst = p.st.appendSegments(dst, tagSegProfile, upp, true)
	p.st.zero()
	return dst, count, nil
}

// appendReplaceSessionKeys appends ReplaceSessionKeysRequest:
// BF26 36 { 80 10 initialMacChainingValue, 81 10 ppkEnc, 82 10 ppkCmac }.
func appendReplaceSessionKeys(dst []byte, k *PPK) []byte {
	dst = appendHeader(dst, tagReplaceKeys, 3*18)
	dst = appendTLV(dst, tagRSKInitialMCV, k.InitialMCV[:])
	dst = appendTLV(dst, tagRSKPPKEnc, k.Enc[:])
	return appendTLV(dst, tagRSKPPKMAC, k.MAC[:])
}

// parseReplaceSessionKeys decodes ReplaceSessionKeysRequest strictly.
func parseReplaceSessionKeys(b []byte) (PPK, error) {
	var k PPK
	s := cryptoString(b)
	top, err := expectTLV(&s, tagReplaceKeys, "ReplaceSessionKeysRequest")
	if err != nil {
		return k, err
	}
	if !s.Empty() {
		return k, fmt.Errorf("%w: ReplaceSessionKeysRequest: trailing data", ErrMalformed)
	}
	in := cryptoString(top.Value)
	for _, f := range []struct {
		tag  uint32
		name string
		dst  *[16]byte
	}{
		{tagRSKInitialMCV, "initialMacChainingValue", &k.InitialMCV},
		{tagRSKPPKEnc, "ppkEnc", &k.Enc},
		{tagRSKPPKMAC, "ppkCmac", &k.MAC},
	} {
		e, err := expectTLV(&in, f.tag, "ReplaceSessionKeysRequest."+f.name)
		if err != nil {
			k.Zero()
			return k, err
		}
		if len(e.Value) != 16 {
			k.Zero()
			return k, fmt.Errorf("%w: ReplaceSessionKeysRequest.%s is %d bytes, want 16", ErrMalformed, f.name, len(e.Value))
		}
		copy(f.dst[:], e.Value)
	}
	if !in.Empty() {
		k.Zero()
		return k, fmt.Errorf("%w: ReplaceSessionKeysRequest: unexpected element after ppkCmac", ErrMalformed)
	}
	return k, nil
}
