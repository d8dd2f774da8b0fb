package template

import (
	"fmt"
	"unicode/utf16"

	"github.com/perso-esim/perso/esim"
)

// maxPINValues bounds the PIN/ADM values one record can carry
// (PIN1, PIN2, ADM1..ADM10).
const maxPINValues = 12

// encoded holds one record's values in their UPP encodings, on the stack.
type encoded struct {
	iccid, efICCID [10]byte
	imsi           [9]byte
	acc            [2]byte
	hasICCID       bool
	hasIMSI        bool
	algo           byte
	pinRef         [maxPINValues]int
	pinVal         [maxPINValues][8]byte
	npin           int
	puk1, puk2     [8]byte
	hasPUK1        bool
	hasPUK2        bool
	smsc           [255]byte
	smscLen        int // record length when SMSC is set, else 0
	spn            [17]byte
	hasSPN         bool
	msisdn         [255]byte
	msisdnLen      int // record length when MSISDN is set, else 0
	// Derived (Options.HomePLMN).
	ad      [1]byte
	hasAD   bool
	plmn    [3]byte
	hasPLMN bool
	isim    *isimValues // only for plans deriving ISIM files
	csim    [10]byte    // EF.IMSI_M and EF.IMSI_T (DeriveCSIM)
	hasCSIM bool
	// consts are the per-template constants, set only when CompileWith
	// writes them into the template (writeConstants).
	consts map[SlotKind][]byte
}

// isimValues are the derived ISIM identities, kept out of encoded so that
// the common path does not clear them.
type isimValues struct {
	impi, impu, domain          [255]byte
	impiLen, impuLen, domainLen int // field lengths when set, else 0
}

// Apply writes one personalised UPP: the template with every slot for which
// v carries a value overwritten. Fixed-size fields are patched in place (no
// re-encoding); SMSC, SPN and MSISDN re-encode only the PE that holds them. The
// result is appended to dst[:0] (pass a buffer of cap ≥ len(Template()) to
// avoid an allocation) and returned. Apply is safe for concurrent use.
//
// Values are checked before anything is written; an error names the field
// and, where relevant, the slot's PE but never contains the secret itself.
func (pl *Plan) Apply(v *Values, dst []byte) ([]byte, error) {
	var e encoded
	if err := pl.encode(v, &e); err != nil {
		return nil, err
	}
	var shiftBuf [16]shift // enough for the rewrites of a TS.48 plan; more spill to the heap
	shifts := shiftBuf[:0]
	out := dst[:0]
	active := false
	for i := range pl.vars {
		if e.value(pl.vars[i].kind) != nil {
			active = true
			break
		}
	}
	if !active {
		out = append(out, pl.tmpl...)
	} else {
		out, shifts = pl.rewriteVars(&e, out, shifts)
	}
	for i := range pl.slots {
		s := &pl.slots[i]
		if !s.Fixed {
			continue
		}
		off := s.Offset
		for _, sh := range shifts {
			if s.Offset >= sh.at {
				off += sh.delta
			}
		}
		w := out[off : off+s.Len]
		switch s.Kind {
		case SlotHeaderICCID:
			if e.hasICCID {
				copy(w, e.iccid[:])
			}
		case SlotAlgorithm:
			if e.algo != 0 {
				w[0] = e.algo
			}
		case SlotK:
			copy(w, v.K)
		case SlotOPc:
			copy(w, v.OPc)
		case SlotPIN:
			for j := 0; j < e.npin; j++ {
				if e.pinRef[j] == s.KeyRef {
					copy(w, e.pinVal[j][:])
				}
			}
		case SlotPUK:
			switch {
			case s.KeyRef == 0x01 && e.hasPUK1:
				copy(w, e.puk1[:])
			case s.KeyRef == 0x81 && e.hasPUK2:
				copy(w, e.puk2[:])
			}
		case SlotSDKey:
			for j := range v.SDKeys {
				k := &v.SDKeys[j]
				if k.KVN == s.KVN && k.ID == s.KeyID && k.SD == s.SD {
					copy(w, k.Key)
				}
			}
		default: // file contents, whole or one piece
			if val := e.value(s.Kind); val != nil {
				copy(w, val[s.From:s.From+s.Len])
			}
		}
	}
	return out, nil
}

