package bpp

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (test with errors.Is); SegmentError adds where it happened. No error
// message ever contains key material, plaintext or a MAC value.
var (
	// ErrMalformed: the input is not the expected DER structure (wrong tag,
	// bad length, trailing data, missing element, value out of range).
	ErrMalformed = errors.New("malformed encoding")
	// ErrMAC: a segment's MAC does not verify.
	ErrMAC = errors.New("MAC verification failed")
	// ErrPadding: a decrypted segment does not end in 80 00.. padding.
	ErrPadding = errors.New("bad padding")
	// ErrSegmentSize: a segment is larger than 1020 bytes or too short to
	// hold a MAC (and, when encrypted, one cipher block).
	ErrSegmentSize = errors.New("bad segment size")
	// ErrSignature: smdpSign does not verify with the SM-DP+ public key.
	ErrSignature = errors.New("smdpSign verification failed")
	// ErrKeyAgreement: a one-time public key is invalid or ECDH failed.
	ErrKeyAgreement = errors.New("key agreement failed")
	// ErrIncomplete: the decrypted UPP is not a complete sequence of
	// ProfileElements ending with the end PE (AA). The BSP has no end marker
	// and smdpSign does not cover the segments, so dropping trailing 86
	// segments keeps every remaining MAC valid; this check catches it.
	ErrIncomplete = errors.New("incomplete profile package")
	// ErrInvalidParams: a caller-supplied parameter is out of range.
	ErrInvalidParams = errors.New("invalid parameter")
)

// SegmentError reports which BSP segment of a BoundProfilePackage failed.
type SegmentError struct {
	Sequence uint32 // A0, A1, A2 or A3: the BPP sequence holding the segment
	Index    int    // 0-based position of the segment within its sequence
	Tag      uint32 // tag of the offending element (86, 87, 88, or what was found)
	Err      error  // one of the sentinels above, possibly wrapped
}

func sequenceName(seq uint32) string {
	switch seq {
	case tagFirstSeq87:
		return "firstSequenceOf87 (A0)"
	case tagSeq88:
		return "sequenceOf88 (A1)"
	case tagSecondSeq87:
		return "secondSequenceOf87 (A2)"
	case tagSeq86:
		return "sequenceOf86 (A3)"
	}
	return fmt.Sprintf("sequence %X", seq)
}

func (e *SegmentError) Error() string {
	return fmt.Sprintf("bpp: %s segment %d (tag %X): %v", sequenceName(e.Sequence), e.Index, e.Tag, e.Err)
}

func (e *SegmentError) Unwrap() error { return e.Err }
