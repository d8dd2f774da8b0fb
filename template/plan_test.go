package template

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// fields is what the full decoder reads back from a profile: for every
// personalisable field, the value of every copy, in profile order. Keys are
// "header-iccid", "ef-iccid", "imsi", "acc", "algorithm", "k", "opc",
// "pin/0x01", "puk/0x81", "sd0/kvn01/id02", "smsc", "spn".
type fields map[string][]string

// readBack extracts every personalisable field from a decoded profile
// through the typed views only (no slot offsets).
func readBack(t *testing.T, p *Profile) fields {
	t.Helper()
	f := fields{}
	put := func(k, v string) { f[k] = append(f[k], v) }
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sd := 0
	for _, pe := range p.PEs {
		switch pe.Type {
		case PEHeader:
			put("header-iccid", must(text(esim.ICCIDFromBCD(pe.Header.ICCID))))
		case PEMF:
			put("ef-iccid", must(text(esim.ICCIDFromSwappedBCD(pe.FS.File("ef-iccid").Content()))))
		case PEUSIM:
			put("imsi", must(text(esim.IMSIFromEF(pe.FS.File("ef-imsi").Content()))))
			put("acc", fmt.Sprintf("%x", pe.FS.File("ef-acc").Content()))
			if smsp := pe.FS.File("ef-smsp"); smsp != nil && smsp.Content() != nil {
				rec := smsp.Content()[:smsp.FCP.RecordLength()]
				put("smsc", must(DecodeSMSP(rec)))
			}
			if spn := pe.FS.File("ef-spn"); spn != nil && spn.Content() != nil {
				cond, name, err := DecodeSPN(spn.Content())
				put("spn", fmt.Sprintf("%02x:%s", cond, must(name, err)))
			}
		case PEOptUSIM:
			if m := pe.FS.File("ef-msisdn"); m != nil && m.Content() != nil {
				put("msisdn", must(DecodeMSISDN(m.Content()[:m.FCP.RecordLength()])))
			}
		case PEAKAParameter:
			if a := pe.AKA.Algo; a != nil {
				put("algorithm", a.AlgorithmID.String())
				put("k", fmt.Sprintf("%x", a.Key))
				put("opc", fmt.Sprintf("%x", a.OPc))
			}
		case PEPINCodes:
			for _, c := range pe.PINs.Configs {
				put(fmt.Sprintf("pin/0x%02x", c.KeyReference), esim.CodeText(c.Value))
			}
		case PEPUKCodes:
			for _, c := range pe.PUKs.Configs {
				put(fmt.Sprintf("puk/0x%02x", c.KeyReference), esim.CodeText(c.Value))
			}
		case PESecurityDomain:
			for _, k := range pe.SD.Keys {
				put(fmt.Sprintf("sd%d/kvn%02x/id%02x", sd, k.KVN, k.ID), fmt.Sprintf("%x", k.Components[0].Data))
			}
			sd++
		}
	}
	return f
}

// randomValues draws a record that fits the plan: every field the template
// can take, with random lengths where the format allows.
func randomValues(r *rand.Rand, pl *Plan) *Values {
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		return string(b)
	}
	bytesN := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	v := &Values{
		ICCID:     testICCID("89" + digits(15+r.IntN(3))),
		IMSI:      testIMSI(digits(6 + r.IntN(10))),
		Algorithm: esim.AlgorithmUnset,
		PIN1:      card(digits(4 + r.IntN(5))),
		PIN2:      card(digits(4 + r.IntN(5))),
		PUK1:      card(digits(8)),
		PUK2:      card(digits(8)),
	}
	if algos := pl.Algorithms(); len(algos) > 0 && r.IntN(4) != 0 {
		v.Algorithm = algos[r.IntN(len(algos))]
	}
	if r.IntN(2) == 0 {
		v.ADM1 = card(digits(8))
	} else {
		v.ADM1 = bytesN(8) // a binary ADM key
	}
	for _, s := range pl.Slots() {
		switch {
		case s.Kind == SlotK && v.K == nil:
			v.K = bytesN(s.Len)
		case s.Kind == SlotOPc && v.OPc == nil:
			v.OPc = bytesN(s.Len)
		case s.Kind == SlotPIN && s.KeyRef == admRef(2) && v.ADM2 == nil:
			v.ADM2 = card(digits(4 + r.IntN(5)))
		case s.Kind == SlotSDKey:
			v.SDKeys = append(v.SDKeys, SDKey{KVN: s.KVN, ID: s.KeyID, SD: s.SD, Key: bytesN(s.Len)})
		}
	}
	return v
}

