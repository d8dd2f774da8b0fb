package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/internal/testenv"
)

// provisionedToken runs `perso hsm init` with the SGP.26 keys and returns
// the environment later commands need (PINs plus the printed exports).
func provisionedToken(t *testing.T) []string {
	t.Helper()
	tok := testenv.SoftHSM(t) // SoftHSM2 must be installed (fails in CI, skips by hand)
	env := []string{"PERSO_HSM_PIN=" + testPIN, "PERSO_HSM_SO_PIN=" + testSOPIN, "PERSO_HSM_MODULE=" + tok.Module}
	_, env = runHSMInit(t, env, "--dir", filepath.Join(t.TempDir(), "hsm"),
		"--label", "perso-demo", "--import-sgp26", testenv.Path(t, "sgp26"))
	return env
}

// The test tokens' PINs carry pinMark, which no path, timestamp or figure
// in the output can contain by chance (a digits-only PIN once matched a
// temporary directory's random name).
const (
	pinMark   = "q7Zx"
	testPIN   = "pin-" + pinMark + "-4711"
	testSOPIN = "so-" + pinMark + "-47114711"
)

// `perso demo` (what `make demo` runs) personalises, protects, stores,
// binds and opens profiles on both curves, and every profile ends Installed.
func TestDemoRunsTheCoreEndToEnd(t *testing.T) {
	env := provisionedToken(t)
	const count = 4
	out, stderr := runPersoChild(t, env, "demo", "--template", testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"),
		"--count", "4", "--store.dsn", filepath.Join(t.TempDir(), "perso.db"))
	if !strings.Contains(out, "every opened UPP equals the personalised one: OK") {
		t.Fatalf("demo did not confirm the round trip:\n%s\n%s", out, stderr)
	}
	for _, want := range []string{"P-256", "brainpoolP256r1", "map[Installed:4]"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "Installed\n"); n != count {
		t.Errorf("%d profiles reported Installed, want %d:\n%s", n, count, out)
	}
	if strings.Contains(out+stderr, pinMark) {
		t.Error("the demo printed the HSM PIN")
	}
}
