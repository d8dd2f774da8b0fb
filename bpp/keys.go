package bpp

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Key types and lengths of the controlRefTemplate (SGP.22: AES-128 only).
const (
	KeyTypeAES      = 0x88
	KeyLengthAES128 = 0x10
)

// Sizes fixed by SGP.22.
const (
	EIDSize          = 16 // EID as 16 raw bytes (32 decimal digits, BCD)
	MaxHostIDSize    = 16
	MaxTxIDSize      = 16
	PointSize        = 65 // uncompressed point 04 || X || Y on a 256-bit curve
	SharedSecretSize = 32 // Z, the ECDH x-coordinate
	SignatureSize    = 64 // raw r || s
)

// SessionKeys are the three AES-128 values derived from Z by the X9.63 KDF.
// They are secret: formatting prints "bpp.SessionKeys{redacted}".
type SessionKeys struct {
	InitialMCV [16]byte // initial MAC chaining value (KDF bytes 0..15)
	Enc        [16]byte // S-ENC (KDF bytes 16..31)
	MAC        [16]byte // S-MAC (KDF bytes 32..47)
}

// Zero overwrites the keys.
func (k *SessionKeys) Zero() {
	clear(k.InitialMCV[:])
	clear(k.Enc[:])
	clear(k.MAC[:])
}

const sessionKeysRedacted = "bpp.SessionKeys{redacted}"

func (k SessionKeys) String() string   { return sessionKeysRedacted }
func (k SessionKeys) GoString() string { return sessionKeysRedacted }

// Format implements fmt.Formatter so that no verb (%x, %v, %#v ...) prints key bytes.
func (k SessionKeys) Format(f fmt.State, _ rune) { io.WriteString(f, sessionKeysRedacted) }

// PPK is the Profile Protection Key set of one Protected Profile Package: the
// keys and initial chaining value of the BSP instance that protects the 86
// segments, carried to the eUICC in ReplaceSessionKeysRequest. It is secret:
// formatting prints "bpp.PPK{redacted}"; call Zero when done with it.
type PPK struct {
	Enc        [16]byte // ppkEnc
	MAC        [16]byte // ppkCmac
	InitialMCV [16]byte // initialMacChainingValue
}

// Zero overwrites the keys.
func (k *PPK) Zero() {
	clear(k.Enc[:])
	clear(k.MAC[:])
	clear(k.InitialMCV[:])
}

// PPKSize is the size of a PPK's flat form: PPK-ENC || PPK-MAC || initial
// MCV, the 48 bytes hsmpool protects under its batch keys.
const PPKSize = 48

// Put writes the flat form PPK-ENC || PPK-MAC || initial MCV into dst. (No
// MarshalBinary on purpose: generic encoders must not serialise a PPK.)
func (k *PPK) Put(dst *[PPKSize]byte) {
	copy(dst[0:16], k.Enc[:])
	copy(dst[16:32], k.MAC[:])
	copy(dst[32:48], k.InitialMCV[:])
}

// PPKFromBytes reads the flat form written by Put (e.g. as unwrapped by
// hsmpool.UnprotectPPK). The caller wipes b afterwards.
func PPKFromBytes(b []byte) (PPK, error) {
	var k PPK
	if len(b) != PPKSize {
		return k, fmt.Errorf("%w: PPK is %d bytes, want %d", ErrInvalidParams, len(b), PPKSize)
	}
	copy(k.Enc[:], b[0:16])
	copy(k.MAC[:], b[16:32])
	copy(k.InitialMCV[:], b[32:48])
	return k, nil
}

const ppkRedacted = "bpp.PPK{redacted}"

func (k PPK) String() string   { return ppkRedacted }
func (k PPK) GoString() string { return ppkRedacted }

// Format implements fmt.Formatter so that no verb (%x, %v, %#v ...) prints key bytes.
func (k PPK) Format(f fmt.State, _ rune) { io.WriteString(f, ppkRedacted) }

// AppendSharedInfo appends the X9.63 SharedInfo of SGP.22:
// keyType || keyLength || len(hostId) || hostId || len(EID) || EID.
func AppendSharedInfo(dst []byte, keyType, keyLength byte, hostID, eid []byte) []byte {
	dst = append(dst, keyType, keyLength)
	dst = appendLength(dst, len(hostID))
	dst = append(dst, hostID...)
	dst = appendLength(dst, len(eid))
	return append(dst, eid...)
}

func checkHostEID(hostID, eid []byte) error {
	if len(hostID) < 1 || len(hostID) > MaxHostIDSize {
		return fmt.Errorf("%w: hostId is %d bytes, want 1..%d", ErrInvalidParams, len(hostID), MaxHostIDSize)
	}
	if len(eid) != EIDSize {
		return fmt.Errorf("%w: EID is %d bytes, want %d", ErrInvalidParams, len(eid), EIDSize)
	}
	return nil
}

// DeriveSessionKeys runs the SGP.22 X9.63 KDF (SHA-256) on the shared secret
// Z with SharedInfo = 88 10 || len hostId || hostId || len EID || EID, and
// splits the first 48 output bytes into the initial MAC chaining value, S-ENC
// and S-MAC. It does not allocate and wipes its intermediate buffers.
func DeriveSessionKeys(z, hostID, eid []byte) (SessionKeys, error) {
	var k SessionKeys
	if len(z) != SharedSecretSize {
		return k, fmt.Errorf("%w: Z is %d bytes, want %d", ErrInvalidParams, len(z), SharedSecretSize)
	}
	if err := checkHostEID(hostID, eid); err != nil {
		return k, err
	}
	// Z(32) || counter(4) || SharedInfo(<= 2+1+16+1+16)
	var in [32 + 4 + 36]byte
	buf := append(in[:0], z...)
	buf = append(buf, 0, 0, 0, 0)
	buf = AppendSharedInfo(buf, KeyTypeAES, KeyLengthAES128, hostID, eid)
	var out [2 * sha256.Size]byte
	for i := range 2 {
		binary.BigEndian.PutUint32(buf[len(z):], uint32(i+1))
		h := sha256.Sum256(buf)
		copy(out[i*sha256.Size:], h[:])
		clear(h[:])
	}
	copy(k.InitialMCV[:], out[0:16])
	copy(k.Enc[:], out[16:32])
	copy(k.MAC[:], out[32:48])
	clear(out[:])
	clear(in[:])
	return k, nil
}
