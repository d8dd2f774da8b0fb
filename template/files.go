package template

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
)

// The file model: how the compiler finds where a personalisable file
// content lands on the card.
//
// A card builds each EF from the profile in order. It creates the file
// (from the FS PE's template, or a genericFileManagement createFCP), fills
// it with its fill pattern or template default, and then applies, in
// profile order, every fill command aimed at it: fillFileOffset moves the
// write position forward (relative to the end of the previous write),
// fillFileContent writes bytes at the position and advances it. The
// commands come from the File component of the FS PE that creates the file
// (its position starts at 0) and from any later genericFileManagement
// sequence that selects the file again, by a filePath naming the EF or by
// creating it (position 0 again). The last write of a byte is what the card
// keeps. Record files (linear fixed, cyclic) are one byte stream of their
// records end to end: record r of length L starts at (r-1)·L.
//
// For every field of a record (EF.IMSI bytes 0..8, EF.SMSP record 1 …) the
// compiler looks for the last write of each byte. When every byte has one,
// the field becomes fixed slots: one per contiguous piece of template
// bytes (usually one), patched in place. When some byte has none (the file
// has no content in the template, or only part of the field is written),
// the field is a rewrite slot: Apply replaces the fill commands of the last
// element that writes the file (or of the File that creates it) with an
// equivalent sequence that also writes the field, and re-encodes the
// lengths of the TLVs around it (File, or the command SEQUENCE and list,
// and the PE).

// maxFilePos bounds the file positions fill commands may reach: far above
// any EF a profile creates (their sizes are two-byte numbers), low enough
// that offsets (each up to 65535, any number of them) cannot make the
// compiler build huge file images.
const maxFilePos = 1 << 20

// fillWrite is one fillFileContent aimed at a file.
type fillWrite struct {
	pos, n  int // position in the file and length
	tmplOff int // absolute template offset of the content bytes
}

// fileElement is one run of fill commands aimed at one file: the File
// component of an FS PE, or the commands of a genericFileManagement
// sequence after the filePath/createFCP that selects the file.
type fileElement struct {
	pe         *PE
	encl       []*Node // enclosing TLVs, outermost first: PE, File or PE, A1, 30
	start, end int     // template range of the fill commands (rewritten as a whole)
	keep       []byte  // FS File: the non-fill items, re-emitted first
	gfm        bool    // genericFileManagement command codings (02/81), else 82/83
	fileTag    Tag     // a File component to add (newFileComponent), else 0
	writes     []fillWrite
	where      string // "ef-imsi" or "fileManagementCMD[0]"
}

// fileTrack is one personalisable file and every element that writes it.
type fileTrack struct {
	key    string // DF path and FID, hex ("7fd06f07"), or "pe#N/name"
	name   string // ASN.1 component name of the file in its FS PE ("ef-imsi")
	pe     *PE    // the FS PE the file belongs to
	fcp    *FCP   // the file's FCP (FS fileDescriptor or createFCP), nil if unknown
	size   int    // file size in bytes, -1 when the template does not say
	elems  []*fileElement
	exists bool // created by the FS PE or a createFCP
	// doNotCreate: the FS PE's File says doNotCreate (else a mandatory
	// file without a File component exists by default).
	doNotCreate bool
}

// defaultFIDs are the file identifiers of the personalisable files when
// the template's File carries no fileDescriptor (TS 31.102, TS 31.103,
// TS 102 221).
var defaultFIDs = map[string]string{
	"ef-iccid": "2fe2", "ef-imsi": "6f07", "ef-acc": "6f78", "ef-smsp": "6f42", "ef-spn": "6f46",
	"ef-ad": "6fad", "ef-msisdn": "6f40", "ef-ehplmn": "6fd9", "ef-hplmnwact": "6f62",
	"ef-impi": "6f02", "ef-impu": "6f04", "ef-domain": "6f03",
	"ef-gid1": "6f3e", "ef-gid2": "6f3f", "ef-imsi-m": "6f22", "ef-imsi-t": "6f23",
	"ef-suci-calc-info": "4f07", "ef-suci-calc-info-usim": "4f01",
}

