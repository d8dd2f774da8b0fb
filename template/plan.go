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
	SlotHeaderICCID      SlotKind = iota + 1 // ProfileHeader iccid, plain BCD (10 bytes)
	SlotEFICCID                              // EF.ICCID content, swapped BCD (10 bytes)
	SlotIMSI                                 // EF.IMSI content (9 bytes)
	SlotACC                                  // EF.ACC content, from the IMSI's last digit (2 bytes)
	SlotAlgorithm                            // algoParameter algorithmID (1 byte)
	SlotK                                    // algoParameter key (16 or 32 bytes)
	SlotOPc                                  // algoParameter opc (16 or 32 bytes)
	SlotPIN                                  // pinValue of a PIN or ADM key reference (8 bytes)
	SlotPUK                                  // pukValue (8 bytes)
	SlotSDKey                                // keyData of a security-domain key (length of the template key)
	SlotSMSC                                 // EF.SMSP record 1 (variable: re-encodes its PE)
	SlotSPN                                  // EF.SPN content (variable: re-encodes its PE)
	SlotMSISDN                               // EF.MSISDN record 1 in opt-usim (variable: re-encodes its PE)
	SlotAD                                   // derived: EF.AD byte 4, length of the MNC (Options.HomePLMN)
	SlotEHPLMN                               // derived: EF.EHPLMN first entry, the IMSI's PLMN
	SlotHPLMNwAcT                            // derived: EF.HPLMNwAcT first entry's PLMN, the IMSI's
	SlotIMPI                                 // derived: EF.IMPI, the private user identity from the IMSI (TS 23.003 §13.3)
	SlotIMPU                                 // derived: EF.IMPU record 1, the temporary public user identity (§13.4B)
	SlotDomain                               // derived: EF.DOMAIN, the home network domain name (§13.2)
	SlotIMSIM                                // derived: CSIM EF.IMSI_M, the IMSI as a class 0 MIN-based IMSI (C.S0065)
	SlotIMSIT                                // derived: CSIM EF.IMSI_T, the same as the true IMSI
	SlotGID1                                 // constant: USIM EF.GID1 (Options.GID1; Plan.Constants)
	SlotGID2                                 // constant: USIM EF.GID2 (Options.GID2)
	SlotSUCICalcInfo                         // constant: DF.5GS EF.SUCI_Calc_Info (Options.SUCI)
	SlotSUCICalcInfoUSIM                     // constant: DF.SAIP EF.SUCI_Calc_Info_USIM (Options.SUCI)
	numSlotKinds
)

var slotKindNames = map[SlotKind]string{
	SlotHeaderICCID: "header-iccid", SlotEFICCID: "ef-iccid", SlotIMSI: "ef-imsi", SlotACC: "ef-acc",
	SlotAlgorithm: "algorithm", SlotK: "k", SlotOPc: "opc", SlotPIN: "pin", SlotPUK: "puk",
	SlotSDKey: "sd-key", SlotSMSC: "smsc", SlotSPN: "spn", SlotMSISDN: "msisdn",
	SlotAD: "ef-ad", SlotEHPLMN: "ef-ehplmn", SlotHPLMNwAcT: "ef-hplmnwact", SlotIMPI: "ef-impi", SlotIMPU: "ef-impu", SlotDomain: "ef-domain",
	SlotIMSIM: "ef-imsi-m", SlotIMSIT: "ef-imsi-t", SlotGID1: "ef-gid1", SlotGID2: "ef-gid2",
	SlotSUCICalcInfo: "ef-suci-calc-info", SlotSUCICalcInfoUSIM: "ef-suci-calc-info-usim",
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
	Fixed  bool   // patched in place; false for rewrite slots that re-encode their PE

	// File content slots (EF.ICCID, EF.IMSI, EF.ACC, SMSC, SPN, MSISDN):
	// where the value lands in the file and how the plan writes it.
	File       string    // ASN.1 name of the file ("ef-imsi"), "" for other slots
	FileOffset int       // position in the file of the bytes this slot writes
	From       int       // offset in the value of the bytes this slot writes (a piece of split content)
	Placement  Placement // how the value is placed
	Target     string    // PlaceRewrite: the element whose fill commands Apply rewrites
	Reason     string    // PlaceRewrite: why the content cannot be patched in place
}

// Placement says how Apply writes a slot.
type Placement uint8

// Placements.
const (
	PlaceInPlace Placement = iota // the value's template bytes are patched in place
	PlacePiece                    // one piece of a value the template writes in several pieces (split, behind offsets, or rewritten by a later PE): patched in place
	PlaceRewrite                  // the template does not write (all of) the value: Apply rewrites the fill commands of Target and re-encodes its PE
)

