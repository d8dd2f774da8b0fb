package template

import (
	"bytes"
	"errors"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// withICCIDSize gives the MF's EF.ICCID an FCP declaring size bytes.
func withICCIDSize(p *Profile, size int) {
	f := p.First(PEMF).FS.File("ef-iccid")
	f.FCP.Node.Value = []byte{0x82, 0x02, 0x41, 0x21, 0x83, 0x02, 0x2F, 0xE2, 0x80, 0x01, byte(size)}
}

func TestMalformedFillCommandsGetLocatedErrors(t *testing.T) {
	der := ts48(t)[v5]
	iccid := func(p *Profile) []byte { return p.First(PEMF).FS.File("ef-iccid").Content() }
	cases := []struct {
		name   string
		edit   func(p *Profile)
		wantPE PEType
		item   func(q *Profile) int // offset the error must name
	}{
		{"content beyond efFileSize", func(p *Profile) { withICCIDSize(p, 5) }, PEMF,
			func(q *Profile) int { return q.First(PEMF).FS.File("ef-iccid").Fill[0].Offset }},
		{"offset beyond efFileSize", func(p *Profile) {
			withICCIDSize(p, 10)
			setFill(t, p, PEMF, "ef-iccid", fillContent(iccid(p)), fillOffset(1))
		}, PEMF, func(q *Profile) int { return q.First(PEMF).FS.File("ef-iccid").Fill[1].Offset }},
		{"offsets beyond any file", func(p *Profile) {
			var items []*Node
			for i := 0; i < 17; i++ {
				items = append(items, fillOffset(0xFFFF))
			}
			setFill(t, p, PEMF, "ef-iccid", append(items, fillContent(iccid(p)))...)
		}, PEMF, func(q *Profile) int { return q.First(PEMF).FS.File("ef-iccid").Fill[16].Offset }},
		{"genericFileManagement content without a selected EF", func(p *Profile) {
			addGFM(p, gfmPath("7f10"), gfmContent([]byte{1, 2}))
		}, PEGenericFileManagement, func(q *Profile) int {
			g := q.PEs[len(q.PEs)-2]
			return g.GFM.Commands[0][1].Node.Offset
		}},
		{"genericFileManagement offset beyond the file", func(p *Profile) {
			withICCIDSize(p, 10)
			addGFM(p, gfmPath("2fe2"), gfmOffset(4), gfmContent(make([]byte, 7)))
		}, PEGenericFileManagement, func(q *Profile) int {
			g := q.PEs[len(q.PEs)-2]
			return g.GFM.Commands[0][2].Node.Offset
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := Decode(der)
			c.edit(p)
			bad := p.Encode()
			q, err := Decode(bad)
			if err != nil {
				t.Fatalf("the variant itself does not decode: %v", err)
			}
			_, err = Compile(bad)
			if !errors.Is(err, ErrStructure) {
				t.Fatalf("Compile: %v, want ErrStructure", err)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *template.Error", err)
			}
			if te.Type != c.wantPE.String() || te.PE < 0 || q.PEs[te.PE].Type != c.wantPE {
				t.Fatalf("error names PE #%d (%s), want a %s PE: %v", te.PE, te.Type, c.wantPE, err)
			}
			if want := c.item(q); te.Offset != want {
				t.Fatalf("error names offset 0x%x, want 0x%x (the command): %v", te.Offset, want, err)
			}
		})
	}
}

func TestRecordFilesArePersonalisedRecordByRecord(t *testing.T) {
	der := ts48(t)[v5]
	p, _ := Decode(der)
	f := p.First(PEUSIM).FS.File("ef-smsp")
	rl := f.FCP.RecordLength()
	rec2 := bytes.Repeat([]byte{0x42}, rl)
	for _, c := range []struct {
		name  string
		items []*Node
		place Placement
	}{
		{"records 1 and 2 written", []*Node{fillContent(bytes.Repeat([]byte{0xFF}, rl)), fillContent(rec2)}, PlaceInPlace},
		{"only record 2 written", []*Node{fillOffset(rl), fillContent(rec2)}, PlaceRewrite},
		{"record 1 split across the two", []*Node{fillContent(bytes.Repeat([]byte{0xFF}, rl/2)), fillContent(bytes.Repeat([]byte{0xFF}, rl-rl/2)), fillContent(rec2)}, PlacePiece},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, _ := Decode(der)
			setFill(t, p, PEUSIM, "ef-smsp", c.items...)
			tmpl := p.Encode()
			pl, err := Compile(tmpl)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range pl.Slots() {
				if s.Kind == SlotSMSC && s.Placement != c.place {
					t.Fatalf("SMSC placed %s, want %s", s.Placement, c.place)
				}
			}
			v := randomValues(seedFor(c.name), pl)
			v.SMSC = "+447700900123"
			out, err := pl.Apply(v, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkCard(t, out, v, esim.AlgorithmUnset)
			card := installCard(t, out)
			adf := card.usimADFs[0]
			if got := card.files[adf+cardFIDSMSP].bytes(t, "EF.SMSP record 2", rl, rl); !bytes.Equal(got, rec2) {
				t.Fatalf("record 2 changed: %x", got)
			}
		})
	}
}

