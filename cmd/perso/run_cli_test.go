package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// reportKeys are the keys issue #13 requires of `perso run --report`.
var reportKeys = []string{"batch_id", "records_read", "stored", "rejected", "duplicates", "conflicts", "chunks", "workers",
	"wall_seconds", "profiles_per_second", "cpu_us_per_profile", "hsm_calls_per_profile", "peak_rss_bytes",
	"store_bytes_per_profile", "iccid_first", "iccid_last"}

// batchKeys are the report's keys that describe the batch rather than one
// run: perso batch show and list give them with the same values.
var batchKeys = []string{"batch_id", "input_sha256", "template_sha256", "profile_type", "complete", "records_read", "stored",
	"rejected", "duplicates", "conflicts", "chunks", "chunks_done", "workers", "iccid_first", "iccid_last"}

// smallBatch writes n generated records to dir/name with two bad lines
// appended (a bad Luhn digit, a short Ki) and returns the environment of a
// fresh SQLite store and the token.
func smallBatch(t *testing.T, dir, name string, n int, env []string) {
	t.Helper()
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", fmt.Sprint(n), "-o", name); res.code != 0 {
		t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
	}
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	f := strings.Split(lines[len(lines)-1], ",")
	f[0] = "8949449999999999990"
	bad1 := strings.Join(f, ",")
	f = strings.Split(lines[1], ",")
	f[2] = "0011"
	bad2 := strings.Join(f, ",")
	if err := os.WriteFile(path, append(data, []byte(bad1+"\n"+bad2+"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readJSONMap reads a JSON object's keys, each value compacted.
func readJSONMap(t *testing.T, data []byte) map[string]string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%v: %.500s", err, data)
	}
	out := map[string]string{}
	for k, v := range m {
		var b bytes.Buffer
		json.Compact(&b, v)
		out[k] = b.String()
	}
	return out
}

// checkBatchShow: perso batch show ID --json, batch list --json and the
// batch list table give the batch's keys with the values of the run's
// --report file, key by key.
func checkBatchShow(t *testing.T, dir string, env []string, reportPath string) {
	t.Helper()
	data, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	rep := readJSONMap(t, data)
	var id string
	json.Unmarshal([]byte(rep["batch_id"]), &id)
	compare := func(what string, got map[string]string) {
		t.Helper()
		for _, k := range batchKeys {
			if got[k] != rep[k] {
				t.Errorf("%s: %s = %s, the report says %s", what, k, got[k], rep[k])
			}
		}
	}
	res := runChild(t, dir, env, nil, time.Minute, "batch", "show", id, "--json")
	if res.code != 0 {
		t.Fatalf("batch show: exit %d\n%s", res.code, res.stderr)
	}
	compare("batch show --json", readJSONMap(t, []byte(res.stdout)))

	res = runChild(t, dir, env, nil, time.Minute, "batch", "list", "--json")
	if res.code != 0 {
		t.Fatalf("batch list: exit %d\n%s", res.code, res.stderr)
	}
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatalf("batch list --json: %v\n%s", err, res.stdout)
	}
	found := false
	for _, raw := range list {
		if m := readJSONMap(t, raw); m["batch_id"] == rep["batch_id"] {
			compare("batch list --json", m)
			found = true
		}
	}
	if !found {
		t.Errorf("batch list --json lacks batch %s:\n%s", id, res.stdout)
	}

	// The table: BATCH PROFILE-TYPE RECORDS STORED REJECTED DUPLICATES
	// CONFLICTS DONE/CHUNKS CREATED.
	res = runChild(t, dir, env, nil, time.Minute, "batch", "list")
	want := strings.Join([]string{id, strings.Trim(rep["profile_type"], `"`), rep["records_read"], rep["stored"], rep["rejected"],
		rep["duplicates"], rep["conflicts"], rep["chunks_done"] + "/" + rep["chunks"]}, " ")
	found = false
	sc := bufio.NewScanner(strings.NewReader(res.stdout))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 8 && f[0] == id {
			found = true
			if got := strings.Join(f[:8], " "); got != want {
				t.Errorf("batch list: %q, the report says %q", got, want)
			}
		}
	}
	if res.code != 0 || !found {
		t.Errorf("batch list: exit %d, no row for %s:\n%s%s", res.code, id, res.stdout, res.stderr)
	}
}

