package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/internal/testenv"
)

// figureWant is a figure a mode's JSON must hold: present, finite, and
// positive unless zeroOK. Names ending in "*" match by prefix.
type figureWant struct {
	name   string
	zeroOK bool
}

// TestBenchModesSmoke runs every `perso bench` mode at a tiny size so that
// none can rot: each must exit 0 and write a JSON result of its mode with
// the machine described and the expected figures present and sane. Timing
// is never asserted (speed is what the modes measure, not what a test on
// a shared machine can check). Modes that run perso serve or perso run as
// child processes (download, mixed, compare) run from the built binary;
// the others also run in-process, under the race detector when the test
// binary has it.
func TestBenchModesSmoke(t *testing.T) {
	env := provisionedToken(t)
	pg := testenv.PostgresDSN(t)
	sgp26 := testenv.Path(t, "sgp26")
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	dir := t.TempDir()
	env = append(env, "PERSO_LOG_LEVEL=warn", "PERSO_STORE_DRIVER=sqlite", "PERSO_STORE_DSN="+filepath.Join(dir, "perso.db"),
		"PERSO_SERVE_PKI_DIR="+sgp26,
		"PERSO_SERVE_TLS_CERT="+filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"),
		"PERSO_SERVE_TLS_KEY="+filepath.Join(sgp26, "DPtls", "SK_S_SM_DP_TLS_NIST.pem"))
	// Profiles for bench download, records for bench compare.
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", "40", "-o", "records.csv"); res.code != 0 {
		t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
	}
	if res := runChild(t, dir, env, nil, time.Minute, "run", "--template", tmpl, "--input", "records.csv", "--batch", "live",
		"--profile-type", "ts48-demo", "--progress", "none", "--template.algorithm", "keep"); res.code != 0 {
		t.Fatalf("run: %d\n%s", res.code, res.stderr)
	}
	pgEnv := []string{"PERSO_STORE_DRIVER=postgres", "PERSO_STORE_DSN=" + pg}

	for _, tc := range []struct {
		name      string
		args      []string
		env       []string
		inProcess bool
		figures   []figureWant
		series    []string // plots that must have points
	}{
		{"engine", []string{"engine", "--records", "120", "--chunk-size", "30", "--template", tmpl}, nil, true,
			[]figureWant{{name: "sqlite profiles/s"}, {name: "cpu per profile"}, {name: "hsm calls per profile"}, {name: "peak rss"},
				{name: "peak rss growth 10%-100% of records", zeroOK: true}, {name: "store bytes per profile"}, {name: "store bytes / ppp"},
				{name: "throughput flatness"}},
			[]string{"engine-throughput-over-time", "engine-rss-over-time"}},
		{"engine on postgres", []string{"engine", "--records", "100", "--chunk-size", "50", "--template", tmpl}, pgEnv, false,
			[]figureWant{{name: "postgres profiles/s"}, {name: "store bytes / ppp"}}, nil},
		{"hsm", []string{"hsm", "--ops", "sign,qos,ppk", "--sessions", "1", "--duration", "50ms", "--raw=false", "--ppk-profiles", "200",
			"--ppk-batch", "100"}, nil, true,
			[]figureWant{{name: "sign, 1 session"}, {name: "sign, 1 session cpu"}}, nil},
		{"store", []string{"store", "--backends", "sqlite,postgres", "--profiles", "200", "--chunk", "100", "--loaders", "1",
			"--orders", "20", "--callers", "2", "--segment-bytes", "512"}, pgEnv, true,
			[]figureWant{{name: "sqlite bulk insert, 1 loader"}, {name: "postgres bulk insert, 1 loader"}, {name: "sqlite orders, 2 callers"},
				{name: "postgres orders, 2 callers"}, {name: "sqlite store size"}}, nil},
		{"soak", []string{"soak", "--target", "hsmpool", "--binds", "100", "--workers", "2", "--samples", "2"}, nil, true,
			[]figureWant{{name: "soak binds"}, {name: "soak RSS at end"}, {name: "soak cpu per bind"}}, nil},
		{"soak serve", []string{"soak", "--binds", "100", "--workers", "2", "--samples", "2", "--sgp26", sgp26, "--template", tmpl}, nil, false,
			[]figureWant{{name: "soak binds"}, {name: "soak RSS after warm-up"}, {name: "soak RSS at end"}, {name: "soak RSS max after warm-up"},
				{name: "soak cpu per bind"}, {name: "soak client cpu per bind"}},
			[]string{"soak-rss"}},
		{"compare", []string{"compare", "--input", "records.csv", "--template", tmpl, "--reference", "cat {input} > {out}/copy.csv",
			"--runs", "1", "--engine-args", "--template.algorithm keep"}, nil, false,
			[]figureWant{{name: "engine throughput"}, {name: "engine cpu"}, {name: "reference throughput"}, {name: "engine vs reference wall"}}, nil},
		{"download", []string{"download", "--downloads", "3", "--euiccs", "2", "--curves", "nist", "--sgp26", sgp26}, nil, false,
			[]figureWant{{name: "download nist"}, {name: "download nist server cpu"}, {name: "download nist getBoundProfilePackage p99"}}, nil},
		{"mixed", []string{"mixed", "--records", "200", "--downloads", "4", "--euiccs", "2", "--sgp26", sgp26, "--template", tmpl}, nil, false,
			[]figureWant{{name: "live download p99 idle"}, {name: "live download p99 with batch"}, {name: "live p99 ratio"},
				{name: "batch solo"}, {name: "batch with live load"}, {name: "batch share"}, {name: "live idle"}},
			[]string{"mixed-latency-distribution"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			plots := filepath.Join(dir, "plots-"+strings.ReplaceAll(tc.name, " ", "-"))
			args := append([]string{"bench"}, tc.args...)
			args = append(args, "--json", out, "--history", "none", "--plots", plots)
			mode := tc.args[0]
			check := func(how string) {
				b, err := os.ReadFile(out)
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				checkBenchResult(t, b, mode, tc.figures, tc.series)
				if pngs, _ := filepath.Glob(filepath.Join(plots, "*.png")); len(pngs) == 0 {
					t.Errorf("%s: no plot in %s", how, plots)
				}
				os.Remove(out)
				os.RemoveAll(plots)
			}
			res := runChild(t, dir, append(append([]string{}, env...), tc.env...), nil, 3*time.Minute, args...)
			if res.code != 0 {
				t.Fatalf("perso %s: exit %d\n%s", strings.Join(args, " "), res.code, lastLines(res.stderr, 30))
			}
			check("binary")
			if !tc.inProcess {
				return
			}
			envMap := map[string]string{}
			for _, kv := range append(append([]string{}, env...), tc.env...) {
				k, v, _ := strings.Cut(kv, "=")
				envMap[k] = v
			}
			if _, err := execInDir(t, dir, envMap, args...); err != nil {
				t.Fatalf("in-process perso %s: %v", strings.Join(args, " "), err)
			}
			check("in-process")
		})
	}
}

