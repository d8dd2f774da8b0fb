// Package esim is the one home of the domain value types of eSIM that more
// than one package handles: the ICCID, IMSI and EID identifiers, the card
// encoding of PIN/PUK/ADM codes, the network authentication algorithm and
// the elliptic curves of SGP.22. Its subpackage tlv holds the BER-TLV codec
// primitives.
//
// The library packages (template, perso, bpp, hsmpool, store) import none
// of each other; they meet here. Each type states its rules once: parsing
// validates and says precisely what is wrong, String gives the canonical
// text, and the card encodings (BCD with swapped nibbles, EF.IMSI, the
// 8-byte pinValue) live beside the type.
//
// Zero values mean "not set" and are distinct from every valid value:
// ICCID{}, IMSI{}, EID{} are empty, AlgorithmUnset and CurveUnset are 0.
//
// Errors never contain a PIN, PUK or ADM code; they wrap one of the
// sentinels of errors.go and, through *ValueError, name the kind of value
// and the reason (perso reports it per column, template per field).
package esim