// trackedFiles lists, per FS PE type, the files that hold personalisable
// fields.
var trackedFiles = map[PEType][]string{
	PEMF:      {"ef-iccid"},
	PEUSIM:    {"ef-imsi", "ef-acc", "ef-smsp", "ef-spn", "ef-ad"},
	PEOptUSIM: {"ef-msisdn", "ef-ehplmn", "ef-hplmnwact", "ef-gid1", "ef-gid2"},
	PEISIM:    {"ef-impi", "ef-impu", "ef-domain"},
	PECSIM:    {"ef-imsi-m", "ef-imsi-t"},
	PEDF5GS:   {"ef-suci-calc-info"},
	PEDFSAIP:  {"ef-suci-calc-info-usim"},
	PEIoT:     {"ef-iccid", "ef-imsi", "ef-acc", "ef-smsp", "ef-spn", "ef-ad"},
	PEOptIoT:  {"ef-ehplmn", "ef-hplmnwact"},
}

// adfFIDs are the temporary FIDs TS.48 gives the ADFs; a template's own
// adf-usim/adf-isim fileDescriptor overrides them.
var adfFIDs = map[PEType]string{PEUSIM: "7fd0", PEISIM: "7fb0", PECSIM: "7fc0"}

// fileModel is the set of tracked files of a profile.
type fileModel struct {
	tracks []*fileTrack
	byKey  map[string]*fileTrack
}

// fcpSize is the file size an FCP declares (efFileSize), or -1.
func fcpSize(f *FCP) int {
	if f == nil {
		return -1
	}
	if sz := f.EFFileSize(); sz != nil {
		return beUint(sz)
	}
	return -1
}

// isDF reports whether an FCP describes a DF/ADF (file descriptor byte
// b6..b4 = 111, TS 102 221 §11.1.1.4.3).
func isDF(f *FCP) bool {
	fd := f.FileDescriptor()
	return len(fd) > 0 && fd[0]&0x38 == 0x38
}

