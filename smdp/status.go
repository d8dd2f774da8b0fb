// Package smdp is the SM-DP+ server: the ES2+ and ES9+ function handlers.
//
// ES9+ (one file per function: initiate.go, authenticate.go, getbpp.go,
// notify.go, cancel.go): each handler is a short sequence of named checks
// in the order of the status-code tables of es2-es10-codes.md §3, taking
// and returning rsp types; a failure is an rsp.Status. Handlers reach the
// inventory and the HSM through the small Store and HSM interfaces
// (*store.DB and PoolHSM implement them), so they are tested without HTTP;
// Server.Handler adds the JSON and ASN.1 bindings. Sessions live in the
// store, never in process memory. RSP certificates (both curves) are parsed
// by hand (cert.go): crypto/x509 refuses brainpool and the EUM's name
// constraints. StoreStatus maps the store's domain errors to status codes.
package smdp

import (
	"errors"
	"strings"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// Function names the ES2+ or ES9+ function being executed. The same store
// error answers different codes in different functions (an EID mismatch is
// 8.1.1/3.10 on ES2+ and 8.1.1/3.8 on ES9+).
type Function string

// Functions (../spec/es2-es10-codes.md §2.1, §3.2–3.6).
const (
	ES2DownloadOrder          Function = "ES2+.DownloadOrder"
	ES2ConfirmOrder           Function = "ES2+.ConfirmOrder"
	ES2CancelOrder            Function = "ES2+.CancelOrder"
	ES2ReleaseProfile         Function = "ES2+.ReleaseProfile"
	ES9InitiateAuthentication Function = "ES9+.InitiateAuthentication"
	ES9AuthenticateClient     Function = "ES9+.AuthenticateClient"
	ES9GetBoundProfilePackage Function = "ES9+.GetBoundProfilePackage"
	ES9HandleNotification     Function = "ES9+.HandleNotification"
	ES9CancelSession          Function = "ES9+.CancelSession"
)

func (f Function) es9() bool { return strings.HasPrefix(string(f), "ES9+.") }

// StoreStatus returns the SGP.22 status a handler executing fn answers for
// err, a store error, following the tables of es2-es10-codes.md §3. ok is
// false when err carries no SGP.22 condition: nil, an I/O or database
// failure, store.ErrStale (re-read the session and retry), the batch-only
// errors, or an identifier the protocol has no subject for. The handler then
// answers a Failed status of its own and logs err; never an HTTP 500.
//
// The message names the condition, never the identifier's value: a
// matchingId is a bearer token, and the status goes to the client and logs.
func StoreStatus(fn Function, err error) (s rsp.Status, ok bool) {
	var se *store.Error
	if !errors.As(err, &se) {
		return rsp.Status{}, false
	}
	st := func(subject rsp.SubjectCode, reason rsp.ReasonCode, msg string) (rsp.Status, bool) {
		return rsp.Status{Subject: subject, Reason: reason, Message: msg}, true
	}
	switch se.Kind {
	case store.ErrNotFound:
		switch se.Key {
		case store.KeyICCID:
			return st(rsp.SubjectICCID, rsp.ReasonUnknown, "unknown ICCID")
		case store.KeyTransactionID:
			// Unknown, expired or cancelled session (§3.3 row 1, §3.4, §3.6, §4.3).
			return st(rsp.SubjectTransactionID, rsp.ReasonUnknown, "unknown or expired transactionId")
		case store.KeyMatchingID:
			if fn.es9() {
				return st(rsp.SubjectMatchingID, rsp.ReasonRefused, "matchingId refused") // §3.3 row 13
			}
			return st(rsp.SubjectMatchingID, rsp.ReasonUnknown, "unknown matchingId")
		case store.KeyEID:
			return st(rsp.SubjectEID, rsp.ReasonRefused, "no pending download order for the EID") // §3.3 row 14
		case store.KeyProfileType:
			return st(rsp.SubjectProfileType, rsp.ReasonUnknown, "unknown profile type")
		}
	case store.ErrConflict:
		if se.Key == store.KeyICCID {
			return st(rsp.SubjectICCID, rsp.ReasonConflict, "ICCID already reserved by a different order")
		}
	case store.ErrIllegalTransition:
		switch {
		case fn == ES2ReleaseProfile:
			return st(rsp.SubjectICCID, rsp.ReasonInvalidTransition, "profile cannot be released in its state")
		case fn.es9():
			return st(rsp.SubjectProfile, rsp.ReasonNotAllowed, "profile not released for download") // §3.3 row 17
		default:
			return st(rsp.SubjectICCID, rsp.ReasonConflict, "ICCID not available for this order")
		}
	case store.ErrNoProfileAvailable:
		return st(rsp.SubjectProfileType, rsp.ReasonUnavailable, "no profile of the type available")
	case store.ErrUnknownProfileType:
		return st(rsp.SubjectProfileType, rsp.ReasonUnknown, "unknown profile type")
	case store.ErrProfileTypeMismatch:
		return st(rsp.SubjectProfileType, rsp.ReasonRefused, "ICCID not of the profile type")
	case store.ErrEIDMismatch:
		if fn.es9() {
			return st(rsp.SubjectEID, rsp.ReasonRefused, "download order bound to another eUICC") // §3.3 row 16
		}
		return st(rsp.SubjectEID, rsp.ReasonInvalidAssociation, "EID differs from the order's EID")
	case store.ErrEIDRequired:
		return st(rsp.SubjectEID, rsp.ReasonMissing, "EID required")
	case store.ErrMatchingIDInUse:
		return st(rsp.SubjectMatchingID, rsp.ReasonConflict, "matchingId already in use")
	case store.ErrMatchingIDMismatch:
		return st(rsp.SubjectMatchingID, rsp.ReasonInvalidAssociation, "matchingId does not match the order")
	case store.ErrRetryLimit:
		return st(rsp.SubjectDownloadOrder, rsp.ReasonRetriesExceeded, "too many download attempts") // §3.3 row 19
	case store.ErrCCRetryLimit:
		return st(rsp.SubjectConfirmationCode, rsp.ReasonRetriesExceeded, "confirmation code retries exhausted")
	case store.ErrOrderExpired:
		return st(rsp.SubjectDownloadOrder, rsp.ReasonTTLExpired, "download order expired") // §3.3 row 18
	case store.ErrInvalid:
		subject, known := invalidSubject[se.Key]
		if !known {
			break
		}
		if se.Value == "" {
			return st(subject, rsp.ReasonMissing, string(se.Key)+" missing")
		}
		return st(subject, rsp.ReasonInvalidFormat, string(se.Key)+" invalid")
	}
	return rsp.Status{}, false
}

// invalidSubject is the SGP.22 subject of a malformed or missing argument.
var invalidSubject = map[store.Key]rsp.SubjectCode{
	store.KeyICCID:         rsp.SubjectICCID,
	store.KeyEID:           rsp.SubjectEID,
	store.KeyMatchingID:    rsp.SubjectMatchingID,
	store.KeyProfileType:   rsp.SubjectProfileType,
	store.KeyTransactionID: rsp.SubjectTransactionID,
	store.KeyFinalState:    rsp.SubjectProfile,
}
