package testenv

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

func TestTestdataHasReferenceData(t *testing.T) {
	if got := len(TS48(t)); got != 36 {
		t.Fatalf("found %d TS.48 profiles, want 36", got)
	}
	for _, p := range [][]string{
		{"vectors", "bsp.json"},
		{"sgp26", "DPpb", "SK_S_SM_DPpb_ECDSA_NIST.pem"},
		{"sgp26", "invalid", "CERT_UNKNOWN_CI_ECDSA_NIST.der"},
		{"sgp26", "es2-mno-client", "CERT_MNO_ECDSA_NIST.pem"},
	} {
		if _, err := os.Stat(Path(t, p...)); err != nil {
			t.Errorf("reference file missing: %v", err)
		}
	}
}

// The copies under testdata/ are GSMA and pySim test data taken unchanged from
// the shared reference library. When that library sits beside the repository
// (../shared, as on the developers' machines), the copies must equal it file
// for file: a drifted or locally edited copy would make the tests check
// something other than the published data. A clone on its own has no
// ../shared, and only then is the comparison skipped.
// Run it alone with `make testdata-check`.
func TestTestdataMatchesShared(t *testing.T) {
	shared := filepath.Join(filepath.Dir(Root(t)), "shared")
	if _, err := os.Stat(shared); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("no %s beside the repository; nothing to compare the testdata copies with", shared)
	} else if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"ts48", "sgp26", "vectors"} {
		want := listFiles(t, filepath.Join(shared, sub))
		got := listFiles(t, Path(t, sub))
		if len(want) == 0 {
			t.Errorf("%s is empty or missing", filepath.Join(shared, sub))
		}
		for name, wantData := range want {
			gotData, ok := got[name]
			switch {
			case !ok:
				t.Errorf("testdata/%s/%s is missing (copy it from %s)", sub, name, shared)
			case !bytes.Equal(gotData, wantData):
				t.Errorf("testdata/%s/%s differs from %s/%s/%s; the copies must not be modified", sub, name, shared, sub, name)
			}
		}
		var extra []string
		for name := range got {
			if _, ok := want[name]; !ok {
				extra = append(extra, name)
			}
		}
		sort.Strings(extra)
		for _, name := range extra {
			t.Errorf("testdata/%s/%s has no counterpart in %s/%s; project fixtures belong elsewhere in testdata/", sub, name, shared, sub)
		}
	}
}

// listFiles returns the regular files under dir keyed by their slash-separated
// path relative to dir.
func listFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	return files
}

func TestSoftHSMTokenIsCreated(t *testing.T) {
	tok := SoftHSM(t)
	if tok.Label == "" || tok.Module == "" {
		t.Fatalf("incomplete token description: %+v", tok)
	}
}
