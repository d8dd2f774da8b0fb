package template

import (
	"fmt"
	"sort"
	"strings"

	"github.com/perso-esim/perso/esim"
)

// Options are the per-template settings of a Plan (CompileWith). The zero
// Options compile the template as it is.
type Options struct {
	// Algorithm, when set, switches every algoParameter of the template to
	// this algorithm at compile time and makes the header's
	// eUICC-Mandatory-services consistent with it (see SwitchAlgorithm).
	// AlgorithmUnset keeps the template's algorithms; records may then only
	// set an algorithm the header already declares.
	Algorithm esim.Algorithm
	// KeyLength is the K length for TUAK: 16 (TUAK-128, the default) or 32
	// (TUAK-256). Milenage and the test algorithm use 16-byte keys.
	KeyLength int
	// HomePLMN is the home network's MCC and MNC, 5 or 6 digits ("00101",
	// "310150"): the MNC length cannot be told from an IMSI. Setting it
	// turns on the derived fields (see Derived) of every file the template
	// has, except those in NoDerive.
	HomePLMN string
	// NoDerive turns derived fields off.
	NoDerive Derived

	// GID1 and GID2, when set, are the contents of the USIM's EF.GID1
	// (opt-usim 6F3E) and EF.GID2 (6F3F), TS 31.102 §4.2.10–11: group
	// identifiers the operator chooses (MVNO, SIM-lock group), the same
	// for every profile of the template. Padded with FF to the file size;
	// a value longer than the file is refused.
	GID1, GID2 []byte
	// SUCI, when set, is the content of the 5G EF.SUCI_Calc_Info: in
	// DF.5GS (df-5gs 4F07, used when the ME calculates the SUCI) and in
	// DF.SAIP (df-saip 4F01, used by the eUICC's SUCI calculator), coded
	// as TS 31.102 §4.4.11.8 and padded with FF to each file's size.
	SUCI *SUCICalcInfo
}

// SUCICalcInfo is the home network's SUCI configuration (TS 33.501 Annex
// C): the protection schemes in priority order and the public keys they
// use.
type SUCICalcInfo struct {
	// Schemes lists the protection scheme identifiers in priority order
	// (0 null-scheme, 1 Profile A, 2 Profile B), each with the identifier
	// of the home network public key it uses (ignored for the null-scheme).
	Schemes []SUCIScheme
	// Keys are the home network public keys: Profile A an X25519 key (32
	// bytes), Profile B a compressed P-256 point (33 bytes).
	Keys []HomeNetworkKey
}

// SUCIScheme is one entry of the protection scheme identifier list.
type SUCIScheme struct {
	Scheme byte // 0 null, 1 Profile A, 2 Profile B
	KeyID  byte // home network public key identifier (HomeNetworkKey.ID)
}

// HomeNetworkKey is a home network public key and its identifier.
type HomeNetworkKey struct {
	ID  byte
	Key []byte
}

// Encode returns EF.SUCI_Calc_Info's content (TS 31.102 §4.4.11.8): the
// Protection Scheme Identifier List data object 'A0' (per scheme, in
// priority order: its identifier and the key index, the 1-based position
// of its key in the key list, 00 for the null-scheme), then the Home
// Network Public Key List data object 'A1' (per key: '80' 01 identifier,
// '81' L key). It checks the schemes and key sizes.
func (s *SUCICalcInfo) Encode() ([]byte, error) {
	bad := func(format string, a ...any) error {
		return &Error{PE: -1, Offset: -1, Field: "Options.SUCI", Err: fmt.Errorf(format+": %w", append(a, ErrValue)...)}
	}
	if len(s.Schemes) == 0 {
		return nil, bad("no protection scheme")
	}
	index := map[byte]int{}
	var keys []byte
	for i, k := range s.Keys {
		if _, dup := index[k.ID]; dup {
			return nil, bad("home network public key identifier %d given twice", k.ID)
		}
		index[k.ID] = i + 1
		keys = append(keys, 0x80, 1, k.ID, 0x81)
		keys = appendLen(keys, len(k.Key))
		keys = append(keys, k.Key...)
	}
	var list []byte
	for _, sc := range s.Schemes {
		idx := 0
		switch sc.Scheme {
		case 0:
		case 1, 2:
			i, ok := index[sc.KeyID]
			if !ok {
				return nil, bad("scheme %d uses key %d, which is not among the keys", sc.Scheme, sc.KeyID)
			}
			want := map[byte]int{1: 32, 2: 33}[sc.Scheme]
			if n := len(s.Keys[i-1].Key); n != want {
				return nil, bad("key %d is %d bytes; Profile %c needs %d", sc.KeyID, n, 'A'+sc.Scheme-1, want)
			}
			idx = i
		default:
			return nil, bad("protection scheme %d: want 0 (null), 1 (Profile A) or 2 (Profile B)", sc.Scheme)
		}
		list = append(list, sc.Scheme, byte(idx))
	}
	out := append([]byte{0xA0}, appendLen(nil, len(list))...)
	out = append(out, list...)
	out = append(out, 0xA1)
	out = appendLen(out, len(keys))
	return append(out, keys...), nil
}

