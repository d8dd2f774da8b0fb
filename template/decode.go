package template

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/perso-esim/perso/esim"

	"github.com/perso-esim/perso/esim/tlv"
)

// cursor walks the components of a SEQUENCE in order. Its path (for
// error messages) is kept in pieces and joined only when an error is built.
type cursor struct {
	pe     *PE
	parent *Node
	kids   []*Node
	i      int
	path   string
	sub    string
	sub2   string
}

func (pe *PE) cursor(n *Node, path string) cursor {
	return cursor{pe: pe, parent: n, kids: n.Children, path: path}
}

func (pe *PE) cursorAt(n *Node, path string, i int) cursor {
	return cursor{pe: pe, parent: n, kids: n.Children, path: path, i: i}
}

func (c *cursor) field(name string) string {
	s := c.path
	for _, part := range [3]string{c.sub, c.sub2, name} {
		switch {
		case part == "":
		case s == "":
			s = part
		default:
			s += "." + part
		}
	}
	return s
}

func (c *cursor) errf(n *Node, name, format string, args ...any) *Error {
	off := c.parent.Offset
	if n != nil {
		off = n.Offset
	}
	return structErr(c.pe.Index, c.pe.Type, off, c.field(name), format, args...)
}

// opt consumes the next component when it has tag t.
func (c *cursor) opt(t Tag) *Node {
	if c.i < len(c.kids) && c.kids[c.i].Tag == t {
		c.i++
		return c.kids[c.i-1]
	}
	return nil
}

// req consumes the next component, which must have tag t.
func (c *cursor) req(t Tag, name string) (*Node, error) {
	if n := c.opt(t); n != nil {
		return n, nil
	}
	if c.i < len(c.kids) {
		return nil, c.errf(c.kids[c.i], name, "expected %s (tag %s), found tag %s", name, t, c.kids[c.i].Tag)
	}
	return nil, c.errf(nil, name, "missing %s (tag %s)", name, t)
}

// reqLen is req plus an exact content length check.
func (c *cursor) reqLen(t Tag, name string, size int) (*Node, error) {
	n, err := c.req(t, name)
	if err != nil {
		return nil, err
	}
	if len(n.Value) != size {
		return nil, c.errf(n, name, "%d bytes, want %d", len(n.Value), size)
	}
	return n, nil
}

// optLen is opt plus a content length check (size -1 = any, min..max).
func (c *cursor) optLen(t Tag, name string, min, max int) (*Node, error) {
	n := c.opt(t)
	if n != nil && (len(n.Value) < min || len(n.Value) > max) {
		return nil, c.errf(n, name, "%d bytes, want %d..%d", len(n.Value), min, max)
	}
	return n, nil
}

// uint consumes an optional INTEGER component (def when absent).
func (c *cursor) uint(t Tag, name string, max, def int, required bool) (int, *Node, error) {
	var n *Node
	var err error
	if required {
		n, err = c.req(t, name)
		if err != nil {
			return 0, nil, err
		}
	} else if n = c.opt(t); n == nil {
		return def, nil, nil
	}
	v, ok := parseUint(n.Value, 4)
	if !ok || v > max {
		return 0, nil, c.errf(n, name, "not an INTEGER in 0..%d", max)
	}
	return v, n, nil
}

// done checks that no unconsumed component remains. EXTENSIBILITY IMPLIED
// lets later spec versions append components; they are accepted (and kept)
// when they are context-specific with a tag number of at least extMin. Pass
// extMin < 0 to accept none.
func (c *cursor) done(extMin int) error {
	for ; c.i < len(c.kids); c.i++ {
		k := c.kids[c.i]
		class, num := tagNumber(k.Tag)
		if extMin >= 0 && class == 0x80 && num >= extMin {
			continue
		}
		return c.errf(k, "", "unexpected element with tag %s", k.Tag)
	}
	return nil
}

// decode builds the typed view of a known PE.
func (pe *PE) decode() error {
	n := pe.Node
	if pe.Type >= PERFU1 && pe.Type <= PERFU5 {
		return nil // PE-Dummy: an empty SEQUENCE in this version; kept as a tree
	}
	if pe.Type != PEHeader {
		if len(n.Children) == 0 {
			return structErr(pe.Index, pe.Type, n.Offset, "", "missing PE header")
		}
		mandated, id, ok := parsePEHeader(n.Children[0])
		if !ok {
			return structErr(pe.Index, pe.Type, n.Children[0].Offset, "header", "malformed PEHeader (want A0 { [80 00] 81 identification })")
		}
		pe.Mandated, pe.ID = mandated, id
	}
	switch {
	case pe.Type == PEHeader:
		return pe.decodeHeader()
	case pe.Type.IsFileSystem():
		return pe.decodeFS()
	}
	switch pe.Type {
	case PEGenericFileManagement:
		return pe.decodeGFM()
	case PEPINCodes:
		return pe.decodePINs()
	case PEPUKCodes:
		return pe.decodePUKs()
	case PEAKAParameter:
		return pe.decodeAKA()
	case PECDMAParameter:
		return pe.decodeCDMA()
	case PESecurityDomain:
		return pe.decodeSD()
	case PERFM:
		return pe.decodeRFM()
	case PEApplication:
		return pe.decodeApplication()
	case PENonStandard:
		return pe.decodeNonStandard()
	case PEEnd:
		c := pe.cursorAt(n, "", 1)
		return c.done(1)
	}
	// rfu1..rfu5: PE-Dummy, kept as a tree.
	return nil
}

// ---------------------------------------------------------------- header

