package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func sampleResult(i int) *Result {
	r := &Result{Mode: "hsm", Time: time.Date(2026, 12, 4, 10, i, 0, 0, time.UTC), WallSeconds: 12.5,
		Env: Env{CPUModel: "AMD EPYC 7B13", Cores: 2, GOMAXPROCS: 2, MemoryBytes: 24 << 30, OS: "linux", Arch: "amd64",
			GoVersion: "go1.26.0", GitRevision: "bea8035", Load: []float64{1.5, 2, 2.25}},
		HSM:    &HSMInfo{Backend: "pkcs11", Module: "/usr/lib/softhsm/libsofthsm2.so", Token: "perso"},
		Config: map[string]string{"hsm.sessions": "4", "store.dsn": "postgres://perso:REDACTED@db/perso"}}
	r.Add("sign pool 1 session", 10704+float64(i), "ops/s", Higher, "")
	r.Add("sign pool 1 session vs raw", 0.93, "ratio", Higher, "pool ops/s ÷ raw ops/s, same run")
	r.Add("sign cpu per op", 87.5, "cpu-µs/op", Lower, "")
	r.Add("never measured", math.NaN(), "ratio", Higher, "") // dropped
	t := Table{Title: "rows", Columns: []Column{{Name: "op"}, {Name: "sessions"}, {Name: "ops/s", Unit: "ops/s"}, {Name: "vs raw", Unit: "%"}}}
	t.AddRow(Text("sign"), Num(1, 0), Num(10704, 0), Num(93, 0))
	t.AddRow(Text("sign"), Num(4, 0), Num(13446.5, 1), Num(math.NaN(), 0))
	r.Tables = []Table{t}
	r.Series = []Series{
		{Plot: "hsm-throughput", Title: "HSM throughput by sessions", Name: "sign (pool)", XLabel: "sessions", YLabel: "throughput", YUnit: "ops/s",
			Points: []Point{{1, 10704}, {2, 11718}, {4, 13446}, {8, 14154}, {16, 14668}}},
		{Plot: "hsm-throughput", Title: "HSM throughput by sessions", Name: "sign (raw)", Dashed: true, XLabel: "sessions", YLabel: "throughput", YUnit: "ops/s",
			Points: []Point{{1, 11449}, {2, 11737}, {4, 12017}, {8, 12162}, {16, 11704}}},
	}
	r.Notes = []string{"measured on a shared machine"}
	if err := r.SetDetails(map[string]any{"rows": 2}); err != nil {
		panic(err)
	}
	return r
}

func TestResultJSONRoundTrip(t *testing.T) {
	r := sampleResult(0)
	if _, ok := r.Figure("never measured"); ok {
		t.Fatal("a NaN figure was kept: it would break the JSON and mean nothing in the history")
	}
	doc, err := JSON(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	// Cells come back without their print precision; the NaN cell as NaN.
	for ti := range r.Tables {
		for ri := range r.Tables[ti].Rows {
			for ci, c := range r.Tables[ti].Rows[ri] {
				got := back.Tables[ti].Rows[ri][ci]
				if c.IsText != got.IsText || c.Text != got.Text || (c.Num != got.Num && !(math.IsNaN(c.Num) && math.IsNaN(got.Num))) {
					t.Errorf("table cell %d,%d: %+v came back as %+v", ri, ci, c, got)
				}
			}
		}
	}
	back.Tables, r.Tables = nil, nil
	// Details is kept as JSON; indentation may differ.
	var d1, d2 bytes.Buffer
	json.Compact(&d1, r.Details)
	json.Compact(&d2, back.Details)
	if d1.String() != d2.String() {
		t.Errorf("details %s came back as %s", d1.String(), d2.String())
	}
	back.Details, r.Details = nil, nil
	if !reflect.DeepEqual(r, back) {
		t.Errorf("JSON round trip changed the result:\n%s", doc)
	}
	if bytes.Contains(doc, []byte("NaN")) {
		t.Errorf("JSON holds NaN, which JSON readers refuse:\n%s", doc)
	}
	if _, err := ParseJSON([]byte(`{"figures":[]}`)); err == nil {
		t.Error("a document without a mode was taken for a result")
	}
	if _, err := ParseJSON([]byte(`{"mode":"x","tables":[{"rows":[[{}]]}]}`)); err == nil {
		t.Error("a table cell that is an object was accepted")
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, sampleResult(0)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"perso bench hsm — AMD EPYC 7B13, 2 cores, 24.0 GiB, go1.26.0, git bea8035",
		"hsm pkcs11 /usr/lib/softhsm/libsofthsm2.so token \"perso\"",
		"op    sessions    ops/s  vs raw", // numeric columns right-aligned under their heads
		"sign         1    10704      93",
		"sign         4  13446.5       -",
		"sign pool 1 session         10 704  ops/s",
		"sign pool 1 session vs raw  0.9300  ratio      pool ops/s",
		"cpu-µs/op",
		"note: measured on a shared machine",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table output lacks %q:\n%s", want, out)
		}
	}
}

