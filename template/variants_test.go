package template

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// Variants of the TS.48 templates that place file contents the other ways
// SAIP allows: behind an offset, split, absent, rewritten by a later PE.

func fillContent(b []byte) *Node {
	return &Node{Tag: 0x83, Offset: -1, Value: append([]byte(nil), b...)}
}
func fillOffset(n int) *Node { return &Node{Tag: 0x82, Offset: -1, Value: appendUint(nil, n)} }
func gfmPath(path string) *Node {
	b, _ := hex.DecodeString(path)
	return &Node{Tag: 0x80, Offset: -1, Value: b}
}
func gfmOffset(n int) *Node { return &Node{Tag: 0x02, Offset: -1, Value: appendUint(nil, n)} }
func gfmContent(b []byte) *Node {
	return &Node{Tag: 0x81, Offset: -1, Value: append([]byte(nil), b...)}
}

// setFill replaces the fill commands of a file of the first PE of type pt,
// keeping its other items (the FCP).
func setFill(t *testing.T, p *Profile, pt PEType, name string, items ...*Node) {
	t.Helper()
	f := p.First(pt).FS.File(name)
	if f == nil {
		t.Fatalf("no %s in %s", name, pt)
	}
	var keep []*Node
	for _, c := range f.Node.Children {
		if c.Tag != 0x82 && c.Tag != 0x83 {
			keep = append(keep, c)
		}
	}
	f.Node.Children = append(keep, items...)
}

// removeFile drops the File component of a file from the first PE of type
// pt (the template's default file is then created, without content).
func removeFile(t *testing.T, p *Profile, pt PEType, name string) {
	t.Helper()
	pe := p.First(pt)
	f := pe.FS.File(name)
	if f == nil {
		t.Fatalf("no %s in %s", name, pt)
	}
	var kept []*Node
	for _, c := range pe.Node.Children {
		if c != f.Node {
			kept = append(kept, c)
		}
	}
	pe.Node.Children = kept
}

// addGFM inserts a genericFileManagement PE with one command sequence
// before the end PE.
func addGFM(p *Profile, cmds ...*Node) {
	id := 0
	for _, pe := range p.PEs {
		id = max(id, pe.ID)
	}
	hdr := &Node{Tag: 0xA0, Offset: -1, Children: []*Node{{Tag: 0x81, Offset: -1, Value: appendUint(nil, id+1)}}}
	seq := &Node{Tag: 0x30, Offset: -1, Children: cmds}
	n := &Node{Tag: 0xA1, Offset: -1, Children: []*Node{hdr, {Tag: 0xA1, Offset: -1, Children: []*Node{seq}}}}
	end := p.PEs[len(p.PEs)-1]
	p.PEs = append(p.PEs[:len(p.PEs)-1], &PE{Node: n, Type: PEGenericFileManagement}, end)
}

// fileVariant rewrites how the template writes one file's content c.
type fileVariant struct {
	name  string
	place Placement // expected placement of the field's slots
	edit  func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte)
}

var fileVariants = []fileVariant{
	{"as shipped", PlaceInPlace, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {}},
	{"behind an offset", PlaceRewrite, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		setFill(t, p, pt, file, fillOffset(1), fillContent(c[1:]))
	}},
	{"split in three", PlacePiece, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		a, b := len(c)/3, 2*len(c)/3
		setFill(t, p, pt, file, fillContent(c[:a]), fillContent(c[a:b]), fillContent(c[b:]))
	}},
	{"split around an offset, the gap filled by a later PE", PlacePiece, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		a := len(c) / 2
		setFill(t, p, pt, file, fillContent(c[:a]), fillOffset(1), fillContent(c[a+1:]))
		addGFM(p, gfmPath(path), gfmOffset(a), gfmContent(c[a:a+1]))
	}},
	{"absent (FCP only)", PlaceRewrite, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		setFill(t, p, pt, file)
	}},
	{"omitted (no File component: the template's default file)", PlaceRewrite, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		removeFile(t, p, pt, file)
	}},
	{"omitted, written by a later PE", PlacePiece, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		removeFile(t, p, pt, file)
		addGFM(p, gfmPath(path), gfmContent(c))
	}},
	{"omitted, half written by a later PE", PlaceRewrite, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		removeFile(t, p, pt, file)
		addGFM(p, gfmPath(path), gfmOffset(1), gfmContent(c[1:len(c)/2]))
	}},
	{"rewritten by a later PE", PlacePiece, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		setFill(t, p, pt, file, fillContent(make([]byte, len(c))))
		addGFM(p, gfmPath(path), gfmContent(c))
	}},
	{"partly rewritten by a later PE behind an offset", PlacePiece, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		addGFM(p, gfmPath(path), gfmOffset(1), gfmContent(c[1:]))
	}},
	{"absent, half written by a later PE", PlaceRewrite, func(t *testing.T, p *Profile, pt PEType, file, path string, c []byte) {
		setFill(t, p, pt, file)
		addGFM(p, gfmPath(path), gfmContent(c[:len(c)/2]))
	}},
}

