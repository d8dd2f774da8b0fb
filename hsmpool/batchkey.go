package hsmpool

import (
	"container/list"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"
)

// PPKLen is the size of a Protected Profile Package key set:
// PPK-ENC (16) || PPK-MAC (16) || initial MAC chaining value (16).
const PPKLen = 48

// DefaultKEK is the default KEK label.
const DefaultKEK = "kek-1"

const (
	dataKeyLen      = 32
	blobMagic       = "PBK1"
	recordVersion   = 1
	nonceLen        = 12
	tagLen          = 16
	maxBatchRecords = 1 << 30
	// ProtectedPPKLen is the size of a protected PPK record:
	// version(1) || nonce(12) || AES-256-GCM(PPK)(48) || tag(16).
	ProtectedPPKLen = 1 + nonceLen + PPKLen + tagLen
)

// BatchKey is a per-batch data key (envelope encryption). NewBatchKey makes
// one HSM operation that generates a 256-bit AES data key inside the token
// and returns it wrapped under the KEK (the blob, safe to store) together
// with its value, which Protect then uses in software for any number of
// records. Close zeroes it. OpenBatchKey unwraps a stored blob again.
//
// Each record is sealed with AES-256-GCM under a record key
// HMAC-SHA256(data key, "perso/ppk/v1" || blob header), so the KEK reference
// and the batch ID in the blob header are authenticated too; the AAD binds
// the record to its ICCID. A BatchKey is safe for concurrent use.
type BatchKey struct {
	id   string
	kek  string
	blob []byte

	mu      sync.RWMutex
	recKey  []byte
	aead    cipher.AEAD
	records uint64
	closed  bool
}

// ID returns the batch ID the key was made for.
func (bk *BatchKey) ID() string { return bk.id }

// KeyRef returns the reference of the KEK that wraps the data key (the KEK
// label, whose "-<n>" suffix is its version), to store alongside the blob.
func (bk *BatchKey) KeyRef() string { return bk.kek }

// Blob returns the wrapped data key: "PBK1" || len || KEK label || len ||
// batch ID || RFC 3394 AES key wrap of the data key under the KEK.
func (bk *BatchKey) Blob() []byte { return append([]byte(nil), bk.blob...) }

// Close zeroes the data key. Further Protect/Unprotect calls fail.
func (bk *BatchKey) Close() {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if !bk.closed {
		clear(bk.recKey)
		bk.aead = nil // Go's AES round keys cannot be cleared explicitly; drop them
		bk.closed = true
	}
}

func ppkAAD(iccid string) []byte {
	aad := make([]byte, 0, 16+len(iccid))
	aad = append(aad, "perso-ppk-v1"...)
	aad = append(aad, byte(len(iccid)))
	return append(aad, iccid...)
}

// Protect seals a 48-byte PPK for the record identified by iccid, in
// software (no HSM call). The result is ProtectedPPKLen bytes.
func (bk *BatchKey) Protect(iccid string, ppk []byte) ([]byte, error) {
	if len(ppk) != PPKLen {
		return nil, fmt.Errorf("%w: PPK must be %d bytes, got %d", ErrBadInput, PPKLen, len(ppk))
	}
	if iccid == "" || len(iccid) > 255 {
		return nil, fmt.Errorf("%w: ICCID length %d", ErrBadInput, len(iccid))
	}
	bk.mu.Lock() // counts records; AEAD sealing itself is read-only
	if bk.closed {
		bk.mu.Unlock()
		return nil, ErrClosed
	}
	if bk.records >= maxBatchRecords {
		bk.mu.Unlock()
		return nil, fmt.Errorf("%w: batch key used for %d records; start a new batch key", ErrBadInput, bk.records)
	}
	bk.records++
	aead := bk.aead
	bk.mu.Unlock()
	out := make([]byte, 1+nonceLen, ProtectedPPKLen)
	out[0] = recordVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:1+nonceLen], ppk, ppkAAD(iccid)), nil
}

// Unprotect opens a record sealed by Protect under this batch key for iccid.
// Any change to the record, its ICCID, or the blob is reported as
// ErrIntegrity. The caller must clear the PPK after use.
func (bk *BatchKey) Unprotect(iccid string, protected []byte) ([]byte, error) {
	if len(protected) != ProtectedPPKLen || protected[0] != recordVersion {
		return nil, fmt.Errorf("%w: protected PPK has the wrong length or version", ErrIntegrity)
	}
	bk.mu.RLock()
	defer bk.mu.RUnlock()
	if bk.closed {
		return nil, ErrClosed
	}
	ppk, err := bk.aead.Open(nil, protected[1:1+nonceLen], protected[1+nonceLen:], ppkAAD(iccid))
	if err != nil {
		return nil, fmt.Errorf("%w: protected PPK of %s does not verify under its batch key", ErrIntegrity, iccid)
	}
	return ppk, nil
}

func encodeBlobHeader(kek, id string) ([]byte, error) {
	if len(kek) == 0 || len(kek) > 255 || len(id) > 255 {
		return nil, fmt.Errorf("%w: KEK label and batch ID must be 1-255 and 0-255 bytes", ErrBadInput)
	}
	h := []byte(blobMagic)
	h = append(h, byte(len(kek)))
	h = append(h, kek...)
	h = append(h, byte(len(id)))
	return append(h, id...), nil
}