// Derived selects fields derived from the configuration and the record.
// Each is written only when Options.HomePLMN is set and the template has
// the file (in any placement; see Plan.Slots and Plan.Notes):
//
//   - DeriveAD: EF.AD (USIM 6FAD) byte 4 = the length of the MNC, 2 or 3,
//     from HomePLMN (TS 31.102 §4.2.18). The same for every profile.
//   - DeriveHPLMN: the first entry of EF.EHPLMN (opt-usim 6FD9, TS 31.102
//     §4.2.84) and the PLMN of the first entry of EF.HPLMNwAcT (6F62,
//     §4.2.54; its access technology bits are the template's) = the
//     IMSI's PLMN: its first 3 digits (MCC) and the next 2 or 3 (MNC,
//     HomePLMN's length), coded as TS 24.008 §10.5.1.3. EF.HPPLMN holds a
//     search period, not a PLMN: it is not derived.
//   - DeriveISIM: EF.IMPI (ISIM 6F02) = the private user identity
//     "<IMSI>@ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org" (TS 23.003 §13.3, MNC
//     padded to 3 digits with a leading 0); EF.IMPU (6F04) record 1 = the
//     temporary public user identity "sip:" + that NAI (§13.4B); EF.DOMAIN
//     (6F03) = the home network domain "ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org"
//     (§13.2); MCC and MNC from the IMSI as above. Each is a TLV (tag 80,
//     UTF-8) padded with FF to the file (or record) size (TS 31.103 §4.2.2–4);
//     a file too small for a 15-digit IMSI's value is not derived (a note
//     says so).
//   - DeriveCSIM: CSIM EF.IMSI_M (6F22) and EF.IMSI_T (6F23), 3GPP2
//     C.S0065 §5.2.2–3 (coding of C.S0023 §3.4.2 and C.S0005 §2.3.1) =
//     the record's IMSI as a class 0 IMSI: MCC (10 bits), IMSI_11_12 (the
//     4th and 5th digits, 7 bits) and IMSI_S (the last 10 digits: S2 10
//     bits, S1 24 bits), programmed, address number 0. Needs 15-digit
//     IMSIs. The cdmaParameter PE (A-key, SSD) is not derived: its values
//     are operator secrets no record field holds (a note says so).
//
// GID1/GID2 and SUCI_Calc_Info are on when Options.GID1, GID2 or SUCI are
// set (DeriveGID and DeriveSUCI turn them off again); they are the same
// for every profile, so CompileWith writes them into the template once
// (Plan.Constants lists where) and Apply does not touch them.
type Derived uint8

// Derived fields.
const (
	DeriveAD Derived = 1 << iota
	DeriveHPLMN
	DeriveISIM
	DeriveCSIM
	DeriveGID
	DeriveSUCI
)

// derives reports whether the options turn on the derived fields d.
func (o Options) derives(d Derived) bool {
	if o.NoDerive&d != 0 {
		return false
	}
	switch d {
	case DeriveGID:
		return len(o.GID1) > 0 || len(o.GID2) > 0
	case DeriveSUCI:
		return o.SUCI != nil
	}
	return o.HomePLMN != ""
}

