package template

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const v5 = "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"

func splice(b []byte, off, del int, ins ...byte) []byte {
	out := append([]byte(nil), b[:off]...)
	out = append(out, ins...)
	return append(out, b[off+del:]...)
}

// peAt returns the index and type of the PE of the original profile that
// contains offset off.
func peAt(t *testing.T, p *Profile, off int) (int, PEType) {
	t.Helper()
	for _, pe := range p.PEs {
		if off >= pe.Offset && off < pe.Offset+pe.Size() {
			return pe.Index, pe.Type
		}
	}
	t.Fatalf("no PE at offset 0x%x", off)
	return 0, 0
}

func TestMalformedTemplatesGetLocatedErrors(t *testing.T) {
	der := ts48(t)[v5]
	p, err := Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	usim := p.First(PEUSIM)
	pins := p.PEs[3] // MF pinCodes: PIN1, ADM1, ADM2
	end := p.PEs[len(p.PEs)-1]
	imsi := usim.FS.File("ef-imsi")
	pinValue := pins.Node.Child(0xA1).Children[0].Children[0].Child(0x81)

	edit := func(f func(q *Profile)) []byte {
		q, err := Decode(der)
		if err != nil {
			t.Fatal(err)
		}
		f(q)
		return q.Encode()
	}
	cases := []struct {
		name    string
		der     []byte
		want    error
		pe      int
		typ     PEType
		offset  int
		inField string
	}{
		{"truncated inside the usim PE", der[:usim.Offset+300], ErrTruncated, usim.Index, PEUSIM, usim.Offset, ""},
		{"truncated in the middle of a PE's length octets", der[:usim.Offset+2], ErrTruncated, usim.Index, PEUSIM, usim.Offset, ""},
		{"truncated after a tag", der[:end.Offset+1], ErrTruncated, end.Index, PEEnd, end.Offset, ""},
		{"indefinite length", splice(der, end.Offset+1, 1, 0x80), ErrIndefiniteLength, end.Index, PEEnd, end.Offset, ""},
		{"non-minimal length", splice(der, end.Offset+1, 1, 0x81, 0x07), ErrNotDER, end.Index, PEEnd, end.Offset, ""},
		{"five length octets", splice(der, end.Offset+1, 1, 0x85, 0, 0, 0, 0, 7), ErrNotDER, end.Index, PEEnd, end.Offset, ""},
		{"inner length longer than its parent", splice(der, pinValue.Offset+1, 1, 0x30), ErrTruncated, pins.Index, PEPINCodes, pinValue.Offset, ""},
		{"pinValue of 7 bytes", edit(func(q *Profile) {
			q.PEs[3].Node.Child(0xA1).Children[0].Children[0].Child(0x81).SetValue([]byte("1234567"))
		}), ErrStructure, pins.Index, PEPINCodes, pinValue.Offset, "pinconfig[0].pinValue"},
		{"unknown tag before pinValue", edit(func(q *Profile) {
			pc := q.PEs[3].Node.Child(0xA1).Children[0].Children[0]
			pc.Children = append([]*Node{pc.Children[0], {Tag: 0x99, Value: []byte{1}}}, pc.Children[1:]...)
		}), ErrStructure, pins.Index, PEPINCodes, pinValue.Offset, "pinconfig[0].pinValue"},
		{"unknown tag inside a File", edit(func(q *Profile) {
			f := q.First(PEUSIM).FS.File("ef-imsi")
			f.Node.Children = append([]*Node{{Tag: 0x84, Value: []byte{0}}}, f.Node.Children...)
		}), ErrStructure, usim.Index, PEUSIM, imsi.Node.ValueOffset(), "ef-imsi[0]"},
		{"unknown tag inside an FCP", edit(func(q *Profile) {
			fcp := q.First(PEUSIM).FS.File("ef-imsi").FCP.Node
			fcp.Value = append(append([]byte(nil), fcp.Value...), 0x99, 0x00)
		}), ErrStructure, usim.Index, PEUSIM, imsi.FCP.Node.ValueOffset() + len(imsi.FCP.Node.Value), "ef-imsi.fileDescriptor"},
		{"FCP file ID of 3 bytes", edit(func(q *Profile) {
			fcp := q.First(PEUSIM).FS.File("ef-imsi").FCP.Node
			v := append([]byte(nil), fcp.Value...)
			v[5] = 3 // 82 02 41 21 | 83 02 6f 07 → 83 03 6f 07 8b
			v = append(v[:8], append([]byte{0x00}, v[8:]...)...)
			fcp.Value = v
		}), ErrStructure, usim.Index, PEUSIM, imsi.FCP.Node.ValueOffset() + 4, "ef-imsi.fileDescriptor.fileID"},
		{"File components out of order", edit(func(q *Profile) {
			k := q.First(PEUSIM).Node.Children
			k[3], k[4] = k[4], k[3]
		}), ErrStructure, usim.Index, PEUSIM, -1, ""},
		{"PE without a PE header", edit(func(q *Profile) {
			q.PEs[len(q.PEs)-1].Node.Children = nil
		}), ErrStructure, end.Index, PEEnd, end.Offset, ""},
		{"zero tag", append(append([]byte(nil), der...), 0x00, 0x00), ErrBadTag, len(p.PEs), PEUnknown, len(der), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.der)
			if !errors.Is(err, c.want) {
				t.Fatalf("Decode error %v, want %v", err, c.want)
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *template.Error", err)
			}
			if te.PE != c.pe || (c.typ != PEUnknown && te.Type != c.typ.String()) {
				t.Fatalf("error locates PE #%d (%s), want #%d (%s): %v", te.PE, te.Type, c.pe, c.typ, err)
			}
			if c.offset >= 0 && te.Offset != c.offset {
				t.Fatalf("error at offset 0x%x, want 0x%x: %v", te.Offset, c.offset, err)
			}
			if c.inField != "" && te.Field != c.inField {
				t.Fatalf("error names field %q, want %q: %v", te.Field, c.inField, err)
			}
			prefix := fmt.Sprintf("template: PE #%d", c.pe)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), fmt.Sprintf("at offset 0x%x", te.Offset)) {
				t.Fatalf("message %q does not name the PE and offset", err)
			}
		})
	}
}

