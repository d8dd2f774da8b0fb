// Package template reads, checks and personalises TCA interoperable
// profile templates (SAIP, "eUICC Profile Package": the concatenation of
// DER-encoded ProfileElements), and compiles them into patch plans that
// turn one personalisation record into one UPP without re-encoding.
//
// # Decoding: a lossless tree with typed views on top
//
// Decode parses every top-level element. Known PE types (header, mf, cd,
// telecom, usim, opt-usim, isim, opt-isim, phonebook, gsm-access, csim,
// opt-csim, eap, df-5gs, df-saip, df-snpn, df-5gprose, iot, opt-iot,
// genericFileManagement, pinCodes, pukCodes, akaParameter, cdmaParameter,
// securityDomain, rfm, application, nonStandard, end, rfu1..5) are parsed
// into a tree of Nodes and then into a typed view (PE.Header, PE.FS, PE.AKA,
// PE.PINs, PE.PUKs, PE.SD, PE.RFM, PE.Application, PE.GFM, PE.CDMA,
// PE.NonStandard). Unknown top-level tags (vendor PEs, later spec versions)
// are kept as one raw node; if their content starts with a PEHeader, its
// identification still takes part in validation.
//
// The tree is lossless: every element keeps its tag, its children in
// order (including components this package does not interpret, such as
// install parameters or extension additions) and its content. The decoder
// accepts DER only — definite, minimal lengths and minimal tags — so
// Encode, which serialises the tree with DER lengths, reproduces the input
// byte for byte. That is how all 36 TS.48 profiles round-trip; the test
// proves it through the encoder rather than by copying the input.
// File-control-parameter templates (FCPs, about two thirds of all
// elements) are kept as opaque nodes whose content Decode checks with a
// byte walker; FCP accessors read them on demand.
//
// Typed views point into the tree (their []byte fields alias node values),
// so they are read-only snapshots: to edit, change nodes (Node.SetValue, or
// the Children slices) and call Encode, which serialises the tree with
// fresh DER lengths (so only the lengths enclosing an edit change).
// Profile.Compile turns an edited profile into a Plan. A Profile is not
// safe for concurrent use; a Plan is.
//
// Hot paths use a hand-written TLV walker; nothing uses encoding/asn1 or
// reflection.
//
// # Validation
//
// Decode reports DER and ASN.1 structure errors: truncation, indefinite
// lengths, non-minimal encodings, elements missing, misplaced or of the
// wrong size, unknown tags where the schema allows none (extension
// additions after the last known component are accepted, as EXTENSIBILITY
// IMPLIED requires). Profile.Validate adds the profile-level rules: header
// first and end last (each exactly once), unique identification numbers,
// every mandatory service declared in the header backed by its PE, every
// algorithm used by an akaParameter declared, PIN key references unique per
// pinCodes PE and unblocking references pointing at existing PUKs.
// Compile adds: the template has the slots every record needs.
//
// Every error is an *Error (errors.As) wrapping a sentinel (errors.Is:
// ErrTruncated, ErrIndefiniteLength, ErrNotDER, ErrStructure, ErrOrder,
// ErrDuplicateID, ErrMissingPE, ErrUndeclaredService, ErrNoSlot, ErrValue
// …) and locating the problem:
//
//	template: PE #7 (usim) at offset 0xa14: ef-imsi.fileDescriptor: unexpected element with tag 99 …
//
// PE numbers are 0-based positions in the profile (#0 is the header);
// offsets are absolute byte offsets in the DER input. Errors never contain
// personalisation values (K, OPc, PINs, keys), only their lengths or the
// position of a bad character.
//
// # Plans
//
// Compile decodes and validates a template and records the byte offset of
// every personalisable slot:
//
//   - header iccid (plain BCD) and EF.ICCID in every mf/iot PE (swapped BCD);
//   - EF.IMSI (length byte + parity nibble) and EF.ACC (1 << last IMSI digit)
//     in every usim/iot PE;
//   - algorithmID, key (K) and opc in every akaParameter holding an
//     algoParameter (a mappingParameter has no slot);
//   - every pinValue (PIN1 0x01, PIN2 0x81, ADM1..5 0x0A..0x0E, ADM6..10
//     0x8A..0x8E) in every pinCodes PE — TS.48 has PIN2 in four places — and
//     every pukValue (PUK1 0x01, PUK2 0x81);
//   - the keyData of every security-domain key, by securityDomain ordinal
//     (0 = MNO-SD), KVN and key identifier (SCP80 KVN 01..03 ID 01..03,
//     SCP03 KVN 30..32, …);
//   - variable-size: EF.SMSP (SMSC address in record 1) and EF.SPN of every
//     usim PE, EF.MSISDN (record 1) of every opt-usim PE.
//
// Plan.Apply copies the template into the caller's buffer and writes the
// fixed-size values at their offsets: no decoding, no re-encoding, no
// allocation when dst has room (1–2 µs for a TS.48 profile). A value whose
// size differs from its slot (K of 32 bytes in a 16-byte slot, an SD key of
// another length) is refused rather than re-encoded. SMSC, SPN and MSISDN,
// whose files carry no content in TS.48 templates, replace the File element's
// fill commands with one fillFileContent (keeping its FCP) and re-encode the
// length of that File and of its PE only; fixed slots after them are moved
// by the size difference. Slot offsets are proved by tests that decode every
// personalised output with the full decoder and compare every copy of every
// field, and check that every byte outside the slots is unchanged.
//
// A Plan is immutable: any number of goroutines may call Apply on one Plan
// concurrently; each call uses only its own stack and output buffer.
//
// # Values
//
// Values holds one record. Zero values (empty strings, nil slices, the zero
// esim.ICCID and esim.IMSI, esim.AlgorithmUnset) leave the template's
// value. ICCIDs and IMSIs are esim values, validated when they were parsed
// (esim.ParseICCID checks the Luhn digit). PIN, PUK and ADM codes are given
// in card form, the 8-byte value the card stores (esim.CodeKind.Encode
// turns digits into it, CodeKind.Check states the rules): PINs 4–8 ASCII
// digits and PUKs 8, padded with FF; an ADM key may also be any 8 binary
// bytes. The algorithm may only be set to one the header declares
// in eUICC-Mandatory-services (otherwise the profile would ask the eUICC
// for an algorithm it was not told to provide). K, OPc, the codes and SD
// keys are byte slices that Apply reads but never retains; call
// Values.Zero to wipe them after use.
//
// # Codings
//
// The codings of identifiers and codes are package esim's: ICCID.BCD
// (header, plain BCD F-padded on the right), ICCID.SwappedBCD (EF.ICCID,
// nibble-swapped, also the SGP.22 StoreMetadata iccid), IMSI.EF, IMSI.ACC,
// CodeKind.Encode and CodeText. This package adds the dialling numbers and
// names only a profile holds: DecodeSMSP, DecodeSPN, DecodeMSISDN. The TLV
// syntax (tags, lengths, limits) is esim/tlv's.
//
// # Inspect report (JSON schema)
//
// Inspect returns a Report; `perso template inspect --json` prints it.
// Fields are only ever added, never renamed or removed:
//
//	{
//	  "size": 12163,                          // bytes
//	  "header": {"majorVersion": 2, "minorVersion": 3, "profileType": "…",
//	             "iccid": "8949449999999990171", "mandatoryGFSTE": ["2.23.143.1.2.1", …]},
//	  "pes": [{"index": 0, "type": "header", "tag": "a0", "offset": 0, "size": 160,
//	           "id": null, "mandated": false, "templateId": "…" (file-system PEs only)}, …],
//	  "naas": [{"type": "usim", "pe": 7, "aid": "a0000000871002ff49ff0589",
//	            "templateId": "2.23.143.1.2.4", "algorithm": "usim-test-algorithm"}, …],
//	  "mandatoryServices": ["usim", "isim", …],
//	  "slots": [{"name": "PIN2", "kind": "pin", "pe": 5, "peType": "pinCodes",
//	             "offset": 1615, "length": 8, "fixed": true, "secret": false,
//	             "value": "9999", "keyRef": 129}, …
//	            {"name": "SD key KVN 0x01 ID 0x01", "kind": "sd-key", …, "secret": true,
//	             "value": "********", "kvn": 1, "keyId": 1, "sd": 0}],
//	  "problems": [],                         // validation problems (strings)
//	  "compileError": "…"                     // only when Compile would fail
//	}
//
// Slot kinds: header-iccid, ef-iccid, ef-imsi, ef-acc, algorithm, k, opc,
// pin, puk, sd-key, smsc, spn, msisdn. Secret slots (k, opc, sd-key) carry
// "********" unless secrets are requested.
//
// # Limits
//
// Not personalised: EF.AD, PLMN lists, ISIM IMPI/IMPU, CSIM
// IMSI_M/T, SUCI keys, additional SSDs' keys beyond replacing existing
// ones, changing a key's type or length, or adding a key object that the
// template lacks. Elements nested deeper than MaxDepth are refused.
package template