func TestFormatFigure(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0"}, {0.93, "0.9300"}, {12.345, "12.35"}, {244.04, "244.0"}, {1234567, "1 234 567"}, {-20000, "-20 000"}} {
		if got := formatFigure(tc.v); got != tc.want {
			t.Errorf("formatFigure(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestHistoryAppendAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "history.jsonl")
	for i := range 3 {
		if err := AppendHistory(path, sampleResult(i)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := ReadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Results) != 3 || len(h.Bad) != 0 {
		t.Fatalf("read %d results, bad lines %v; want 3, none", len(h.Results), h.Bad)
	}
	for i, r := range h.Results {
		if f, _ := r.Figure("sign pool 1 session"); f.Value != 10704+float64(i) {
			t.Errorf("result %d: figure %v, want %v (order kept)", i, f.Value, 10704+i)
		}
	}
	if h, err := ReadHistory(filepath.Join(t.TempDir(), "none.jsonl")); err != nil || len(h.Results) != 0 {
		t.Errorf("a missing history: %v, %v; want empty", h, err)
	}
}

// A torn last line (a run killed mid-write) stays one bad line: the next
// append starts on a line of its own, and every earlier line survives.
func TestHistoryAppendAfterTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	if err := AppendHistory(path, sampleResult(0)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	torn := append(bytes.Clone(before), []byte(`{"mode":"hsm","figures":[{"na`)...)
	if err := os.WriteFile(path, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := AppendHistory(path, sampleResult(1)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.HasPrefix(after, torn) {
		t.Fatal("appending rewrote existing bytes")
	}
	h, err := ReadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Results) != 2 || !reflect.DeepEqual(h.Bad, []int{2}) {
		t.Errorf("got %d results, bad lines %v; want 2 results and line 2 bad", len(h.Results), h.Bad)
	}
}

// Concurrent appenders (goroutines here; separate processes take the same
// flock) never interleave inside a line.
func TestHistoryConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := sampleResult(i % 60)
				r.Notes = append(r.Notes, fmt.Sprintf("writer %d line %d %s", w, i, strings.Repeat("x", 5000)))
				if err := AppendHistory(path, r); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h, err := ReadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Results) != writers*each || len(h.Bad) != 0 {
		t.Fatalf("%d results, bad lines %v; want %d, none", len(h.Results), h.Bad, writers*each)
	}
	seen := map[string]bool{}
	for _, r := range h.Results {
		seen[r.Notes[len(r.Notes)-1]] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct lines, want %d", len(seen), writers*each)
	}
}

func TestPlotsArePNGsWithContent(t *testing.T) {
	dir := t.TempDir()
	var hist History
	for i := range 4 {
		hist.Results = append(hist.Results, sampleResult(i))
	}
	hist.Results = append(hist.Results, &Result{Mode: "store", Figures: []Figure{{Name: "other mode", Value: 1, Unit: "x"}}})
	files, err := WritePlots(dir, hist.Results[3], hist)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"hsm-throughput.png", "history-hsm-ops-per-s.png", "history-hsm-ratio.png", "history-hsm-cpu-us-per-op.png"}
	if len(files) != len(want) {
		t.Fatalf("wrote %v, want %v", files, want)
	}
	for i, f := range files {
		if filepath.Base(f) != want[i] {
			t.Errorf("file %d is %s, want %s", i, filepath.Base(f), want[i])
		}
		checkPNG(t, f)
	}
}

// checkPNG decodes f and wants a chart-sized image with real drawing on
// it: many pixels that are not the white background, in several colours.
func checkPNG(t *testing.T, f string) {
	t.Helper()
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", f, err)
	}
	b := img.Bounds()
	if b.Dx() < 600 || b.Dy() < 300 {
		t.Errorf("%s: %dx%d, too small to read", f, b.Dx(), b.Dy())
	}
	inked := 0
	colours := map[color.RGBA]bool{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				inked++
				if r != g || g != bl { // grey is text and axes; colour is data
					colours[color.RGBA{uint8(r >> 12), uint8(g >> 12), uint8(bl >> 12), 0}] = true
				}
			}
		}
	}
	if share := float64(inked) / float64(b.Dx()*b.Dy()); share < 0.01 {
		t.Errorf("%s: only %.2f%% of the pixels are drawn", f, 100*share)
	}
	if len(colours) < 2 {
		t.Errorf("%s: %d data colours, want lines in colour", f, len(colours))
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{"cpu-µs/op": "cpu-us-per-op", "ops/s": "ops-per-s", "%": "pct", "×": "times", "Bytes / profile": "bytes--per--profile", "": "unnamed"} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvParsers(t *testing.T) {
	if got := cpuModel([]byte("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: aes\n")); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel([]byte("processor\t: 0\nCPU part\t: 0xd0c\n")); got != "0xd0c" {
		t.Errorf("cpuModel (arm) = %q", got)
	}
	if got := memTotal([]byte("MemTotal:       24576000 kB\nMemFree: 1 kB\n")); got != 24576000<<10 {
		t.Errorf("memTotal = %d", got)
	}
	if got := loadAverage([]byte("1.50 2.00 2.25 3/400 1234\n")); !reflect.DeepEqual(got, []float64{1.5, 2, 2.25}) {
		t.Errorf("loadAverage = %v", got)
	}
	e := CurrentEnv(context.Background())
	if e.Cores < 1 || e.GoVersion == "" {
		t.Errorf("CurrentEnv = %+v", e)
	}
}