// value returns the encoded value of a file slot kind, nil when the record
// does not set it.
func (e *encoded) value(k SlotKind) []byte {
	switch k {
	case SlotEFICCID:
		if e.hasICCID {
			return e.efICCID[:]
		}
	case SlotIMSI:
		if e.hasIMSI {
			return e.imsi[:]
		}
	case SlotACC:
		if e.hasIMSI {
			return e.acc[:]
		}
	case SlotSMSC:
		if e.smscLen > 0 {
			return e.smsc[:e.smscLen]
		}
	case SlotSPN:
		if e.hasSPN {
			return e.spn[:]
		}
	case SlotMSISDN:
		if e.msisdnLen > 0 {
			return e.msisdn[:e.msisdnLen]
		}
	case SlotAD:
		if e.hasAD {
			return e.ad[:]
		}
	case SlotEHPLMN, SlotHPLMNwAcT:
		if e.hasPLMN {
			return e.plmn[:]
		}
	case SlotIMPI:
		if e.isim != nil && e.isim.impiLen > 0 {
			return e.isim.impi[:e.isim.impiLen]
		}
	case SlotIMPU:
		if e.isim != nil && e.isim.impuLen > 0 {
			return e.isim.impu[:e.isim.impuLen]
		}
	case SlotDomain:
		if e.isim != nil && e.isim.domainLen > 0 {
			return e.isim.domain[:e.isim.domainLen]
		}
	case SlotIMSIM, SlotIMSIT:
		if e.hasCSIM {
			return e.csim[:]
		}
	default:
		if e.consts != nil {
			return e.consts[k]
		}
	}
	return nil
}

// minDigits codes 3 (or 2) decimal digits as 10 (7) bits (3GPP2 C.S0005 §2.3.1.1:
// each digit d as d, 0 as 10; then 100·d1 + 10·d2 + d3 − 111).
func minDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		d := int(s[i] - '0')
		if d == 0 {
			d = 10
		}
		n = n*10 + d
	}
	if len(s) == 2 {
		return n - 11
	}
	return n - 111
}

// encodeIMSIM codes a 15-digit IMSI as EF.IMSI_M/EF.IMSI_T content
// (C.S0065 §5.2.2, C.S0023 §3.4.2): byte 1 class 0; bytes 2–3 IMSI_S2
// (digits 6–8) and 4–6 IMSI_S1 (digits 9–15: 10 bits for 9–11, 4 bits
// for 12 (0 as 10), 10 bits for 13–15), little-endian; byte 7
// IMSI_11_12 (digits 4–5); byte 8 programmed (bit 8), address number 0;
// bytes 9–10 the MCC (digits 1–3), little-endian.
func encodeIMSIM(dst *[10]byte, imsi string) {
	s2 := minDigits(imsi[5:8])
	d := int(imsi[11] - '0')
	if d == 0 {
		d = 10
	}
	s1 := minDigits(imsi[8:11])<<14 | d<<10 | minDigits(imsi[12:15])
	mcc := minDigits(imsi[0:3])
	*dst = [10]byte{0x00, byte(s2), byte(s2 >> 8), byte(s1), byte(s1 >> 8), byte(s1 >> 16),
		byte(minDigits(imsi[3:5])), 0x80, byte(mcc), byte(mcc >> 8)}
}

