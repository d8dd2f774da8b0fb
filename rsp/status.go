// Package rsp holds the SGP.22 messages: one Go type per message of the ES2+
// and ES9+ interfaces, their codecs, and the status codes they carry.
package rsp

// SubjectCode is an SGP.22 statusCodeData subjectCode: the object a failure
// is about, as a dotted string ("8.2.1"). JSON carries it as a string.
type SubjectCode string

// ReasonCode is an SGP.22 statusCodeData reasonCode: why the function failed
// on its subject, as a dotted string ("3.9").
type ReasonCode string

// Subject codes (../spec/es2-es10-codes.md §3). Only the subjects the
// status-code tables of §3 use are listed; names follow the spec's list.
const (
	SubjectEUICC            SubjectCode = "8.1"
	SubjectEID              SubjectCode = "8.1.1"
	SubjectEUMCertificate   SubjectCode = "8.1.2"
	SubjectEUICCCertificate SubjectCode = "8.1.3"
	SubjectProfile          SubjectCode = "8.2"
	SubjectICCID            SubjectCode = "8.2.1"
	SubjectProfileType      SubjectCode = "8.2.5"
	SubjectMatchingID       SubjectCode = "8.2.6"
	SubjectConfirmationCode SubjectCode = "8.2.7"
	SubjectSMDP             SubjectCode = "8.8"
	SubjectSMDPAddress      SubjectCode = "8.8.1"
	// SubjectSecurityConfiguration is the subject of "no PKID in the
	// signing list is supported" (§3.2); the spec's subject list omits it.
	SubjectSecurityConfiguration SubjectCode = "8.8.2"
	SubjectSpecVersion           SubjectCode = "8.8.3"
	SubjectSMDPCertificate       SubjectCode = "8.8.4"
	SubjectDownloadOrder         SubjectCode = "8.8.5"
	SubjectSMDS                  SubjectCode = "8.9"
	SubjectTransactionID         SubjectCode = "8.10.1"
	SubjectCIPublicKey           SubjectCode = "8.11.1"
	// SubjectCtxParams1 is the subject of "ctxParams1 not
	// ctxParamsForCommonAuthentication" (§3.3 row 21).
	SubjectCtxParams1 SubjectCode = "1.3.1"
)

// Reason codes (../spec/es2-es10-codes.md §3). 3.10 and 4.10 are two-digit
// minor numbers, not 3.1 and 4.1 (lpac's table loses the trailing zero;
// pySim and the conformance suite do not).
const (
	ReasonNotAllowed         ReasonCode = "1.2"
	ReasonInvalidFormat      ReasonCode = "2.1"
	ReasonMissing            ReasonCode = "2.2" // mandatory element missing
	ReasonUnknownUnsupported ReasonCode = "3.1"
	ReasonConflict           ReasonCode = "3.3" // already in use / conflicting
	ReasonInvalidTransition  ReasonCode = "3.5" // e.g. a profile that cannot be released
	ReasonUnavailable        ReasonCode = "3.7"
	ReasonRefused            ReasonCode = "3.8"
	ReasonUnknown            ReasonCode = "3.9"
	ReasonInvalidAssociation ReasonCode = "3.10"
	ReasonExecutionError     ReasonCode = "4.2"
	ReasonStoppedOnWarning   ReasonCode = "4.3"
	ReasonInsufficientMemory ReasonCode = "4.8"
	ReasonTTLExpired         ReasonCode = "4.10" // time to live expired
	ReasonInaccessible       ReasonCode = "5.1"
	ReasonVerificationFailed ReasonCode = "6.1"
	ReasonExpired            ReasonCode = "6.3"
	ReasonRetriesExceeded    ReasonCode = "6.4" // maximum number of retries exceeded
)

// Status is the statusCodeData of a Failed function execution: the subject
// and reason codes a client acts on, and a message for humans. The zero
// Status means "no status code" (a success carries none, §1).
//
// A Status is an error, so that a handler's named checks can return it and
// the binding can recover it with errors.As. Message must never carry a
// secret or a bearer token (matchingId, confirmation code): it goes to the
// client and to logs.
type Status struct {
	Subject SubjectCode
	Reason  ReasonCode
	Message string
}

// IsZero reports whether s carries no status code.
func (s Status) IsZero() bool { return s.Subject == "" && s.Reason == "" }

// Code returns "subject/reason", the form the spec's tables use ("8.2.1/3.9").
func (s Status) Code() string { return string(s.Subject) + "/" + string(s.Reason) }

// Error returns the code and the message.
func (s Status) Error() string {
	if s.Message == "" {
		return "SGP.22 status " + s.Code()
	}
	return "SGP.22 status " + s.Code() + ": " + s.Message
}