// ProfileHeader is the first PE of every profile.
type ProfileHeader struct {
	MajorVersion, MinorVersion int
	ProfileType                string
	ICCID                      []byte   // 10 bytes, plain BCD F-padded (esim.ICCIDFromBCD)
	POL                        []byte   // nil when absent
	MandatoryServices          []string // ServicesList flag names, in encoding order
	MandatoryGFSTE             []string // template OIDs, dotted
	ConnectivityParameters     []byte
	MandatoryAIDs              []AIDVersion

	iccid *Node
}

// AIDVersion is one eUICC-Mandatory-AIDs entry.
type AIDVersion struct{ AID, Version []byte }

// HasService reports whether the header lists a mandatory service.
func (h *ProfileHeader) HasService(name string) bool {
	for _, s := range h.MandatoryServices {
		if s == name {
			return true
		}
	}
	return false
}

func (pe *PE) decodeHeader() error {
	h := &ProfileHeader{}
	c := pe.cursor(pe.Node, "")
	var err error
	if h.MajorVersion, _, err = c.uint(0x80, "major-version", 255, 0, true); err != nil {
		return err
	}
	if h.MinorVersion, _, err = c.uint(0x81, "minor-version", 255, 0, true); err != nil {
		return err
	}
	if n := c.opt(0x82); n != nil {
		if !utf8.Valid(n.Value) || len(n.Value) == 0 || len(n.Value) > 100 {
			return c.errf(n, "profileType", "not a UTF8String of 1..100 bytes")
		}
		h.ProfileType = string(n.Value)
	}
	if h.iccid, err = c.reqLen(0x83, "iccid", 10); err != nil {
		return err
	}
	h.ICCID = h.iccid.Value
	if n := c.opt(0x84); n != nil {
		h.POL = n.Value
	}
	svc, err := c.req(0xA5, "eUICC-Mandatory-services")
	if err != nil {
		return err
	}
	for _, k := range svc.Children {
		class, num := tagNumber(k.Tag)
		if class != 0x80 || k.Tag.Constructed() || len(k.Value) != 0 {
			return structErr(pe.Index, pe.Type, k.Offset, "eUICC-Mandatory-services", "element %s is not a service flag (NULL)", k.Tag)
		}
		name := "service-" + strconv.Itoa(num)
		if num < len(mandatoryServices) {
			name = mandatoryServices[num]
		}
		h.MandatoryServices = append(h.MandatoryServices, name)
	}
	gf, err := c.req(0xA6, "eUICC-Mandatory-GFSTEList")
	if err != nil {
		return err
	}
	for _, k := range gf.Children {
		s, ok := oidString(k)
		if !ok {
			return structErr(pe.Index, pe.Type, k.Offset, "eUICC-Mandatory-GFSTEList", "not an OBJECT IDENTIFIER")
		}
		h.MandatoryGFSTE = append(h.MandatoryGFSTE, s)
	}
	if n := c.opt(0x87); n != nil {
		h.ConnectivityParameters = n.Value
	}
	if n := c.opt(0xA8); n != nil {
		for _, k := range n.Children {
			if k.Tag != 0x30 {
				return structErr(pe.Index, pe.Type, k.Offset, "eUICC-Mandatory-AIDs", "expected SEQUENCE, found tag %s", k.Tag)
			}
			kc := pe.cursor(k, "eUICC-Mandatory-AIDs")
			aid, err := kc.optLen(0x80, "aid", 5, 16)
			if err != nil {
				return err
			}
			if aid == nil {
				return kc.errf(k, "aid", "missing")
			}
			ver, err := kc.reqLen(0x81, "version", 2)
			if err != nil {
				return err
			}
			if err := kc.done(2); err != nil {
				return err
			}
			h.MandatoryAIDs = append(h.MandatoryAIDs, AIDVersion{aid.Value, ver.Value})
		}
	}
	c.opt(0xA9) // iotOptions: kept in the tree
	if err := c.done(10); err != nil {
		return err
	}
	pe.Header = h
	return nil
}

// oidString renders a universal OBJECT IDENTIFIER (06) or an implicitly
// tagged one in dotted form.
func oidString(n *Node) (string, bool) {
	if n.Tag.Constructed() {
		return "", false
	}
	v := n.Value
	if len(v) == 0 || v[len(v)-1]&0x80 != 0 {
		return "", false
	}
	var sb strings.Builder
	first := true
	for i := 0; i < len(v); {
		x := 0
		if v[i] == 0x80 {
			return "", false
		}
		for ; ; i++ {
			if x > 1<<24 {
				return "", false
			}
			x = x<<7 | int(v[i]&0x7F)
			if v[i]&0x80 == 0 {
				i++
				break
			}
		}
		if first {
			a := min(x/40, 2)
			sb.WriteString(strconv.Itoa(a))
			sb.WriteByte('.')
			sb.WriteString(strconv.Itoa(x - 40*a))
			first = false
			continue
		}
		sb.WriteByte('.')
		sb.WriteString(strconv.Itoa(x))
	}
	return sb.String(), true
}

// ------------------------------------------------------------ file system

// FileSystem is the view of a PE that creates files from a TCA template.
type FileSystem struct {
	TemplateID string // dotted OID
	Files      []File
}

// File is one File component: the template file it refers to and the
// commands for it.
type File struct {
	Name        string // ASN.1 component name ("ef-imsi"); "[n]" beyond the known list
	Node        *Node
	DoNotCreate bool
	FCP         *FCP    // the (first) fileDescriptor, nil when absent
	Fill        []*Node // fillFileOffset (82) and fillFileContent (83) items, in order
}

