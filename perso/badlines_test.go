package perso

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// wantReject is one expected reject: line, column and a fragment of the reason.
type wantReject struct {
	line   int64
	column string
	reason string
}

var badLineCases = []struct {
	file    string
	open    func(io.Reader, Options) (*Reader, error)
	opts    Options
	rejects []wantReject
	good    []string // ICCIDs that must come through, in order
}{
	{
		file: "bad_lines.out", open: NewOutReader,
		rejects: []wantReject{
			{20, "iccid", "bad Luhn check digit"},
			{21, "imsi", "wrong length, want 6-15 digits"},
			{22, "ki", "not hexadecimal"},
			{24, "iccid", "duplicate iccid"},
			{25, "", "wrong column count: 5, var_out has 6"},
			{26, "opc", "not hexadecimal"},
			{29, "", "truncated last line"},
			{5, "Quantity", "header Quantity is 12 but the data section has 11 lines"},
		},
		good: []string{"8944150000000100015", "8944150000000100056", "8944150000000100098", "8944150000000100106"},
	},
	{
		file: "bad_lines.csv", open: NewCSVReader, opts: Options{Rules: Rules{MCC: "234", MNC: "15"}},
		rejects: []wantReject{
			{3, "iccid", "bad Luhn check digit"},
			{4, "imsi", "wrong length, want 6-15 digits"},
			{5, "ki", "not hexadecimal"},
			{6, "imsi", "MCC/MNC differs"},
			{7, "spn", "invalid UTF-8"},
			{9, "iccid", "duplicate iccid"},
			{10, "imsi", "duplicate imsi"},
			{11, "pin1", "want 4-8 digits"},
			{12, "puk1", "want exactly 8 digits"},
			{13, "opc", "wrong length, want 32 hex digits"},
			{14, "", "wrong column count: 11, header has 10"},
			{18, "", "truncated last line"},
		},
		good: []string{"8944150000000200013", "8944150000000200070", "8944150000000200146", "8944150000000200153", "8944150000000200161"},
	},
}

