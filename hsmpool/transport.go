package hsmpool

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Transport-key algorithms accepted by DecryptTransport.
const (
	AlgAES128ECB = "AES-128-ECB"
	AlgAES128CBC = "AES-128-CBC" // zero IV
	Alg3DESECB   = "3DES-ECB"
	Alg3DESCBC   = "3DES-CBC" // zero IV
)

type transportAlg struct {
	name    string
	keyType uint // CKK_AES or CKK_DES3
	mech    uint
	block   int
	cbc     bool
}

func parseTransportAlg(s string) (transportAlg, error) {
	switch s {
	case AlgAES128ECB:
		return transportAlg{s, pkcs11.CKK_AES, pkcs11.CKM_AES_ECB, 16, false}, nil
	case AlgAES128CBC:
		return transportAlg{s, pkcs11.CKK_AES, pkcs11.CKM_AES_CBC, 16, true}, nil
	case Alg3DESECB:
		return transportAlg{s, pkcs11.CKK_DES3, pkcs11.CKM_DES3_ECB, 8, false}, nil
	case Alg3DESCBC:
		return transportAlg{s, pkcs11.CKK_DES3, pkcs11.CKM_DES3_CBC, 8, true}, nil
	}
	return transportAlg{}, fmt.Errorf("%w: transport algorithm %q (want %s, %s, %s or %s)", ErrBadInput, s,
		AlgAES128ECB, AlgAES128CBC, Alg3DESECB, Alg3DESCBC)
}

func (a transportAlg) mechanism() *pkcs11.Mechanism {
	if a.cbc {
		return pkcs11.NewMechanism(a.mech, make([]byte, a.block)) // zero IV
	}
	return pkcs11.NewMechanism(a.mech, nil)
}

// DecryptTransport decrypts Ki/OPc (or any block-aligned transport-keyed
// column) with the transport key labelled keyLabel ("transport-<n>"). alg is
// one of "AES-128-ECB", "AES-128-CBC" (zero IV), "3DES-ECB", "3DES-CBC" (zero
// IV); no padding is removed. The caller must clear the plaintext after use.
// Default lane: Batch.
func (p *Pool) DecryptTransport(ctx context.Context, keyLabel string, alg string, ciphertext []byte) ([]byte, error) {
	a, err := parseTransportAlg(alg)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) == 0 || len(ciphertext)%a.block != 0 {
		return nil, fmt.Errorf("%w: %s ciphertext length %d is not a positive multiple of %d", ErrBadInput, alg, len(ciphertext), a.block)
	}
	var pt []byte
	err = p.do(ctx, "decrypt", LaneOf(ctx, Batch), keyLabel, func(slot int) (e error) {
		pt, e = p.be.decrypt(ctx, slot, keyLabel, a, ciphertext)
		return
	})
	return pt, err
}

// DecryptTransportBatch decrypts many values with one key as one grouped
// batch request: it holds one session for the whole group, yielding it
// whenever a live request is waiting. Results are in input order. On error
// the plaintexts decrypted so far are cleared. Default lane: Batch.
func (p *Pool) DecryptTransportBatch(ctx context.Context, keyLabel string, alg string, ciphertexts [][]byte) ([][]byte, error) {
	a, err := parseTransportAlg(alg)
	if err != nil {
		return nil, err
	}
	for i, ct := range ciphertexts {
		if len(ct) == 0 || len(ct)%a.block != 0 {
			return nil, fmt.Errorf("%w: %s ciphertext %d length %d is not a positive multiple of %d", ErrBadInput, alg, i, len(ct), a.block)
		}
	}
	out := make([][]byte, len(ciphertexts))
	lane := LaneOf(ctx, Batch)
	next := 0
	for next < len(ciphertexts) {
		err := p.do(ctx, "decrypt-group", lane, keyLabel, func(slot int) error {
			for next < len(ciphertexts) {
				pt, err := p.be.decrypt(ctx, slot, keyLabel, a, ciphertexts[next])
				if err != nil {
					return err
				}
				out[next] = pt
				next++
				if lane == Batch && p.sched.liveWaiting() {
					return nil // yield the session to live traffic, then continue
				}
			}
			return nil
		})
		if err != nil {
			for _, b := range out {
				clear(b)
			}
			return nil, err
		}
	}
	return out, nil
}