// File returns the named file of the PE, or nil.
func (fs *FileSystem) File(name string) *File {
	if fs == nil {
		return nil
	}
	for i := range fs.Files {
		if fs.Files[i].Name == name {
			return &fs.Files[i]
		}
	}
	return nil
}

// Content returns the explicit file bytes written contiguously from the
// start of the file by fillFileContent items (up to the first
// fillFileOffset), or nil when the template gives none.
func (f *File) Content() []byte {
	var out []byte
	for _, n := range f.Fill {
		if n.Tag != 0x83 {
			break
		}
		out = append(out, n.Value...)
	}
	return out
}

// FCP is a file control parameters template (fileDescriptor / createFCP).
// The decoder keeps an FCP as one opaque node (its content bytes, checked
// by Decode) rather than a subtree: FCPs are about two thirds of all the
// elements of a profile and are never personalised. The accessors read the
// fields on demand and return nil when a field is absent.
type FCP struct {
	Node *Node
}

// find returns the value of the first element with tag t in b.
func find(b []byte, t Tag) []byte {
	for off := 0; off < len(b); {
		tag, hl, vl, err := tlv.ReadHeader(b, off, len(b))
		if err != nil {
			return nil
		}
		if tag == t {
			return b[off+hl : off+hl+vl]
		}
		off += hl + vl
	}
	return nil
}

func (f *FCP) get(t Tag) []byte {
	if f == nil {
		return nil
	}
	return find(f.Node.Value, t)
}

func (f *FCP) prop(t Tag) []byte {
	if p := f.get(0xA5); p != nil {
		return find(p, t)
	}
	return nil
}

// FCP fields (nil when absent).
func (f *FCP) FileDescriptor() []byte     { return f.get(0x82) }
func (f *FCP) FileID() []byte             { return f.get(0x83) }
func (f *FCP) DFName() []byte             { return f.get(0x84) }
func (f *FCP) LCSI() []byte               { return f.get(0x8A) }
func (f *FCP) SecurityAttributes() []byte { return f.get(0x8B) }
func (f *FCP) EFFileSize() []byte         { return f.get(0x80) }
func (f *FCP) PinStatusTemplate() []byte  { return f.get(0xC6) }
func (f *FCP) ShortEFID() []byte          { return f.get(0x88) }
func (f *FCP) LinkPath() []byte           { return f.get(0xC7) }
func (f *FCP) FillPattern() []byte        { return f.prop(0xC1) }
func (f *FCP) RepeatPattern() []byte      { return f.prop(0xC2) }
func (f *FCP) MaximumFileSize() []byte    { return f.prop(0x86) }

// RecordLength returns the record length of a linear-fixed or cyclic EF
// from its file descriptor (bytes 3-4), or 0.
func (f *FCP) RecordLength() int {
	fd := f.FileDescriptor()
	if len(fd) < 4 {
		return 0
	}
	return int(fd[2])<<8 | int(fd[3])
}

type fcpField struct {
	tag      Tag
	name     string
	min, max int
}

var (
	fcpFields = [...]fcpField{
		{0x82, "fileDescriptor", 2, 4}, {0x83, "fileID", 2, 2}, {0x84, "dfName", 5, 16},
		{0x8A, "lcsi", 1, 1}, {0x8B, "securityAttributesReferenced", 1, 3}, {0x80, "efFileSize", 0, maxLength},
		{0xC6, "pinStatusTemplateDO", 0, maxLength}, {0x88, "shortEFID", 0, 1},
		{0xA5, "proprietaryEFInfo", 0, maxLength}, {0xC7, "linkPath", 0, 8},
	}
	propFields = [...]fcpField{
		{0xC0, "specialFileInformation", 1, 1}, {0xC1, "fillPattern", 1, 200}, {0xC2, "repeatPattern", 1, 200},
		{0x86, "maximumFileSize", 0, maxLength}, {0x84, "fileDetails", 1, 1},
	}
)

// walkFields checks that b[.. ] (absolute offset base) is a sequence of
// TLVs whose tags appear in fields, in that order, each at most once, with
// sizes in range. It returns the A5 value's range when present.
func (pe *PE) walkFields(b []byte, base int, fields []fcpField, field func(string) string) (int, int, error) {
	next, a5, a5base := 0, []byte(nil), -1
	for off := 0; off < len(b); {
		t, hl, vl, err := tlv.ReadHeaderFast(b, off, len(b))
		if err != nil {
			terr := headerErr(err)
			return 0, 0, errAt(pe.Index, pe.Type, base+terr.Offset, field(""), terr.Err)
		}
		i := next
		for i < len(fields) && fields[i].tag != t {
			i++
		}
		if i == len(fields) {
			return 0, 0, structErr(pe.Index, pe.Type, base+off, field(""), "unexpected element with tag %s (unknown, repeated or out of order)", t)
		}
		f := fields[i]
		if vl < f.min || vl > f.max {
			return 0, 0, structErr(pe.Index, pe.Type, base+off, field(f.name), "%d bytes, want %d..%d", vl, f.min, f.max)
		}
		if t == 0xA5 {
			a5, a5base = b[off+hl:off+hl+vl], base+off+hl
		}
		next = i + 1
		off += hl + vl
	}
	if a5base < 0 {
		return -1, 0, nil
	}
	return a5base - base, len(a5), nil
}

