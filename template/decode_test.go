package template

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/perso-esim/perso/internal/testenv"
)

// ts48 loads every TS.48 profile, keyed by file name.
func ts48(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range testenv.TS48(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func TestDecodeEncodeIsByteIdenticalForEveryTS48Profile(t *testing.T) {
	profiles := ts48(t)
	if len(profiles) != 36 {
		t.Fatalf("found %d TS.48 profiles, want 36", len(profiles))
	}
	for name, der := range profiles {
		t.Run(name, func(t *testing.T) {
			p, err := Decode(der)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := p.Encode(); !bytes.Equal(got, der) {
				i := 0
				for i < len(got) && i < len(der) && got[i] == der[i] {
					i++
				}
				t.Fatalf("re-encoding differs from the input at offset 0x%x (len %d, want %d)", i, len(got), len(der))
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}