// buildFileModel walks the profile in order and collects, for every
// personalisable file, the elements that write it. It also checks every
// fill command against the size of its file where the template declares
// one, and that genericFileManagement fills follow a selected EF.
func (p *Profile) buildFileModel() (*fileModel, error) {
	m := &fileModel{byKey: map[string]*fileTrack{}}
	adf := map[PEType]string{} // current ADF path per NAA type
	dfOf := func(t PEType) string {
		switch t {
		case PEMF:
			return ""
		case PEUSIM, PEOptUSIM:
			return adf[PEUSIM]
		case PEISIM, PEOptISIM:
			return adf[PEISIM]
		case PECSIM, PEOptCSIM:
			return adf[PECSIM]
		case PEDF5GS, PEDFSAIP:
			if df := adf[t]; df != "" {
				return df
			}
		}
		return "?"
	}
	for _, pe := range p.PEs {
		if pe.FS != nil {
			switch pe.Type {
			case PEUSIM, PEISIM, PECSIM:
				fid := adfFIDs[pe.Type]
				if len(pe.FS.Files) > 0 && pe.FS.Files[0].FCP != nil {
					if id := pe.FS.Files[0].FCP.FileID(); len(id) == 2 {
						fid = hex.EncodeToString(id)
					}
				}
				adf[pe.Type] = fid
			case PEDF5GS, PEDFSAIP:
				// DF.5GS (5FC0) and DF.SAIP (5FD0) sit in ADF.USIM.
				fid := map[PEType]string{PEDF5GS: "5fc0", PEDFSAIP: "5fd0"}[pe.Type]
				if len(pe.FS.Files) > 0 && pe.FS.Files[0].FCP != nil {
					if id := pe.FS.Files[0].FCP.FileID(); len(id) == 2 {
						fid = hex.EncodeToString(id)
					}
				}
				adf[pe.Type] = ""
				if adf[PEUSIM] != "" {
					adf[pe.Type] = adf[PEUSIM] + fid
				}
			}
			names := map[string]bool{}
			for _, n := range trackedFiles[pe.Type] {
				names[n] = true
			}
			for i := range pe.FS.Files {
				f := &pe.FS.Files[i]
				el, err := pe.fsElement(f, names[f.Name])
				if err != nil {
					return nil, err
				}
				if !names[f.Name] {
					continue
				}
				delete(names, f.Name)
				t := m.track(pe, f.Name, f.FCP, dfOf(pe.Type))
				t.doNotCreate = f.DoNotCreate
				if el != nil {
					t.exists = true
					t.elems = append(t.elems, el)
				}
			}
			// Tracked files the PE does not mention are registered too, so
			// that a genericFileManagement PE creating or selecting them
			// is recognised.
			for _, n := range trackedFiles[pe.Type] {
				if names[n] {
					m.track(pe, n, nil, dfOf(pe.Type))
				}
			}
		}
		if pe.GFM != nil {
			if err := m.walkGFM(pe); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// track registers a tracked file of an FS PE.
func (m *fileModel) track(pe *PE, name string, fcp *FCP, df string) *fileTrack {
	fid := defaultFIDs[name]
	if fcp != nil {
		if id := fcp.FileID(); len(id) == 2 {
			fid = hex.EncodeToString(id)
		}
	}
	key := df + fid
	if df == "?" || pe.Type == PEIoT || pe.Type == PEOptIoT || m.byKey[key] != nil {
		key = "pe#" + strconv.Itoa(pe.Index) + "/" + name
	}
	t := &fileTrack{key: key, name: name, pe: pe, fcp: fcp, size: fcpSize(fcp)}
	m.tracks = append(m.tracks, t)
	m.byKey[key] = t
	return t
}

// fsElement reads the fill commands of an FS File component. It returns
// nil for doNotCreate, and for files that are not tracked (only checked).
// Offsets and contents are checked against the file size the FCP declares.
func (pe *PE) fsElement(f *File, tracked bool) (*fileElement, error) {
	if f.DoNotCreate {
		return nil, nil
	}
	n := f.Node
	el := &fileElement{}
	if tracked {
		el = &fileElement{pe: pe, encl: []*Node{pe.Node, n}, start: n.ValueOffset(), end: n.End(), where: f.Name}
	}
	size := fcpSize(f.FCP)
	pos := 0
	for _, it := range n.Children {
		switch it.Tag {
		case 0x82:
			v, _ := parseUint(it.Value, 2) // checked by Decode
			pos += v
		case 0x83:
			if tracked {
				el.writes = append(el.writes, fillWrite{pos: pos, n: len(it.Value), tmplOff: it.ValueOffset()})
			}
			pos += len(it.Value)
		default:
			if tracked {
				el.keep = append(el.keep, it.Encode()...)
			}
			continue
		}
		if pos > maxFilePos {
			return nil, structErr(pe.Index, pe.Type, it.Offset, f.Name, "fill command reaches file byte %d, beyond %d", pos, maxFilePos)
		}
		if size >= 0 && pos > size {
			return nil, structErr(pe.Index, pe.Type, it.Offset, f.Name,
				"fill command reaches file byte %d, beyond the file size of %d bytes (efFileSize)", pos, size)
		}
	}
	if !tracked {
		return nil, nil
	}
	return el, nil
}

// walkGFM follows the commands of a genericFileManagement PE: the current
// DF, the selected or created EF and its write position.
func (m *fileModel) walkGFM(pe *PE) error {
	list := pe.Node.Child(0xA1)
	for i, seq := range list.Children {
		where := "fileManagementCMD[" + strconv.Itoa(i) + "]"
		df := ""
		var el *fileElement
		size, pos := -1, 0
		selectEF := func(tr *fileTrack, at int) {
			el, pos = nil, 0
			if tr != nil {
				el = &fileElement{pe: pe, encl: []*Node{pe.Node, list, seq}, start: at, end: at, gfm: true, where: where}
				tr.elems = append(tr.elems, el)
			}
		}
		selected := false
		for j, c := range pe.GFM.Commands[i] {
			it := c.Node
			switch c.Kind {
			case "filePath":
				path := hex.EncodeToString(c.Value)
				if tr := m.byKey[path]; tr != nil {
					// A path naming a personalisable EF selects it for
					// filling (SAIP allows filePath to reach an EF); the
					// EF exists, from the FS PE's template.
					tr.exists = true
					selectEF(tr, it.End())
					size, selected = tr.size, true
				} else {
					df, selected = path, false
					selectEF(nil, 0)
				}
			case "createFCP":
				fcp := c.FCP()
				fid := hex.EncodeToString(fcp.FileID())
				if isDF(fcp) {
					df, selected = df+fid, false
					selectEF(nil, 0)
					continue
				}
				tr := m.byKey[df+fid]
				if tr != nil {
					tr.exists = true
					if tr.fcp == nil {
						tr.fcp, tr.size = fcp, fcpSize(fcp)
					}
				}
				selectEF(tr, it.End())
				size, selected = fcpSize(fcp), true
			case "fillFileOffset", "fillFileContent":
				if !selected {
					return structErr(pe.Index, pe.Type, it.Offset, where+"["+strconv.Itoa(j)+"]",
						"%s without a selected EF (no createFCP or filePath to an EF before it)", c.Kind)
				}
				if c.Kind == "fillFileOffset" {
					v, _ := parseUint(c.Value, 2)
					pos += v
				} else {
					if el != nil {
						el.writes = append(el.writes, fillWrite{pos: pos, n: len(c.Value), tmplOff: it.ValueOffset()})
					}
					pos += len(c.Value)
				}
				if el != nil {
					el.end = it.End()
				}
				if pos > maxFilePos {
					return structErr(pe.Index, pe.Type, it.Offset, where+"["+strconv.Itoa(j)+"]", "%s reaches file byte %d, beyond %d", c.Kind, pos, maxFilePos)
				}
				if size >= 0 && pos > size {
					return structErr(pe.Index, pe.Type, it.Offset, where+"["+strconv.Itoa(j)+"]",
						"%s reaches file byte %d, beyond the file size of %d bytes (efFileSize)", c.Kind, pos, size)
				}
			}
		}
	}
	return nil
}

// piece is a contiguous run of field bytes that one template write lands.
type piece struct{ from, n, tmplOff int }

// landing finds, for the field bytes [a, a+n) of a file, the template
// bytes that the card keeps (the last write of each). ok is false when some
// byte has no write.
func (t *fileTrack) landing(a, n int) (pieces []piece, ok bool) {
	for i := 0; i < n; i++ {
		p := a + i
		off := -1
	search:
		for e := len(t.elems) - 1; e >= 0; e-- {
			ws := t.elems[e].writes
			for w := len(ws) - 1; w >= 0; w-- {
				if p >= ws[w].pos && p < ws[w].pos+ws[w].n {
					off = ws[w].tmplOff + p - ws[w].pos
					break search
				}
			}
		}
		if off < 0 {
			return nil, false
		}
		if k := len(pieces) - 1; k >= 0 && pieces[k].tmplOff+pieces[k].n == off {
			pieces[k].n++
			continue
		}
		pieces = append(pieces, piece{from: i, n: 1, tmplOff: off})
	}
	return pieces, true
}

// rewrite is a compiled rewrite of one file element: the element's fill
// commands replaced by an equivalent normalised sequence that also writes
// the field. Everything but the field's bytes is fixed at compile time.
type rewrite struct {
	start, end int    // template range replaced
	pre        []byte // encoded items before the content item holding the field (keep first)
	head, tail []byte // content bytes around the field in that item
	post       []byte // encoded items after it
	contentTag Tag
	n          int // field length
	newLen     int // encoded length of the replacement
	encl       []*Node
}

// compileRewrite builds the rewrite of element el that writes n field
// bytes at file position a, keeping every byte the element already writes.
func compileRewrite(src []byte, el *fileElement, a, n int) (*rewrite, error) {
	end := a + n
	for _, w := range el.writes {
		end = max(end, w.pos+w.n)
	}
	img := make([]byte, end)
	set := make([]bool, end)
	for _, w := range el.writes {
		copy(img[w.pos:w.pos+w.n], src[w.tmplOff:w.tmplOff+w.n])
		for i := w.pos; i < w.pos+w.n; i++ {
			set[i] = true
		}
	}
	for i := a; i < a+n; i++ {
		set[i] = true
	}
	offTag, contentTag := Tag(0x82), Tag(0x83)
	if el.gfm {
		offTag, contentTag = 0x02, 0x81
	}
	rw := &rewrite{start: el.start, end: el.end, contentTag: contentTag, n: n, encl: el.encl}
	rw.pre = append(rw.pre, el.keep...)
	cur := &rw.pre
	prev := 0
	for i := 0; i < end; {
		if !set[i] {
			i++
			continue
		}
		j := i
		for j < end && set[j] {
			j++
		}
		for gap := i - prev; gap > 0; {
			step := min(gap, 0xFFFF)
			*cur = offTag.Append(*cur)
			var num [5]byte
			enc := appendUint(num[:0], step)
			*cur = appendLen(*cur, len(enc))
			*cur = append(*cur, enc...)
			gap -= step
		}
		if i <= a && a < j { // the run holding the field
			rw.head = append([]byte(nil), img[i:a]...)
			rw.tail = append([]byte(nil), img[a+n:j]...)
			cur = &rw.post
		} else {
			*cur = contentTag.Append(*cur)
			*cur = appendLen(*cur, j-i)
			*cur = append(*cur, img[i:j]...)
		}
		prev, i = j, j
	}
	body := len(rw.head) + n + len(rw.tail)
	rw.newLen = len(rw.pre) + contentTag.Len() + lenSize(body) + body + len(rw.post)
	return rw, nil
}

// appendTo writes the replacement with the field value v.
func (rw *rewrite) appendTo(out, v []byte) []byte {
	out = append(out, rw.pre...)
	out = rw.contentTag.Append(out)
	out = appendLen(out, len(rw.head)+len(v)+len(rw.tail))
	out = append(out, rw.head...)
	out = append(out, v...)
	out = append(out, rw.tail...)
	return append(out, rw.post...)
}

// wrapFile makes the replacement a whole File component with tag t (the
// fill commands inside it): for a file the FS PE does not mention.
func (rw *rewrite) wrapFile(t Tag) {
	hdr := t.Append(nil)
	hdr = appendLen(hdr, rw.newLen)
	rw.pre = append(hdr, rw.pre...)
	rw.newLen += len(hdr)
}

// defaultFiles are the personalisable files that the TCA templates
// create whether or not their FS PE has a File component for them (they
// are mandatory in the template: TS 102 221 EF.ICCID in the MF, TS 31.102
// EF.IMSI, EF.ACC and EF.AD in ADF.USIM); their content is the profile's
// to supply ("content required").
var defaultFiles = map[PEType][]string{PEMF: {"ef-iccid"}, PEUSIM: {"ef-imsi", "ef-acc", "ef-ad"}}

func createdByDefault(pe *PE, name string) bool {
	for _, n := range defaultFiles[pe.Type] {
		if n == name {
			return true
		}
	}
	return false
}

// fileTag is the context tag of a File component of an FS PE type
// (component i of fsFields has tag number i+2).
func fileTag(t PEType, name string) Tag {
	for i, n := range fsFieldsByType[t] {
		if n == name {
			num := i + 2
			if num < 31 {
				return Tag(0xA0 | num)
			}
			return Tag(0xBF00 | num) // the File tags are below 128
		}
	}
	return 0
}

// newFileComponent is the element that a File component added to pe for
// the file name would be: empty, at its position among the PE's
// components (DER SEQUENCE order: by tag number).
func newFileComponent(pe *PE, name string) *fileElement {
	tag := fileTag(pe.Type, name)
	at := pe.Node.End()
	for i, c := range pe.Node.Children {
		if i >= 2 && c.Tag.Class() == 0x80 && c.Tag.Number() > tag.Number() {
			at = c.Offset
			break
		}
	}
	return &fileElement{pe: pe, encl: []*Node{pe.Node}, start: at, end: at, fileTag: tag, where: name + " (new File component)"}
}

// describe names an element for placement reports.
func (el *fileElement) describe() string {
	return fmt.Sprintf("PE #%d (%s) %s", el.pe.Index, el.pe.Type, el.where)
}

// fileField is a record field held in a file of an FS PE.
type fileField struct {
	kind     SlotKind
	file     string
	required bool
	derive   Derived // 0 for record fields; else on only with the option
}

// fileFields lists the file fields per FS PE type.
var fileFields = map[PEType][]fileField{
	PEMF: {{SlotEFICCID, "ef-iccid", true, 0}},
	PEUSIM: {{SlotIMSI, "ef-imsi", true, 0}, {SlotACC, "ef-acc", false, 0}, {SlotSMSC, "ef-smsp", false, 0},
		{SlotSPN, "ef-spn", false, 0}, {SlotAD, "ef-ad", false, DeriveAD}},
	PEOptUSIM: {{SlotMSISDN, "ef-msisdn", false, 0}, {SlotEHPLMN, "ef-ehplmn", false, DeriveHPLMN}, {SlotHPLMNwAcT, "ef-hplmnwact", false, DeriveHPLMN},
		{SlotGID1, "ef-gid1", false, DeriveGID}, {SlotGID2, "ef-gid2", false, DeriveGID}},
	PEISIM:   {{SlotIMPI, "ef-impi", false, DeriveISIM}, {SlotIMPU, "ef-impu", false, DeriveISIM}, {SlotDomain, "ef-domain", false, DeriveISIM}},
	PECSIM:   {{SlotIMSIM, "ef-imsi-m", false, DeriveCSIM}, {SlotIMSIT, "ef-imsi-t", false, DeriveCSIM}},
	PEDF5GS:  {{SlotSUCICalcInfo, "ef-suci-calc-info", false, DeriveSUCI}},
	PEDFSAIP: {{SlotSUCICalcInfoUSIM, "ef-suci-calc-info-usim", false, DeriveSUCI}},
	PEIoT: {{SlotEFICCID, "ef-iccid", false, 0}, {SlotIMSI, "ef-imsi", true, 0}, {SlotACC, "ef-acc", false, 0},
		{SlotSMSC, "ef-smsp", false, 0}, {SlotSPN, "ef-spn", false, 0}, {SlotAD, "ef-ad", false, DeriveAD}},
}

func fieldFor(t PEType, file string) (fileField, bool) {
	for _, f := range fileFields[t] {
		if f.file == file {
			return f, true
		}
	}
	return fileField{}, false
}

// Longest derived ISIM values: a 15-digit IMSI's NAI is 49 characters
// ("001010123456789@ims.mnc001.mcc001.3gppnetwork.org"), its IMPU 53, the
// domain 33; each plus a 2-byte TLV header.
const (
	maxIMPI   = 2 + 15 + len("@ims.mnc000.mcc000.3gppnetwork.org")
	maxIMPU   = maxIMPI + len("sip:")
	domainLen = 2 + len("ims.mnc000.mcc000.3gppnetwork.org")
)

// fieldPlace is the position and length of a field in file t, or why the
// file cannot take it.
func fieldPlace(k SlotKind, t *fileTrack, consts map[SlotKind][]byte) (at, n int, why string) {
	switch k {
	case SlotIMSIM, SlotIMSIT:
		n = 10
	case SlotGID1, SlotGID2, SlotSUCICalcInfo, SlotSUCICalcInfoUSIM:
		// Padded with FF to the file: the card reads the whole file.
		v := consts[k]
		if t.size < 0 {
			return 0, 0, "no efFileSize in the file descriptor: the value's padding needs the file size"
		}
		if t.size < len(v) || t.size > maxFilePos {
			return 0, 0, fmt.Sprintf("the file has %d bytes, the value %d", t.size, len(v))
		}
		n = t.size
	case SlotEFICCID:
		n = 10
	case SlotIMSI:
		n = 9
	case SlotACC:
		n = 2
	case SlotAD:
		at, n = 3, 1
	case SlotEHPLMN, SlotHPLMNwAcT:
		n = 3
	case SlotSPN:
		n = 17
		if t.size >= 0 && t.size != n {
			return 0, 0, fmt.Sprintf("EF.SPN declared with %d bytes, want 17", t.size)
		}
	case SlotIMPI, SlotDomain:
		need := maxIMPI
		if k == SlotDomain {
			need = domainLen
		}
		if t.size < 0 {
			return 0, 0, "no efFileSize in the file descriptor: the value's padding needs the file size"
		}
		if t.size < need || t.size > 255 {
			return 0, 0, fmt.Sprintf("the file has %d bytes; the value needs %d (for a 15-digit IMSI), at most 255 are supported", t.size, need)
		}
		n = t.size
	case SlotSMSC, SlotMSISDN, SlotIMPU:
		rl := 0
		if t.fcp != nil {
			rl = t.fcp.RecordLength()
		}
		min := map[SlotKind]int{SlotSMSC: 28, SlotMSISDN: 14, SlotIMPU: maxIMPU}[k]
		if rl < min || rl > 255 {
			if rl == 0 {
				return 0, 0, "no record length in the file descriptor"
			}
			return 0, 0, fmt.Sprintf("record length %d, want %d..255", rl, min)
		}
		n = rl
	}
	if t.size >= 0 && t.size < at+n {
		return 0, 0, fmt.Sprintf("the file has %d bytes (efFileSize), the value needs %d", t.size, at+n)
	}
	return at, n, ""
}

// peAt returns the PE holding an absolute template offset.
func (p *Profile) peAt(off int) *PE {
	i := sort.Search(len(p.PEs), func(i int) bool { return p.PEs[i].Node.End() > off })
	if i < len(p.PEs) {
		return p.PEs[i]
	}
	return p.PEs[len(p.PEs)-1]
}

// hdrIndex returns the index of n in pl.hdrs, adding it.
func (pl *Plan) hdrIndex(n *Node) int {
	for i, h := range pl.hdrs {
		if h.start == n.Offset {
			return i
		}
	}
	pl.hdrs = append(pl.hdrs, hdrInfo{start: n.Offset, valStart: n.ValueOffset(), end: n.End(), tag: n.Tag})
	return len(pl.hdrs) - 1
}

// compileFiles finds the placement of every file field (see the file
// model at the top of this file).
func (pl *Plan) compileFiles(p *Profile, o Options) error {
	m, err := p.buildFileModel()
	if err != nil {
		return err
	}
	consts, err := o.constants()
	if err != nil {
		return err
	}
	for _, t := range m.tracks {
		fd, ok := fieldFor(t.pe.Type, t.name)
		if !ok || (fd.derive != 0 && !o.derives(fd.derive)) {
			continue
		}
		if (fd.derive == DeriveGID || fd.derive == DeriveSUCI) && consts[fd.kind] == nil {
			continue // GID2 without GID1, say
		}
		at, n, why := fieldPlace(fd.kind, t, consts)
		if why == "" && !t.exists {
			if !t.doNotCreate && createdByDefault(t.pe, t.name) {
				// SAIP: a mandatory file of the PE's template is created
				// with the template's FCP even without a File component;
				// its content is then the record's to supply.
				t.exists = true
			} else {
				why = "the file is not in the template (no File component or doNotCreate, and no createFCP)"
			}
		}
		if why != "" {
			if fd.required {
				return errAt(t.pe.Index, t.pe.Type, t.pe.Offset, t.name, fmt.Errorf("%s: %w", why, ErrNoSlot))
			}
			pl.notes = append(pl.notes, fmt.Sprintf("%s: PE #%d (%s) %s: %s", Slot{Kind: fd.kind}.Name(), t.pe.Index, t.pe.Type, t.name, why))
			pl.noteKinds = append(pl.noteKinds, fd.kind)
			continue
		}
		if prev, ok := pl.fieldLen[fd.kind]; ok && prev != n {
			return errAt(t.pe.Index, t.pe.Type, t.pe.Offset, t.name,
				fmt.Errorf("record length %d differs from the %d of another copy: %w", n, prev, ErrStructure))
		}
		pl.fieldLen[fd.kind] = n
		base := Slot{Kind: fd.kind, File: t.name}
		if pieces, covered := t.landing(at, n); covered {
			for _, pc := range pieces {
				s := base
				holder := p.peAt(pc.tmplOff)
				s.PE, s.PEType, s.Offset, s.Len, s.From, s.FileOffset, s.Fixed = holder.Index, holder.Type, pc.tmplOff, pc.n, pc.from, at+pc.from, true
				if len(pieces) > 1 || holder != t.pe {
					s.Placement = PlacePiece
				}
				pl.slots = append(pl.slots, s)
			}
			pl.kinds[fd.kind] = true
			continue
		}
		var el *fileElement
		insert := len(t.elems) == 0
		if insert {
			// No element writes the file: the rewrite adds a File
			// component to the FS PE, in its ASN.1 position.
			el = newFileComponent(t.pe, t.name)
		} else {
			el = t.elems[len(t.elems)-1]
		}
		reason := "the template writes no content for it"
		if insert {
			reason = "the FS PE has no File component for it (the template's default file is created): one is added"
		}
		for _, e := range t.elems {
			for _, w := range e.writes {
				if w.pos < at+n && w.pos+w.n > at {
					reason = "the template writes only part of it"
				}
			}
		}
		rw, err := compileRewrite(p.src, el, at, n)
		if err != nil {
			return err
		}
		if insert {
			rw.wrapFile(el.fileTag)
		}
		s := base
		s.FileOffset = at
		s.PE, s.PEType, s.Offset, s.Len, s.Placement, s.Target, s.Reason = el.pe.Index, el.pe.Type, rw.start, n, PlaceRewrite, el.describe(), reason
		pl.slots = append(pl.slots, s)
		vs := varSlot{kind: fd.kind, pe: el.pe.Index, rw: rw, growth: rw.newLen - (rw.end - rw.start)}
		for _, enc := range rw.encl {
			vs.hdrs = append(vs.hdrs, pl.hdrIndex(enc))
		}
		pl.vars = append(pl.vars, vs)
		pl.kinds[fd.kind] = true
	}
	if o.derives(DeriveCSIM) {
		for _, pe := range p.All(PECDMAParameter) {
			pl.notes = append(pl.notes, fmt.Sprintf("cdmaParameter: PE #%d: not derived: its A-key and shared secrets (SSD) are operator secrets that no record field holds; the template's values stay", pe.Index))
			pl.noteKinds = append(pl.noteKinds, 0)
		}
	}
	// Order the enclosing TLVs innermost first (highest offset first: a TLV
	// inside another starts after it) for Apply's length propagation.
	order := make([]int, len(pl.hdrs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return pl.hdrs[order[i]].start > pl.hdrs[order[j]].start })
	pos := make([]int, len(order))
	hdrs := make([]hdrInfo, len(order))
	for newI, oldI := range order {
		pos[oldI], hdrs[newI] = newI, pl.hdrs[oldI]
	}
	pl.hdrs = hdrs
	for i := range pl.vars {
		for j, h := range pl.vars[i].hdrs {
			pl.vars[i].hdrs[j] = pos[h]
		}
	}
	return nil
}