// checkFCP validates an opaque Fcp node: components in ASN.1 order, sizes
// as declared, proprietaryEFInfo likewise.
func (pe *PE) checkFCP(n *Node, path, sub string) error {
	field := func(name string) string {
		c := cursor{path: path, sub: sub}
		return c.field(name)
	}
	b, base := n.Value, n.ValueOffset()
	a5, a5len, err := pe.walkFields(b, base, fcpFields[:], field)
	if err != nil || a5 < 0 {
		return err
	}
	pfield := func(name string) string {
		c := cursor{path: path, sub: sub, sub2: "proprietaryEFInfo"}
		return c.field(name)
	}
	_, _, err = pe.walkFields(b[a5:a5+a5len], base+a5, propFields[:], pfield)
	return err
}

func (pe *PE) decodeFS() error {
	fs := &FileSystem{}
	c := pe.cursor(pe.Node, "")
	c.i = 1
	tid, err := c.req(0x81, "templateID")
	if err != nil {
		return err
	}
	s, ok := oidString(tid)
	if !ok {
		return c.errf(tid, "templateID", "not an OBJECT IDENTIFIER")
	}
	fs.TemplateID = s
	fs.Files = make([]File, 0, len(c.kids)-c.i)
	fcps := make([]FCP, len(c.kids)-c.i)
	last := 1
	for ; c.i < len(c.kids); c.i++ {
		k := c.kids[c.i]
		class, num := tagNumber(k.Tag)
		if class != 0x80 || !k.Tag.Constructed() {
			return c.errf(k, "", "unexpected element with tag %s (want a File component)", k.Tag)
		}
		if num <= last {
			return c.errf(k, "", "File component [%d] out of order after [%d]", num, last)
		}
		last = num
		name := fileName(pe.Type, num)
		if name == "" {
			name = "[" + strconv.Itoa(num) + "]"
		}
		f := File{Name: name, Node: k}
		firstFill, contiguous := -1, true
		for j, item := range k.Children {
			switch item.Tag {
			case 0x80:
				if len(item.Value) != 0 {
					return structErr(pe.Index, pe.Type, item.Offset, name, "doNotCreate is not NULL")
				}
				f.DoNotCreate = true
			case 0xA1:
				if err := pe.checkFCP(item, name, "fileDescriptor"); err != nil {
					return err
				}
				if f.FCP == nil {
					fcp := &fcps[len(fs.Files)]
					fcp.Node = item
					f.FCP = fcp
				}
			case 0x82, 0x83:
				if item.Tag == 0x82 {
					if v, ok := parseUint(item.Value, 2); !ok || v > 0xFFFF {
						return structErr(pe.Index, pe.Type, item.Offset, name, "fillFileOffset is not a UInt16")
					}
				}
				if firstFill < 0 {
					firstFill = j
				}
				continue
			default:
				return structErr(pe.Index, pe.Type, item.Offset, name+"["+strconv.Itoa(j)+"]", "unexpected element with tag %s in File", item.Tag)
			}
			if firstFill >= 0 {
				contiguous = false
			}
		}
		switch {
		case firstFill < 0:
		case contiguous: // the usual case: fill commands after the FCP
			f.Fill = k.Children[firstFill:]
		default:
			for _, item := range k.Children[firstFill:] {
				if item.Tag == 0x82 || item.Tag == 0x83 {
					f.Fill = append(f.Fill, item)
				}
			}
		}
		fs.Files = append(fs.Files, f)
	}
	pe.FS = fs
	return nil
}

// ------------------------------------------------------ genericFileManagement

// GenericFileManagement holds file-management command sequences for files
// not covered by a template.
type GenericFileManagement struct {
	Commands [][]FileCommand // one slice per FileManagement SEQUENCE
}

// FileCommand is one FileManagement item.
type FileCommand struct {
	Kind  string // "filePath", "createFCP", "fillFileOffset", "fillFileContent"
	Node  *Node
	Value []byte // path, offset integer or content; nil for createFCP
}

// FCP returns the file control parameters of a createFCP command, else nil.
func (fc FileCommand) FCP() *FCP {
	if fc.Kind != "createFCP" {
		return nil
	}
	return &FCP{Node: fc.Node}
}

func (pe *PE) decodeGFM() error {
	g := &GenericFileManagement{}
	c := pe.cursorAt(pe.Node, "", 1)
	cmds, err := c.req(0xA1, "fileManagementCMD")
	if err != nil {
		return err
	}
	if err := c.done(2); err != nil {
		return err
	}
	if len(cmds.Children) == 0 {
		return structErr(pe.Index, pe.Type, cmds.Offset, "fileManagementCMD", "empty")
	}
	for i, fm := range cmds.Children {
		path := func() string { return "fileManagementCMD[" + strconv.Itoa(i) + "]" }
		if fm.Tag != 0x30 {
			return structErr(pe.Index, pe.Type, fm.Offset, path(), "expected SEQUENCE, found tag %s", fm.Tag)
		}
		seq := make([]FileCommand, 0, len(fm.Children))
		for j, it := range fm.Children {
			ipath := func() string { return path() + "[" + strconv.Itoa(j) + "]" }
			fc := FileCommand{Node: it, Value: it.Value}
			switch it.Tag {
			case 0x80:
				fc.Kind = "filePath"
				if len(it.Value) > 8 {
					return structErr(pe.Index, pe.Type, it.Offset, ipath(), "filePath longer than 8 bytes")
				}
			case 0x62:
				fc.Kind = "createFCP"
				if err = pe.checkFCP(it, "fileManagementCMD", ""); err != nil {
					if e, ok := err.(*Error); ok {
						e.Field = ipath() + e.Field[len("fileManagementCMD"):]
					}
					return err
				}
				fc.Value = nil
			case 0x02:
				fc.Kind = "fillFileOffset"
				if v, ok := parseUint(it.Value, 2); !ok || v > 0xFFFF {
					return structErr(pe.Index, pe.Type, it.Offset, ipath(), "fillFileOffset is not a UInt16")
				}
			case 0x81:
				fc.Kind = "fillFileContent"
			default:
				return structErr(pe.Index, pe.Type, it.Offset, ipath(), "unexpected element with tag %s", it.Tag)
			}
			seq = append(seq, fc)
		}
		g.Commands = append(g.Commands, seq)
	}
	pe.GFM = g
	return nil
}