func (p Placement) String() string {
	switch p {
	case PlaceInPlace:
		return "in place"
	case PlacePiece:
		return "piece"
	case PlaceRewrite:
		return "rewrite"
	}
	return "Placement(" + fmt.Sprint(uint8(p)) + ")"
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
	case SlotAD:
		return "MNC length (EF.AD)"
	case SlotEHPLMN:
		return "home PLMN (EF.EHPLMN)"
	case SlotHPLMNwAcT:
		return "home PLMN (EF.HPLMNwAcT)"
	case SlotIMPI:
		return "IMPI (EF.IMPI)"
	case SlotIMPU:
		return "IMPU (EF.IMPU)"
	case SlotDomain:
		return "home domain (EF.DOMAIN)"
	case SlotIMSIM:
		return "IMSI_M (CSIM EF.IMSI_M)"
	case SlotIMSIT:
		return "IMSI_T (CSIM EF.IMSI_T)"
	case SlotGID1:
		return "GID1 (EF.GID1)"
	case SlotGID2:
		return "GID2 (EF.GID2)"
	case SlotSUCICalcInfo:
		return "SUCI calculation info (DF.5GS EF.SUCI_Calc_Info)"
	case SlotSUCICalcInfoUSIM:
		return "SUCI calculation info (DF.SAIP EF.SUCI_Calc_Info_USIM)"
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

	// consts are per-template constants by slot kind, padded to their
	// slots (set only by CompileWith's writeConstants).
	consts map[SlotKind][]byte
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
	vars  []varSlot          // rewrite slots, in template order
	hdrs  []hdrInfo          // TLVs enclosing a rewrite, in template order
	kinds [numSlotKinds]bool // arrays, not maps: Apply checks them per record
	// fieldLen is the value length of each file slot kind (SMSC and
	// MSISDN: the record length, the same in every copy).
	fieldLen  map[SlotKind]int
	notes     []string   // why optional fields have no slot
	noteKinds []SlotKind // the field of each note
	consts    []Slot     // where CompileWith wrote the per-template constants (Constants)
	opts      Options
	switched  string    // Switch()
	pins      [256]bool // by key reference (one byte in SAIP)
	puks      [256]bool
	algos     [4]bool // algorithms the header declares (esim.Algorithm 1..3)
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

// varSlot is a rewrite slot: a file content that Apply writes by
// rewriting the fill commands of one element and re-encoding the lengths
// of the TLVs around it.
type varSlot struct {
	kind   SlotKind
	pe     int
	rw     *rewrite
	hdrs   []int // indexes into Plan.hdrs of the enclosing TLVs
	growth int   // size change of the element when rewritten
}

// hdrInfo is a TLV whose length a rewrite inside it changes.
type hdrInfo struct {
	start, valStart, end int
	tag                  Tag
}

// Notes explains, for each optional field the template cannot take, why
// (the file is absent, its record is too short …). Values for those fields
// are refused with ErrNoSlot.
func (pl *Plan) Notes() []string { return append([]string(nil), pl.notes...) }

// Constants returns where CompileWith wrote the per-template values of
// Options (GID1, GID2, SUCI_Calc_Info) into the template: slots of the
// template as given, whose placement says how the value was written. The
// Plan's template already holds them; Apply does not touch them.
func (pl *Plan) Constants() []Slot { return append([]Slot(nil), pl.consts...) }

// Template returns the template bytes (do not modify).
func (pl *Plan) Template() []byte { return pl.tmpl }

// Slots returns a copy of the slot list, in template order.
func (pl *Plan) Slots() []Slot { return append([]Slot(nil), pl.slots...) }

// Has reports whether the template has at least one slot of the kind.
func (pl *Plan) Has(k SlotKind) bool { return pl.kinds[k] }

// Compile decodes and validates a template and records every slot. It
// fails when the template lacks what every record needs: the header
// ICCID, an mf PE creating EF.ICCID and a usim PE creating EF.IMSI (their
// content may be written in any way SAIP allows, or not at all), and at
// least one algoParameter (K/OPc). Compile(der) is CompileWith(der,
// Options{}).
func Compile(der []byte) (*Plan, error) {
	p, err := Decode(der)
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p.compile(Options{})
}

// Compile builds a Plan from a decoded (possibly edited) profile: its
// current encoding is decoded, validated and compiled afresh.
func (p *Profile) Compile() (*Plan, error) { return Compile(p.Encode()) }

func (p *Profile) compile(o Options) (*Plan, error) {
	pl := &Plan{opts: o, tmpl: p.src, fieldLen: map[SlotKind]int{}}
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
	sdOrdinal := 0
	for _, pe := range p.PEs {
		switch pe.Type {
		case PEHeader:
			add(pe, SlotHeaderICCID, pe.Header.iccid, Slot{})
		}
		switch pe.Type {
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
				pl.pins[c.KeyReference&0xFF] = true
			}
		case PEPUKCodes:
			for _, c := range pe.PUKs.Configs {
				add(pe, SlotPUK, c.value, Slot{KeyRef: c.KeyReference})
				pl.puks[c.KeyReference&0xFF] = true
			}
		case PESecurityDomain:
			for _, k := range pe.SD.Keys {
				add(pe, SlotSDKey, k.Components[0].data, Slot{KVN: k.KVN, KeyID: k.ID, SD: sdOrdinal})
			}
			sdOrdinal++
		}
	}
	if err := pl.compileFiles(p, o); err != nil {
		return nil, err
	}
	for _, need := range []struct {
		k    SlotKind
		what string
	}{{SlotEFICCID, "an mf PE with EF.ICCID"}, {SlotIMSI, "a usim PE with EF.IMSI"}, {SlotK, "an akaParameter PE with an algoParameter (K/OPc)"}} {
		if !pl.kinds[need.k] {
			return nil, &Error{PE: -1, Offset: -1, Err: fmt.Errorf("template has no %s: %w", need.what, ErrNoSlot)}
		}
	}
	sort.SliceStable(pl.vars, func(i, j int) bool { return pl.vars[i].rw.start < pl.vars[j].rw.start })
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