// TestRunReportKeysAndBatchShow: the --report file has every key issue #13
// asks for, with JSON types that fit; perso batch show and list give the
// same counts; and a different input under the same batch ID is refused
// with exit status 2 and a message that says what to do, leaving the
// batch as it was.
func TestRunReportKeysAndBatchShow(t *testing.T) {
	env := batchToken(t)
	persoBinary(t)
	dir := t.TempDir()
	env = append(env, "PERSO_STORE_DSN="+filepath.Join(dir, "perso.db"))
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	smallBatch(t, dir, "in.csv", 450, env)
	res := runChild(t, dir, env, nil, time.Minute, "run", "--template", tmpl, "--input", "in.csv", "--batch", "b1",
		"--chunk-size", "100", "--progress", "none", "--report", "report.json")
	if res.code != exitPartial {
		t.Fatalf("exit %d, want %d (two rejects)\n%s", res.code, exitPartial, res.stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	rep := readJSONMap(t, data)
	for _, k := range reportKeys {
		v, ok := rep[k]
		switch {
		case !ok:
			t.Errorf("the report lacks %q", k)
		case k == "batch_id" || k == "iccid_first" || k == "iccid_last":
			if !strings.HasPrefix(v, `"`) || v == `""` {
				t.Errorf("%s = %s, want a non-empty string", k, v)
			}
		case k == "workers":
			if !strings.HasPrefix(v, `[{"worker":`) {
				t.Errorf("workers = %s, want a list of workers", v)
			}
		default:
			var f float64
			if err := json.Unmarshal([]byte(v), &f); err != nil || f < 0 {
				t.Errorf("%s = %s, want a number ≥ 0", k, v)
			}
		}
	}
	for k, want := range map[string]string{"batch_id": `"b1"`, "records_read": "452", "stored": "450", "rejected": "2",
		"duplicates": "0", "conflicts": "0", "chunks": "5", "iccid_first": `"8944150000000000017"`} {
		if rep[k] != want {
			t.Errorf("report %s = %s, want %s", k, rep[k], want)
		}
	}
	checkBatchShow(t, dir, env, filepath.Join(dir, "report.json"))

	// Another input under batch b1: refused before anything is stored.
	smallBatch(t, dir, "other.csv", 120, env)
	res = runChild(t, dir, env, nil, time.Minute, "run", "--template", tmpl, "--input", "other.csv", "--batch", "b1",
		"--progress", "none")
	if res.code != exitUsage || !strings.Contains(res.stderr, "batch b1 has input SHA-256") ||
		!strings.Contains(res.stderr, "re-run with the same ones, or choose another batch ID") {
		t.Errorf("other input under batch b1: exit %d, want %d with what to do\n%s", res.code, exitUsage, res.stderr)
	}
	if res := runChild(t, dir, env, nil, time.Minute, "batch", "show", "b1", "--json"); !strings.Contains(res.stdout, `"stored": 450`) {
		t.Errorf("batch b1 changed after the refused run:\n%s", res.stdout)
	}
	if res := runChild(t, dir, env, nil, time.Minute, "batch", "show", "nosuch"); res.code != exitUsage ||
		!strings.Contains(res.stderr, "perso batch list shows them") {
		t.Errorf("batch show nosuch: exit %d\n%s", res.code, res.stderr)
	}
}

// TestRunProfilesTogether: --cpuprofile, --memprofile and --trace given
// together each write a valid file (a gzipped pprof profile with its
// sample types, a Go execution trace), renamed into place, with no
// temporary file or directory left; two flags naming one file are refused.
func TestRunProfilesTogether(t *testing.T) {
	env := batchToken(t)
	persoBinary(t)
	dir := t.TempDir()
	env = append(env, "PERSO_STORE_DSN="+filepath.Join(dir, "perso.db"))
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", "2000", "-o", "in.csv"); res.code != 0 {
		t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
	}
	out := t.TempDir() // only the profiles go here
	res := runChild(t, dir, env, nil, time.Minute, "run", "--template", tmpl, "--input", "in.csv", "--progress", "none",
		"--cpuprofile", filepath.Join(out, "cpu.pprof"), "--memprofile", filepath.Join(out, "mem.pprof"),
		"--trace", filepath.Join(out, "trace.out"))
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	checkPprof(t, filepath.Join(out, "cpu.pprof"), "samples", "cpu", "nanoseconds")
	checkPprof(t, filepath.Join(out, "mem.pprof"), "alloc_objects", "alloc_space", "inuse_objects", "inuse_space", "bytes")
	tr, err := os.ReadFile(filepath.Join(out, "trace.out"))
	if err != nil {
		t.Fatal(err)
	}
	// "go 1.NN trace\x00\x00\x00": the header runtime/trace writes.
	if len(tr) < 1024 || !bytes.HasPrefix(tr, []byte("go 1.")) || !bytes.Contains(tr[:16], []byte(" trace\x00")) {
		t.Errorf("trace.out: %d bytes, header %q: not an execution trace", len(tr), tr[:min(len(tr), 16)])
	}
	ents, _ := os.ReadDir(out)
	if len(ents) != 3 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the profile directory holds %v, want the three profiles only", names)
	}
	res = runChild(t, dir, env, nil, time.Minute, "run", "--template", tmpl, "--input", "in.csv", "--progress", "none",
		"--cpuprofile", filepath.Join(out, "x"), "--trace", filepath.Join(out, "x"))
	if res.code != exitUsage || !strings.Contains(res.stderr, "--cpuprofile and --trace name the same file") {
		t.Errorf("one file for two profiles: exit %d\n%s", res.code, res.stderr)
	}
}