// ------------------------------------------------------------- PIN / PUK

// PINCodes is a pinCodes PE: either its own PIN list or a reference to the
// PIN context of another DF/ADF (FilePath).
type PINCodes struct {
	Configs  []PINConfig
	FilePath []byte // set when the PINs are shared with another DF/ADF
	Shared   bool
}

// PINConfig is one PINConfiguration.
type PINConfig struct {
	KeyReference     int
	Value            []byte // 8 bytes: ASCII digits padded with FF, or binary
	UnblockingRef    int    // -1 when absent
	Attributes       int    // default 7
	MaxAttemptsRetry int    // default 0x33
	value            *Node
}

func (pe *PE) decodePINs() error {
	p := &PINCodes{}
	c := pe.cursorAt(pe.Node, "", 1)
	ch, err := c.req(0xA1, "pinCodes")
	if err != nil {
		return err
	}
	if err := c.done(2); err != nil {
		return err
	}
	if len(ch.Children) != 1 {
		return structErr(pe.Index, pe.Type, ch.Offset, "pinCodes", "CHOICE must hold exactly one alternative")
	}
	alt := ch.Children[0]
	switch alt.Tag {
	case 0x81:
		if len(alt.Value) > 8 {
			return structErr(pe.Index, pe.Type, alt.Offset, "pinCodes.filePath", "longer than 8 bytes")
		}
		p.FilePath, p.Shared = alt.Value, true
	case 0xA0:
		if len(alt.Children) == 0 || len(alt.Children) > 26 {
			return structErr(pe.Index, pe.Type, alt.Offset, "pinconfig", "%d PIN configurations, want 1..26", len(alt.Children))
		}
		for i, k := range alt.Children {
			path := "pinconfig[" + strconv.Itoa(i) + "]"
			if k.Tag != 0x30 {
				return structErr(pe.Index, pe.Type, k.Offset, path, "expected SEQUENCE, found tag %s", k.Tag)
			}
			kc := pe.cursor(k, path)
			var pc PINConfig
			if pc.KeyReference, _, err = kc.uint(0x80, "keyReference", 255, 0, true); err != nil {
				return err
			}
			if pc.value, err = kc.reqLen(0x81, "pinValue", 8); err != nil {
				return err
			}
			pc.Value = pc.value.Value
			if pc.UnblockingRef, _, err = kc.uint(0x82, "unblockingPINReference", 255, -1, false); err != nil {
				return err
			}
			if pc.Attributes, _, err = kc.uint(0x83, "pinAttributes", 255, 7, false); err != nil {
				return err
			}
			if pc.MaxAttemptsRetry, _, err = kc.uint(0x84, "maxNumOfAttemps-retryNumLeft", 255, 0x33, false); err != nil {
				return err
			}
			if err := kc.done(5); err != nil {
				return err
			}
			p.Configs = append(p.Configs, pc)
		}
	default:
		return structErr(pe.Index, pe.Type, alt.Offset, "pinCodes", "unknown CHOICE alternative with tag %s", alt.Tag)
	}
	pe.PINs = p
	return nil
}

// PUKCodes is a pukCodes PE.
type PUKCodes struct {
	Configs []PUKConfig
}

// PUKConfig is one PUKConfiguration.
type PUKConfig struct {
	KeyReference     int
	Value            []byte // 8 bytes
	MaxAttemptsRetry int    // default 0xAA
	value            *Node
}

func (pe *PE) decodePUKs() error {
	p := &PUKCodes{}
	c := pe.cursorAt(pe.Node, "", 1)
	list, err := c.req(0xA1, "pukCodes")
	if err != nil {
		return err
	}
	if err := c.done(2); err != nil {
		return err
	}
	if len(list.Children) == 0 || len(list.Children) > 16 {
		return structErr(pe.Index, pe.Type, list.Offset, "pukCodes", "%d PUK configurations, want 1..16", len(list.Children))
	}
	for i, k := range list.Children {
		path := "pukCodes[" + strconv.Itoa(i) + "]"
		if k.Tag != 0x30 {
			return structErr(pe.Index, pe.Type, k.Offset, path, "expected SEQUENCE, found tag %s", k.Tag)
		}
		kc := pe.cursor(k, path)
		var pc PUKConfig
		if pc.KeyReference, _, err = kc.uint(0x80, "keyReference", 255, 0, true); err != nil {
			return err
		}
		if pc.value, err = kc.reqLen(0x81, "pukValue", 8); err != nil {
			return err
		}
		pc.Value = pc.value.Value
		if pc.MaxAttemptsRetry, _, err = kc.uint(0x82, "maxNumOfAttemps-retryNumLeft", 255, 0xAA, false); err != nil {
			return err
		}
		if err := kc.done(3); err != nil {
			return err
		}
		p.Configs = append(p.Configs, pc)
	}
	pe.PUKs = p
	return nil
}

// ----------------------------------------------------------- akaParameter

