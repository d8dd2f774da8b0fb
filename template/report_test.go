package template

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestInspectDescribesEveryTS48Template(t *testing.T) {
	for name, der := range ts48(t) {
		r, err := Inspect(der, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pl, _ := Compile(der)
		p, _ := Decode(der)
		if r.CompileError != "" || len(r.Problems) != 0 {
			t.Fatalf("%s: compile error %q, problems %v", name, r.CompileError, r.Problems)
		}
		if len(r.PEs) != len(p.PEs) || len(r.Slots) != len(pl.Slots()) {
			t.Fatalf("%s: %d PEs / %d slots reported, want %d / %d", name, len(r.PEs), len(r.Slots), len(p.PEs), len(pl.Slots()))
		}
		naas := []string{}
		for _, n := range r.NAAs {
			naas = append(naas, n.Type)
		}
		if got := strings.Join(naas, ","); got != "mf,usim,csim,isim" {
			t.Fatalf("%s: NAAs %s, want mf,usim,csim,isim", name, got)
		}
		for _, s := range r.Slots {
			if s.Secret != (s.Value == Masked) {
				t.Fatalf("%s: slot %s secret=%v value %q", name, s.Name, s.Secret, s.Value)
			}
			if s.Kind == "header-iccid" && s.Value != p.ICCID().String() {
				t.Fatalf("%s: header ICCID slot shows %q, want %q", name, s.Value, p.ICCID())
			}
		}
		// The JSON form uses the documented field names.
		js, _ := json.Marshal(r)
		for _, key := range []string{`"size"`, `"header"`, `"pes"`, `"naas"`, `"mandatoryServices"`, `"slots"`, `"problems"`, `"keyRef"`, `"kvn"`, `"secret"`} {
			if !strings.Contains(string(js), key) {
				t.Fatalf("%s: JSON lacks %s", name, key)
			}
		}
	}
}

func TestInspectReportsProblemsInsteadOfFailing(t *testing.T) {
	der := ts48(t)[v5]
	p, _ := Decode(der)
	end := p.PEs[len(p.PEs)-1]
	r, err := Inspect(der[:end.Offset], true) // no end PE
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "the last PE must be end") {
		t.Fatalf("problems %q", r.Problems)
	}
	for _, s := range r.Slots {
		if s.Value == Masked {
			t.Fatalf("slot %s masked although secrets were requested", s.Name)
		}
	}
}