// constants are the options' per-template values (GID1/GID2,
// SUCI_Calc_Info) by slot kind, unpadded.
func (o Options) constants() (map[SlotKind][]byte, error) {
	c := map[SlotKind][]byte{}
	if o.derives(DeriveGID) {
		if len(o.GID1) > 0 {
			c[SlotGID1] = o.GID1
		}
		if len(o.GID2) > 0 {
			c[SlotGID2] = o.GID2
		}
	}
	if o.derives(DeriveSUCI) {
		b, err := o.SUCI.Encode()
		if err != nil {
			return nil, err
		}
		c[SlotSUCICalcInfo], c[SlotSUCICalcInfoUSIM] = b, b
	}
	return c, nil
}

// mncLen is the length of the home MNC (0 without HomePLMN).
func (o Options) mncLen() int {
	if o.HomePLMN == "" {
		return 0
	}
	return len(o.HomePLMN) - 3
}

// checkOptions validates the options that do not depend on the template.
func (o Options) check() error {
	if o.HomePLMN != "" {
		if n := len(o.HomePLMN); n != 5 && n != 6 {
			return &Error{PE: -1, Offset: -1, Field: "Options.HomePLMN", Err: fmt.Errorf("%d digits, want 5 or 6 (MCC + MNC): %w", n, ErrValue)}
		}
		if err := checkDigits("Options.HomePLMN", o.HomePLMN, 5, 6); err != nil {
			return err
		}
	}
	if o.Algorithm == esim.AlgorithmUnset && o.KeyLength != 0 {
		return &Error{PE: -1, Offset: -1, Field: "Options.KeyLength", Err: fmt.Errorf("set without Options.Algorithm: %w", ErrValue)}
	}
	return nil
}

// algorithmServices are the eUICC-Mandatory-services flags (context tag
// numbers) that declare an authentication algorithm.
var algorithmServices = map[int]string{4: "milenage", 5: "tuak128", 16: "tuak256", 17: "usim-test-algorithm"}