// checkPprof parses a pprof profile (gzipped protocol buffers, the
// Profile message of github.com/google/pprof/proto/profile.proto) far
// enough to know it is one: every field of the message decodes, it has
// samples' types, and its string table holds the names wanted.
func checkPprof(t *testing.T, path string, names ...string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: not gzipped: %v", path, err)
	}
	msg, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	strs := map[string]bool{}
	var sampleTypes, samples int
	for p := msg; len(p) > 0; {
		key, n := binary.Uvarint(p)
		if n <= 0 {
			t.Fatalf("%s: bad field key at byte %d", path, len(msg)-len(p))
		}
		p = p[n:]
		switch key & 7 {
		case 0: // varint
			if _, n = binary.Uvarint(p); n <= 0 {
				t.Fatalf("%s: bad varint at byte %d", path, len(msg)-len(p))
			}
			p = p[n:]
		case 2: // length-delimited
			l, n := binary.Uvarint(p)
			if n <= 0 || uint64(len(p)-n) < l {
				t.Fatalf("%s: bad length at byte %d", path, len(msg)-len(p))
			}
			v := p[n : n+int(l)]
			switch key >> 3 {
			case 1:
				sampleTypes++
			case 2:
				samples++
			case 6:
				strs[string(v)] = true
			}
			p = p[n+int(l):]
		default:
			t.Fatalf("%s: wire type %d at byte %d: not a profile", path, key&7, len(msg)-len(p))
		}
	}
	if sampleTypes == 0 {
		t.Errorf("%s: no sample types", path)
	}
	for _, n := range names {
		if !strs[n] {
			t.Errorf("%s: the string table lacks %q (%d samples)", path, n, samples)
		}
	}
	t.Logf("%s: %d bytes unzipped, %d sample types, %d samples", filepath.Base(path), len(msg), sampleTypes, samples)
}
