package testenv

import "testing"

func TestSharedDirHasReferenceData(t *testing.T) {
	if got := len(TS48(t)); got != 36 {
		t.Fatalf("found %d TS.48 profiles, want 36", got)
	}
}

func TestSoftHSMTokenIsCreated(t *testing.T) {
	tok := SoftHSM(t)
	if tok.Label == "" || tok.Module == "" {
		t.Fatalf("incomplete token description: %+v", tok)
	}
}