// encodeDerived computes the fields derived from the options and the
// record's IMSI (Options.HomePLMN, Derived).
func (pl *Plan) encodeDerived(v *Values, e *encoded) error {
	mnc := pl.opts.mncLen()
	if mnc == 0 {
		return nil
	}
	if pl.kinds[SlotAD] {
		e.ad[0], e.hasAD = byte(mnc), true
	}
	if v.IMSI.IsZero() {
		return nil
	}
	imsi := v.IMSI.String()
	if len(imsi) < 3+mnc+1 {
		return valueErr("IMSI", "%d digits: no MSIN after a %d-digit MNC", len(imsi), mnc)
	}
	if pl.kinds[SlotIMSIM] || pl.kinds[SlotIMSIT] {
		if len(imsi) != 15 {
			return valueErr("IMSI", "%d digits: the CSIM's IMSI_M/IMSI_T are derived from 15-digit IMSIs only (turn the derivation off with template.Options.NoDerive DeriveCSIM)", len(imsi))
		}
		encodeIMSIM(&e.csim, imsi)
		e.hasCSIM = true
	}
	if pl.kinds[SlotEHPLMN] || pl.kinds[SlotHPLMNwAcT] {
		d := func(i int) byte { return imsi[i] - '0' }
		e.plmn[0] = d(1)<<4 | d(0)
		e.plmn[1] = 0xF0 | d(2)
		if mnc == 3 {
			e.plmn[1] = d(5)<<4 | d(2)
		}
		e.plmn[2] = d(4)<<4 | d(3)
		e.hasPLMN = true
	}
	if !pl.kinds[SlotIMPI] && !pl.kinds[SlotIMPU] && !pl.kinds[SlotDomain] {
		return nil
	}
	d := &isimValues{}
	e.isim = d
	if pl.kinds[SlotIMPI] {
		d.impiLen = pl.fieldLen[SlotIMPI]
		ims(d.impi[:d.impiLen], "", imsi, imsi[:3], imsi[3:3+mnc])
	}
	if pl.kinds[SlotIMPU] {
		d.impuLen = pl.fieldLen[SlotIMPU]
		ims(d.impu[:d.impuLen], "sip:", imsi, imsi[:3], imsi[3:3+mnc])
	}
	if pl.kinds[SlotDomain] {
		d.domainLen = pl.fieldLen[SlotDomain]
		ims(d.domain[:d.domainLen], "", "", imsi[:3], imsi[3:3+mnc])
	}
	return nil
}

// ims writes an ISIM identity as the TLV 80 len UTF-8 (TS 31.103
// §4.2.2–4), FF padded to len(dst): prefix + user + "@" (when user is set)
// + "ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org" with the MNC padded to 3
// digits (TS 23.003 §13.2–13.4B). Compile checked that the longest value
// fits dst.
func ims(dst []byte, prefix, user, mcc, mnc string) {
	b := dst[:2]
	b = append(b, prefix...)
	if user != "" {
		b = append(b, user...)
		b = append(b, '@')
	}
	b = append(b, "ims.mnc"...)
	if len(mnc) == 2 {
		b = append(b, '0')
	}
	b = append(b, mnc...)
	b = append(b, ".mcc"...)
	b = append(b, mcc...)
	b = append(b, ".3gppnetwork.org"...)
	dst[0], dst[1] = 0x80, byte(len(b)-2)
	for i := len(b); i < len(dst); i++ {
		dst[i] = 0xFF
	}
}

// checkCode checks a code in card form by esim's rules for its kind; the
// error names the field, never the code.
func checkCode(field string, kind esim.CodeKind, code []byte) error {
	if err := kind.Check(code); err != nil {
		return valueErr(field, "%s", esim.Reason(err))
	}
	return nil
}

// shift records that template offsets ≥ at move by delta in the output.
type shift struct{ at, delta int }