// fileTargets are the files whose placement the variants change.
var fileTargets = []struct {
	pt   PEType
	file string
	kind SlotKind
	fid  string
}{
	{PEMF, "ef-iccid", SlotEFICCID, "2fe2"},
	{PEUSIM, "ef-imsi", SlotIMSI, "6f07"},
	{PEUSIM, "ef-acc", SlotACC, "6f78"},
}

// variant builds one variant of a template.
func variant(t *testing.T, der []byte, fv fileVariant, target int) []byte {
	t.Helper()
	p, err := Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	ft := fileTargets[target]
	pe := p.First(ft.pt)
	path := ft.fid
	if ft.pt == PEUSIM || ft.pt == PEOptUSIM {
		path = hex.EncodeToString(p.First(PEUSIM).FS.Files[0].FCP.FileID()) + ft.fid
	}
	switch ft.pt {
	case PEDF5GS:
		path = hex.EncodeToString(p.First(PEUSIM).FS.Files[0].FCP.FileID()) + hex.EncodeToString(pe.FS.Files[0].FCP.FileID()) + ft.fid
	case PECSIM:
		path = hex.EncodeToString(pe.FS.Files[0].FCP.FileID()) + ft.fid
	}
	f := pe.FS.File(ft.file)
	c := append([]byte(nil), f.Content()...)
	if len(c) == 0 {
		// No content in the template (SUCI_Calc_Info, some IMSI_M):
		// the variants place stand-in bytes of the file's size.
		n := fcpSize(f.FCP)
		if n < 0 {
			n = 10 // IMSI_M's size, which V1's FCP leaves to the template
		}
		c = make([]byte, min(n, 64))
	}
	fv.edit(t, p, ft.pt, ft.file, path, c)
	return p.Encode()
}

func sortedNames(m map[string][]byte) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestEveryPlacementPersonalisesByTheIndependentCheck personalises every
// TS.48 template and every variant of it, and reads each output back as a
// card would.
func TestEveryPlacementPersonalisesByTheIndependentCheck(t *testing.T) {
	profiles := ts48(t)
	for _, name := range sortedNames(profiles) {
		der := profiles[name]
		for ti, ft := range fileTargets {
			for _, fv := range fileVariants {
				t.Run(name+"/"+ft.file+"/"+fv.name, func(t *testing.T) {
					tmpl := variant(t, der, fv, ti)
					pl, err := Compile(tmpl)
					if err != nil {
						t.Fatalf("Compile: %v", err)
					}
					for _, s := range pl.Slots() {
						if s.Kind == ft.kind && s.PEType == ft.pt && s.Placement != fv.place && !(fv.place == PlacePiece && s.PEType == PEGenericFileManagement) {
							t.Fatalf("%s slot placed %s (%s), want %s", s.Name(), s.Placement, s.Reason, fv.place)
						}
					}
					r := seedFor(name + ft.file + fv.name)
					for i := 0; i < 3; i++ {
						v := randomValues(r, pl)
						if i == 1 {
							v.SMSC, v.SPN, v.SPNDisplayCondition, v.MSISDN = "+447700900123", "perso", 1, "+447700900999"
						}
						out, err := pl.Apply(v, nil)
						if err != nil {
							t.Fatalf("Apply: %v", err)
						}
						q, err := Decode(out)
						if err != nil {
							t.Fatalf("output does not decode: %v", err)
						}
						if err := q.Validate(); err != nil {
							t.Fatalf("output does not validate: %v", err)
						}
						checkCard(t, out, v, v.Algorithm)
					}
					if out, err := pl.Apply(&Values{}, nil); err != nil || !bytes.Equal(out, tmpl) {
						t.Fatalf("Apply(empty) changed the template (err %v)", err)
					}
				})
			}
		}
	}
}

