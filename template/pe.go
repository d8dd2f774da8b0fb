package template

import (
	"fmt"

	"github.com/perso-esim/perso/esim"

	"github.com/perso-esim/perso/esim/tlv"
)

// PEType is the ProfileElement CHOICE alternative.
type PEType uint8

// ProfileElement types, in CHOICE order. PEUnknown is any other top-level
// tag (vendor extensions, future versions): kept as a raw TLV.
const (
	PEUnknown PEType = iota
	PEHeader
	PEGenericFileManagement
	PEPINCodes
	PEPUKCodes
	PEAKAParameter
	PECDMAParameter
	PESecurityDomain
	PERFM
	PEApplication
	PENonStandard
	PEEnd
	PERFU1
	PERFU2
	PERFU3
	PERFU4
	PERFU5
	PEMF
	PECD
	PETelecom
	PEUSIM
	PEOptUSIM
	PEISIM
	PEOptISIM
	PEPhonebook
	PEGSMAccess
	PECSIM
	PEOptCSIM
	PEEAP
	PEDF5GS
	PEDFSAIP
	PEDFSNPN
	PEDF5GProSe
	PEIoT
	PEOptIoT
	numPETypes
)

var peNames = [numPETypes]string{
	"unknown", "header", "genericFileManagement", "pinCodes", "pukCodes", "akaParameter",
	"cdmaParameter", "securityDomain", "rfm", "application", "nonStandard", "end",
	"rfu1", "rfu2", "rfu3", "rfu4", "rfu5",
	"mf", "cd", "telecom", "usim", "opt-usim", "isim", "opt-isim", "phonebook", "gsm-access",
	"csim", "opt-csim", "eap", "df-5gs", "df-saip", "df-snpn", "df-5gprose", "iot", "opt-iot",
}

func (t PEType) String() string {
	if t < numPETypes {
		return peNames[t]
	}
	return fmt.Sprintf("PEType(%d)", uint8(t))
}

// Tag is the context-specific constructed tag of the CHOICE alternative.
func (t PEType) Tag() Tag {
	switch {
	case t >= PEHeader && t <= PERFU5:
		return Tag(0xA0 + int(t-PEHeader))
	case t >= PEMF && t <= PEDFSNPN:
		return Tag(0xB0 + int(t-PEMF))
	case t >= PEDF5GProSe && t <= PEOptIoT:
		return Tag(0xBF1F + int(t-PEDF5GProSe))
	}
	return 0
}

// IsFileSystem reports whether the PE creates files from a TCA template
// (mf, usim, telecom …).
func (t PEType) IsFileSystem() bool { return t >= PEMF && t <= PEOptIoT }

// IsNAA reports whether the PE starts a network access application
// instance (pySim groups PEs into NAA instances at these).
func (t PEType) IsNAA() bool { return t == PEMF || t == PEUSIM || t == PEISIM || t == PECSIM }

func peTypeOf(tag Tag) PEType {
	switch {
	case tag >= 0xA0 && tag <= 0xAF:
		return PEHeader + PEType(tag-0xA0)
	case tag >= 0xB0 && tag <= 0xBE:
		return PEMF + PEType(tag-0xB0)
	case tag >= 0xBF1F && tag <= 0xBF21:
		return PEDF5GProSe + PEType(tag-0xBF1F)
	}
	return PEUnknown
}

// PE is one decoded ProfileElement. Node is the full element tree; exactly
// one typed view matching Type is set (none for PEUnknown, rfu and end).
type PE struct {
	Index    int    // position in the profile, 0 = header
	Offset   int    // absolute offset in the decoded input
	Type     PEType // PEUnknown for tags this package does not know
	Node     *Node  // the element; opaque (raw content) for PEUnknown
	Mandated bool   // PEHeader.mandated present
	ID       int    // PEHeader.identification; -1 when absent (header PE, unknown PEs without one)

	Header      *ProfileHeader
	FS          *FileSystem // mf, usim, isim, csim, telecom, opt-*, df-* …
	AKA         *AKAParameter
	PINs        *PINCodes
	PUKs        *PUKCodes
	SD          *SecurityDomain
	RFM         *RFM
	Application *Application
	GFM         *GenericFileManagement
	CDMA        *CDMAParameter
	NonStandard *NonStandard
}

// Size is the encoded size of the PE in the source.
func (pe *PE) Size() int { return pe.Node.End() - pe.Node.Offset }

// Profile is a fully decoded UPP: the ordered list of its PEs.
type Profile struct {
	PEs []*PE
	src []byte // private copy of the input; nodes point into it
}