// encode validates v against the plan and encodes it into e.
func (pl *Plan) encode(v *Values, e *encoded) error {
	e.consts = v.consts
	if !v.ICCID.IsZero() {
		e.iccid = v.ICCID.BCD()
		e.efICCID, e.hasICCID = esim.SwapNibbles(e.iccid), true
	}
	if !v.IMSI.IsZero() {
		e.imsi, e.acc, e.hasIMSI = v.IMSI.EF(), v.IMSI.ACC(), true
	}
	if v.Algorithm != esim.AlgorithmUnset {
		if !v.Algorithm.Valid() {
			return valueErr("Algorithm", "unknown algorithm %d", uint8(v.Algorithm))
		}
		if !pl.kinds[SlotAlgorithm] {
			return pl.noSlot("Algorithm")
		}
		if !pl.algos[v.Algorithm] {
			return &Error{PE: -1, Offset: -1, Field: "Algorithm", Err: fmt.Errorf("%s is not among the eUICC-Mandatory-services of the template header (switch the template to it: template.Options.Algorithm): %w: %w",
				v.Algorithm, ErrUndeclaredAlgorithm, ErrValue)}
		}
		e.algo = byte(v.Algorithm)
	}
	if err := pl.checkSecret("K", v.K, SlotK); err != nil {
		return err
	}
	if err := pl.checkSecret("OPc", v.OPc, SlotOPc); err != nil {
		return err
	}
	pin := func(field string, code []byte, ref int, kind esim.CodeKind) error {
		if code == nil {
			return nil
		}
		if !pl.pins[ref] {
			return pl.noSlot(field)
		}
		if err := checkCode(field, kind, code); err != nil {
			return err
		}
		e.pinRef[e.npin] = ref
		copy(e.pinVal[e.npin][:], code)
		e.npin++
		return nil
	}
	if err := pin("PIN1", v.PIN1, 0x01, esim.PIN); err != nil {
		return err
	}
	if err := pin("PIN2", v.PIN2, 0x81, esim.PIN); err != nil {
		return err
	}
	if err := pin("ADM1", v.ADM1, admRef(1), esim.ADM); err != nil {
		return err
	}
	if err := pin("ADM2", v.ADM2, admRef(2), esim.ADM); err != nil {
		return err
	}
	for i, code := range v.OtherADM {
		if code == nil {
			continue
		}
		if err := pin(fmt.Sprintf("ADM%d", i+3), code, admRef(i+3), esim.ADM); err != nil {
			return err
		}
	}
	if v.PUK1 != nil {
		if !pl.puks[0x01] {
			return pl.noSlot("PUK1")
		}
		if err := checkCode("PUK1", esim.PUK, v.PUK1); err != nil {
			return err
		}
		copy(e.puk1[:], v.PUK1)
		e.hasPUK1 = true
	}
	if v.PUK2 != nil {
		if !pl.puks[0x81] {
			return pl.noSlot("PUK2")
		}
		if err := checkCode("PUK2", esim.PUK, v.PUK2); err != nil {
			return err
		}
		copy(e.puk2[:], v.PUK2)
		e.hasPUK2 = true
	}
	for i := range v.SDKeys {
		k := &v.SDKeys[i]
		found := false
		for j := range pl.slots {
			s := &pl.slots[j]
			if s.Kind != SlotSDKey || s.KVN != k.KVN || s.KeyID != k.ID || s.SD != k.SD {
				continue
			}
			if len(k.Key) != s.Len {
				return &Error{PE: s.PE, Type: s.PEType.String(), Offset: s.Offset, Field: s.Name(),
					Err: fmt.Errorf("key is %d bytes, the template's is %d: %w", len(k.Key), s.Len, ErrValue)}
			}
			found = true
		}
		if !found {
			return pl.noSlot(fmt.Sprintf("SDKeys[%d] (SD#%d KVN 0x%02X ID 0x%02X)", i, k.SD, k.KVN, k.ID))
		}
	}
	if v.SMSC != "" {
		recLen, err := pl.recordLength(SlotSMSC, "SMSC")
		if err != nil {
			return err
		}
		if err := encodeSMSP(e.smsc[:recLen], v.SMSC); err != nil {
			return err
		}
		e.smscLen = recLen
	}
	if v.MSISDN != "" {
		recLen, err := pl.recordLength(SlotMSISDN, "MSISDN")
		if err != nil {
			return err
		}
		if err := encodeMSISDN(e.msisdn[:recLen], v.MSISDN); err != nil {
			return err
		}
		e.msisdnLen = recLen
	}
	if err := pl.encodeDerived(v, e); err != nil {
		return err
	}
	if v.SPN != "" {
		if !pl.kinds[SlotSPN] {
			return pl.noSlot("SPN")
		}
		if err := encodeSPN(&e.spn, v.SPN, v.SPNDisplayCondition); err != nil {
			return err
		}
		e.hasSPN = true
	}
	return nil
}