// TestSwitchingTheAlgorithmUpdatesEveryAKAParameterAndTheHeader compiles
// every TS.48 template (and placement variants) switched to Milenage,
// TUAK-128 and TUAK-256, personalises it and checks the card.
func TestSwitchingTheAlgorithmUpdatesEveryAKAParameterAndTheHeader(t *testing.T) {
	profiles := ts48(t)
	algos := []struct {
		name string
		o    Options
		k    int
		opc  int
	}{
		{"milenage", Options{Algorithm: esim.AlgorithmMilenage}, 16, 16},
		{"tuak128", Options{Algorithm: esim.AlgorithmTUAK}, 16, 32},
		{"tuak256", Options{Algorithm: esim.AlgorithmTUAK, KeyLength: 32}, 32, 32},
		{"test", Options{Algorithm: esim.AlgorithmTest}, 16, 16},
	}
	for _, name := range sortedNames(profiles) {
		for _, fv := range fileVariants { // every placement of EF.IMSI
			tmpl := variant(t, profiles[name], fv, 1)
			for _, a := range algos {
				t.Run(name+"/"+fv.name+"/"+a.name, func(t *testing.T) {
					if _, err := Compile(tmpl); err != nil {
						t.Fatal(err)
					}
					pl, err := CompileWith(tmpl, a.o)
					if err != nil {
						t.Fatalf("CompileWith: %v", err)
					}
					if a.o.Algorithm != esim.AlgorithmTest && pl.Switch() == "" {
						t.Fatal("Plan.Switch is empty")
					}
					if got := pl.Algorithms(); len(got) != 1 || got[0] != a.o.Algorithm {
						t.Fatalf("switched plan declares %v, want only %s", got, a.o.Algorithm)
					}
					r := seedFor(name + a.name)
					for i := 0; i < 3; i++ {
						v := randomValues(r, pl)
						if len(v.K) != a.k || len(v.OPc) != a.opc {
							t.Fatalf("slots take K %d and OPc %d bytes, want %d and %d", len(v.K), len(v.OPc), a.k, a.opc)
						}
						if i == 0 {
							v.Algorithm = esim.AlgorithmUnset // keep the switched one
						}
						out, err := pl.Apply(v, nil)
						if err != nil {
							t.Fatalf("Apply: %v", err)
						}
						q, err := Decode(out)
						if err != nil {
							t.Fatal(err)
						}
						if err := q.Validate(); err != nil {
							t.Fatalf("switched output does not validate: %v", err)
						}
						checkCard(t, out, v, a.o.Algorithm)
					}
				})
			}
		}
	}
}

func TestAlgorithmOptionsAreChecked(t *testing.T) {
	der := ts48(t)[v5]
	for _, o := range []Options{
		{KeyLength: 16},
		{Algorithm: 9},
		{Algorithm: esim.AlgorithmMilenage, KeyLength: 32},
		{Algorithm: esim.AlgorithmTUAK, KeyLength: 24},
	} {
		if _, err := CompileWith(der, o); !errors.Is(err, ErrValue) {
			t.Errorf("CompileWith(%+v): %v, want ErrValue", o, err)
		}
	}
}

