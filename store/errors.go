package store

import (
	"errors"
	"fmt"
)

// Kind classifies a store error. Compare errors with errors.Is against the
// Err* sentinels below, or extract the details with errors.As into *Error.
type Kind int

// The kinds of store errors. The SGP.22 status code each one maps to (through
// (*Error).Code) is given in the comment of the matching Err* sentinel.
const (
	KindNotFound Kind = iota + 1
	KindConflict
	KindIllegalTransition
	KindNoProfileAvailable
	KindUnknownProfileType
	KindProfileTypeMismatch
	KindEIDMismatch
	KindEIDRequired
	KindMatchingIDInUse
	KindMatchingIDMismatch
	KindRetryLimit
	KindCCRetryLimit
	KindOrderExpired
	KindInvalid
	KindStale
	KindNoChunkAvailable
	KindLeaseLost
)

var kindNames = map[Kind]string{
	KindNotFound:            "not found",
	KindConflict:            "conflict",
	KindIllegalTransition:   "illegal transition",
	KindNoProfileAvailable:  "no profile available",
	KindUnknownProfileType:  "unknown profile type",
	KindProfileTypeMismatch: "profile type mismatch",
	KindEIDMismatch:         "EID mismatch",
	KindEIDRequired:         "EID required",
	KindMatchingIDInUse:     "matching ID in use",
	KindMatchingIDMismatch:  "matching ID mismatch",
	KindRetryLimit:          "download retry limit reached",
	KindCCRetryLimit:        "confirmation code retry limit reached",
	KindOrderExpired:        "download order expired",
	KindInvalid:             "invalid argument",
	KindStale:               "stale version",
	KindNoChunkAvailable:    "no chunk available",
	KindLeaseLost:           "chunk lease lost",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is the only error type the store returns for a condition of the
// domain (anything else is an I/O or database failure). Key and Value name
// the identifier concerned (never a secret); From and Event describe an
// illegal transition.
type Error struct {
	Kind   Kind
	Event  Event  // the operation that failed
	From   State  // the profile's state when the operation was refused, if any
	Key    string // "iccid", "matchingId", "eid", "transactionId", "profileType", "batch", "chunk", "euiccOtpk"
	Value  string // the identifier's value
	Detail string // free text for logs
}

// Sentinels for errors.Is. Each comment names the SGP.22 subject/reason that
// (*Error).Code returns for it (es2-es10-codes.md §3).
var (
	// ErrNotFound: unknown ICCID 8.2.1/3.9; unknown matchingId (ES9+
	// AuthenticateClient) 8.2.6/3.8; no pending order for an EID 8.1.1/3.8;
	// unknown or expired transactionId 8.10.1/3.9.
	ErrNotFound = &Error{Kind: KindNotFound}
	// ErrConflict: the ICCID is already reserved by a different order, or
	// exists under another batch: 8.2.1/3.3.
	ErrConflict = &Error{Kind: KindConflict}
	// ErrIllegalTransition: the event is not allowed in the profile's state.
	// ReleaseProfile → 8.2.1/3.5; ES9+ download events on a profile that is
	// not released → 8.2/1.2; other ES2+ orders → 8.2.1/3.3.
	ErrIllegalTransition = &Error{Kind: KindIllegalTransition}
	// ErrNoProfileAvailable: no Available profile left of the type: 8.2.5/3.7.
	ErrNoProfileAvailable = &Error{Kind: KindNoProfileAvailable}
	// ErrUnknownProfileType: no profile of that type exists at all: 8.2.5/3.9.
	ErrUnknownProfileType = &Error{Kind: KindUnknownProfileType}
	// ErrProfileTypeMismatch: the ICCID is not of the requested type: 8.2.5/3.8.
	ErrProfileTypeMismatch = &Error{Kind: KindProfileTypeMismatch}
	// ErrEIDMismatch: ES2+ 8.1.1/3.10 (EID differs from the order's EID);
	// ES9+ 8.1.1/3.8 (order bound to another eUICC).
	ErrEIDMismatch = &Error{Kind: KindEIDMismatch}
	// ErrEIDRequired: EID missing while matchingId is empty: 8.1.1/2.2.
	ErrEIDRequired = &Error{Kind: KindEIDRequired}
	// ErrMatchingIDInUse: matchingId already used: 8.2.6/3.3.
	ErrMatchingIDInUse = &Error{Kind: KindMatchingIDInUse}
	// ErrMatchingIDMismatch: matchingId does not match the order: 8.2.6/3.10.
	ErrMatchingIDMismatch = &Error{Kind: KindMatchingIDMismatch}
	// ErrRetryLimit: too many download attempts: 8.8.5/6.4. The profile is
	// moved to Error.
	ErrRetryLimit = &Error{Kind: KindRetryLimit}
	// ErrCCRetryLimit: confirmation code retries exhausted: 8.2.7/6.4. The
	// profile is moved to Error.
	ErrCCRetryLimit = &Error{Kind: KindCCRetryLimit}
	// ErrOrderExpired: the download order's time to live passed: 8.8.5/4.10.
	ErrOrderExpired = &Error{Kind: KindOrderExpired}
	// ErrInvalid: a malformed or missing argument: <subject>/2.1 (or 2.2 for
	// a missing ICCID), the subject taken from Key.
	ErrInvalid = &Error{Kind: KindInvalid}
	// ErrStale: UpdateSession lost a race against another replica (version
	// mismatch). Not an SGP.22 condition: re-read the session and retry.
	ErrStale = &Error{Kind: KindStale}
	// ErrNoChunkAvailable: every chunk of the batch is done or leased. Batch
	// only, no SGP.22 code.
	ErrNoChunkAvailable = &Error{Kind: KindNoChunkAvailable}
	// ErrLeaseLost: CompleteChunk by a worker whose lease was taken over.
	// Batch only, no SGP.22 code.
	ErrLeaseLost = &Error{Kind: KindLeaseLost}
)

// Is makes errors.Is(err, store.ErrX) match on Kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind
}

