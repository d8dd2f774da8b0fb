package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// kinds lists every domain error kind.
var kinds = []Kind{ErrNotFound, ErrConflict, ErrIllegalTransition, ErrNoProfileAvailable,
	ErrUnknownProfileType, ErrProfileTypeMismatch, ErrEIDMismatch, ErrEIDRequired, ErrMatchingIDInUse,
	ErrMatchingIDMismatch, ErrRetryLimit, ErrCCRetryLimit, ErrOrderExpired, ErrInvalid, ErrStale}

// TestKindsAreDistinct: a wrapped *Error matches its own sentinel and no
// other, and every kind has its own message (two kinds with one string
// would be one sentinel).
func TestKindsAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range kinds {
		if seen[k.Error()] {
			t.Fatalf("two kinds share the message %q", k.Error())
		}
		seen[k.Error()] = true
		err := fmt.Errorf("caller: %w", newErr(k, EventDownloadOrder, KeyICCID, "1"))
		for _, other := range kinds {
			if got := errors.Is(err, other); got != (other == k) {
				t.Errorf("errors.Is(%v, %v) = %v", err, other, got)
			}
		}
		if !errors.Is(k, k) {
			t.Errorf("errors.Is(%v, itself) is false", k)
		}
	}
}

func TestErrorsIs(t *testing.T) {
	err := fmt.Errorf("server: %w", illegal(EventReleaseProfile, StateLinked, "8988"))
	if !errors.Is(err, ErrIllegalTransition) || errors.Is(err, ErrNotFound) {
		t.Fatalf("errors.Is on a wrapped illegal transition: %v", err)
	}
	var se *Error
	if !errors.As(err, &se) || se.From != StateLinked || se.Event != EventReleaseProfile {
		t.Fatalf("errors.As: %+v", se)
	}
	want := "server: store: ReleaseProfile: illegal transition from Linked (iccid 8988)"
	if err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
	inUse := newErr(ErrMatchingIDInUse, EventConfirmOrder, KeyMatchingID, "SECRET-TOKEN")
	if strings.Contains(inUse.Error(), "SECRET-TOKEN") || inUse.Value != "SECRET-TOKEN" {
		t.Fatalf("matching ID in the message %q (Value %q)", inUse.Error(), inUse.Value)
	}
}

func TestHashConfirmationCode(t *testing.T) {
	for _, tc := range []struct {
		code string
		n    int
	}{
		{"12345678", 64}, // ASCII and hex-decoded inputs
		{"1234567", 32},  // odd length: ASCII only
		{"ABCDEFGZ", 32}, // not hex
	} {
		if got := HashConfirmationCode(tc.code); len(got) != tc.n {
			t.Errorf("HashConfirmationCode(%q): %d bytes, want %d", tc.code, len(got), tc.n)
		}
	}
	a, b := HashConfirmationCode("12345678"), HashConfirmationCode("12345679")
	if string(a) == string(b) {
		t.Error("different codes, same hash")
	}
}
