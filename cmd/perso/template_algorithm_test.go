package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/template"
)

// TestRunTemplateAlgorithmSetting: perso testdata's Milenage records through
// a TS.48 template (USIM test algorithm only) are refused by default with
// an error naming template.algorithm; with template.algorithm milenage the
// batch switches the template and says so in its report; with keep it
// keeps the test algorithm and says that. TUAK records switch to TUAK.
func TestRunTemplateAlgorithmSetting(t *testing.T) {
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	dir := t.TempDir()
	env := append(batchToken(t), "PERSO_STORE_DRIVER=sqlite", "PERSO_STORE_DSN="+filepath.Join(dir, "perso.db"))
	for _, gen := range []struct{ file, alg string }{{"milenage.csv", "milenage"}, {"tuak.csv", "tuak"}} {
		args := []string{"testdata", "perso", "--count", "20", "--algorithm", gen.alg, "-o", gen.file}
		if gen.alg == "tuak" {
			args = append(args, "--iccid-start", "8944150000000100007", "--imsi-start", "234150000100001")
		}
		if res := runChild(t, dir, env, nil, time.Minute, args...); res.code != 0 {
			t.Fatalf("testdata %s: %d\n%s", gen.alg, res.code, res.stderr)
		}
	}
	cases := []struct {
		name, input, setting string
		code                 int
		want                 []string // in stderr (refusals) or the report's algorithm
	}{
		{"auto refuses milenage records", "milenage.csv", "auto", exitUsage,
			[]string{"milenage", "template.algorithm", "keep", "declares only test"}},
		{"switch to milenage", "milenage.csv", "milenage", 0, []string{"switch ", "→ milenage", "+milenage -usim-test-algorithm"}},
		{"keep", "milenage.csv", "keep", 0, []string{"keep (test)"}},
		{"switch to tuak128", "tuak.csv", "tuak128", 0, []string{"switch ", "→ tuak128"}},
		// A Milenage switch reads 16-byte OPc columns: TUAK records
		// (32-byte TOPc) are each rejected by the reader.
		{"milenage switch refuses tuak records", "tuak.csv", "milenage", exitFailure, []string{"rejected=20"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			report := filepath.Join(dir, "report"+string(rune('a'+i))+".json")
			// A store per case: each batch stores the same ICCIDs.
			caseEnv := append(env[:len(env):len(env)], "PERSO_TEMPLATE_ALGORITHM="+c.setting,
				"PERSO_STORE_DSN="+filepath.Join(dir, "perso-"+string(rune('a'+i))+".db"))
			res := runChild(t, dir, caseEnv, nil, 2*time.Minute,
				"run", "--template", tmpl, "--input", c.input, "--batch", "alg-"+string(rune('a'+i)), "--progress", "none",
				"--report", report, "--force")
			if res.code != c.code {
				t.Fatalf("exit %d, want %d\nstderr: %.3000s", res.code, c.code, res.stderr)
			}
			got := res.stderr
			if c.code == 0 {
				b, err := os.ReadFile(report)
				if err != nil {
					t.Fatal(err)
				}
				var rep engine.Report
				if err := json.Unmarshal(b, &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Stored != 20 {
					t.Fatalf("stored %d of 20", rep.Stored)
				}
				got = rep.Algorithm
				if !strings.Contains(res.stdout, "algorithm    "+rep.Algorithm) {
					t.Fatalf("the printed report lacks the algorithm line:\n%s", res.stdout)
				}
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Fatalf("want %q in %q", w, got)
				}
			}
		})
	}
}

// TestTemplatePersonaliseSwitchesToTheRequestedAlgorithm: `perso template
// personalise --algorithm milenage` (and tuak with a 32-byte K) on every
// TS.48 template switches it and writes a profile whose akaParameters and
// header say so.
func TestTemplatePersonaliseSwitchesToTheRequestedAlgorithm(t *testing.T) {
	dir := t.TempDir()
	for _, f := range testenv.TS48(t) {
		for _, c := range []struct {
			alg, ki, opc string
			want         string
		}{
			{"milenage", strings.Repeat("11", 16), strings.Repeat("22", 16), "milenage"},
			{"tuak", strings.Repeat("33", 32), strings.Repeat("44", 32), "tuak256"},
		} {
			out := filepath.Join(dir, filepath.Base(f)+"."+c.alg)
			res := runChild(t, dir, []string{"PERSO_KI=" + c.ki, "PERSO_OPC=" + c.opc}, nil, time.Minute,
				"template", "personalise", "--template", f, "--algorithm", c.alg, "--iccid", "8949449999999990171", "--imsi", "001010123456789", "-o", out)
			if res.code != 0 {
				t.Fatalf("%s --algorithm %s: exit %d\n%s", filepath.Base(f), c.alg, res.code, res.stderr)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			p, err := template.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			h := p.Header()
			if !h.HasService(c.want) || h.HasService("usim-test-algorithm") {
				t.Fatalf("%s --algorithm %s: header services %v", filepath.Base(f), c.alg, h.MandatoryServices)
			}
			for _, pe := range p.All(template.PEAKAParameter) {
				if a := pe.AKA.Algo; a != nil && !strings.EqualFold(a.AlgorithmID.String(), c.alg) {
					t.Fatalf("%s: akaParameter PE #%d holds %s", filepath.Base(f), pe.Index, a.AlgorithmID)
				}
			}
		}
	}
}
