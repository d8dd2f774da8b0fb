package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runPersoCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestTestdataThenCheck: every format the generator writes passes `perso
// check`; a file with some bad lines fails it with exit status 3 (partial).
func TestTestdataThenCheck(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.csv", "a.out", "a.parquet", "a.arrow"} {
		path := filepath.Join(dir, name)
		if _, err := runPersoCmd(t, "testdata", "perso", "--count", "2500", "--ota-kvn", "1,2", "-o", path); err != nil {
			t.Fatalf("testdata %s: %v", name, err)
		}
		out, err := runPersoCmd(t, "check", path, "--mcc", "234", "--mnc", "15")
		if err != nil || !strings.Contains(out, "2500 rows, 2500 accepted, 0 rejected") {
			t.Fatalf("check %s: %v\n%s", name, err, out)
		}
	}
	t.Setenv(envTransportKey, "000102030405060708090a0b0c0d0e0f")
	enc := filepath.Join(dir, "enc.out")
	if _, err := runPersoCmd(t, "testdata", "perso", "--count", "10", "--transport-key", "3", "--transport-alg", "AES-128-CBC", "-o", enc); err != nil {
		t.Fatal(err)
	}
	head, err := os.ReadFile(enc)
	if err != nil || !bytes.Contains(head, []byte("Transport_key   : 3")) || !bytes.Contains(head, []byte("Transport_alg   : AES-128-CBC")) {
		t.Fatalf("encrypted .out header lacks the transport key: %v", err)
	}
	if out, err := runPersoCmd(t, "check", enc); err != nil {
		t.Fatalf("check of an encrypted .out: %v\n%s", err, out)
	}

	// an IMSI range narrower than the file rejects the records outside it
	out, err := runPersoCmd(t, "check", filepath.Join(dir, "a.csv"), "--imsi-first", "234150000000001", "--imsi-last", "234150000002000")
	if err == nil || !strings.Contains(out, "2000 accepted, 500 rejected") {
		t.Fatalf("IMSI range: %v\n%s", err, out)
	}

	bad := filepath.Join("..", "..", "perso", "testdata", "bad_lines.csv")
	rejects := filepath.Join(dir, "rejects.json")
	out, err = runPersoCmd(t, "check", bad, "--mcc", "234", "--mnc", "15", "--rejects", rejects, "--reject-format", "json")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != exitPartial || !strings.Contains(out, "12 rejected") {
		t.Fatalf("check of bad lines: err %v, output %s", err, out)
	}
	report, _ := os.ReadFile(rejects)
	if n := bytes.Count(report, []byte("\n")); n != 12 {
		t.Fatalf("reject report has %d lines, want 12", n)
	}
}

func TestTestdataFlagErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--count", "1", "--iccid-start", "8944150000000000018", "-o", filepath.Join(dir, "x.csv")}, "Luhn"},
		{[]string{"--count", "1", "--transport-key", "2", "-o", filepath.Join(dir, "x.csv")}, envTransportKey},
		{[]string{"--count", "1", "--format", "xml", "-o", filepath.Join(dir, "x.csv")}, "unknown format"},
	}
	for _, c := range cases {
		_, err := runPersoCmd(t, append([]string{"testdata", "perso"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}