// AKAParameter is an akaParameter PE.
type AKAParameter struct {
	Mapping *MappingParameter // set when algoConfiguration is a mapping
	Algo    *AlgoParameter    // set when it is an algoParameter
	// sqn* are nil when absent (DER DEFAULT).
	SQNOptions, SQNDelta, SQNAgeLimit []byte
	SQNInit                           [][]byte
}

// MappingParameter shares the algorithm of another NAA.
type MappingParameter struct {
	Options []byte
	Source  []byte // AID
}

// AlgoParameter holds the algorithm and its secrets.
type AlgoParameter struct {
	AlgorithmID    esim.Algorithm // as decoded: an unknown ID is kept
	Options        byte
	Key            []byte // K: 16 or 32 bytes
	OPc            []byte // OPc (Milenage) or TOPc (TUAK)
	Rotation       []byte // nil = default
	XOR            []byte // nil = default
	AuthCounterMax []byte
	NumberOfKeccak int // 1 when absent

	algo, key, opc *Node
}

func (pe *PE) decodeAKA() error {
	a := &AKAParameter{}
	c := pe.cursorAt(pe.Node, "", 1)
	cfg, err := c.req(0xA1, "algoConfiguration")
	if err != nil {
		return err
	}
	if len(cfg.Children) != 1 {
		return structErr(pe.Index, pe.Type, cfg.Offset, "algoConfiguration", "CHOICE must hold exactly one alternative")
	}
	alt := cfg.Children[0]
	switch alt.Tag {
	case 0xA0:
		mc := pe.cursor(alt, "mappingParameter")
		o, err := mc.reqLen(0x80, "mappingOptions", 1)
		if err != nil {
			return err
		}
		s, err := mc.req(0x81, "mappingSource")
		if err != nil {
			return err
		}
		if err := mc.done(2); err != nil {
			return err
		}
		a.Mapping = &MappingParameter{o.Value, s.Value}
	case 0xA1:
		ac := pe.cursor(alt, "algoParameter")
		ap := &AlgoParameter{NumberOfKeccak: 1}
		id, n, err := ac.uint(0x80, "algorithmID", 255, 0, true)
		if err != nil {
			return err
		}
		ap.AlgorithmID, ap.algo = esim.Algorithm(id), n
		o, err := ac.reqLen(0x81, "algorithmOptions", 1)
		if err != nil {
			return err
		}
		ap.Options = o.Value[0]
		if ap.key, err = ac.req(0x82, "key"); err != nil {
			return err
		}
		if ap.opc, err = ac.req(0x83, "opc"); err != nil {
			return err
		}
		ap.Key, ap.OPc = ap.key.Value, ap.opc.Value
		if n, err := ac.optLen(0x84, "rotationConstants", 5, 5); err != nil {
			return err
		} else if n != nil {
			ap.Rotation = n.Value
		}
		if n, err := ac.optLen(0x85, "xoringConstants", 80, 80); err != nil {
			return err
		} else if n != nil {
			ap.XOR = n.Value
		}
		if n, err := ac.optLen(0x86, "authCounterMax", 3, 3); err != nil {
			return err
		} else if n != nil {
			ap.AuthCounterMax = n.Value
		}
		if ap.NumberOfKeccak, _, err = ac.uint(0x87, "numberOfKeccak", 255, 1, false); err != nil {
			return err
		}
		if err := ac.done(8); err != nil {
			return err
		}
		a.Algo = ap
	default:
		return structErr(pe.Index, pe.Type, alt.Offset, "algoConfiguration", "unknown CHOICE alternative with tag %s", alt.Tag)
	}
	if n, err := c.optLen(0x82, "sqnOptions", 1, 1); err != nil {
		return err
	} else if n != nil {
		a.SQNOptions = n.Value
	}
	if n, err := c.optLen(0x83, "sqnDelta", 6, 6); err != nil {
		return err
	} else if n != nil {
		a.SQNDelta = n.Value
	}
	if n, err := c.optLen(0x84, "sqnAgeLimit", 6, 6); err != nil {
		return err
	} else if n != nil {
		a.SQNAgeLimit = n.Value
	}
	if n := c.opt(0xA5); n != nil {
		for _, k := range n.Children {
			if k.Tag != 0x04 || len(k.Value) != 6 {
				return structErr(pe.Index, pe.Type, k.Offset, "sqnInit", "want OCTET STRING (SIZE(6))")
			}
			a.SQNInit = append(a.SQNInit, k.Value)
		}
	}
	if err := c.done(6); err != nil {
		return err
	}
	pe.AKA = a
	return nil
}

// ----------------------------------------------------------- cdmaParameter

// CDMAParameter is a cdmaParameter PE (CAVE A-key and shared secrets).
type CDMAParameter struct {
	AuthenticationKey                     []byte
	SSD, HRPD, SimpleIPAuth, MobileIPAuth []byte
}

func (pe *PE) decodeCDMA() error {
	d := &CDMAParameter{}
	c := pe.cursorAt(pe.Node, "", 1)
	k, err := c.reqLen(0x81, "authenticationKey", 8)
	if err != nil {
		return err
	}
	d.AuthenticationKey = k.Value
	for _, f := range []struct {
		tag      Tag
		name     string
		min, max int
		dst      *[]byte
	}{
		{0x82, "ssd", 16, 16, &d.SSD},
		{0x83, "hrpdAccessAuthenticationData", 2, 32, &d.HRPD},
		{0x84, "simpleIPAuthenticationData", 3, 483, &d.SimpleIPAuth},
		{0x85, "mobileIPAuthenticationData", 5, 957, &d.MobileIPAuth},
	} {
		n, err := c.optLen(f.tag, f.name, f.min, f.max)
		if err != nil {
			return err
		}
		if n != nil {
			*f.dst = n.Value
		}
	}
	if err := c.done(6); err != nil {
		return err
	}
	pe.CDMA = d
	return nil
}