// CompileWith is Compile with per-template settings. With
// Options.Algorithm set, the template is first switched to that algorithm
// (SwitchAlgorithm); the Plan then holds the switched template, and
// Plan.Switch describes what changed.
func CompileWith(der []byte, o Options) (*Plan, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	p, err := Decode(der)
	if err != nil {
		return nil, err
	}
	desc := ""
	if o.Algorithm != esim.AlgorithmUnset {
		if desc, err = p.SwitchAlgorithm(o); err != nil {
			return nil, err
		}
		if p, err = Decode(p.Encode()); err != nil {
			return nil, err
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	pl, err := p.compile(o)
	if err != nil {
		return nil, err
	}
	if o.derives(DeriveGID) || o.derives(DeriveSUCI) {
		if pl, err = pl.writeConstants(o); err != nil {
			return nil, err
		}
	}
	pl.switched = desc
	return pl, nil
}

// isConstant reports whether a slot kind holds a per-template constant.
func isConstant(k SlotKind) bool {
	return k == SlotGID1 || k == SlotGID2 || k == SlotSUCICalcInfo || k == SlotSUCICalcInfoUSIM
}

// writeConstants writes the per-template values (GID1/GID2,
// SUCI_Calc_Info) into the template through pl's slots (in place, pieces
// or a rewrite, as for any field) and compiles the result again without
// them: the constants then cost records nothing.
func (pl *Plan) writeConstants(o Options) (*Plan, error) {
	raw, err := o.constants()
	if err != nil {
		return nil, err
	}
	consts := map[SlotKind][]byte{}
	for k, v := range raw {
		if !pl.kinds[k] {
			continue
		}
		b := make([]byte, pl.fieldLen[k])
		copy(b, v)
		for i := len(v); i < len(b); i++ {
			b[i] = 0xFF
		}
		consts[k] = b
	}
	out, err := pl.Apply(&Values{consts: consts}, nil)
	if err != nil {
		return nil, err
	}
	p, err := Decode(out)
	if err != nil {
		return nil, err
	}
	o2 := o
	o2.NoDerive |= DeriveGID | DeriveSUCI
	final, err := p.compile(o2)
	if err != nil {
		return nil, err
	}
	final.opts = o
	for _, s := range pl.slots {
		if isConstant(s.Kind) {
			final.consts = append(final.consts, s)
		}
	}
	for i, k := range pl.noteKinds {
		if isConstant(k) {
			final.notes = append(final.notes, pl.notes[i])
			final.noteKinds = append(final.noteKinds, k)
		}
	}
	return final, nil
}

// Options returns the settings the plan was compiled with.
func (pl *Plan) Options() Options { return pl.opts }

// Switch describes the algorithm switch applied at compile time ("" when
// the template keeps its algorithms), e.g. "usim-test-algorithm → milenage
// in 2 akaParameter PEs (K 16 bytes, OPc 16 bytes); header services:
// -usim-test-algorithm +milenage".
func (pl *Plan) Switch() string { return pl.switched }

// SwitchAlgorithm edits the profile so that every akaParameter holding an
// algoParameter uses o.Algorithm, with a K and an OPc (TOPc) of the
// algorithm's sizes (Milenage and the test algorithm 16 and 16 bytes, TUAK
// o.KeyLength (16 or 32) and 32 bytes; a slot whose size changes holds
// zeros until a record fills it), and so that the header's
// eUICC-Mandatory-services declares exactly the algorithms the
// akaParameters now use: the flags of the replaced algorithms go, the new
// one is added in its DER position. Other algoParameter components
// (algorithmOptions, Milenage rotation and XOR constants, TUAK
// numberOfKeccak) are kept. mappingParameter PEs are left alone: they
// point at an algorithm configured elsewhere. It returns a description of
// the change.
func (p *Profile) SwitchAlgorithm(o Options) (string, error) {
	alg := o.Algorithm
	if !alg.Valid() {
		return "", &Error{PE: -1, Offset: -1, Field: "Options.Algorithm", Err: fmt.Errorf("unknown algorithm %d: %w", uint8(alg), ErrValue)}
	}
	kLen, opcLen := 16, 16
	svc := map[esim.Algorithm]int{esim.AlgorithmMilenage: 4, esim.AlgorithmTest: 17}[alg]
	if alg == esim.AlgorithmTUAK {
		kLen, opcLen, svc = 16, 32, 5
		switch o.KeyLength {
		case 0, 16:
		case 32:
			kLen, svc = 32, 16
		default:
			return "", &Error{PE: -1, Offset: -1, Field: "Options.KeyLength", Err: fmt.Errorf("%d: want 16 or 32: %w", o.KeyLength, ErrValue)}
		}
	} else if o.KeyLength != 0 && o.KeyLength != 16 {
		return "", &Error{PE: -1, Offset: -1, Field: "Options.KeyLength", Err: fmt.Errorf("%d: %s uses 16-byte keys: %w", o.KeyLength, alg, ErrValue)}
	}
	h := p.Header()
	if h == nil {
		return "", &Error{PE: -1, Offset: -1, Err: fmt.Errorf("no header to declare the algorithm in: %w", ErrOrder)}
	}
	from := map[string]bool{}
	n := 0
	for _, pe := range p.All(PEAKAParameter) {
		a := pe.AKA.Algo
		if a == nil {
			continue
		}
		from[a.AlgorithmID.String()] = true
		a.algo.Value = appendUint(nil, int(alg))
		if len(a.key.Value) != kLen {
			a.key.Value = make([]byte, kLen)
		}
		if len(a.opc.Value) != opcLen {
			a.opc.Value = make([]byte, opcLen)
		}
		n++
	}
	if n == 0 {
		return "", &Error{PE: -1, Offset: -1, Err: fmt.Errorf("no akaParameter with an algoParameter to switch: %w", ErrNoSlot)}
	}
	list := p.PEs[0].Node.Child(0xA5)
	var kept []*Node
	var removed []string
	for _, f := range list.Children {
		num := f.Tag.Number()
		if name, ok := algorithmServices[num]; ok && num != svc {
			removed = append(removed, name)
			continue
		}
		if num == svc {
			continue // re-added below, once
		}
		kept = append(kept, f)
	}
	flag := &Node{Tag: Tag(0x80 + svc), Offset: -1}
	i := 0
	for i < len(kept) && kept[i].Tag.Number() < svc {
		i++
	}
	kept = append(kept[:i], append([]*Node{flag}, kept[i:]...)...)
	list.Children = kept
	names := make([]string, 0, len(from))
	for a := range from {
		names = append(names, a)
	}
	sort.Strings(names)
	desc := fmt.Sprintf("%s → %s in %d akaParameter PE(s) (K %d bytes, OPc %d bytes); header services: +%s",
		strings.Join(names, ", "), algorithmServices[svc], n, kLen, opcLen, algorithmServices[svc])
	for _, r := range removed {
		desc += " -" + r
	}
	return desc, nil
}
