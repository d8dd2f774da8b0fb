package rsp

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
)

// Universal tags, which SGP.22 keeps wherever a SEQUENCE has tagged
// components (automatic tagging then does not apply).
const (
	tagBoolean     = 0x01
	tagInteger     = 0x02
	tagBitString   = 0x03
	tagOctetString = 0x04
	tagOID         = 0x06
	tagUTF8String  = 0x0C
	tagSequence    = 0x30
	tagSignature   = 0x5F37 // [APPLICATION 55] OCTET STRING: every RSP signature
	tagOtpk        = 0x5F49 // [APPLICATION 73] OCTET STRING: one-time public keys
	tagICCID       = 0x5A   // Iccid ::= [APPLICATION 26] OCTET STRING (SIZE(10))
	tagAID         = 0x4F   // [APPLICATION 15] OCTET STRING
)

// Sizes fixed by the module or by the curves SGP.22 v2 uses.
const (
	MaxTransactionIDSize = 16 // TransactionId ::= OCTET STRING (SIZE(1..16))
	ChallengeSize        = 16 // Octet16: euiccChallenge, serverChallenge
	SignatureSize        = 64 // raw r‖s of ECDSA on a 256-bit curve (BSI TR-03111)
	PointSize            = 65 // uncompressed one-time public key, 04‖X‖Y
	HashCcSize           = 32 // Octet32: SHA-256 of the confirmation code
	ICCIDSize            = 10 // Iccid, EF.ICCID coding
)

// TransactionID is the SM-DP+'s TransactionId (1..16 bytes). Compare with
// Equal: JSON carries it as hex in whatever case the client chose, so the
// bytes are the identity, never the text.
type TransactionID []byte

// Equal reports whether t and u are the same bytes.
func (t TransactionID) Equal(u TransactionID) bool { return bytes.Equal(t, u) }

// String is the upper-case hex form used in JSON.
func (t TransactionID) String() string { return strings.ToUpper(hex.EncodeToString(t)) }

func (t TransactionID) check(what string) error {
	return checkSize(what, len(t), 1, MaxTransactionIDSize)
}

func (r *reader) transactionID(tag uint32) (TransactionID, error) {
	v, err := r.octets(tag, "transactionId", 1, MaxTransactionIDSize)
	return TransactionID(v), err
}

// Signature is an RSP signature as its complete [APPLICATION 55] element,
// 5F37 40 r‖s, exactly as received. SGP.22 signs over these bytes in two
// places (smdpSignature2 covers euiccSignature1's TLV, euiccSignature2
// covers smdpSignature2's), and the JSON binding carries the whole TLV too.
type Signature []byte

// NewSignature wraps a raw r‖s signature into its 5F37 element.
func NewSignature(rs []byte) (Signature, error) {
	if len(rs) != SignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes, want raw r||s of %d", ErrInvalid, len(rs), SignatureSize)
	}
	return Signature(tlv(tagSignature, rs)), nil
}

// RS returns the raw r‖s octets (nil if s is not a well-formed signature).
func (s Signature) RS() []byte {
	if len(s) != 3+SignatureSize || s[0] != 0x5F || s[1] != 0x37 || s[2] != SignatureSize {
		return nil
	}
	return s[3:]
}

func (s Signature) check(what string) error {
	if s.RS() == nil {
		return fmt.Errorf("%w: %s is not a 5F37 element of %d signature bytes", ErrInvalid, what, SignatureSize)
	}
	return nil
}

// ParseSignature checks that b is one 5F37 element holding a 64-byte r‖s
// (as the JSON binding carries serverSignature1 and smdpSignature2).
func ParseSignature(b []byte) (Signature, error) {
	e, err := parseTop(b, tagSignature, "signature")
	if err != nil {
		return nil, err
	}
	if len(e.value) != SignatureSize {
		return nil, sizeError("signature", len(e.value), SignatureSize, SignatureSize)
	}
	return Signature(e.raw), nil
}

