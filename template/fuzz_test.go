package template

import (
	"bytes"
	"errors"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// ts48Seeds returns the TS.48 profiles in a stable order.
func ts48Seeds(t testing.TB) [][]byte {
	m := ts48(t)
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([][]byte, len(names))
	for i, n := range names {
		out[i] = m[n]
	}
	return out
}

// FuzzDecode: no input panics; whatever decodes re-encodes to exactly the
// input (the decoder accepts DER only); validation and compilation of a
// decoded profile never panic, and a compiled plan applies.
func FuzzDecode(f *testing.F) {
	for _, der := range ts48Seeds(f) {
		f.Add(der)
		f.Add(der[:len(der)/2])
	}
	f.Add([]byte{0xA0, 0x80, 0x00, 0x00})
	f.Add([]byte{0xBF, 0x1F, 0x02, 0xA0, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Decode(in)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *template.Error: %v", err, err)
			}
			return
		}
		if out := p.Encode(); !bytes.Equal(out, in) {
			t.Fatalf("decoded input re-encodes differently")
		}
		_ = p.Validate()
		if _, err := Inspect(in, true); err != nil {
			t.Fatalf("Inspect fails on a decodable input: %v", err)
		}
		pl, err := Compile(in)
		if err != nil {
			return
		}
		out, err := pl.Apply(&Values{ICCID: testICCID("894944999999999017"), IMSI: testIMSI("001010123456789"), SMSC: "+4912", SPN: "x", MSISDN: "+4917"}, nil)
		if err != nil {
			return
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("personalised output of a compiled template does not decode: %v", err)
		}
	})
}

var (
	fuzzPlansOnce sync.Once
	fuzzPlans     []*Plan
)

// FuzzApply: for any record, Apply either refuses it with a typed error or
// produces a profile that decodes, validates and reads back the record in
// every copy of every field it set.
func FuzzApply(f *testing.F) {
	f.Add(uint8(0), "8949449999999990171", "001010123456789", []byte("0123456789abcdef"), []byte("fedcba9876543210"), "1234", "12345678", "00000000", "+4477", "spn", "+4917")
	f.Add(uint8(7), "89000000000000000000", "123456", []byte{}, []byte(nil), "", "", "0123456789ABCDEF", "", "Ünï", "")
	f.Add(uint8(35), "8", "x", []byte{1}, []byte{2}, "abc", "1", "g", "+", "this name is far too long", "++1")
	f.Fuzz(func(t *testing.T, tmpl uint8, iccid, imsi string, k, opc []byte, pin1, puk1, adm1, smsc, spn, msisdn string) {
		fuzzPlansOnce.Do(func() {
			for _, der := range ts48Seeds(t) {
				pl, err := Compile(der)
				if err != nil {
					panic(err)
				}
				fuzzPlans = append(fuzzPlans, pl)
			}
		})
		if len(fuzzPlans) == 0 {
			t.Fatal("no TS.48 plans to fuzz (see the first failure)")
		}
		pl := fuzzPlans[int(tmpl)%len(fuzzPlans)]
		// Values hold only parsed identifiers: a fuzzed ICCID of the right
		// shape gets its Luhn digit, anything esim rejects is left unset.
		if len(iccid) >= esim.MinICCIDDigits && len(iccid) <= esim.MaxICCIDDigits {
			if d, err := esim.LuhnDigit(iccid[:len(iccid)-1]); err == nil {
				iccid = iccid[:len(iccid)-1] + string(d)
			}
		}
		ic, err := esim.ParseICCID(iccid)
		if err != nil {
			iccid = ""
		}
		im, err := esim.ParseIMSI(imsi)
		if err != nil {
			imsi = ""
		}
		v := &Values{ICCID: ic, IMSI: im, K: k, OPc: opc, PIN1: fuzzCode(pin1), PUK1: fuzzCode(puk1), ADM1: fuzzCode(adm1),
			SMSC: smsc, SPN: spn, MSISDN: msisdn}
		if len(k) == 0 {
			v.K = nil
		}
		if len(opc) == 0 {
			v.OPc = nil
		}
		out, err := pl.Apply(v, nil)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *template.Error: %v", err, err)
			}
			for _, s := range [][]byte{k, opc} {
				if len(s) >= 4 && bytes.Contains([]byte(err.Error()), s) {
					t.Fatalf("error message contains a secret")
				}
			}
			return
		}
		p, err := Decode(out)
		if err != nil {
			t.Fatalf("output does not decode: %v", err)
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("output does not validate: %v", err)
		}
		got := readBack(t, p)
		check := func(key, want string) {
			for _, g := range got[key] {
				if g != want {
					t.Fatalf("%s read back as %q, want %q", key, g, want)
				}
			}
		}
		if iccid != "" {
			check("header-iccid", iccid)
			check("ef-iccid", iccid)
		}
		if imsi != "" {
			check("imsi", imsi)
		}
		if v.K != nil {
			check("k", hexs(k))
		}
		if v.OPc != nil {
			check("opc", hexs(opc))
		}
		if pin1 != "" {
			check("pin/0x01", esim.CodeText(v.PIN1))
		}
		if puk1 != "" {
			check("puk/0x01", esim.CodeText(v.PUK1))
		}
		if smsc != "" && len(got["smsc"]) == 0 {
			t.Fatal("SMSC set but not read back")
		}
		if spn != "" && len(got["spn"]) == 0 {
			t.Fatal("SPN set but not read back")
		}
		if msisdn != "" {
			check("msisdn", msisdn)
		}
	})
}

func hexs(b []byte) string {
	const hx = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hx[c>>4], hx[c&15])
	}
	return string(out)
}

// TestDecodeMemoryIsBoundedByInputSize feeds the decoder the densest input
// possible (a PE made of empty elements, 2 bytes each) and checks that the
// memory it allocates stays a small constant factor of the input size.
func TestDecodeMemoryIsBoundedByInputSize(t *testing.T) {
	const n = 100000
	body := bytes.Repeat([]byte{0x04, 0x00}, n)
	// genericFileManagement { A0 header, A1 { 30 { 81 00 × n } } } would
	// be rejected early; an unknown-but-constructed rfu PE (PE-Dummy) is
	// decoded as a tree, which is the worst case.
	in := []byte{0xAB, 0x83, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	in = append(in, body...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p, err := Decode(in)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.PEs[0].Node.Children); got != n {
		t.Fatalf("decoded %d elements, want %d", got, n)
	}
	perByte := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(in))
	if perByte > 80 {
		t.Fatalf("Decode allocated %.0f bytes per input byte, want ≤ 80", perByte)
	}
}

// fuzzCode turns a fuzzed PIN/PUK/ADM string into the Values' card form: a
// string of up to 8 digits is padded as esim's encoding would (whatever its
// length, to exercise the checks), anything else goes in as raw bytes
// (exercising the card-form checks); "" is none.
func fuzzCode(s string) []byte {
	if s == "" {
		return nil
	}
	isDigits := len(s) <= esim.CodeSize
	for i := 0; i < len(s); i++ {
		isDigits = isDigits && s[i] >= '0' && s[i] <= '9'
	}
	if isDigits {
		return card(s)
	}
	return []byte(s)
}
