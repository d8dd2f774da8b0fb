package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// TestDemoScript runs `make demo`'s script on a few hundred records (the
// real demo runs 100,000): token, records, perso run, perso verify
// --offline of a sample opened as the eUICC, perso serve and downloads
// over ES9+ by the virtual eUICC (JSON and ASN.1 bindings, each profile
// Installed and equal to its record), and the report.
func TestDemoScript(t *testing.T) {
	testenv.SoftHSM(t) // SoftHSM2 must be installed (fails in CI, skips by hand)
	bin := persoBinary(t)
	script := filepath.Join(testenv.Root(t), "scripts", "demo.sh")
	cmd := exec.Command("bash", script)
	cmd.Env = append(cleanEnv(), "PERSO_BIN="+bin, "DEMO_COUNT=300", "DEMO_SAMPLE=6")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("demo.sh still running after 3 minutes:\n%s", out)
	}
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		"records      300 read: 300 stored, 0 rejected",
		"6 of 6 sampled profiles",
		"perso serve: ES9+ on https://127.0.0.1:",
		"8 of 8 profiles downloaded over ES9+ and checked, 0 failed",
		"downloaded over ES9+, Installed, equal to the record personalised directly",
		"2 of 2 profiles downloaded over ES9+ and checked, 0 failed",
		"brainpoolP256r1  asn1",
		`"profiles_per_second"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
	if !regexp.MustCompile(`demo: 300 records; setup [0-9.]+ s, perso run [0-9.]+ s .*, serve and download [0-9.]+ s; total`).MatchString(s) {
		t.Errorf("demo output lacks its timing line:\n%s", s)
	}
	if strings.Contains(s, "demo-user-pin") {
		t.Error("the demo printed the HSM PIN")
	}
}