// TestDerivedFieldsByTheIndependentCheck turns the derived fields on for
// every TS.48 template (and placement variants of EF.AD and EF.HPLMNwAcT),
// with a 2- and a 3-digit MNC, and checks the derived files on the card.
func TestDerivedFieldsByTheIndependentCheck(t *testing.T) {
	profiles := ts48(t)
	targets := []struct {
		pt   PEType
		file string
		kind SlotKind
		fid  string
	}{{PEUSIM, "ef-ad", SlotAD, "6fad"}, {PEOptUSIM, "ef-hplmnwact", SlotHPLMNwAcT, "6f62"}}
	saved := fileTargets
	defer func() { fileTargets = saved }()
	for _, name := range sortedNames(profiles) {
		for ti, tg := range targets {
			fileTargets = append(saved[:len(saved):len(saved)], tg)
			for _, fv := range fileVariants {
				if tg.file == "ef-hplmnwact" && strings.HasPrefix(fv.name, "omitted") {
					continue // optional in the template: absent without a File component
				}
				tmpl := variant(t, profiles[name], fv, len(saved))
				for _, home := range []string{"00101", "310150"} {
					t.Run(name+"/"+tg.file+"/"+fv.name+"/"+home, func(t *testing.T) {
						if ti == 1 && fv.name == "as shipped" {
							// Derived fields are off without HomePLMN.
							pl, _ := Compile(tmpl)
							if pl.Has(SlotAD) || pl.Has(SlotIMPU) {
								t.Fatal("derived slots without Options.HomePLMN")
							}
						}
						// CSIM's IMSI_M/T need 15-digit IMSIs (00101 + 9
						// digits is 14): TestDerivedCSIMGIDAndSUCI checks them.
						pl, err := CompileWith(tmpl, Options{HomePLMN: home, NoDerive: DeriveCSIM})
						if err != nil {
							t.Fatalf("CompileWith: %v", err)
						}
						want := map[SlotKind]bool{}
						for _, k := range []SlotKind{SlotAD, SlotEHPLMN, SlotHPLMNwAcT, SlotIMPI, SlotIMPU, SlotDomain} {
							want[k] = pl.Has(k)
						}
						if !want[SlotAD] || !want[SlotHPLMNwAcT] || !want[SlotEHPLMN] || !want[SlotIMPU] {
							t.Fatalf("derived slots %v, want EF.AD, EF.EHPLMN, EF.HPLMNwAcT and EF.IMPU; notes %q", want, pl.Notes())
						}
						if want[SlotIMPI] || len(pl.Notes()) != 2 {
							t.Fatalf("TS.48's 32-byte EF.IMPI and EF.DOMAIN cannot take the derived values: want 2 notes, have %q", pl.Notes())
						}
						r := seedFor(name + tg.file + fv.name + home)
						for i := 0; i < 3; i++ {
							v := randomValues(r, pl)
							v.IMSI = testIMSI(home + fmt.Sprintf("%09d", r.IntN(1e9)))
							out, err := pl.Apply(v, nil)
							if err != nil {
								t.Fatalf("Apply: %v", err)
							}
							if _, err := Decode(out); err != nil {
								t.Fatal(err)
							}
							checkCard(t, out, v, v.Algorithm)
							checkDerived(t, out, v, home, want)
						}
					})
				}
			}
		}
	}
}

