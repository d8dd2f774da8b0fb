package template

import (
	"fmt"
	"sort"

	"github.com/perso-esim/perso/esim"
)

// SlotKind says what a personalisable slot holds.
type SlotKind uint8

// Slot kinds.
const (
	SlotHeaderICCID SlotKind = iota + 1 // ProfileHeader iccid, plain BCD (10 bytes)
	SlotEFICCID                         // EF.ICCID content, swapped BCD (10 bytes)
	SlotIMSI                            // EF.IMSI content (9 bytes)
	SlotACC                             // EF.ACC content, from the IMSI's last digit (2 bytes)
	SlotAlgorithm                       // algoParameter algorithmID (1 byte)
	SlotK                               // algoParameter key (16 or 32 bytes)
	SlotOPc                             // algoParameter opc (16 or 32 bytes)
	SlotPIN                             // pinValue of a PIN or ADM key reference (8 bytes)
	SlotPUK                             // pukValue (8 bytes)
	SlotSDKey                           // keyData of a security-domain key (length of the template key)
	SlotSMSC                            // EF.SMSP record 1 (variable: re-encodes its PE)
	SlotSPN                             // EF.SPN content (variable: re-encodes its PE)
	SlotMSISDN                          // EF.MSISDN record 1 in opt-usim (variable: re-encodes its PE)
)

var slotKindNames = map[SlotKind]string{
	SlotHeaderICCID: "header-iccid", SlotEFICCID: "ef-iccid", SlotIMSI: "ef-imsi", SlotACC: "ef-acc",
	SlotAlgorithm: "algorithm", SlotK: "k", SlotOPc: "opc", SlotPIN: "pin", SlotPUK: "puk",
	SlotSDKey: "sd-key", SlotSMSC: "smsc", SlotSPN: "spn", SlotMSISDN: "msisdn",
}

func (k SlotKind) String() string {
	if s, ok := slotKindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("SlotKind(%d)", uint8(k))
}

// Slot is one personalisable field of a template.
type Slot struct {
	Kind   SlotKind
	PE     int    // index of the PE holding it
	PEType PEType // its type
	Offset int    // absolute offset of the value bytes in the template
	Len    int    // value length in the template (fixed for fixed-size slots)
	KeyRef int    // SlotPIN, SlotPUK: key reference
	KVN    byte   // SlotSDKey: key version number
	KeyID  byte   // SlotSDKey: key identifier
	SD     int    // SlotSDKey: ordinal of the securityDomain PE (0 = the first, the MNO-SD)
	Fixed  bool   // patched in place; false for variable slots that re-encode their PE
}

// Name is a human-readable name: "ICCID (header)", "PIN1", "ADM1", "K",
// "SD key KVN 0x01 ID 0x02" …
func (s Slot) Name() string {
	switch s.Kind {
	case SlotHeaderICCID:
		return "ICCID (header)"
	case SlotEFICCID:
		return "ICCID (EF.ICCID)"
	case SlotIMSI:
		return "IMSI (EF.IMSI)"
	case SlotACC:
		return "ACC (EF.ACC)"
	case SlotAlgorithm:
		return "algorithm"
	case SlotK:
		return "K"
	case SlotOPc:
		return "OPc"
	case SlotPIN:
		return pinName(s.KeyRef)
	case SlotPUK:
		return pukName(s.KeyRef)
	case SlotSDKey:
		if s.SD == 0 {
			return fmt.Sprintf("SD key KVN 0x%02X ID 0x%02X", s.KVN, s.KeyID)
		}
		return fmt.Sprintf("SD#%d key KVN 0x%02X ID 0x%02X", s.SD, s.KVN, s.KeyID)
	case SlotSMSC:
		return "SMSC (EF.SMSP)"
	case SlotSPN:
		return "SPN (EF.SPN)"
	case SlotMSISDN:
		return "MSISDN (EF.MSISDN)"
	}
	return s.Kind.String()
}

// Secret reports whether the slot holds key material that must not be
// shown or logged (K, OPc, security-domain keys).
func (s Slot) Secret() bool { return s.Kind == SlotK || s.Kind == SlotOPc || s.Kind == SlotSDKey }