// ---------------------------------------------------------- securityDomain

// SecurityDomain is a securityDomain PE (MNO-SD or SSD).
type SecurityDomain struct {
	Instance    *ApplicationInstance
	Keys        []KeyObject
	SDPersoData [][]byte
}

// ApplicationInstance is a GlobalPlatform application/SD instance.
type ApplicationInstance struct {
	LoadPackageAID, ClassAID, InstanceAID, ExtraditeSDAID []byte
	Privileges                                            []byte
	LifeCycleState                                        []byte // nil = default 07
	InstallParameters                                     []byte // C9
	Node                                                  *Node
}

// KeyObject is one key of a security domain.
type KeyObject struct {
	Usage      []byte // keyUsageQualifier
	Access     []byte // nil = default 00
	ID         byte
	KVN        byte
	Counter    []byte
	Components []KeyComponent
}

// KeyComponent is one component of a key.
type KeyComponent struct {
	Type      []byte // 80 DES, 88 AES, 85 TLS-PSK …
	Data      []byte
	MACLength int // default 8
	data      *Node
}

func (pe *PE) decodeInstance(n *Node, path string) (*ApplicationInstance, error) {
	ai := &ApplicationInstance{Node: n}
	c := pe.cursor(n, path)
	var err error
	var k *Node
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{"applicationLoadPackageAID", &ai.LoadPackageAID}, {"classAID", &ai.ClassAID}, {"instanceAID", &ai.InstanceAID}} {
		if k, err = c.req(0x4F, f.name); err != nil {
			return nil, err
		}
		*f.dst = k.Value
	}
	if k = c.opt(0x4F); k != nil {
		ai.ExtraditeSDAID = k.Value
	}
	if k, err = c.req(0x82, "applicationPrivileges"); err != nil {
		return nil, err
	}
	ai.Privileges = k.Value
	if k, err = c.optLen(0x83, "lifeCycleState", 1, 1); err != nil {
		return nil, err
	} else if k != nil {
		ai.LifeCycleState = k.Value
	}
	if k, err = c.req(0xC9, "applicationSpecificParametersC9"); err != nil {
		return nil, err
	}
	ai.InstallParameters = k.Value
	c.opt(0xEF) // systemSpecificParameters: kept in the tree
	c.opt(0xEA) // applicationParameters: kept in the tree
	c.opt(0x30) // processData
	c.opt(0xB0) // controlReferenceTemplate
	if err := c.done(17); err != nil {
		return nil, err
	}
	return ai, nil
}

func (pe *PE) decodeSD() error {
	sd := &SecurityDomain{}
	c := pe.cursorAt(pe.Node, "", 1)
	inst, err := c.req(0xA1, "instance")
	if err != nil {
		return err
	}
	if sd.Instance, err = pe.decodeInstance(inst, "instance"); err != nil {
		return err
	}
	if kl := c.opt(0xA2); kl != nil {
		for i, ko := range kl.Children {
			path := "keyList[" + strconv.Itoa(i) + "]"
			if ko.Tag != 0x30 {
				return structErr(pe.Index, pe.Type, ko.Offset, path, "expected SEQUENCE, found tag %s", ko.Tag)
			}
			kc := pe.cursor(ko, path)
			var o KeyObject
			n, err := kc.optLen(0x95, "keyUsageQualifier", 1, 2)
			if err != nil {
				return err
			}
			if n == nil {
				return kc.errf(ko, "keyUsageQualifier", "missing")
			}
			o.Usage = n.Value
			if n, err = kc.optLen(0x96, "keyAccess", 1, 1); err != nil {
				return err
			} else if n != nil {
				o.Access = n.Value
			}
			if n, err = kc.reqLen(0x82, "keyIdentifier", 1); err != nil {
				return err
			}
			o.ID = n.Value[0]
			if n, err = kc.reqLen(0x83, "keyVersionNumber", 1); err != nil {
				return err
			}
			o.KVN = n.Value[0]
			if n = kc.opt(0x85); n != nil {
				o.Counter = n.Value
			}
			comps, err := kc.req(0x30, "keyComponents")
			if err != nil {
				return err
			}
			if err := kc.done(24); err != nil {
				return err
			}
			if len(comps.Children) == 0 {
				return structErr(pe.Index, pe.Type, comps.Offset, path+".keyComponents", "empty")
			}
			for j, kcn := range comps.Children {
				cp := path + ".keyComponents[" + strconv.Itoa(j) + "]"
				if kcn.Tag != 0x30 {
					return structErr(pe.Index, pe.Type, kcn.Offset, cp, "expected SEQUENCE, found tag %s", kcn.Tag)
				}
				cc := pe.cursor(kcn, cp)
				var comp KeyComponent
				t, err := cc.req(0x80, "keyType")
				if err != nil {
					return err
				}
				comp.Type = t.Value
				if comp.data, err = cc.req(0x86, "keyData"); err != nil {
					return err
				}
				comp.Data = comp.data.Value
				if comp.MACLength, _, err = cc.uint(0x87, "macLength", 255, 8, false); err != nil {
					return err
				}
				if err := cc.done(8); err != nil {
					return err
				}
				o.Components = append(o.Components, comp)
			}
			sd.Keys = append(sd.Keys, o)
		}
	}
	if n := c.opt(0xA3); n != nil {
		for _, k := range n.Children {
			if k.Tag != 0x04 {
				return structErr(pe.Index, pe.Type, k.Offset, "sdPersoData", "expected OCTET STRING, found tag %s", k.Tag)
			}
			sd.SDPersoData = append(sd.SDPersoData, k.Value)
		}
	}
	c.opt(0xA4) // openPersoData: kept in the tree
	c.opt(0xA5) // catTpParameters: kept in the tree
	if err := c.done(6); err != nil {
		return err
	}
	pe.SD = sd
	return nil
}

