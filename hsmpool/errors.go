package hsmpool

import (
	"errors"

	"github.com/miekg/pkcs11"
)

// Sentinel errors. Errors from the pool name the operation, the lane, the key
// label and the PKCS#11 return code, never key material, PINs or plaintext.
var (
	ErrClosed           = errors.New("hsmpool: pool closed")
	ErrTokenUnavailable = errors.New("hsmpool: HSM token unavailable")
	ErrKeyNotFound      = errors.New("hsmpool: key not found")
	ErrBadPoint         = errors.New("hsmpool: peer public key is not an uncompressed point on the curve")
	ErrUnknownCurve     = errors.New("hsmpool: unknown curve")
	ErrBadInput         = errors.New("hsmpool: invalid input")
	ErrIntegrity        = errors.New("hsmpool: integrity check failed")
	ErrWrongKeyType     = errors.New("hsmpool: key type does not fit the operation")
)

// OpError describes a failed pool operation.
type OpError struct {
	Op   string // e.g. "sign", "ecdh", "decrypt", "wrap", "unwrap"
	Lane Lane
	Key  string // key label, if any (labels are not secret)
	Err  error
}

func (e *OpError) Error() string {
	s := "hsmpool: " + e.Op + " (" + e.Lane.String()
	if e.Key != "" {
		s += ", key " + e.Key
	}
	return s + "): " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// p11Code extracts the PKCS#11 return value from err (0 if none).
func p11Code(err error) uint {
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return uint(pe)
	}
	return 0
}

// errClass says what the pool does about a PKCS#11 error.
type errClass int

const (
	classFinal   errClass = iota // return to the caller as is
	classSession                 // the session is broken: replace it and retry
	classToken                   // the token is gone: back off and retry, bounded
	classLogin                   // the login state was lost: log in again and retry
	classHandle                  // a cached object handle is stale: find again and retry
)

func classify(err error) errClass {
	switch p11Code(err) {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_SESSION_COUNT:
		return classSession
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_DEVICE_MEMORY:
		return classToken
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return classLogin
	case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID:
		return classHandle
	}
	return classFinal
}

// describe renders a PKCS#11 error by its CKR name only.
func describe(err error) string {
	if c := p11Code(err); c != 0 {
		return pkcs11.Error(c).Error() // "pkcs11: 0x32: CKR_DEVICE_REMOVED"
	}
	return err.Error()
}