// expected turns a record into the read-back form, with as many copies as
// the template has of each field (counted by the full decoder).
func expected(v *Values, tmpl fields) fields {
	want := fields{}
	for k, copies := range tmpl {
		want[k] = slices.Clone(copies)
	}
	set := func(k, val string) {
		for i := range want[k] {
			want[k][i] = val
		}
	}
	acc := v.IMSI.ACC()
	set("header-iccid", v.ICCID.String())
	set("ef-iccid", v.ICCID.String())
	set("imsi", v.IMSI.String())
	set("acc", fmt.Sprintf("%x", acc))
	if v.Algorithm != esim.AlgorithmUnset {
		set("algorithm", v.Algorithm.String())
	}
	set("k", fmt.Sprintf("%x", v.K))
	set("opc", fmt.Sprintf("%x", v.OPc))
	set("pin/0x01", code(v.PIN1))
	set("pin/0x81", code(v.PIN2))
	set("pin/0x0a", code(v.ADM1))
	set("pin/0x0b", code(v.ADM2))
	set("puk/0x01", code(v.PUK1))
	set("puk/0x81", code(v.PUK2))
	for _, k := range v.SDKeys {
		set(fmt.Sprintf("sd%d/kvn%02x/id%02x", k.SD, k.KVN, k.ID), fmt.Sprintf("%x", k.Key))
	}
	return want
}

func seedFor(name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(h.Sum64(), 2))
}

func TestApplyWritesEveryCopyOfEveryFieldAndNothingElse(t *testing.T) {
	for name, der := range ts48(t) {
		t.Run(name, func(t *testing.T) {
			pl, err := Compile(der)
			if err != nil {
				t.Fatal(err)
			}
			tp, err := Decode(der)
			if err != nil {
				t.Fatal(err)
			}
			tmplFields := readBack(t, tp)
			// The fields every TS.48 template must expose, with the copy
			// counts the spec digest describes.
			for k, n := range map[string]int{"header-iccid": 1, "ef-iccid": 1, "imsi": 1, "acc": 1, "k": 2, "opc": 2,
				"pin/0x01": 1, "pin/0x0a": 1, "puk/0x01": 1, "puk/0x81": 1} {
				if got := len(tmplFields[k]); got != n {
					t.Fatalf("template has %d copies of %s, want %d", got, k, n)
				}
			}
			if len(tmplFields["pin/0x81"]) < 4 {
				t.Fatalf("template has %d PIN2 copies, want ≥ 4 (telecom + each NAA)", len(tmplFields["pin/0x81"]))
			}
			r := seedFor(name)
			buf := make([]byte, 0, len(der))
			for i := 0; i < 25; i++ {
				v := randomValues(r, pl)
				out, err := pl.Apply(v, buf)
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if len(out) != len(der) {
					t.Fatalf("fixed-size personalisation changed the size: %d → %d", len(der), len(out))
				}
				p, err := Decode(out)
				if err != nil {
					t.Fatalf("personalised profile does not decode: %v", err)
				}
				if err := p.Validate(); err != nil {
					t.Fatalf("personalised profile does not validate: %v", err)
				}
				got, want := readBack(t, p), expected(v, tmplFields)
				for k := range want {
					if !slices.Equal(got[k], want[k]) {
						t.Fatalf("record %d: %s read back as %q, want %q", i, k, got[k], want[k])
					}
				}
				if len(got) != len(want) {
					t.Fatalf("record %d: read back %d fields, template has %d", i, len(got), len(want))
				}
				// Every byte outside the slots is the template's.
				inSlot := make([]bool, len(der))
				for _, s := range pl.Slots() {
					if s.Fixed {
						for j := s.Offset; j < s.Offset+s.Len; j++ {
							inSlot[j] = true
						}
					}
				}
				for j := range der {
					if !inSlot[j] && out[j] != der[j] {
						t.Fatalf("record %d: byte 0x%x outside every slot changed", i, j)
					}
				}
				if p.ICCID() != v.ICCID || p.IMSI() != v.IMSI {
					t.Fatalf("Profile.ICCID(), IMSI() = %q, %q, want %q, %q", p.ICCID(), p.IMSI(), v.ICCID, v.IMSI)
				}
			}
		})
	}
}