func pinName(ref int) string {
	switch {
	case ref >= 1 && ref <= 8:
		if ref == 1 {
			return "PIN1"
		}
		return fmt.Sprintf("PIN1 (application %d)", ref)
	case ref >= 0x81 && ref <= 0x88:
		if ref == 0x81 {
			return "PIN2"
		}
		return fmt.Sprintf("PIN2 (application %d)", ref-0x80)
	case ref >= 0x0A && ref <= 0x0E:
		return fmt.Sprintf("ADM%d", ref-0x0A+1)
	case ref >= 0x8A && ref <= 0x8E:
		return fmt.Sprintf("ADM%d", ref-0x8A+6)
	}
	return fmt.Sprintf("PIN 0x%02X", ref)
}

func pukName(ref int) string {
	switch ref {
	case 0x01:
		return "PUK1"
	case 0x81:
		return "PUK2"
	}
	return fmt.Sprintf("PUK 0x%02X", ref)
}

// admRef maps ADM number 1..10 to its key reference.
func admRef(n int) int {
	if n <= 5 {
		return 0x0A + n - 1
	}
	return 0x8A + n - 6
}

// SDKey is a security-domain key value to write.
type SDKey struct {
	KVN, ID byte
	Key     []byte // same length as the template's key
	SD      int    // which securityDomain PE: 0 = the first (MNO-SD), 1 = the next …
}

// Values is one personalisation record. Zero values (an empty string, a
// nil slice, the zero ICCID or IMSI, esim.AlgorithmUnset) leave the
// template's value in place. Secrets are byte
// slices so that callers can wipe them (Zero) once the profile is built;
// Apply never retains or copies them anywhere but into the output.
type Values struct {
	ICCID     esim.ICCID // header ICCID and EF.ICCID
	IMSI      esim.IMSI  // EF.IMSI; also EF.ACC from its last digit
	K, OPc    []byte
	Algorithm esim.Algorithm

	// PIN, PUK and ADM codes in card form, the 8-byte pinValue/pukValue
	// (esim.CodeKind.Encode): 4–8 ASCII digits padded with FF (PUKs: 8
	// digits), or any 8 bytes for an ADM key. Card form rather than strings so that they
	// can be wiped like the other secrets.
	PIN1, PIN2 []byte
	PUK1, PUK2 []byte
	ADM1, ADM2 []byte
	OtherADM   [8][]byte // ADM3..ADM10

	SDKeys []SDKey

	// Variable-size fields: setting them re-encodes the PE that holds them.
	SMSC                string // E.164 digits, optional leading '+' (international)
	SPN                 string // service provider name, up to 16 GSM characters (or 7 UCS-2)
	SPNDisplayCondition byte   // EF.SPN byte 1, written when SPN is set
	MSISDN              string // 1–20 digits, optional leading '+' (opt-usim EF.MSISDN record 1)
}

// Zero overwrites the secret byte slices (K, OPc, PIN/PUK/ADM codes, SD
// keys) in place.
func (v *Values) Zero() {
	for _, b := range [][]byte{v.K, v.OPc, v.PIN1, v.PIN2, v.PUK1, v.PUK2, v.ADM1, v.ADM2} {
		clear(b)
	}
	for _, b := range v.OtherADM {
		clear(b)
	}
	for i := range v.SDKeys {
		clear(v.SDKeys[i].Key)
	}
}

// Plan is a compiled template: the template bytes and every slot. A Plan
// is immutable and safe for concurrent use by any number of goroutines.
type Plan struct {
	tmpl  []byte
	slots []Slot
	vars  []varSlot // sorted by PE, then file offset
	kinds map[SlotKind]bool
	pins  map[int]bool
	puks  map[int]bool
	algos map[esim.Algorithm]bool // algorithms the header declares
}

// Algorithms returns the algorithms Apply may set: those the header's
// eUICC-Mandatory-services declare (milenage, tuak128/256,
// usim-test-algorithm). Setting another would make the profile inconsistent.
func (pl *Plan) Algorithms() []esim.Algorithm {
	var out []esim.Algorithm
	for a := esim.AlgorithmMilenage; a <= esim.AlgorithmTest; a++ {
		if pl.algos[a] {
			out = append(out, a)
		}
	}
	return out
}

