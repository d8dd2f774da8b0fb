package rsp

import (
	"bytes"
	"crypto/sha256"
	"sync"
)

// EUMCache remembers EUM certificates whose signature verified with a CI,
// keyed by the SHA-256 of their exact DER bytes. A server sees the same few
// EUM certificates in every session: parsing each again and checking its
// CI signature (an ECDSA verification, several milliseconds on brainpool)
// is repeated work. Only the EUM's parse and CI signature are remembered;
// its validity, extensions and the whole eUICC certificate are checked in
// every call, so a cached entry cannot let an expired EUM or a forged
// eUICC certificate through. A different byte anywhere in the EUM
// certificate is a different key. Safe for concurrent use.
type EUMCache struct {
	mu  sync.RWMutex
	m   map[[sha256.Size]byte]eumEntry
	max int
}

type eumEntry struct {
	ciRaw []byte
	eum   *Certificate
}

// NewEUMCache returns a cache of at most max EUM certificates (default
// 1024 when max ≤ 0); when full it starts over, which costs one
// verification per EUM again.
func NewEUMCache(max int) *EUMCache {
	if max <= 0 {
		max = 1024
	}
	return &EUMCache{m: make(map[[sha256.Size]byte]eumEntry), max: max}
}

// Len is the number of EUM certificates remembered.
func (c *EUMCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

func (c *EUMCache) get(key [sha256.Size]byte, ci *Certificate) *Certificate {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !bytes.Equal(e.ciRaw, ci.Raw) {
		return nil
	}
	return e.eum
}

func (c *EUMCache) put(key [sha256.Size]byte, ci, eum *Certificate) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[key] = eumEntry{ciRaw: ci.Raw, eum: eum}
}
