package store

import (
	"errors"
)

// Kind is the class of a domain error and, at the same time, its sentinel:
// test an error with errors.Is(err, store.ErrNotFound), or extract the
// details with errors.As into *Error and compare its Kind. Kinds are
// constants, so no package can reassign a sentinel.
//
// The store knows nothing of SGP.22 status codes: the protocol layer
// (package smdp) maps a Kind, the Key it concerns and the function being
// executed to a subject/reason code.
type Kind string

// Error makes a Kind usable as an error value of its own (a sentinel).
func (k Kind) Error() string { return "store: " + string(k) }

// The kinds of domain errors. Anything else the store returns is an I/O or
// database failure.
const (
	// ErrNotFound: no such batch, profile (by ICCID or matching ID),
	// pending order for an EID, session (unknown, expired or deleted),
	// one-time key. Key says which.
	ErrNotFound Kind = "not found"
	// ErrConflict: the ICCID is already reserved by a different order, a
	// batch exists with other parameters, or a session's transaction ID is
	// taken.
	ErrConflict Kind = "conflict"
	// ErrIllegalTransition: the operation is not allowed in the profile's
	// state (Error.From) — e.g. releasing an order that is not confirmed,
	// or a download step on a profile that is not released.
	ErrIllegalTransition Kind = "illegal transition"
	// ErrNoProfileAvailable: no Available profile left of the type.
	ErrNoProfileAvailable Kind = "no profile available"
	// ErrUnknownProfileType: no profile of that type exists at all.
	ErrUnknownProfileType Kind = "unknown profile type"
	// ErrProfileTypeMismatch: the ICCID is not of the requested type.
	ErrProfileTypeMismatch Kind = "profile type mismatch"
	// ErrEIDMismatch: the EID differs from the one the order is bound to.
	ErrEIDMismatch Kind = "EID mismatch"
	// ErrEIDRequired: the operation needs an EID and none is known (an
	// empty matching ID without EID; cancelling an EID-bound order without
	// naming the EID).
	ErrEIDRequired Kind = "EID required"
	// ErrMatchingIDInUse: another order already uses the matching ID.
	ErrMatchingIDInUse Kind = "matching ID in use"
	// ErrMatchingIDMismatch: the matching ID is not the order's.
	ErrMatchingIDMismatch Kind = "matching ID mismatch"
	// ErrRetryLimit: the order's download attempts are used up; the
	// profile was moved to Error.
	ErrRetryLimit Kind = "download retry limit reached"
	// ErrCCRetryLimit: the order's confirmation code attempts are used up;
	// the profile was moved to Error.
	ErrCCRetryLimit Kind = "confirmation code retry limit reached"
	// ErrOrderExpired: the download order's time to live passed.
	ErrOrderExpired Kind = "download order expired"
	// ErrInvalid: a malformed argument, or a missing one when Error.Value
	// is empty. Key names the argument.
	ErrInvalid Kind = "invalid argument"
	// ErrStale: UpdateSession lost a race against another replica (version
	// mismatch): re-read the session and retry.
	ErrStale Kind = "stale version"
)

// Key names the identifier an error concerns. The values are the SGP.22
// field names where one exists, so that log lines read like the protocol.
type Key string

// Keys.
const (
	KeyICCID         Key = "iccid"
	KeyEID           Key = "eid"
	KeyMatchingID    Key = "matchingId"
	KeyProfileType   Key = "profileType"
	KeyTransactionID Key = "transactionId"
	KeyEUICCOtPK     Key = "euiccOtpk"
	KeyFinalState    Key = "finalProfileStatusIndicator" // CancelOrderRequest.Final
	KeyBatch         Key = "batch"
)

// Error is the only error type the store returns for a condition of the
// domain. Key and Value name the identifier concerned (never a secret); From
// and Event describe an illegal transition.
type Error struct {
	Kind   Kind
	Event  Event  // the operation that failed
	From   State  // the profile's state when the operation was refused, if any
	Key    Key    // the identifier concerned
	Value  string // the identifier's value; empty when it was missing
	Detail string // free text for logs
}

// Is makes errors.Is(err, store.ErrX) match on Kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

func (e *Error) Error() string {
	msg := "store: "
	if e.Event != "" {
		msg += string(e.Event) + ": "
	}
	msg += string(e.Kind)
	if e.Kind == ErrIllegalTransition && e.From != "" {
		msg += " from " + string(e.From)
	}
	switch {
	case e.Key == KeyMatchingID && e.Value != "":
		// An activation-code token is a bearer credential: keep it out of
		// messages and logs (Value still carries it).
		msg += " (matchingId)"
	case e.Key != "":
		msg += " (" + string(e.Key) + " " + e.Value + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func newErr(k Kind, ev Event, key Key, value string) *Error {
	return &Error{Kind: k, Event: ev, Key: key, Value: value}
}

func illegal(ev Event, from State, iccid string) *Error {
	return &Error{Kind: ErrIllegalTransition, Event: ev, From: from, Key: KeyICCID, Value: iccid}
}

// withEvent fills in the event of a store error raised by a backend without
// one, leaving other errors untouched.
func withEvent(err error, ev Event) error {
	var se *Error
	if errors.As(err, &se) && se.Event == "" {
		c := *se
		c.Event = ev
		return &c
	}
	return err
}