// Key returns the key object with the given version number and id, or nil.
func (sd *SecurityDomain) Key(kvn, id byte) *KeyObject {
	for i := range sd.Keys {
		if sd.Keys[i].KVN == kvn && sd.Keys[i].ID == id {
			return &sd.Keys[i]
		}
	}
	return nil
}

// --------------------------------------------------------------------- rfm

// RFM is a remote file management application instance.
type RFM struct {
	InstanceAID, SecurityDomainAID []byte
	TARs                           [][]byte
	MinimumSecurityLevel           []byte
	UICCAccessDomain               []byte
	UICCAdminAccessDomain          []byte
	ADFAID                         []byte // adfRFMAccess, nil when absent
}

func (pe *PE) decodeRFM() error {
	r := &RFM{}
	c := pe.cursorAt(pe.Node, "", 1)
	n, err := c.optLen(0x4F, "instanceAID", 5, 16)
	if err != nil {
		return err
	}
	if n == nil {
		return c.errf(nil, "instanceAID", "missing")
	}
	r.InstanceAID = n.Value
	if n, err = c.optLen(0x4F, "securityDomainAID", 5, 16); err != nil {
		return err
	} else if n != nil {
		r.SecurityDomainAID = n.Value
	}
	if n = c.opt(0xA0); n != nil {
		for _, k := range n.Children {
			if k.Tag != 0x04 || len(k.Value) != 3 {
				return structErr(pe.Index, pe.Type, k.Offset, "tarList", "want OCTET STRING (SIZE(3))")
			}
			r.TARs = append(r.TARs, k.Value)
		}
	}
	if n, err = c.reqLen(0x81, "minimumSecurityLevel", 1); err != nil {
		return err
	}
	r.MinimumSecurityLevel = n.Value
	if n, err = c.req(0x04, "uiccAccessDomain"); err != nil {
		return err
	}
	r.UICCAccessDomain = n.Value
	if n, err = c.req(0x04, "uiccAdminAccessDomain"); err != nil {
		return err
	}
	r.UICCAdminAccessDomain = n.Value
	if n = c.opt(0x30); n != nil {
		ac := pe.cursor(n, "adfRFMAccess")
		a, err := ac.req(0x80, "adfAID")
		if err != nil {
			return err
		}
		if _, err := ac.req(0x81, "adfAccessDomain"); err != nil {
			return err
		}
		if _, err := ac.req(0x82, "adfAdminAccessDomain"); err != nil {
			return err
		}
		if err := ac.done(3); err != nil {
			return err
		}
		r.ADFAID = a.Value
	}
	if err := c.done(-1); err != nil {
		return err
	}
	pe.RFM = r
	return nil
}

// ------------------------------------------------------------- application

// Application is an application PE: an optional load package and instances.
type Application struct {
	LoadPackageAID []byte // nil when there is no load block
	LoadBlockSize  int
	Instances      []*ApplicationInstance
}

func (pe *PE) decodeApplication() error {
	a := &Application{}
	c := pe.cursorAt(pe.Node, "", 1)
	if lb := c.opt(0xA1); lb != nil {
		lc := pe.cursor(lb, "loadBlock")
		n, err := lc.req(0x4F, "loadPackageAID")
		if err != nil {
			return err
		}
		a.LoadPackageAID = n.Value
		lc.opt(0x4F)
		lc.opt(0xC6)
		lc.opt(0xC7)
		lc.opt(0xC8)
		lc.opt(0xC1)
		if n, err = lc.req(0xC4, "loadBlockObject"); err != nil {
			return err
		}
		a.LoadBlockSize = len(n.Value)
		if err := lc.done(-1); err != nil {
			return err
		}
	}
	if il := c.opt(0xA2); il != nil {
		for i, k := range il.Children {
			path := "instanceList[" + strconv.Itoa(i) + "]"
			if k.Tag != 0x30 {
				return structErr(pe.Index, pe.Type, k.Offset, path, "expected SEQUENCE, found tag %s", k.Tag)
			}
			ai, err := pe.decodeInstance(k, path)
			if err != nil {
				return err
			}
			a.Instances = append(a.Instances, ai)
		}
	}
	if err := c.done(3); err != nil {
		return err
	}
	pe.Application = a
	return nil
}

// ------------------------------------------------------------- nonStandard

// NonStandard is a nonStandard PE: issuer-specific content.
type NonStandard struct {
	IssuerID string // dotted OID
	Content  []byte
}

func (pe *PE) decodeNonStandard() error {
	c := pe.cursorAt(pe.Node, "", 1)
	id, err := c.req(0x81, "issuerID")
	if err != nil {
		return err
	}
	s, ok := oidString(id)
	if !ok {
		return c.errf(id, "issuerID", "not an OBJECT IDENTIFIER")
	}
	ct, err := c.req(0x82, "content")
	if err != nil {
		return err
	}
	if err := c.done(3); err != nil {
		return err
	}
	pe.NonStandard = &NonStandard{IssuerID: s, Content: ct.Value}
	return nil
}