func (e *Error) Error() string {
	msg := "store: "
	if e.Event != "" {
		msg += string(e.Event) + ": "
	}
	msg += e.Kind.String()
	if e.Kind == KindIllegalTransition && e.From != "" {
		msg += " from " + string(e.From)
	}
	switch {
	case e.Key == "matchingId" && e.Value != "":
		// An activation-code token is a bearer credential: keep it out of
		// messages and logs (Value still carries it).
		msg += " (matchingId)"
	case e.Key != "":
		msg += " (" + e.Key + " " + e.Value + ")"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Code returns the SGP.22 subjectCode and reasonCode the server answers for
// this error (es2-es10-codes.md §3), or two empty strings for the batch-only
// kinds that have none.
func (e *Error) Code() (subject, reason string) {
	es9 := e.Event.isES9()
	switch e.Kind {
	case KindNotFound:
		switch e.Key {
		case "transactionId":
			return "8.10.1", "3.9"
		case "matchingId":
			if es9 {
				return "8.2.6", "3.8"
			}
			return "8.2.6", "3.9"
		case "eid":
			return "8.1.1", "3.8"
		case "profileType":
			return "8.2.5", "3.9"
		default:
			return "8.2.1", "3.9"
		}
	case KindConflict:
		return "8.2.1", "3.3"
	case KindIllegalTransition:
		switch {
		case e.Event == EventReleaseProfile:
			return "8.2.1", "3.5"
		case es9:
			return "8.2", "1.2"
		default:
			return "8.2.1", "3.3"
		}
	case KindNoProfileAvailable:
		return "8.2.5", "3.7"
	case KindUnknownProfileType:
		return "8.2.5", "3.9"
	case KindProfileTypeMismatch:
		return "8.2.5", "3.8"
	case KindEIDMismatch:
		if es9 {
			return "8.1.1", "3.8"
		}
		return "8.1.1", "3.10"
	case KindEIDRequired:
		return "8.1.1", "2.2"
	case KindMatchingIDInUse:
		return "8.2.6", "3.3"
	case KindMatchingIDMismatch:
		return "8.2.6", "3.10"
	case KindRetryLimit:
		return "8.8.5", "6.4"
	case KindCCRetryLimit:
		return "8.2.7", "6.4"
	case KindOrderExpired:
		return "8.8.5", "4.10"
	case KindInvalid:
		subject := map[string]string{
			"iccid": "8.2.1", "eid": "8.1.1", "matchingId": "8.2.6", "profileType": "8.2.5",
			"transactionId": "8.10.1", "finalProfileStatusIndicator": "8.2",
		}[e.Key]
		if subject == "" {
			subject = "8.2"
		}
		if e.Value == "" {
			return subject, "2.2"
		}
		return subject, "2.1"
	}
	return "", ""
}

func newErr(k Kind, ev Event, key, value string) *Error {
	return &Error{Kind: k, Event: ev, Key: key, Value: value}
}

func illegal(ev Event, from State, iccid string) *Error {
	return &Error{Kind: KindIllegalTransition, Event: ev, From: from, Key: "iccid", Value: iccid}
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