// TestBadLines: every class of bad line yields exactly the expected reject
// with its line number, every good line comes through, and no secret of
// the input appears in the reject reports (CSV and JSON), the log or an
// error.
func TestBadLines(t *testing.T) {
	for _, c := range badLineCases {
		t.Run(c.file, func(t *testing.T) {
			input, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			var csvOut, jsonOut, logOut bytes.Buffer
			csvW, _ := NewRejectWriter(&csvOut, RejectCSV)
			jsonW, _ := NewRejectWriter(&jsonOut, RejectJSON)
			var list RejectList
			o := c.opts
			o.File = c.file
			o.Rejects = teeSink{&list, csvW, jsonW}
			o.Logger = slog.New(slog.NewTextHandler(&logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
			o.BatchSize = 3
			r, err := c.open(bytes.NewReader(input), o)
			if err != nil {
				t.Fatal(err)
			}
			recs := readAll(t, r)
			csvW.Close()
			jsonW.Close()

			if len(list.Items) != len(c.rejects) {
				t.Errorf("got %d rejects, want %d:\n%s", len(list.Items), len(c.rejects), rejectLines(list.Items))
			}
			for i, w := range c.rejects {
				if i >= len(list.Items) {
					break
				}
				g := list.Items[i]
				if g.File != c.file || g.Line != w.line || g.Column != w.column || !strings.Contains(g.Reason, w.reason) {
					t.Errorf("reject %d = %s\nwant line %d column %q reason containing %q", i, g, w.line, w.column, w.reason)
				}
			}
			var got []string
			for _, rec := range recs {
				got = append(got, rec.ICCID)
			}
			if strings.Join(got, " ") != strings.Join(c.good, " ") {
				t.Errorf("good records %v, want %v", got, c.good)
			}
			st := r.Stats()
			if st.Records != int64(len(c.good)) || st.Rows != st.Records+st.Rejected {
				t.Errorf("stats %+v inconsistent with %d good records", st, len(c.good))
			}
			if csvW.Count() != int64(len(list.Items)) || strings.Count(csvOut.String(), "\n") != len(list.Items)+1 ||
				strings.Count(jsonOut.String(), "\n") != len(list.Items) {
				t.Errorf("reports do not hold one line per reject:\n%s\n%s", csvOut.String(), jsonOut.String())
			}
			assertNoSecrets(t, input, map[string]string{"CSV report": csvOut.String(), "JSON report": jsonOut.String(),
				"log": logOut.String(), "reject strings": rejectLines(list.Items)})
		})
	}
}

// TestRejectThreshold: a reject limit aborts the input with ErrRejectLimit,
// whose message names counts only.
func TestRejectThreshold(t *testing.T) {
	input, err := os.ReadFile(filepath.Join("testdata", "bad_lines.csv"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		opts     Options
		abort    bool
		rejected int64 // rejects counted when the reader stops
	}{
		{"limit of 3 rejects stops at the third", Options{MaxRejects: 3, BatchSize: 100}, true, 3},
		{"limit above the reject count passes", Options{MaxRejects: 13}, false, 12},
		{"rate 70% exceeded by 12 of 17", Options{MaxRejectRate: 0.7}, true, 12},
		{"rate 71% not exceeded by 12 of 17", Options{MaxRejectRate: 0.71}, false, 12},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logOut bytes.Buffer
			o := c.opts
			o.Rules = Rules{MCC: "234", MNC: "15"}
			o.Logger = slog.New(slog.NewJSONHandler(&logOut, nil))
			r, err := NewCSVReader(bytes.NewReader(input), o)
			if err != nil {
				t.Fatal(err)
			}
			var final error
			for {
				rec, err := r.Next(context.Background())
				if err != nil {
					final = err
					break
				}
				rec.Release()
			}
			if got := errors.Is(final, ErrRejectLimit); got != c.abort {
				t.Fatalf("final error %v, want abort=%v", final, c.abort)
			}
			if !c.abort && final != io.EOF {
				t.Fatalf("final error %v, want io.EOF", final)
			}
			if r.Stats().Rejected != c.rejected {
				t.Fatalf("rejected %d, want %d", r.Stats().Rejected, c.rejected)
			}
			if _, err := r.Next(context.Background()); err != final {
				t.Fatalf("after the end Next returned %v, want %v again", err, final)
			}
			assertNoSecrets(t, input, map[string]string{"error": final.Error(), "log": logOut.String()})
		})
	}
}

type teeSink []RejectSink

func (t teeSink) Reject(r Reject) error {
	for _, s := range t {
		if err := s.Reject(r); err != nil {
			return err
		}
	}
	return nil
}

func rejectLines(rs []Reject) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}

var hexRun = regexp.MustCompile(`[0-9A-Fa-f]{12,}`)
var pukLike = regexp.MustCompile(`[ ,"]([0-9]{8})[ ,"\n]`)

// assertNoSecrets fails if any hex run of 12+ characters with a letter
// (Ki, OPc, OP, OTA keys, ADM1), any 8-digit PUK-like value, or any
// 8-character window of those runs of the input shows up in an output.
func assertNoSecrets(t *testing.T, input []byte, outputs map[string]string) {
	t.Helper()
	var secrets []string
	for _, m := range hexRun.FindAllString(string(input), -1) {
		if strings.Trim(m, "0123456789") == "" {
			continue // ICCID/IMSI: identifiers, not secrets
		}
		for i := 0; i+8 <= len(m); i += 4 {
			secrets = append(secrets, strings.ToLower(m[i:i+8]))
		}
	}
	for _, m := range pukLike.FindAllStringSubmatch(string(input), -1) {
		secrets = append(secrets, m[1])
	}
	if len(secrets) < 20 {
		t.Fatalf("found only %d secrets in the input: the scan is broken", len(secrets))
	}
	for name, out := range outputs {
		lo := strings.ToLower(out)
		for _, s := range secrets {
			if strings.Contains(lo, s) {
				t.Errorf("%s contains a secret fragment of the input (%d chars)", name, len(s))
			}
		}
	}
}