// FuzzFileGrammar builds EF.IMSI's fill commands (or drops its File
// component), and those of a later genericFileManagement PE, from the fuzz
// input, and checks that Compile
// either refuses the template with a located error or yields a plan whose
// every output a card reads back as the record.
func FuzzFileGrammar(f *testing.F) {
	f.Add([]byte{1, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0, 3, 1, 6, 3, 3, 3, 3, 3, 3})
	f.Add([]byte{})
	f.Add([]byte{2, 2, 3, 4, 1, 2, 3, 4})
	f.Add([]byte{0, 0xFF, 0, 0xFF, 1, 3, 1, 2, 3, 2, 0xFF, 3, 1, 9})
	f.Add([]byte{0x82, 1, 3, 4, 1, 2, 3, 4})    // File omitted, a later PE writes part
	f.Add([]byte{0x82, 0, 3, 9, 8, 9, 1, 2, 3}) // File omitted, a later PE writes it
	grammarDER = ts48(f)[v5]
	f.Fuzz(runGrammar)
}

var grammarDER []byte

// runGrammar is FuzzFileGrammar's body.
func runGrammar(t *testing.T, ops []byte) {
	p, err := Decode(grammarDER)
	if err != nil {
		t.Fatal(err)
	}
	adf := p.First(PEUSIM).FS.Files[0].FCP.FileID()
	var fs, gfm []*Node
	gfm = append(gfm, &Node{Tag: 0x80, Offset: -1, Value: append(append([]byte(nil), adf...), 0x6F, 0x07)})
	for i := 0; i+1 < len(ops) && len(fs)+len(gfm) < 64; i += 2 {
		op, n := ops[i], int(ops[i+1])
		switch op % 4 {
		case 0:
			fs = append(fs, fillOffset(n*257))
		case 1:
			b := ops[i+2 : i+2+min(n%16, len(ops)-i-2)]
			fs = append(fs, fillContent(b))
			i += len(b)
		case 2:
			gfm = append(gfm, gfmOffset(n*257))
		case 3:
			b := ops[i+2 : i+2+min(n%16, len(ops)-i-2)]
			gfm = append(gfm, gfmContent(b))
			i += len(b)
		}
	}
	if len(fs) == 0 && len(ops) > 0 && ops[0]&0x80 != 0 {
		// No File component at all: the template's default EF.IMSI.
		removeFile(t, p, PEUSIM, "ef-imsi")
	} else {
		setFill(t, p, PEUSIM, "ef-imsi", fs...)
	}
	if len(gfm) > 1 {
		addGFM(p, gfm...)
	}
	tmpl := p.Encode()
	pl, err := Compile(tmpl)
	if err != nil {
		var te *Error
		if !errors.As(err, &te) || te.PE < 0 || te.Offset < 0 {
			t.Fatalf("error without a PE and offset: %v", err)
		}
		return
	}
	v := randomValues(seedFor(string(ops)), pl)
	out, err := pl.Apply(v, nil)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := Decode(out); err != nil {
		t.Fatalf("output does not decode: %v", err)
	}
	checkCard(t, out, v, v.Algorithm)
	if out, err := pl.Apply(&Values{}, nil); err != nil || !bytes.Equal(out, tmpl) {
		t.Fatalf("Apply(empty) changed the template (err %v)", err)
	}
}