func TestValidateFindsProfileLevelProblems(t *testing.T) {
	der := ts48(t)[v5]
	p, err := Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	end := p.PEs[len(p.PEs)-1]
	mfID := p.First(PEMF).ID
	cases := []struct {
		name string
		der  []byte
		want error
		pe   int
		typ  PEType
	}{
		{"missing end PE", der[:end.Offset], ErrOrder, end.Index - 1, PERFM},
		{"end PE not last", append(append([]byte(nil), der...), der[end.Offset:]...), ErrOrder, end.Index, PEEnd},
		{"header not first", append(append([]byte(nil), der[p.PEs[1].Offset:p.PEs[2].Offset]...),
			append(append([]byte(nil), der[:p.PEs[1].Offset]...), der[p.PEs[2].Offset:]...)...), ErrOrder, 0, PEMF},
		{"duplicate identification", splice(der, end.Offset+8, 1, byte(mfID)), ErrDuplicateID, end.Index, PEEnd},
		{"isim declared but missing", func() []byte {
			isim := p.First(PEISIM)
			return splice(der, isim.Offset, isim.Size())
		}(), ErrMissingPE, 0, PEHeader},
		{"algorithm used but not declared", func() []byte {
			q, _ := Decode(der)
			q.First(PEAKAParameter).AKA.Algo.algo.SetValue([]byte{1})
			return q.Encode()
		}(), ErrUndeclaredService, p.First(PEAKAParameter).Index, PEAKAParameter},
		{"PIN unblocked by a PUK that does not exist", func() []byte {
			q, _ := Decode(der)
			q.PEs[3].Node.Child(0xA1).Children[0].Children[0].Child(0x82).SetValue([]byte{0x05})
			return q.Encode()
		}(), ErrStructure, 3, PEPINCodes},
		{"PIN key reference defined twice", func() []byte {
			q, _ := Decode(der)
			cfgs := q.PEs[3].Node.Child(0xA1).Children[0]
			cfgs.Children[1].Child(0x80).SetValue([]byte{0x01})
			return q.Encode()
		}(), ErrStructure, 3, PEPINCodes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := Decode(c.der)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			err = q.Validate()
			if !errors.Is(err, c.want) {
				t.Fatalf("Validate error %v, want %v", err, c.want)
			}
			found := false
			for _, e := range q.Problems() {
				if errors.Is(e, c.want) && e.PE == c.pe && e.Type == c.typ.String() && e.Offset == q.PEs[c.pe].Offset {
					found = true
				}
			}
			if !found {
				t.Fatalf("no problem located at PE #%d (%s): %v", c.pe, c.typ, err)
			}
			if _, err := Compile(c.der); !errors.Is(err, c.want) {
				t.Fatalf("Compile error %v, want %v", err, c.want)
			}
		})
	}
}