// checkBenchResult checks one mode's JSON document.
func checkBenchResult(t *testing.T, doc []byte, mode string, figures []figureWant, series []string) {
	t.Helper()
	r, err := bench.ParseJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != mode {
		t.Errorf("mode %q, want %q", r.Mode, mode)
	}
	if r.Env.Cores < 1 || r.Env.GoVersion == "" || r.Env.OS == "" || r.Time.IsZero() || r.WallSeconds <= 0 {
		t.Errorf("the run is not described: env %+v, time %v, wall %v s", r.Env, r.Time, r.WallSeconds)
	}
	if len(r.Config) == 0 {
		t.Error("no configuration recorded")
	}
	for _, w := range figures {
		f, ok := r.Figure(w.name)
		if !ok {
			var names []string
			for _, f := range r.Figures {
				names = append(names, f.Name)
			}
			t.Errorf("figure %q missing; have %q", w.name, names)
			continue
		}
		if f.Unit == "" || f.Value < 0 || (!w.zeroOK && f.Value == 0) {
			t.Errorf("figure %q = %v %q: want a positive value with a unit", w.name, f.Value, f.Unit)
		}
	}
	for _, plot := range series {
		points := 0
		for _, s := range r.Series {
			if s.Plot == plot {
				points += len(s.Points)
			}
		}
		if points == 0 {
			t.Errorf("plot %s has no points", plot)
		}
	}
	if strings.Contains(string(doc), pinMark) {
		t.Error("the result holds the HSM PIN")
	}
}
