package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/perso-esim/perso/template"
)

// TestTemplateInspectShowsPlacementsSwitchAndDerivedFields checks the
// issue-14 parts of inspect and validate: each file slot's placement, the
// algorithm switch and the derived fields, with notes for what cannot be
// personalised.
func TestTemplateInspectShowsPlacementsSwitchAndDerivedFields(t *testing.T) {
	out, err := runPerso(t, "template", "inspect", "--json", "--switch-algorithm", "milenage", "--home-plmn", "00101", ts48File(t))
	if err != nil {
		t.Fatal(err)
	}
	var r template.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.AlgorithmSwitch, "milenage") || !strings.Contains(r.AlgorithmSwitch, "-usim-test-algorithm") {
		t.Fatalf("algorithmSwitch %q", r.AlgorithmSwitch)
	}
	places := map[string]string{}
	for _, s := range r.Slots {
		if s.File != "" {
			places[s.Kind] = s.Placement
		}
	}
	for kind, want := range map[string]string{"ef-imsi": "in place", "ef-iccid": "in place", "smsc": "rewrite", "ef-ad": "in place", "ef-impu": "rewrite"} {
		if places[kind] != want {
			t.Errorf("%s placed %q, want %q (all: %v)", kind, places[kind], want, places)
		}
	}
	if len(r.Notes) != 3 || !strings.Contains(r.Notes[0], "EF.IMPI") || !strings.HasPrefix(r.Notes[2], "cdmaParameter") {
		t.Errorf("notes %q, want EF.IMPI and EF.DOMAIN too small, and cdmaParameter not derived", r.Notes)
	}
	if !strings.HasPrefix(r.AlgorithmPolicy, "switch ") {
		t.Errorf("algorithmPolicy %q, want the switch perso run would report", r.AlgorithmPolicy)
	}

	text, err := runPerso(t, "template", "inspect", ts48File(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "ef-imsi[0..8] in place") || !strings.Contains(text, "ef-smsp[0..41] rewrite of PE #7 (usim) ef-smsp") {
		t.Fatalf("inspect does not show placements:\n%s", text)
	}
	if _, err := runPerso(t, "template", "inspect", "--switch-algorithm", "caesar", ts48File(t)); err == nil {
		t.Fatal("an unknown --switch-algorithm was accepted")
	}

	val, err := runPerso(t, "template", "validate", ts48File(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(val, ": ok (") || !strings.Contains(val, "note: SMSC (EF.SMSP) (ef-smsp) is written by rewriting PE #7") {
		t.Fatalf("validate does not explain its rewrites:\n%s", val)
	}
}
