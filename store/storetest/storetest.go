// Package storetest is the conformance suite every store backend passes:
// the ES2+/ES9+ life cycle (every legal and illegal transition), batch
// insertion and chunk claims, sessions and their expiry, the retention sweep
// and race-free allocation. A backend's test calls Run with a function that
// opens a fresh, empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
)

// Opener opens a fresh, empty store with the given options and arranges for
// it to be closed when t ends.
type Opener func(t *testing.T, opts ...store.Option) *store.DB

// Clock is a settable clock for store.WithClock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// ICCID returns the i-th test ICCID (20 digits).
func ICCID(i int) string { return fmt.Sprintf("8988%016d", i) }

// Profiles returns n test profiles ICCID(first) … ICCID(first+n-1) of a
// profile type, with segSize bytes of segments and a 100-byte protected PPK.
func Profiles(profileType string, first, n, segSize int) []store.Profile {
	seg := make([]byte, segSize)
	for i := range seg {
		seg[i] = byte(i * 7)
	}
	ppk := make([]byte, 100)
	for i := range ppk {
		ppk[i] = byte(255 - i)
	}
	out := make([]store.Profile, n)
	for i := range out {
		k := first + i
		out[i] = store.Profile{
			ICCID:        ICCID(k),
			IMSI:         fmt.Sprintf("00101%010d", k),
			ProfileType:  profileType,
			TemplateID:   "ts48-v5-saip2.3",
			Segments:     seg,
			ProtectedPPK: ppk,
			PPKKeyRef:    "batch-key/kek-1",
			Metadata:     store.Metadata{ServiceProviderName: "perso", ProfileName: "Test " + ICCID(k), ProfileClass: 2},
		}
	}
	return out
}

// Run runs the conformance suite.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"Batches", testBatches},
		{"PutBatch", testPutBatch},
		{"WriteBatch", testWriteBatch},
		{"Transitions", testTransitions},
		{"DownloadOrder", testDownloadOrder},
		{"ConfirmOrder", testConfirmOrder},
		{"CancelOrder", testCancelOrder},
		{"DownloadAttempts", testDownloadAttempts},
		{"AuthenticateClient", testAuthenticateClient},
		{"Lookups", testLookups},
		{"Sessions", testSessions},
		{"OneTimeKeys", testOneTimeKeys},
		{"SessionChanges", testSessionChanges},
		{"Sweep", testSweep},
		{"ConcurrentAllocation", testConcurrentAllocation},
		{"ConcurrentOrdersOnOneProfile", testConcurrentOrdersOnOneProfile},
		{"Operators", testOperators},
		{"TransitionHook", testTransitionHook},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

const (
	eid1  = "89049032123451234512345678901235"
	eid2  = "89049032123451234512345678901999"
	ptype = "ts48-generic"
)

// fill creates batch "b1" and n profiles of ptype.
func fill(t *testing.T, s *store.DB, n int) []store.Profile {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1", ProfileType: ptype, KeyBlob: []byte("wrapped-key")}); err != nil {
		t.Fatalf("CreateBatch: %v", err)
	}
	ps := Profiles(ptype, 0, n, 64)
	if _, err := s.PutBatch(ctx, "b1", ps); err != nil {
		t.Fatalf("PutBatch: %v", err)
	}
	return ps
}

// wantErr checks err against a sentinel and, when key is not empty, the
// identifier the error concerns (which, with the kind, decides the SGP.22
// code the protocol layer answers).
func wantErr(t *testing.T, err error, want error, key store.Key) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	if key == "" {
		return
	}
	var se *store.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *store.Error", err)
	}
	if se.Key != key {
		t.Fatalf("error %v concerns %q, want %q", err, se.Key, key)
	}
}

// must(f())(t) fails the test when f returned an error.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ptr(s string) *string { return &s }