// TestDerivedISIMIdentitiesFitLargerFiles gives EF.IMPI and EF.DOMAIN room
// for their values (TS.48's are 32 bytes) and checks all three ISIM files.
func TestDerivedISIMIdentitiesFitLargerFiles(t *testing.T) {
	p, _ := Decode(ts48(t)[v5])
	isim := p.First(PEISIM)
	for _, name := range []string{"ef-impi", "ef-domain"} {
		f := isim.FS.File(name)
		if f == nil {
			t.Fatalf("no %s", name)
		}
		fcp := []byte{0x82, 0x02, 0x41, 0x21, 0x83, 0x02, 0x6F, 0x02, 0x80, 0x01, 0x40}
		if name == "ef-domain" {
			fcp[7] = 0x03
		}
		f.FCP.Node.Value = fcp
		setFill(t, p, PEISIM, name)
	}
	pl, err := CompileWith(p.Encode(), Options{HomePLMN: "310150"})
	if err != nil {
		t.Fatal(err)
	}
	if !pl.Has(SlotIMPI) || !pl.Has(SlotDomain) || !pl.Has(SlotIMPU) {
		t.Fatalf("ISIM slots missing; notes %q", pl.Notes())
	}
	v := randomValues(seedFor("isim"), pl)
	v.IMSI = testIMSI("310150123456789")
	out, err := pl.Apply(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkDerived(t, out, v, "310150", map[SlotKind]bool{SlotIMPI: true, SlotIMPU: true, SlotDomain: true, SlotAD: true})
	c := installCard(t, out)
	if got := string(c.files[c.isimADFs[0]+"6f02"].data[2:51]); got != "310150123456789@ims.mnc150.mcc310.3gppnetwork.org" {
		t.Fatalf("EF.IMPI holds %q", got)
	}
	if _, err := pl.Apply(&Values{IMSI: testIMSI("310150")}, nil); !errors.Is(err, ErrValue) {
		t.Fatalf("IMSI without an MSIN after the 3-digit MNC: %v, want ErrValue", err)
	}
	if _, err := CompileWith(ts48(t)[v5], Options{HomePLMN: "0010"}); !errors.Is(err, ErrValue) {
		t.Fatalf("HomePLMN of 4 digits: %v, want ErrValue", err)
	}
}

// testSUCI is a SUCI configuration: Profile B first, then Profile A, then
// the null-scheme (keys are arbitrary points of the right sizes).
func testSUCI() *SUCICalcInfo {
	a := bytes.Repeat([]byte{0xA5}, 32)
	b := append([]byte{0x02}, bytes.Repeat([]byte{0x5B}, 32)...)
	return &SUCICalcInfo{
		Schemes: []SUCIScheme{{Scheme: 2, KeyID: 7}, {Scheme: 1, KeyID: 3}, {Scheme: 0}},
		Keys:    []HomeNetworkKey{{ID: 3, Key: a}, {ID: 7, Key: b}},
	}
}

// TestDerivedCSIMGIDAndSUCIByTheIndependentCheck turns on the CSIM IMSI_M/T
// derivation, GID1/GID2 and SUCI_Calc_Info for every TS.48 template and
// every placement variant of EF.GID1, DF.5GS EF.SUCI_Calc_Info and CSIM
// EF.IMSI_M (none of them are mandatory files: the "omitted" variants do
// not apply), personalises 15-digit IMSIs and reads the card back.
func TestDerivedCSIMGIDAndSUCIByTheIndependentCheck(t *testing.T) {
	profiles := ts48(t)
	targets := []struct {
		pt   PEType
		file string
		kind SlotKind
		fid  string
	}{{PEOptUSIM, "ef-gid1", SlotGID1, "6f3e"}, {PEDF5GS, "ef-suci-calc-info", SlotSUCICalcInfo, "4f07"}, {PECSIM, "ef-imsi-m", SlotIMSIM, "6f22"}}
	saved := fileTargets
	defer func() { fileTargets = saved }()
	o := Options{HomePLMN: "310150", GID1: []byte{0x12, 0x34}, GID2: []byte{0xAB}, SUCI: testSUCI()}
	for _, name := range sortedNames(profiles) {
		for _, tg := range targets {
			p, _ := Decode(profiles[name])
			if p.First(tg.pt) == nil {
				continue // SUCI files only in SAIP 2.3 templates
			}
			fileTargets = append(saved[:len(saved):len(saved)], tg)
			for _, fv := range fileVariants {
				if strings.HasPrefix(fv.name, "omitted") {
					continue
				}
				t.Run(name+"/"+tg.file+"/"+fv.name, func(t *testing.T) {
					tmpl := variant(t, profiles[name], fv, len(saved))
					pl, err := CompileWith(tmpl, o)
					if err != nil {
						t.Fatalf("CompileWith: %v", err)
					}
					want := map[SlotKind]bool{SlotIMSIM: pl.Has(SlotIMSIM), SlotIMSIT: pl.Has(SlotIMSIT)}
					if !want[SlotIMSIM] || !want[SlotIMSIT] {
						t.Fatalf("no IMSI_M/IMSI_T slots; notes %q", pl.Notes())
					}
					for _, s := range pl.Constants() {
						want[s.Kind] = true
						if s.Kind == tg.kind && fv.place == PlaceRewrite && s.Placement != PlaceRewrite {
							t.Fatalf("%s placed %s, want rewrite", s.Name(), s.Placement)
						}
					}
					if !want[SlotGID1] || !want[SlotGID2] {
						t.Fatalf("GID constants %v; notes %q", pl.Constants(), pl.Notes())
					}
					if p.First(PEDF5GS) != nil && (!want[SlotSUCICalcInfo] || !want[SlotSUCICalcInfoUSIM]) {
						t.Fatalf("SUCI constants %v; notes %q", pl.Constants(), pl.Notes())
					}
					if pl.Has(SlotGID1) || pl.Has(SlotSUCICalcInfo) {
						t.Fatal("constants left as per-record slots")
					}
					cdma := 0
					for _, n := range pl.Notes() {
						if strings.HasPrefix(n, "cdmaParameter") {
							cdma++
						}
					}
					if cdma != len(p.All(PECDMAParameter)) {
						t.Fatalf("want a note per cdmaParameter PE, have %q", pl.Notes())
					}
					// The constants are in the plan's template already.
					checkConstantsAndCSIM(t, pl.Template(), &Values{}, o, map[SlotKind]bool{SlotGID1: true, SlotGID2: true,
						SlotSUCICalcInfo: want[SlotSUCICalcInfo], SlotSUCICalcInfoUSIM: want[SlotSUCICalcInfoUSIM]})
					r := seedFor(name + tg.file + fv.name)
					for i := 0; i < 3; i++ {
						v := randomValues(r, pl)
						v.IMSI = testIMSI("310150" + fmt.Sprintf("%09d", r.IntN(1e9)))
						out, err := pl.Apply(v, nil)
						if err != nil {
							t.Fatalf("Apply: %v", err)
						}
						if q, err := Decode(out); err != nil {
							t.Fatal(err)
						} else if err := q.Validate(); err != nil {
							t.Fatal(err)
						}
						checkCard(t, out, v, v.Algorithm)
						checkConstantsAndCSIM(t, out, v, o, want)
					}
					if _, err := pl.Apply(&Values{IMSI: testIMSI("31015012345678")}, nil); !errors.Is(err, ErrValue) {
						t.Fatalf("a 14-digit IMSI with the CSIM derivation: %v, want ErrValue", err)
					}
				})
			}
		}
	}
}

// TestTS48IMSIMDecodes reads the EF.IMSI_M content the TS.48 templates
// ship with the independent reader and codes it again with the
// derivation's encoder: both must agree on real data.
func TestTS48IMSIMDecodes(t *testing.T) {
	for _, name := range sortedNames(ts48(t)) {
		p, _ := Decode(ts48(t)[name])
		c := p.First(PECSIM).FS.File("ef-imsi-m").Content()
		if len(c) != 10 {
			continue
		}
		got := cardIMSIM(t, c)
		var e [10]byte
		encodeIMSIM(&e, got)
		if !bytes.Equal(e[:], c) {
			t.Fatalf("%s: IMSI_M %x reads as %s, which codes as %x", name, c, got, e)
		}
	}
}

func TestSUCICalcInfoEncodingAndChecks(t *testing.T) {
	b, err := testSUCI().Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "a006" + "0202" + "0101" + "0000" + "a14b" + "800103" + "8120" + strings.Repeat("a5", 32) + "800107" + "8121" + "02" + strings.Repeat("5b", 32)
	if hex.EncodeToString(b) != want {
		t.Fatalf("Encode = %x\nwant     %s", b, want)
	}
	for _, bad := range []*SUCICalcInfo{
		{},
		{Schemes: []SUCIScheme{{Scheme: 3}}},
		{Schemes: []SUCIScheme{{Scheme: 1, KeyID: 9}}, Keys: []HomeNetworkKey{{ID: 1, Key: make([]byte, 32)}}},
		{Schemes: []SUCIScheme{{Scheme: 2, KeyID: 1}}, Keys: []HomeNetworkKey{{ID: 1, Key: make([]byte, 32)}}},
		{Schemes: []SUCIScheme{{Scheme: 0}}, Keys: []HomeNetworkKey{{ID: 1, Key: make([]byte, 32)}, {ID: 1, Key: make([]byte, 32)}}},
	} {
		if _, err := CompileWith(ts48(t)[v5], Options{SUCI: bad}); !errors.Is(err, ErrValue) {
			t.Errorf("SUCI %+v: %v, want ErrValue", bad, err)
		}
	}
	if _, err := CompileWith(ts48(t)[v5], Options{GID1: make([]byte, 3)}); err != nil {
		t.Fatalf("GID1 longer than TS.48's 2-byte file: %v, want a note, not an error", err)
	}
	pl, _ := CompileWith(ts48(t)[v5], Options{GID1: make([]byte, 3)})
	if len(pl.Constants()) != 0 || len(pl.Notes()) != 1 || !strings.Contains(pl.Notes()[0], "EF.GID1") {
		t.Fatalf("GID1 of 3 bytes: constants %v notes %q, want one note", pl.Constants(), pl.Notes())
	}
}

// TestDerivedFieldsDoNotAllocate: a plan with every per-record derived
// field in place (TS.48: EF.AD, EF.EHPLMN, EF.HPLMNwAcT, CSIM IMSI_M/T)
// personalises without allocating.
func TestDerivedFieldsDoNotAllocate(t *testing.T) {
	pl, err := CompileWith(ts48(t)[v5], Options{HomePLMN: "310150", NoDerive: DeriveISIM})
	if err != nil {
		t.Fatal(err)
	}
	v := &Values{IMSI: testIMSI("310150123456789")}
	dst := make([]byte, 0, 2*len(pl.Template()))
	if n := testing.AllocsPerRun(100, func() {
		if _, err := pl.Apply(v, dst); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per Apply", n)
	}
}