// parseBlob splits a blob into header, KEK label, batch ID and wrapped key.
func parseBlob(blob []byte) (header []byte, kek, id string, wrapped []byte, err error) {
	bad := fmt.Errorf("%w: malformed batch key blob", ErrIntegrity)
	if len(blob) < len(blobMagic)+2 || string(blob[:len(blobMagic)]) != blobMagic {
		return nil, "", "", nil, bad
	}
	r := blob[len(blobMagic):]
	n := int(r[0])
	if len(r) < 1+n+1 || n == 0 {
		return nil, "", "", nil, bad
	}
	kek = string(r[1 : 1+n])
	r = r[1+n:]
	m := int(r[0])
	if len(r) < 1+m {
		return nil, "", "", nil, bad
	}
	id = string(r[1 : 1+m])
	wrapped = r[1+m:]
	if len(wrapped) != dataKeyLen+8 {
		return nil, "", "", nil, bad
	}
	return blob[:len(blob)-len(wrapped)], kek, id, wrapped, nil
}

// newBatchKeyFrom builds a BatchKey around a data key; it zeroes dk.
func newBatchKeyFrom(header []byte, kek, id string, blob, dk []byte) (*BatchKey, error) {
	mac := hmac.New(sha256.New, dk)
	mac.Write([]byte("perso/ppk/v1"))
	mac.Write(header)
	rk := mac.Sum(nil)
	clear(dk)
	blk, err := aes.NewCipher(rk)
	if err != nil {
		clear(rk)
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		clear(rk)
		return nil, err
	}
	return &BatchKey{id: id, kek: kek, blob: blob, recKey: rk, aead: aead}, nil
}

// NewBatchKey creates the data key for one batch: one HSM operation
// (generate + wrap under the configured KEK) however many records it then
// protects. Default lane: Batch.
func (p *Pool) NewBatchKey(ctx context.Context, batchID string) (*BatchKey, error) {
	header, err := encodeBlobHeader(p.cfg.KEK, batchID)
	if err != nil {
		return nil, err
	}
	var dk, wrapped []byte
	err = p.do(ctx, "wrap", LaneOf(ctx, Batch), p.cfg.KEK, func(slot int) (e error) {
		dk, wrapped, e = p.be.newDataKey(ctx, slot, p.cfg.KEK)
		return
	})
	if err != nil {
		return nil, err
	}
	if len(wrapped) != dataKeyLen+8 {
		clear(dk)
		return nil, errors.New("hsmpool: token returned a wrapped data key of unexpected length")
	}
	blob := append(append([]byte(nil), header...), wrapped...)
	return newBatchKeyFrom(header, p.cfg.KEK, batchID, blob, dk)
}

// OpenBatchKey unwraps a stored blob for Unprotect. Recently opened data
// keys are cached (Config.BatchKeyCache entries for Config.BatchKeyTTL,
// zeroed on eviction), so serving many downloads from one batch costs one
// HSM operation. The returned BatchKey owns its copy; Close it after use.
// Default lane: Live.
func (p *Pool) OpenBatchKey(ctx context.Context, blob []byte) (*BatchKey, error) {
	header, kek, id, wrapped, err := parseBlob(blob)
	if err != nil {
		return nil, err
	}
	blob = append([]byte(nil), blob...)
	h := sha256.Sum256(blob)
	if dk, ok := p.cache.get(h); ok {
		return newBatchKeyFrom(header[:len(header):len(header)], kek, id, blob, dk)
	}
	var dk []byte
	err = p.do(ctx, "unwrap", LaneOf(ctx, Live), kek, func(slot int) (e error) {
		dk, e = p.be.unwrapDataKey(ctx, slot, kek, wrapped)
		return
	})
	if err != nil {
		return nil, err
	}
	p.cache.put(h, dk)
	return newBatchKeyFrom(header[:len(header):len(header)], kek, id, blob, dk)
}

// UnprotectPPK is OpenBatchKey + Unprotect + Close: the live path's way to
// get one profile's PPK back. The caller must clear the PPK after use.
func (p *Pool) UnprotectPPK(ctx context.Context, blob []byte, iccid string, protected []byte) ([]byte, error) {
	bk, err := p.OpenBatchKey(ctx, blob)
	if err != nil {
		return nil, err
	}
	defer bk.Close()
	return bk.Unprotect(iccid, protected)
}

// keyCache is a small LRU of unwrapped data keys with a TTL; every eviction
// zeroes the key.
type keyCache struct {
	mu  sync.Mutex
	cap int
	ttl time.Duration
	m   map[[32]byte]*list.Element
	lru list.List // front = most recent; values *cacheEntry
}

type cacheEntry struct {
	h     [32]byte
	key   []byte
	timer *time.Timer
}

func newKeyCache(capacity int, ttl time.Duration) *keyCache {
	return &keyCache{cap: capacity, ttl: ttl, m: map[[32]byte]*list.Element{}}
}

func (c *keyCache) get(h [32]byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return append([]byte(nil), e.Value.(*cacheEntry).key...), true
}

func (c *keyCache) put(h [32]byte, key []byte) {
	if c.cap <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[h]; ok {
		return
	}
	ce := &cacheEntry{h: h, key: append([]byte(nil), key...)}
	c.m[h] = c.lru.PushFront(ce)
	ce.timer = time.AfterFunc(c.ttl, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if e, ok := c.m[h]; ok && e.Value.(*cacheEntry) == ce {
			c.evict(e)
		}
	})
	for c.lru.Len() > c.cap {
		c.evict(c.lru.Back())
	}
}

func (c *keyCache) evict(e *list.Element) {
	ce := e.Value.(*cacheEntry)
	ce.timer.Stop()
	clear(ce.key)
	delete(c.m, ce.h)
	c.lru.Remove(e)
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *keyCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() > 0 {
		c.evict(c.lru.Back())
	}
}