// Decode parses a UPP (the concatenation of DER ProfileElements). Every
// known PE is decoded into a typed view; unknown top-level elements are kept
// as raw TLVs. Decode checks DER syntax and the ASN.1 structure of known
// PEs; Validate adds the profile-level rules (order, identification
// numbers, mandatory services). The input is copied.
func Decode(der []byte) (*Profile, error) {
	src := append([]byte(nil), der...)
	p := &Profile{src: src, PEs: make([]*PE, 0, 32)}
	// A TS.48 profile has about one tree element per 14 bytes (FCPs kept
	// opaque): size the first node chunk for the whole profile.
	arena := &nodeArena{next: len(src)/12 + 16}
	tp := &treeParser{b: src, arena: arena}
	for off, i := 0, 0; off < len(src); i++ {
		t, hl, vl, err := tlv.ReadHeader(src, off, len(src))
		if err != nil {
			terr := headerErr(err)
			return nil, errAt(i, peTypeOf(terr.Tag), terr.Offset, "", terr.Err)
		}
		typ := peTypeOf(t)
		pe := &PE{Index: i, Offset: off, Type: typ, ID: -1}
		if typ == PEUnknown {
			n := arena.node()
			n.Tag, n.Offset, n.HeaderLen, n.SourceLen = t, off, uint8(hl), int32(vl)
			n.Value = src[off+hl : off+hl+vl : off+hl+vl]
			n.Opaque = t.Constructed()
			pe.Node = n
			pe.peekHeader()
		} else {
			switch {
			case typ.IsFileSystem(): // PE (1) → File (2) → fileDescriptor (3)
				tp.opaqueDepth, tp.opaqueTag = 3, 0xA1
			case typ == PEGenericFileManagement: // PE → A1 → 30 → createFCP (4)
				tp.opaqueDepth, tp.opaqueTag = 4, 0x62
			default:
				tp.opaqueDepth = 0
			}
			n, terr := tp.parseNode(off, len(src), 1)
			if terr != nil {
				return nil, errAt(i, typ, terr.Offset, "", terr.Err)
			}
			pe.Node = n
			if err := pe.decode(); err != nil {
				return nil, err
			}
		}
		p.PEs = append(p.PEs, pe)
		off += hl + vl
	}
	if len(p.PEs) == 0 {
		return nil, &Error{PE: -1, Offset: 0, Err: fmt.Errorf("empty profile: %w", ErrTruncated)}
	}
	return p, nil
}

// Encode returns the DER encoding of the profile: every PE re-encoded from
// its tree. For a profile decoded from DER and not edited the result is
// byte-identical to the input.
func (p *Profile) Encode() []byte {
	size := 0
	for _, pe := range p.PEs {
		size += pe.Node.measure()
	}
	out := make([]byte, 0, size)
	for _, pe := range p.PEs {
		out = pe.Node.appendEncoded(out)
	}
	return out
}

// First returns the first PE of the given type, or nil.
func (p *Profile) First(t PEType) *PE {
	for _, pe := range p.PEs {
		if pe.Type == t {
			return pe
		}
	}
	return nil
}

// All returns every PE of the given type, in profile order.
func (p *Profile) All(t PEType) []*PE {
	var out []*PE
	for _, pe := range p.PEs {
		if pe.Type == t {
			out = append(out, pe)
		}
	}
	return out
}

// Header returns the ProfileHeader view, or nil when the first PE is not a
// header.
func (p *Profile) Header() *ProfileHeader {
	if len(p.PEs) == 0 {
		return nil
	}
	return p.PEs[0].Header
}

// ICCID returns the header ICCID, the zero ICCID if the profile has no
// header or its ICCID cannot be decoded. It is taken as the profile holds
// it: its Luhn digit is not checked (esim.ICCID.LuhnValid says).
func (p *Profile) ICCID() esim.ICCID {
	h := p.Header()
	if h == nil {
		return esim.ICCID{}
	}
	c, _ := esim.ICCIDFromBCD(h.ICCID)
	return c
}

// IMSI returns the IMSI of the first usim (or iot) PE's EF.IMSI, the zero
// IMSI when there is none or it cannot be decoded.
func (p *Profile) IMSI() esim.IMSI {
	for _, pe := range p.PEs {
		if pe.Type == PEUSIM || pe.Type == PEIoT {
			if f := pe.FS.File("ef-imsi"); f != nil {
				m, err := esim.IMSIFromEF(f.Content())
				if err == nil {
					return m
				}
			}
			return esim.IMSI{}
		}
	}
	return esim.IMSI{}
}

// peekHeader reads a PEHeader from an opaque PE when its content happens to
// start with one, so that Validate can check identification numbers of
// vendor PEs too. Errors are ignored: the PE is kept raw either way.
func (pe *PE) peekHeader() {
	if !pe.Node.Opaque {
		return
	}
	v := pe.Node.Value
	t, hl, vl, err := tlv.ReadHeader(v, 0, len(v))
	if err != nil || t != 0xA0 {
		return
	}
	tp := &treeParser{b: v, arena: &nodeArena{}}
	n, perr := tp.parseNode(0, hl+vl, 1) // *tlvError: keep it out of err (typed nil)
	if perr != nil {
		return
	}
	if mandated, id, ok := parsePEHeader(n); ok {
		pe.Mandated, pe.ID = mandated, id
	}
}

// parsePEHeader reads `A0 { [80 00] 81 id }`.
func parsePEHeader(n *Node) (mandated bool, id int, ok bool) {
	if n == nil || n.Tag != 0xA0 {
		return false, -1, false
	}
	k := n.Children
	i := 0
	if i < len(k) && k[i].Tag == 0x80 {
		if len(k[i].Value) != 0 {
			return false, -1, false
		}
		mandated = true
		i++
	}
	if i >= len(k) || k[i].Tag != 0x81 {
		return false, -1, false
	}
	v, ok := parseUint(k[i].Value, 2)
	if !ok || v > 0x7FFF || i+1 != len(k) {
		return false, -1, false
	}
	return mandated, v, true
}

// parseUint decodes a non-negative DER INTEGER of at most max content
// bytes (plus a leading 00 when the top bit is set).
func parseUint(v []byte, max int) (int, bool) {
	if len(v) == 0 || v[0]&0x80 != 0 {
		return 0, false
	}
	if len(v) > 1 && v[0] == 0 && v[1]&0x80 == 0 {
		return 0, false // not minimal
	}
	if v[0] == 0 {
		v = v[1:]
	}
	if len(v) > max {
		return 0, false
	}
	n := 0
	for _, c := range v {
		n = n<<8 | int(c)
	}
	return n, true
}

// appendUint encodes a non-negative INTEGER's content octets minimally.
func appendUint(dst []byte, n int) []byte {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte(n)
		n >>= 8
		if n == 0 {
			break
		}
	}
	if b[i]&0x80 != 0 {
		i--
		b[i] = 0
	}
	return append(dst, b[i:]...)
}
