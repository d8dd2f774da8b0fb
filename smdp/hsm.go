package smdp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/hsmpool"
)

// PoolHSM adapts an hsmpool.Pool to HSM: DPauth/DPpb signatures with the
// pool's dpauth-<curve>/dppb-<curve> keys, one-time ECDH, PPK unsealing and
// one-time secret sealing, all on the pool's live lane, which batch work
// cannot starve.
type PoolHSM struct {
	Pool *hsmpool.Pool

	mu   sync.Mutex
	seal *hsmpool.BatchKey // this process's sealing key for one-time secrets
}

// NewPoolHSM returns the adapter; Close it to zero its sealing key.
func NewPoolHSM(p *hsmpool.Pool) *PoolHSM { return &PoolHSM{Pool: p} }

func (h *PoolHSM) Signer(role Role, c esim.Curve) bpp.Signer {
	if role == RoleDPauth {
		return h.Pool.Signer(hsmpool.DPauthLabel(c))
	}
	return h.Pool.Signer(hsmpool.DPpbLabel(c))
}

func (h *PoolHSM) KeyAgreement(c esim.Curve) bpp.KeyAgreement { return h.Pool.KeyAgreement(c) }

func (h *PoolHSM) UnprotectPPK(ctx context.Context, blob []byte, iccid string, protected []byte) ([]byte, error) {
	return h.Pool.UnprotectPPK(ctx, blob, iccid, protected)
}

// SealSecret seals secret (at most 47 bytes) for label with the pool's
// envelope encryption: a data key generated in the HSM and kept only
// wrapped under its KEK (the blob travels in the reference), AES-GCM with
// the label as associated data. Any server on the same token can open it.
func (h *PoolHSM) SealSecret(ctx context.Context, label string, secret []byte) (string, error) {
	if len(secret) >= hsmpool.PPKLen {
		return "", fmt.Errorf("smdp: secret of %d bytes is too long to seal", len(secret))
	}
	h.mu.Lock()
	if h.seal == nil {
		id := make([]byte, 8)
		rand.Read(id)
		bk, err := h.Pool.NewBatchKey(hsmpool.WithLane(ctx, hsmpool.Live), "smdp-otk-"+hex.EncodeToString(id))
		if err != nil {
			h.mu.Unlock()
			return "", fmt.Errorf("smdp: creating the one-time secret sealing key: %w", err)
		}
		h.seal = bk
	}
	bk := h.seal
	h.mu.Unlock()
	// The envelope holds records of PPKLen bytes: a length octet, the
	// secret, zero padding.
	var rec [hsmpool.PPKLen]byte
	rec[0] = byte(len(secret))
	copy(rec[1:], secret)
	sealed, err := bk.Protect(label, rec[:])
	clear(rec[:])
	if err != nil {
		return "", fmt.Errorf("smdp: sealing a one-time secret: %w", err)
	}
	return base64.RawStdEncoding.EncodeToString(bk.Blob()) + "." + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// OpenSecret opens a reference made by SealSecret for the same label.
func (h *PoolHSM) OpenSecret(ctx context.Context, label, ref string) ([]byte, error) {
	b, s, ok := strings.Cut(ref, ".")
	blob, err1 := base64.RawStdEncoding.DecodeString(b)
	sealed, err2 := base64.RawStdEncoding.DecodeString(s)
	if !ok || err1 != nil || err2 != nil {
		return nil, errors.New("smdp: malformed one-time secret reference")
	}
	rec, err := h.Pool.UnprotectPPK(ctx, blob, label, sealed)
	if err != nil {
		return nil, fmt.Errorf("smdp: opening a one-time secret: %w", err)
	}
	defer clear(rec)
	if len(rec) != hsmpool.PPKLen || int(rec[0]) >= hsmpool.PPKLen {
		return nil, errors.New("smdp: one-time secret record malformed")
	}
	return append([]byte(nil), rec[1:1+int(rec[0])]...), nil
}

// Close zeroes the sealing key.
func (h *PoolHSM) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seal != nil {
		h.seal.Close()
		h.seal = nil
	}
}