// recordLength returns the record length of a kind's slots (every
// USIM's EF.SMSP, say; Compile checked that they agree).
func (pl *Plan) recordLength(kind SlotKind, field string) (int, error) {
	if !pl.kinds[kind] {
		return 0, pl.noSlot(field)
	}
	return pl.fieldLen[kind], nil
}

func (pl *Plan) noSlot(field string) error {
	return &Error{PE: -1, Offset: -1, Field: field, Err: ErrNoSlot}
}

// checkSecret verifies that a K/OPc value fits every slot of its kind.
func (pl *Plan) checkSecret(field string, val []byte, kind SlotKind) error {
	if val == nil {
		return nil
	}
	found := false
	for i := range pl.slots {
		s := &pl.slots[i]
		if s.Kind != kind {
			continue
		}
		found = true
		if len(val) != s.Len {
			return &Error{PE: s.PE, Type: s.PEType.String(), Offset: s.Offset, Field: field,
				Err: fmt.Errorf("value is %d bytes, the template's is %d: %w", len(val), s.Len, ErrValue)}
		}
	}
	if !found {
		return pl.noSlot(field)
	}
	return nil
}

// edit replaces the template range [start, end) in the output: with a
// TLV header of a new length (hdr ≥ 0) or with a rewritten element (vs ≥ 0).
type edit struct {
	start, end int32
	hdr, vs    int16
}

