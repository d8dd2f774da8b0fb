package main

import "testing"

// TestUnknownEnv: a PERSO_* variable that names no setting and no flag is
// reported (with the near miss an operator meant), while settings, flags of
// any command and the project's script variables are not.
func TestUnknownEnv(t *testing.T) {
	environ := []string{
		"PATH=/usr/bin",
		"PERSO_STORE_DSN=postgres://x", // a setting
		"PERSO_STORE_DNS=postgres://x", // its typo
		"PERSO_HSM_PIN=1234",           // a secret setting
		"PERSO_REPORT=r.json",          // a flag of perso run
		"PERSO_TEST_PG_DSN=postgres://t",
		"PERSO_BENCH_OUT=/tmp/x",
		"PERSO_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so",
		"PERSO_FROBNICATE=1",
		"PERSO_DEMO_PINS=1", // refused with its own error by checkEnvAndFlags
	}
	got := unknownEnv(newRootCmd(), environ)
	want := map[string]string{
		"PERSO_STORE_DNS":  "PERSO_STORE_DSN",
		"PERSO_FROBNICATE": "",
	}
	if len(got) != len(want) {
		t.Fatalf("unknown variables %v, want %v", got, want)
	}
	for name, near := range want {
		if g, ok := got[name]; !ok || g != near {
			t.Errorf("%s: reported %v with suggestion %q, want suggestion %q", name, ok, g, near)
		}
	}
}