// varSlot describes a file whose content a variable-size value replaces:
// the File TLV inside its PE, and the File items kept (the FCP).
type varSlot struct {
	kind         SlotKind
	pe           int
	peStart      int
	peHdr        int // PE tag + length octets
	peEnd        int
	peTag        Tag
	fileStart    int
	fileEnd      int
	fileTag      Tag
	keep         []byte // encoded File items other than fill commands
	recordLength int    // SMSC
}

// Template returns the template bytes (do not modify).
func (pl *Plan) Template() []byte { return pl.tmpl }

// Slots returns a copy of the slot list, in template order.
func (pl *Plan) Slots() []Slot { return append([]Slot(nil), pl.slots...) }

// Has reports whether the template has at least one slot of the kind.
func (pl *Plan) Has(k SlotKind) bool { return pl.kinds[k] }

// Compile decodes and validates a template and records every slot. It
// fails when the template lacks what every record needs: the header ICCID,
// EF.ICCID and EF.IMSI with explicit content, and at least one
// algoParameter (K/OPc).
func Compile(der []byte) (*Plan, error) {
	p, err := Decode(der)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p.compile()
}

// Compile builds a Plan from a decoded (possibly edited) profile: its
// current encoding is decoded, validated and compiled afresh.
func (p *Profile) Compile() (*Plan, error) { return Compile(p.Encode()) }

func (p *Profile) compile() (*Plan, error) {
	pl := &Plan{tmpl: p.src, kinds: map[SlotKind]bool{}, pins: map[int]bool{}, puks: map[int]bool{}, algos: map[esim.Algorithm]bool{}}
	if h := p.Header(); h != nil {
		pl.algos[esim.AlgorithmMilenage] = h.HasService("milenage")
		pl.algos[esim.AlgorithmTUAK] = h.HasService("tuak128") || h.HasService("tuak256")
		pl.algos[esim.AlgorithmTest] = h.HasService("usim-test-algorithm")
	}
	add := func(pe *PE, k SlotKind, n *Node, s Slot) {
		s.Kind, s.PE, s.PEType, s.Offset, s.Len, s.Fixed = k, pe.Index, pe.Type, n.ValueOffset(), len(n.Value), true
		pl.slots = append(pl.slots, s)
		pl.kinds[k] = true
	}
	// fileContent finds the fixed-size content of a named EF: the first
	// File item must be a fillFileContent of exactly size bytes.
	fileContent := func(pe *PE, name string, size int, required bool) (*Node, error) {
		f := pe.FS.File(name)
		if f == nil {
			if required {
				return nil, errAt(pe.Index, pe.Type, pe.Offset, name, fmt.Errorf("file missing: %w", ErrNoSlot))
			}
			return nil, nil
		}
		if len(f.Fill) == 0 || f.Fill[0].Tag != 0x83 || len(f.Fill[0].Value) != size {
			if !required {
				return nil, nil
			}
			return nil, errAt(pe.Index, pe.Type, f.Node.Offset, name,
				fmt.Errorf("no explicit fillFileContent of %d bytes at the start of the file: %w", size, ErrNoSlot))
		}
		return f.Fill[0], nil
	}
	sdOrdinal := 0
	for _, pe := range p.PEs {
		switch pe.Type {
		case PEHeader:
			add(pe, SlotHeaderICCID, pe.Header.iccid, Slot{})
		case PEMF, PEIoT:
			if n, err := fileContent(pe, "ef-iccid", 10, pe.Type == PEMF); err != nil {
				return nil, err
			} else if n != nil {
				add(pe, SlotEFICCID, n, Slot{})
			}
		}
		switch pe.Type {
		case PEUSIM, PEIoT:
			if n, err := fileContent(pe, "ef-imsi", 9, true); err != nil {
				return nil, err
			} else {
				add(pe, SlotIMSI, n, Slot{})
			}
			if n, err := fileContent(pe, "ef-acc", 2, false); err != nil {
				return nil, err
			} else if n != nil {
				add(pe, SlotACC, n, Slot{})
			}
			if err := pl.addVar(pe, SlotSMSC, "ef-smsp"); err != nil {
				return nil, err
			}
			if err := pl.addVar(pe, SlotSPN, "ef-spn"); err != nil {
				return nil, err
			}
		case PEOptUSIM:
			if err := pl.addVar(pe, SlotMSISDN, "ef-msisdn"); err != nil {
				return nil, err
			}
		case PEAKAParameter:
			if a := pe.AKA.Algo; a != nil {
				if len(a.algo.Value) == 1 {
					add(pe, SlotAlgorithm, a.algo, Slot{})
				}
				add(pe, SlotK, a.key, Slot{})
				add(pe, SlotOPc, a.opc, Slot{})
			}
		case PEPINCodes:
			for _, c := range pe.PINs.Configs {
				add(pe, SlotPIN, c.value, Slot{KeyRef: c.KeyReference})
				pl.pins[c.KeyReference] = true
			}
		case PEPUKCodes:
			for _, c := range pe.PUKs.Configs {
				add(pe, SlotPUK, c.value, Slot{KeyRef: c.KeyReference})
				pl.puks[c.KeyReference] = true
			}
		case PESecurityDomain:
			for _, k := range pe.SD.Keys {
				add(pe, SlotSDKey, k.Components[0].data, Slot{KVN: k.KVN, KeyID: k.ID, SD: sdOrdinal})
			}
			sdOrdinal++
		}
	}
	for _, need := range []struct {
		k    SlotKind
		what string
	}{{SlotEFICCID, "an mf PE with EF.ICCID"}, {SlotIMSI, "a usim PE with EF.IMSI"}, {SlotK, "an akaParameter PE with an algoParameter (K/OPc)"}} {
		if !pl.kinds[need.k] {
			return nil, &Error{PE: -1, Offset: -1, Err: fmt.Errorf("template has no %s: %w", need.what, ErrNoSlot)}
		}
	}
	sort.SliceStable(pl.vars, func(i, j int) bool { return pl.vars[i].fileStart < pl.vars[j].fileStart })
	sort.SliceStable(pl.slots, func(i, j int) bool { return pl.slots[i].Offset < pl.slots[j].Offset })
	return pl, nil
}

