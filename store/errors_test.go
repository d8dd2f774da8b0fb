package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestErrorCodes pins the SGP.22 subject/reason of every error the store
// returns (es2-es10-codes.md §3).
func TestErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{newErr(KindNotFound, EventDownloadOrder, "iccid", "1"), "8.2.1/3.9"},
		{newErr(KindNotFound, EventAuthenticateClient, "matchingId", "x"), "8.2.6/3.8"},
		{newErr(KindNotFound, EventAuthenticateClient, "eid", "e"), "8.1.1/3.8"},
		{newErr(KindNotFound, EventSession, "transactionId", "t"), "8.10.1/3.9"},
		{newErr(KindConflict, EventDownloadOrder, "iccid", "1"), "8.2.1/3.3"},
		{illegal(EventConfirmOrder, StateAvailable, "1"), "8.2.1/3.3"},
		{illegal(EventCancelOrder, StateDownloaded, "1"), "8.2.1/3.3"},
		{illegal(EventReleaseProfile, StateLinked, "1"), "8.2.1/3.5"},
		{illegal(EventAuthenticateClient, StateConfirmed, "1"), "8.2/1.2"},
		{illegal(EventBPPDelivered, StateConfirmed, "1"), "8.2/1.2"},
		{newErr(KindNoProfileAvailable, EventDownloadOrder, "profileType", "p"), "8.2.5/3.7"},
		{newErr(KindUnknownProfileType, EventDownloadOrder, "profileType", "p"), "8.2.5/3.9"},
		{newErr(KindProfileTypeMismatch, EventDownloadOrder, "iccid", "1"), "8.2.5/3.8"},
		{newErr(KindEIDMismatch, EventConfirmOrder, "eid", "e"), "8.1.1/3.10"},
		{newErr(KindEIDMismatch, EventCancelOrder, "eid", "e"), "8.1.1/3.10"},
		{newErr(KindEIDMismatch, EventAuthenticateClient, "eid", "e"), "8.1.1/3.8"},
		{newErr(KindEIDRequired, EventConfirmOrder, "eid", ""), "8.1.1/2.2"},
		{newErr(KindMatchingIDInUse, EventConfirmOrder, "matchingId", "m"), "8.2.6/3.3"},
		{newErr(KindMatchingIDMismatch, EventCancelOrder, "matchingId", "m"), "8.2.6/3.10"},
		{newErr(KindRetryLimit, EventAuthenticateClient, "iccid", "1"), "8.8.5/6.4"},
		{newErr(KindCCRetryLimit, EventCCFailure, "iccid", "1"), "8.2.7/6.4"},
		{newErr(KindOrderExpired, EventAuthenticateClient, "iccid", "1"), "8.8.5/4.10"},
		{newErr(KindInvalid, EventConfirmOrder, "iccid", ""), "8.2.1/2.2"},
		{newErr(KindInvalid, EventCancelOrder, "finalProfileStatusIndicator", "X"), "8.2/2.1"},
		{newErr(KindStale, EventSession, "transactionId", "t"), "/"},
		{newErr(KindNoChunkAvailable, EventBatch, "batch", "b"), "/"},
		{newErr(KindLeaseLost, EventBatch, "chunk", "b/1"), "/"},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if s, r := tc.err.Code(); s+"/"+r != tc.want {
				t.Fatalf("Code() = %s/%s, want %s", s, r, tc.want)
			}
		})
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
	inUse := newErr(KindMatchingIDInUse, EventConfirmOrder, "matchingId", "SECRET-TOKEN")
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