func (r *reader) signature(field string) (Signature, error) {
	e, err := r.expect(tagSignature, field)
	if err != nil {
		return nil, err
	}
	if len(e.value) != SignatureSize {
		return nil, sizeError(r.what+"."+field, len(e.value), SignatureSize, SignatureSize)
	}
	return Signature(e.raw), nil
}

// certificate reads an X.509 Certificate (a SEQUENCE) and returns it whole.
// Its contents are checked by the certificate-chain code, not here.
func (r *reader) certificate(field string) ([]byte, error) {
	e, err := r.expect(tagSequence, field)
	if err != nil {
		return nil, err
	}
	return e.raw, nil
}

// Version is VersionType: major, minor, revision as three binary octets
// ('02 02 00' is v2.2.0).
type Version [3]byte

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// Less reports whether v is an earlier version than w.
func (v Version) Less(w Version) bool { return bytes.Compare(v[:], w[:]) < 0 }

func (r *reader) version(tag uint32, field string) (Version, error) {
	v, err := r.octets(tag, field, 3, 3)
	if err != nil {
		return Version{}, err
	}
	return Version(v), nil
}

// NamedBits is a named-bit BIT STRING (NotificationEvent, PprIds,
// UICCCapability, RspCapability …): bit n of the ASN.1 value is 1<<n.
type NamedBits uint64

// Has reports whether named bit n is set.
func (b NamedBits) Has(n uint) bool { return n < 64 && b&(1<<n) != 0 }

// namedBitsValue decodes BIT STRING contents. Clients send named-bit
// strings that are not DER-minimal (trailing zero bits, a zero unused-bits
// count); that is accepted, since only the value matters here and
// signatures are checked over the bytes as received. Bits beyond 63 are
// ignored: no SGP.22 v2 named bit is that high.
func namedBitsValue(v []byte, what string) (NamedBits, error) {
	if len(v) == 0 || v[0] > 7 || (len(v) == 1 && v[0] != 0) {
		return 0, fmt.Errorf("%w: %s is not a BIT STRING", ErrMalformed, what)
	}
	var n NamedBits
	for i, octet := range v[1:] {
		for j := range 8 {
			if octet&(0x80>>j) != 0 && i*8+j < 64 {
				n |= 1 << (i*8 + j)
			}
		}
	}
	return n, nil
}

// contents returns the DER contents of b: trailing zero bits removed.
func (b NamedBits) contents() []byte {
	if b == 0 {
		return []byte{0}
	}
	hi := 63
	for b&(1<<hi) == 0 {
		hi--
	}
	out := make([]byte, 1+hi/8+1)
	out[0] = byte(7 - hi%8)
	for i := 0; i <= hi; i++ {
		if b&(1<<i) != 0 {
			out[1+i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}

func (r *reader) namedBits(tag uint32, field string) (NamedBits, error) {
	e, err := r.expect(tag, field)
	if err != nil {
		return 0, err
	}
	return namedBitsValue(e.value, r.what+"."+field)
}

func (r *reader) integer(tag uint32, field string) (int64, error) {
	e, err := r.expect(tag, field)
	if err != nil {
		return 0, err
	}
	return intValue(e.value, r.what+"."+field)
}

// subjectKeyIdentifiers reads SEQUENCE OF SubjectKeyIdentifier (each an
// OCTET STRING, 04). Identifiers of any length are kept: an unknown PKID,
// even of an unusual size, is skipped by the server, not refused.
func subjectKeyIdentifiers(v []byte, what string) ([][]byte, error) {
	r := newReader(v, what)
	var out [][]byte
	for !r.empty() {
		e, err := r.expect(tagOctetString, "SubjectKeyIdentifier")
		if err != nil {
			return nil, err
		}
		out = append(out, e.value)
	}
	return out, nil
}

func subjectKeyIdentifiersContents(ids [][]byte) []byte {
	var out []byte
	for _, id := range ids {
		out = append(out, tlv(tagOctetString, id)...)
	}
	return out
}