func beUint(b []byte) int {
	n := 0
	for _, c := range b {
		n = n<<8 | int(c)
	}
	return n
}

// minRecord is the fixed part of an EF.SMSP (28) or EF.MSISDN (14) record.
func minRecord(k SlotKind) int {
	if k == SlotSMSC {
		return 28
	}
	return 14
}

// addVar records a variable-size slot for a file of a usim PE.
func (pl *Plan) addVar(pe *PE, kind SlotKind, name string) error {
	f := pe.FS.File(name)
	if f == nil || f.DoNotCreate {
		return nil
	}
	v := varSlot{
		kind: kind, pe: pe.Index, peStart: pe.Offset, peHdr: int(pe.Node.HeaderLen), peEnd: pe.Node.End(), peTag: pe.Node.Tag,
		fileStart: f.Node.Offset, fileEnd: f.Node.End(), fileTag: f.Node.Tag,
	}
	for _, it := range f.Node.Children {
		if it.Tag != 0x82 && it.Tag != 0x83 {
			v.keep = append(v.keep, pl.tmpl[it.Offset:it.End()]...)
		}
	}
	switch kind {
	case SlotSMSC, SlotMSISDN:
		// Without a usable record length in the template's file
		// descriptor there is no slot (Apply then refuses the value).
		v.recordLength = f.FCP.RecordLength()
		if v.recordLength < minRecord(kind) || v.recordLength > 255 {
			return nil
		}
	case SlotSPN:
		// EF.SPN is 17 bytes; a template declaring another size gets no slot.
		if sz := f.FCP.EFFileSize(); sz != nil && beUint(sz) != 17 {
			return nil
		}
	}
	pl.vars = append(pl.vars, v)
	pl.slots = append(pl.slots, Slot{Kind: kind, PE: pe.Index, PEType: pe.Type, Offset: f.Node.Offset, Len: f.Node.End() - f.Node.Offset})
	pl.kinds[kind] = true
	return nil
}
