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
//   - EF.SMSP (SMSC address in record 1) and EF.SPN of every usim PE,
//     EF.MSISDN (record 1) of every opt-usim PE;
//   - with Options.HomePLMN, the derived files (Derived): EF.AD's MNC
//     length, the first PLMN of EF.EHPLMN and EF.HPLMNwAcT, the ISIM's
//     EF.IMPI, EF.IMPU record 1 and EF.DOMAIN (TS 23.003 §13), and the
//     CSIM's EF.IMSI_M and EF.IMSI_T (3GPP2 C.S0065);
//   - with Options.GID1/GID2/SUCI, per-template constants written once at
//     compile time: EF.GID1, EF.GID2 and both EF.SUCI_Calc_Info files.
//
// # File contents: the whole fillFileOffset/fillFileContent grammar
//
// A file's content may be written in any legal way (files.go has the
// model): by the File component of the FS PE that creates it, as one
// fillFileContent or several, behind fillFileOffsets (relative skips),
// not at all (FCP only), and again by later genericFileManagement
// sequences that select the file (a filePath naming the EF) or create it;
// the card keeps the last write of each byte. Record files are the stream
// of their records. For each field Compile finds the template bytes that
// land on the card:
//
//   - every byte of the field is written by the template: the field gets
//     one fixed slot per contiguous piece (Placement PlaceInPlace for the
//     usual single piece, PlacePiece for split content or content
//     rewritten by a later PE; only the write that lands is patched). Apply
//     patches them in place: O(1), no allocation;
//   - some byte is not: the field is a PlaceRewrite slot. When a record
//     sets it, Apply replaces the fill commands of the last element that
//     writes the file (else the File that creates it) by an equivalent
//     normalised sequence that also writes the field (everything else the
//     element wrote is kept), and re-encodes the lengths around it (File,
//     or the command SEQUENCE and list, and the PE); fixed slots after it
//     move by the size difference. Slot.Target and Slot.Reason say which
//     element and why; Plan.Notes says why optional fields have no slot.
//
// Fill commands past the file's efFileSize (or past 1 MiB), and
// genericFileManagement fills without a selected EF, are located
// ErrStructure errors (PE number and byte offset of the command).
//
// # Algorithm switch
//
// CompileWith(der, Options{Algorithm: …}) switches every algoParameter of
// the template to Milenage, TUAK (KeyLength 16 or 32) or the test
// algorithm, resizing K and OPc (TOPc, 32 bytes for TUAK), and makes the
// header's eUICC-Mandatory-services declare exactly the algorithm now used
// (Profile.SwitchAlgorithm). This is what an operator does with a
// TS.48-based template, whose header declares only usim-test-algorithm:
// without the switch, records may only set an algorithm the header
// declares. Plan.Switch and Report.AlgorithmSwitch describe the change.
//
// Plan.Apply copies the template into the caller's buffer and writes the
// fixed-size values at their offsets: no decoding, no re-encoding, no
// allocation when dst has room (1–2 µs for a TS.48 profile). A value whose
// size differs from its slot (K of 32 bytes in a 16-byte slot, an SD key of
// another length) is refused rather than re-encoded. Slot offsets are
// proved by tests that decode every personalised output with the full
// decoder and with an independent card-side reader (cardfs_test.go: its
// own DER walk and file system), over every TS.48 template and generated
// variants of each placement, and check that every byte outside the slots
// is unchanged.
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
// for an algorithm it was not told to provide: ErrUndeclaredAlgorithm,
// also an ErrValue); switch the template (Options.Algorithm) to
// personalise another. K, OPc, the codes and SD
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
//	  "compileError": "…",                    // only when Compile would fail
//	  "notes": ["SMSC (EF.SMSP): PE #7 (usim) ef-smsp: record length 20, want 28..255"],
//	  "algorithmSwitch": "test → milenage in 2 akaParameter PE(s) …" // InspectWith only
//	}
//
// File slots add "file" ("ef-imsi"), "fileOffset" (where the bytes land in
// the file), "from" (offset of this piece in the value), "placement" ("in
// place", "piece", "rewrite") and, for rewrites, "target" (the element
// whose fill commands are rewritten) and "reason".
//
// Slot kinds: header-iccid, ef-iccid, ef-imsi, ef-acc, algorithm, k, opc,
// pin, puk, sd-key, smsc, spn, msisdn, ef-ad, ef-ehplmn, ef-hplmnwact,
// ef-impi, ef-impu, ef-domain, ef-imsi-m, ef-imsi-t, and the per-template
// constants ef-gid1, ef-gid2, ef-suci-calc-info, ef-suci-calc-info-usim
// (InspectWith lists where they are written; CompileWith writes them into
// the plan's template once, Plan.Constants). Secret slots (k, opc, sd-key) carry
// "********" unless secrets are requested.
//
// # Limits
//
// Not personalised: cdmaParameter (its A-key and SSD are operator
// secrets no record holds; a note says so when DeriveCSIM is on), the
// CSIM's IMSI_M/T for IMSIs of fewer than 15 digits (refused, not
// guessed), GID1/GID2 per record (they are per template), PLMN lists other than the first home entry, additional
// SSDs' keys beyond replacing existing ones, changing a key's type or
// length, or adding a key object that the template lacks. A personalised
// file whose File component the FS PE omits altogether (no FCP, no
// doNotCreate) exists when its template makes it mandatory (EF.ICCID in
// the MF, EF.IMSI, EF.ACC and EF.AD in ADF.USIM: SAIP creates them with
// the template's FCP): a record then adds a File component holding the
// content (a rewrite slot whose Target says "new File component"). Other
// omitted files do not exist on the card and are noted.
// Elements nested deeper than MaxDepth are refused.
package template