func TestUnknownPEsAreKeptRaw(t *testing.T) {
	der := ts48(t)[v5]
	p, err := Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	end := p.PEs[len(p.PEs)-1]
	vendor := []byte{0xBF, 0x7F, 0x0A, 0xA0, 0x03, 0x81, 0x01, 0x63, 0x04, 0x03, 0xDE, 0xAD, 0x00}
	garbage := []byte{0xDF, 0x50, 0x04, 0xFF, 0xFF, 0xFF, 0xFF} // primitive, not TLV content
	for _, ins := range [][]byte{vendor, garbage} {
		in := splice(der, end.Offset, 0, ins...)
		q, err := Decode(in)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		u := q.PEs[end.Index]
		if u.Type != PEUnknown || !bytes.Equal(u.Node.Encode(), ins) {
			t.Fatalf("PE #%d is %s, want the raw unknown element", u.Index, u.Type)
		}
		if !bytes.Equal(q.Encode(), in) {
			t.Fatal("profile with an unknown PE does not re-encode byte-identically")
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		if _, err := Compile(in); err != nil {
			t.Fatalf("Compile: %v", err)
		}
	}
	// An unknown PE that carries a PE header takes part in the
	// identification check.
	dup := append([]byte(nil), vendor...)
	dup[7] = byte(p.First(PEMF).ID)
	q, err := Decode(splice(der, end.Offset, 0, dup...))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Validate(); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("Validate error %v, want ErrDuplicateID", err)
	}
}

func TestDecodeRejectsGarbageWithoutPanicking(t *testing.T) {
	nested := []byte{0xA1, 0x00}
	for i := 0; i < MaxDepth+1; i++ {
		nested = append([]byte{0xA1, byte(len(nested))}, nested...)
	}
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"single byte", []byte{0xA0}, ErrTruncated},
		{"too deep", nested, ErrTooDeep},
		{"long tag", []byte{0xBF, 0x81, 0x81, 0x81, 0x01, 0x00}, ErrBadTag},
		{"non-minimal high tag", []byte{0xBF, 0x80, 0x01, 0x00}, ErrNotDER},
		{"four length octets", []byte{0xA0, 0x84, 0x01, 0x00, 0x00, 0x00}, ErrNotDER},
		{"length beyond the input", []byte{0xA0, 0x83, 0xFF, 0xFF, 0xFF}, ErrTruncated},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

// mkTLV builds a DER TLV (short or long length).
func mkTLV(tag Tag, parts ...[]byte) []byte {
	var v []byte
	for _, p := range parts {
		v = append(v, p...)
	}
	out := tag.Append(nil)
	out = appendLen(out, len(v))
	return append(out, v...)
}

func TestApplicationAndNonStandardPEsDecode(t *testing.T) {
	der := ts48(t)[v5]
	p, _ := Decode(der)
	end := p.PEs[len(p.PEs)-1]
	hdr := func(id byte) []byte { return mkTLV(0xA0, mkTLV(0x81, []byte{id})) }
	aid := func(last byte) []byte { return mkTLV(0x4F, []byte{0xA0, 0, 0, 0, 0x01, last}) }
	app := mkTLV(0xA8, hdr(0x70),
		mkTLV(0xA1, aid(1), mkTLV(0xC4, []byte{1, 2, 3, 4})),
		mkTLV(0xA2, mkTLV(0x30, aid(1), aid(2), aid(3), mkTLV(0x82, []byte{0}), mkTLV(0xC9, nil))))
	nonStd := mkTLV(0xA9, hdr(0x71), mkTLV(0x81, []byte{0x2B, 0x06, 0x01, 0x04, 0x01}), mkTLV(0x82, []byte("vendor")))
	in := splice(der, end.Offset, 0, append(app, nonStd...)...)
	q, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(q.Encode(), in) {
		t.Fatal("not byte-identical")
	}
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	a := q.PEs[end.Index].Application
	if a == nil || a.LoadBlockSize != 4 || len(a.Instances) != 1 || a.Instances[0].InstanceAID[5] != 3 {
		t.Fatalf("application view %+v", a)
	}
	ns := q.PEs[end.Index+1].NonStandard
	if ns == nil || ns.IssuerID != "1.3.6.1.4.1" || string(ns.Content) != "vendor" {
		t.Fatalf("nonStandard view %+v", ns)
	}
	// The same application PE with its loadBlockObject missing is refused,
	// naming the PE and the element.
	bad := mkTLV(0xA8, hdr(0x70), mkTLV(0xA1, aid(1)))
	_, err = Decode(splice(der, end.Offset, 0, bad...))
	var te *Error
	if !errors.As(err, &te) || te.PE != end.Index || te.Type != "application" || te.Field != "loadBlock.loadBlockObject" {
		t.Fatalf("error %v", err)
	}
}
