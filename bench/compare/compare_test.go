package compare

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/bench"
)

func TestExpandQuotes(t *testing.T) {
	got := Expand("tool --in {input} --t {template} --out {out}", "/a b/it's.csv", "/t.der", "/o")
	want := `tool --in '/a b/it'\''s.csv' --t '/t.der' --out '/o'`
	if got != want {
		t.Errorf("Expand = %s, want %s", got, want)
	}
	// and the shell reads back the original path
	out, err := exec.Command("sh", "-c", Expand("printf %s {input}", "/a b/it's.csv", "", "")).Output()
	if err != nil || string(out) != "/a b/it's.csv" {
		t.Errorf("sh read back %q, %v", out, err)
	}
}

// Stand-in commands for the engine and the reference: the harness
// alternates them, feeds the reference its placeholders and environment,
// reads the engine's record count from its report and reports both with
// their ratios. No timing is asserted.
func TestRunAlternatesAndReports(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.csv")
	os.WriteFile(input, []byte("x\n"), 0o644)
	log := filepath.Join(dir, "log")
	cfg := Config{Input: input, Template: "/t.der", Runs: 3, TempDir: dir,
		Reference: `echo "ref $PERSO_BENCH_INPUT" >> ` + log + ` && test -d {out} && test "$PERSO_BENCH_OUT" = {out}`,
		Engine: func(i int, _, report string) []string {
			return []string{"sh", "-c", `echo engine >> ` + log + ` && echo '{"records_read": 250}' > ` + report}
		}}
	r := &bench.Result{Mode: "compare"}
	if err := Run(context.Background(), cfg, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	want := "engine\nref " + input + "\nref " + input + "\nengine\nengine\nref " + input + "\n"
	if string(b) != want {
		t.Errorf("runs in the order\n%s\nwant\n%s", b, want)
	}
	for _, n := range []string{"engine throughput", "engine cpu", "reference throughput", "reference cpu", "engine vs reference wall"} {
		if _, ok := r.Figure(n); !ok {
			t.Errorf("no figure %q in %+v", n, r.Figures)
		}
	}
	if len(r.Tables) != 1 || len(r.Tables[0].Rows) != 2 || !strings.Contains(r.Tables[0].Title, "250 records") {
		t.Errorf("table: %+v", r.Tables)
	}
}

func TestRunFailures(t *testing.T) {
	dir := t.TempDir()
	ok := func(int, string, string) []string { return []string{"true"} } // writes no report
	for _, tc := range []struct {
		name, ref string
		engine    func(int, string, string) []string
		want      string
	}{
		{"reference fails", "echo boom >&2; exit 3", func(_ int, _, report string) []string {
			return []string{"sh", "-c", `echo '{"records_read": 1}' > ` + report}
		}, "boom"},
		{"engine writes no report", "true", ok, "reading its report"},
		{"engine read nothing", "true", func(_ int, _, report string) []string {
			return []string{"sh", "-c", `echo '{"records_read": 0}' > ` + report}
		}, "read no record"},
		{"no reference", " ", ok, "no reference command"},
	} {
		err := Run(context.Background(), Config{Reference: tc.ref, Engine: tc.engine, Runs: 1, TempDir: dir}, &bench.Result{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