// rewriteVars copies the template into out, rewriting the elements of the
// rewrite slots the record sets and the lengths of the TLVs around them. It
// returns the shifts that move the fixed slots after each edit.
func (pl *Plan) rewriteVars(e *encoded, out []byte, shifts []shift) ([]byte, []shift) {
	// grow[h] is the change of TLV h's content length; touched[h] says a
	// rewrite lies inside it.
	var growBuf [16]int
	var touchedBuf [16]bool
	grow, touched := growBuf[:0], touchedBuf[:0]
	if len(pl.hdrs) > len(growBuf) {
		grow, touched = make([]int, len(pl.hdrs)), make([]bool, len(pl.hdrs))
	} else {
		grow, touched = growBuf[:len(pl.hdrs)], touchedBuf[:len(pl.hdrs)]
	}
	var editBuf [24]edit
	edits := editBuf[:0]
	for i := range pl.vars {
		vs := &pl.vars[i]
		if e.value(vs.kind) == nil {
			continue
		}
		edits = append(edits, edit{start: int32(vs.rw.start), end: int32(vs.rw.end), hdr: -1, vs: int16(i)})
		for _, h := range vs.hdrs {
			grow[h] += vs.growth
			touched[h] = true
		}
	}
	// A TLV's length also changes when the header of a TLV inside it
	// changes size (a length crossing 127 or 255): pl.hdrs runs from the
	// innermost (highest offset) outwards, so inner deltas are known first.
	for h := range pl.hdrs {
		if !touched[h] {
			continue
		}
		hi := &pl.hdrs[h]
		for k := 0; k < h; k++ {
			hk := &pl.hdrs[k]
			if touched[k] && hk.start >= hi.valStart && hk.end <= hi.end {
				grow[h] += lenSize(hk.end-hk.valStart+grow[k]) - lenSize(hk.end-hk.valStart)
			}
		}
		edits = append(edits, edit{start: int32(hi.start), end: int32(hi.valStart), hdr: int16(h), vs: -1})
	}
	// Insertion sort: a handful of edits, and no allocation.
	for i := 1; i < len(edits); i++ {
		for j := i; j > 0 && edits[j].start < edits[j-1].start; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	pos := 0
	for _, ed := range edits {
		out = append(out, pl.tmpl[pos:int(ed.start)]...)
		before := len(out)
		if ed.hdr >= 0 {
			h := &pl.hdrs[ed.hdr]
			out = h.tag.Append(out)
			out = appendLen(out, h.end-h.valStart+grow[ed.hdr])
		} else {
			vs := &pl.vars[ed.vs]
			out = vs.rw.appendTo(out, e.value(vs.kind))
		}
		if d := len(out) - before - int(ed.end-ed.start); d != 0 {
			shifts = append(shifts, shift{int(ed.end), d})
		}
		pos = int(ed.end)
	}
	out = append(out, pl.tmpl[pos:]...)
	return out, shifts
}

// encodeSMSP fills rec (one EF.SMSP record) with an SMS service centre
// address: alpha identifier empty (FF), parameter indicators 0xFD (only
// the SC address present), TP-DA empty, SC address (length, TON/NPI 0x91
// international E.164 with '+', else 0x81, swapped BCD), PID/DCS/VP FF.
func encodeSMSP(rec []byte, smsc string) error {
	digits := smsc
	ton := byte(0x81)
	if len(digits) > 0 && digits[0] == '+' {
		digits, ton = digits[1:], 0x91
	}
	if err := checkDigits("SMSC", digits, 1, 20); err != nil {
		return err
	}
	for i := range rec {
		rec[i] = 0xFF
	}
	b := rec[len(rec)-28:]
	b[0] = 0xFD
	sc := b[13:25]
	nb := (len(digits) + 1) / 2
	sc[0] = byte(1 + nb)
	sc[1] = ton
	for i := 0; i < nb; i++ {
		sc[2+i] = nibble(digits, 2*i+1)<<4 | nibble(digits, 2*i)
	}
	return nil
}

// DecodeSMSP returns the service centre address of an EF.SMSP record
// ("+" prefixed when international), or "" when the record marks it absent.
func DecodeSMSP(rec []byte) (string, error) {
	if len(rec) < 28 {
		return "", fmt.Errorf("EF.SMSP record of %d bytes: %w", len(rec), ErrValue)
	}
	b := rec[len(rec)-28:]
	if b[0]&0x02 != 0 {
		return "", nil
	}
	return decodeAddress(b[13:25])
}

// encodeMSISDN fills rec (one EF.MSISDN record): alpha identifier empty
// (FF), then length of the BCD number plus TON/NPI, TON/NPI (0x91 with a
// leading '+', else 0x81), up to 10 bytes of swapped BCD digits F padded,
// capability/configuration and extension identifiers FF.
func encodeMSISDN(rec []byte, msisdn string) error {
	digits := msisdn
	ton := byte(0x81)
	if len(digits) > 0 && digits[0] == '+' {
		digits, ton = digits[1:], 0x91
	}
	if err := checkDigits("MSISDN", digits, 1, 20); err != nil {
		return err
	}
	for i := range rec {
		rec[i] = 0xFF
	}
	b := rec[len(rec)-14:]
	nb := (len(digits) + 1) / 2
	b[0] = byte(1 + nb)
	b[1] = ton
	for i := 0; i < nb; i++ {
		b[2+i] = nibble(digits, 2*i+1)<<4 | nibble(digits, 2*i)
	}
	return nil
}

// DecodeMSISDN returns the number of an EF.MSISDN record ("+" prefixed
// when international), or "" for an empty record.
func DecodeMSISDN(rec []byte) (string, error) {
	if len(rec) < 14 {
		return "", fmt.Errorf("EF.MSISDN record of %d bytes: %w", len(rec), ErrValue)
	}
	return decodeAddress(rec[len(rec)-14 : len(rec)-2])
}

// decodeAddress decodes a length byte (of TON/NPI + digits), TON/NPI and
// swapped BCD digits; an all-FF address is empty.
func decodeAddress(a []byte) (string, error) {
	n := int(a[0])
	if n == 0xFF {
		return "", nil
	}
	if n < 1 || n > len(a)-1 {
		return "", fmt.Errorf("address length %d: %w", n, ErrValue)
	}
	out := []byte{}
	if a[1]&0x70 == 0x10 {
		out = append(out, '+')
	}
	for _, c := range a[2 : 1+n] {
		for _, d := range [2]byte{c & 0x0F, c >> 4} {
			if d == 0xF {
				continue
			}
			if d > 9 {
				return "", fmt.Errorf("address has a non-decimal nibble: %w", ErrValue)
			}
			out = append(out, '0'+d)
		}
	}
	return string(out), nil
}

// gsmChars maps the characters of the GSM 03.38 default alphabet that SPNs
// use to their codes; characters not listed make the SPN UCS-2 coded.
var gsmChars = func() map[rune]byte {
	m := map[rune]byte{'@': 0x00, '$': 0x02, '_': 0x11, ' ': 0x20}
	for c := rune('!'); c <= '?'; c++ {
		if c != '$' {
			m[c] = byte(c)
		}
	}
	for c := rune('A'); c <= 'Z'; c++ {
		m[c] = byte(c)
	}
	for c := rune('a'); c <= 'z'; c++ {
		m[c] = byte(c)
	}
	return m
}()

// encodeSPN builds EF.SPN: display condition, then 16 bytes of name in the
// GSM default alphabet (unpacked), or UCS-2 (0x80 + UTF-16BE) when the
// name has other characters; padded with FF.
func encodeSPN(out *[17]byte, name string, cond byte) error {
	for i := range out {
		out[i] = 0xFF
	}
	out[0] = cond
	gsm := true
	n := 0
	for _, r := range name {
		if _, ok := gsmChars[r]; !ok {
			gsm = false
		}
		n++
	}
	if gsm {
		if n > 16 {
			return valueErr("SPN", "%d characters, at most 16 fit", n)
		}
		i := 1
		for _, r := range name {
			out[i] = gsmChars[r]
			i++
		}
		return nil
	}
	u := utf16.Encode([]rune(name))
	if len(u) > 7 {
		return valueErr("SPN", "%d UCS-2 characters, at most 7 fit", len(u))
	}
	out[1] = 0x80
	for i, c := range u {
		out[2+2*i], out[3+2*i] = byte(c>>8), byte(c)
	}
	return nil
}

// DecodeSPN returns the display condition and name of EF.SPN content.
func DecodeSPN(b []byte) (byte, string, error) {
	if len(b) < 2 {
		return 0, "", fmt.Errorf("EF.SPN of %d bytes: %w", len(b), ErrValue)
	}
	cond, name := b[0], b[1:]
	if name[0] == 0x80 {
		var u []uint16
		for i := 1; i+1 < len(name); i += 2 {
			c := uint16(name[i])<<8 | uint16(name[i+1])
			if c == 0xFFFF {
				break
			}
			u = append(u, c)
		}
		return cond, string(utf16.Decode(u)), nil
	}
	rev := map[byte]rune{}
	for r, c := range gsmChars {
		rev[c] = r
	}
	var out []rune
	for _, c := range name {
		if c == 0xFF {
			break
		}
		r, ok := rev[c]
		if !ok {
			return 0, "", fmt.Errorf("EF.SPN character 0x%02X outside the supported GSM subset: %w", c, ErrValue)
		}
		out = append(out, r)
	}
	return cond, string(out), nil
}