func TestApplyWithEmptyValuesReturnsTheTemplate(t *testing.T) {
	for name, der := range ts48(t) {
		pl, err := Compile(der)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pl.Apply(&Values{}, nil)
		if err != nil || !bytes.Equal(out, der) {
			t.Fatalf("%s: Apply(empty) changed the template (err %v)", name, err)
		}
	}
}

func TestApplyReusesTheCallersBuffer(t *testing.T) {
	der := ts48(t)["TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"]
	pl, err := Compile(der)
	if err != nil {
		t.Fatal(err)
	}
	v := randomValues(seedFor("buf"), pl)
	buf := make([]byte, 7, len(der))
	out, err := pl.Apply(v, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &out[0] != &buf[:1][0] {
		t.Fatal("Apply allocated although dst had enough capacity")
	}
	allocs := testing.AllocsPerRun(50, func() { _, _ = pl.Apply(v, buf) })
	if allocs != 0 {
		t.Fatalf("Apply with a large enough dst makes %v allocations, want 0", allocs)
	}
}

func TestVariableFieldsReencodeOnlyTheirPE(t *testing.T) {
	cases := []struct {
		smsc, spn, msisdn string
		cond              byte
		wantSPN           string
	}{
		{"+447700900123", "perso", "+447700900999", 0x01, "01:perso"},
		{"12345", "", "", 0, ""},
		{"", "Ünïcode", "0170123456", 0x02, "02:Ünïcode"},
		{"+123456789012345678", "16 chars exactly", "+12345678901234567890", 0, "00:16 chars exactly"},
		{"", "", "+49", 0, ""},
	}
	for name, der := range ts48(t) {
		pl, err := Compile(der)
		if err != nil {
			t.Fatal(err)
		}
		tp, _ := Decode(der)
		tmplFields := readBack(t, tp)
		for ci, c := range cases {
			v := randomValues(seedFor(name), pl)
			v.SMSC, v.SPN, v.SPNDisplayCondition, v.MSISDN = c.smsc, c.spn, c.cond, c.msisdn
			out, err := pl.Apply(v, nil)
			if err != nil {
				t.Fatalf("%s case %d: %v", name, ci, err)
			}
			p, err := Decode(out)
			if err != nil {
				t.Fatalf("%s case %d: output does not decode: %v", name, ci, err)
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("%s case %d: %v", name, ci, err)
			}
			got := readBack(t, p)
			want := expected(v, tmplFields)
			if c.smsc != "" {
				want["smsc"] = []string{c.smsc}
			}
			if c.msisdn != "" {
				want["msisdn"] = []string{c.msisdn}
			}
			if c.wantSPN != "" {
				want["spn"] = []string{c.wantSPN}
			}
			for k := range want {
				if !slices.Equal(got[k], want[k]) {
					t.Fatalf("%s case %d: %s = %q, want %q", name, ci, k, got[k], want[k])
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%s case %d: read back %d fields, want %d", name, ci, len(got), len(want))
			}
			// Only the usim and opt-usim PEs may differ beyond the fixed
			// slots; inside them, only EF.SMSP, EF.SPN and EF.MSISDN.
			if len(p.PEs) != len(tp.PEs) {
				t.Fatalf("%s case %d: PE count changed", name, ci)
			}
			ref, _ := Decode(mustApply(t, pl, v))
			for i, pe := range p.PEs {
				a, b := pe.Node.Encode(), ref.PEs[i].Node.Encode()
				if pe.Type != PEUSIM && pe.Type != PEOptUSIM {
					if !bytes.Equal(a, b) {
						t.Fatalf("%s case %d: PE #%d (%s) changed", name, ci, i, pe.Type)
					}
					continue
				}
				for j, f := range pe.FS.Files {
					if f.Name == "ef-smsp" || f.Name == "ef-spn" || f.Name == "ef-msisdn" {
						continue
					}
					if !bytes.Equal(f.Node.Encode(), ref.PEs[i].FS.Files[j].Node.Encode()) {
						t.Fatalf("%s case %d: %s file %s changed", name, ci, pe.Type, f.Name)
					}
				}
			}
		}
	}
}

// mustApply applies v without its variable-size fields.
func mustApply(t *testing.T, pl *Plan, v *Values) []byte {
	t.Helper()
	w := *v
	w.SMSC, w.SPN, w.MSISDN = "", "", ""
	out, err := pl.Apply(&w, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplyRejectsBadValuesWithoutEchoingSecrets(t *testing.T) {
	der := ts48(t)["TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"]
	pl, err := Compile(der)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("\x13\x37SECRETSECRETSEC")
	cases := []struct {
		name string
		v    Values
		want error
	}{
		// Malformed ICCIDs and IMSIs cannot be expressed: esim parses them.
		{"K of the wrong length", Values{K: secret[:15]}, ErrValue},
		{"OPc of the wrong length", Values{OPc: append(secret, 1)}, ErrValue},
		{"PIN1 of 3 digits", Values{PIN1: []byte{'1', '2', '3', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}}, ErrValue},
		{"PIN1 not in card form", Values{PIN1: []byte("1234")}, ErrValue},
		{"PIN1 as a binary key is not allowed", Values{PIN1: secret[:8]}, ErrValue},
		{"PIN1 with a gap in its padding", Values{PIN1: []byte{'1', '2', '3', '4', 0xFF, '5', 0xFF, 0xFF}}, ErrValue},
		{"PUK1 not 8 digits", Values{PUK1: card("1234567")}, ErrValue},
		{"ADM1 of 7 bytes", Values{ADM1: secret[:7]}, ErrValue},
		{"ADM3 absent from template", Values{OtherADM: [8][]byte{card("12345678")}}, ErrNoSlot},
		{"unknown SD key", Values{SDKeys: []SDKey{{KVN: 0x30, ID: 1, Key: secret}}}, ErrNoSlot},
		{"SD key of the wrong length", Values{SDKeys: []SDKey{{KVN: 1, ID: 1, Key: secret[:8]}}}, ErrValue},
		{"unknown algorithm", Values{Algorithm: 9}, ErrValue},
		{"algorithm not declared in the header", Values{Algorithm: esim.AlgorithmMilenage}, ErrValue},
		{"SMSC with letters", Values{SMSC: "+44ABC"}, ErrValue},
		{"SPN too long", Values{SPN: "seventeen chars!!"}, ErrValue},
		{"MSISDN of 21 digits", Values{MSISDN: "+123456789012345678901"}, ErrValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := pl.Apply(&c.v, nil)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *template.Error", err)
			}
			msg := err.Error()
			for _, s := range []string{string(secret), fmt.Sprintf("%x", secret), fmt.Sprintf("%X", secret[:8]),
				code(c.v.PIN1), code(c.v.ADM1), code(c.v.PUK1)} {
				if len(s) >= 4 && strings.Contains(msg, s) {
					t.Fatalf("error message %q contains the value", msg)
				}
			}
		})
	}
}

func TestPlanIsSafeForConcurrentApply(t *testing.T) {
	der := ts48(t)["TS48V4-SAIP2-3-BERTLV-UNIQUE.der"]
	pl, err := Compile(der)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			var buf []byte
			for i := 0; i < 200; i++ {
				v := randomValues(r, pl)
				if i%3 == 0 {
					v.SMSC, v.SPN, v.MSISDN = "+4912345", "go", "+49170"
				}
				out, err := pl.Apply(v, buf)
				if err != nil {
					errs <- err
					return
				}
				p, err := Decode(out)
				if err != nil {
					errs <- err
					return
				}
				if p.ICCID() != v.ICCID {
					errs <- fmt.Errorf("goroutine %d: ICCID %s, want %s", g, p.ICCID(), v.ICCID)
					return
				}
				buf = out
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if !bytes.Equal(pl.Template(), der) {
		t.Fatal("concurrent Apply modified the plan's template")
	}
}

func TestCompileRefusesTemplatesWithoutTheSlotsARecordNeeds(t *testing.T) {
	der := ts48(t)["TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"]
	cases := []struct {
		name   string
		edit   func(p *Profile)
		wantPE PEType
	}{
		{"EF.IMSI not created (doNotCreate)", func(p *Profile) {
			f := p.First(PEUSIM).FS.File("ef-imsi")
			f.Node.Children = []*Node{{Tag: 0x80, Offset: -1}}
		}, PEUSIM},
		// EF.IMSI's component absent is not refused: the template's
		// default file exists and the plan adds its content (the
		// "omitted" file variants).
		{"no akaParameter", func(p *Profile) {
			// Drop the algorithm services too, or validation fails first.
			svc := p.PEs[0].Node.Child(0xA5)
			var flags []*Node
			for _, f := range svc.Children {
				if f.Tag != 0x84 && f.Tag != 0x85 && f.Tag != 0x90 && f.Tag != 0x91 {
					flags = append(flags, f)
				}
			}
			svc.Children = flags
			var keep []*PE
			for _, pe := range p.PEs {
				if pe.Type != PEAKAParameter {
					keep = append(keep, pe)
				}
			}
			p.PEs = keep
		}, PEUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, _ := Decode(der)
			c.edit(q)
			_, err := Compile(q.Encode())
			if !errors.Is(err, ErrNoSlot) {
				t.Fatalf("Compile error %v, want ErrNoSlot", err)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *template.Error", err)
			}
			if c.wantPE != PEUnknown && te.Type != c.wantPE.String() {
				t.Fatalf("error names PE type %q, want %q: %v", te.Type, c.wantPE, err)
			}
		})
	}
}

func TestSlotsAreSortedAndDisjoint(t *testing.T) {
	for name, der := range ts48(t) {
		pl, err := Compile(der)
		if err != nil {
			t.Fatal(err)
		}
		s := pl.Slots()
		if !sort.SliceIsSorted(s, func(i, j int) bool { return s[i].Offset < s[j].Offset }) {
			t.Fatalf("%s: slots not in template order", name)
		}
		for i := 1; i < len(s); i++ {
			if s[i-1].Fixed && s[i].Fixed && s[i-1].Offset+s[i-1].Len > s[i].Offset {
				t.Fatalf("%s: slots %s and %s overlap", name, s[i-1].Name(), s[i].Name())
			}
		}
	}
}

func TestAlgorithmCanOnlyBeSetToOneTheHeaderDeclares(t *testing.T) {
	der := ts48(t)["TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"]
	// The TS.48 header declares only usim-test-algorithm; declare milenage
	// too (flag [4] goes before usim-test-algorithm [17] in DER order) and
	// let the USIM use it.
	p, err := Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	svc := p.PEs[0].Node.Child(0xA5)
	var flags []*Node
	for _, f := range svc.Children {
		if f.Tag == 0x91 {
			flags = append(flags, &Node{Tag: 0x84, Offset: -1})
		}
		flags = append(flags, f)
	}
	svc.Children = flags
	p.First(PEAKAParameter).AKA.Algo.algo.SetValue([]byte{byte(esim.AlgorithmMilenage)})
	withMilenage := p.Encode()
	for _, c := range []struct {
		name string
		der  []byte
		algo esim.Algorithm
		ok   bool
	}{
		{"TS.48 as shipped, milenage", der, esim.AlgorithmMilenage, false},
		{"TS.48 as shipped, test algorithm", der, esim.AlgorithmTest, true},
		{"TS.48 as shipped, TUAK", der, esim.AlgorithmTUAK, false},
		{"both declared, milenage everywhere", withMilenage, esim.AlgorithmMilenage, true},
		{"both declared, test algorithm everywhere", withMilenage, esim.AlgorithmTest, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pl, err := Compile(c.der)
			if err != nil {
				t.Fatal(err)
			}
			out, err := pl.Apply(&Values{Algorithm: c.algo}, nil)
			if !c.ok {
				if !errors.Is(err, ErrValue) {
					t.Fatalf("error %v, want ErrValue", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			q, err := Decode(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Validate(); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, pe := range q.All(PEAKAParameter) {
				if a := pe.AKA.Algo; a != nil {
					n++
					if a.AlgorithmID != c.algo {
						t.Fatalf("PE #%d algorithm %s, want %s", pe.Index, a.AlgorithmID, c.algo)
					}
				}
			}
			if n != 2 {
				t.Fatalf("%d algoParameters, want 2", n)
			}
		})
	}
}

func TestOptionalVariableSlotsDoNotBlockCompilation(t *testing.T) {
	der := ts48(t)[v5]
	p, err := Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	// EF.SMSP without a file descriptor: no record length, so no SMSC slot.
	fcp := p.First(PEUSIM).FS.File("ef-smsp").FCP.Node
	if fcp.Value[0] != 0x82 {
		t.Fatal("unexpected EF.SMSP FCP in the template")
	}
	fcp.Value = fcp.Value[2+int(fcp.Value[1]):]
	pl, err := p.Compile()
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if pl.Has(SlotSMSC) || !pl.Has(SlotSPN) {
		t.Fatalf("SMSC slot %v, SPN slot %v; want false, true", pl.Has(SlotSMSC), pl.Has(SlotSPN))
	}
	if _, err := pl.Apply(&Values{SMSC: "+4912345"}, nil); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("Apply with an SMSC: %v, want ErrNoSlot", err)
	}
	if _, err := pl.Apply(&Values{SPN: "still fine"}, nil); err != nil {
		t.Fatalf("Apply with an SPN: %v", err)
	}
}

// card returns digits in card form (ASCII, FF-padded to 8 bytes), as
// esim.CodeKind.Encode does but without its length rules, so that tests
// can build invalid codes too.
func card(digits string) []byte {
	b := []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	copy(b, digits)
	return b
}

// code is the readable form of a card-form code ("" for none).
func code(b []byte) string {
	if b == nil {
		return ""
	}
	return esim.CodeText(b)
}

// text is the canonical text of a decoded value.
func text[T fmt.Stringer](v T, err error) (string, error) { return v.String(), err }

// testICCID completes an ICCID payload with its Luhn digit.
func testICCID(payload string) esim.ICCID {
	d, err := esim.LuhnDigit(payload)
	if err != nil {
		panic(err)
	}
	c, err := esim.ParseICCID(payload + string(d))
	if err != nil {
		panic(err)
	}
	return c
}

func testIMSI(digits string) esim.IMSI {
	m, err := esim.ParseIMSI(digits)
	if err != nil {
		panic(err)
	}
	return m
}
