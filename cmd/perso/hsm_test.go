package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/internal/testenv"
)

// TestHSMCLIHelperProcess runs `perso` in a child process (so that each CLI
// invocation owns its PKCS#11 module and SOFTHSM2_CONF, as the real binary
// does). It does nothing in a normal test run.
func TestHSMCLIHelperProcess(t *testing.T) {
	args := os.Getenv("PERSO_HSM_CLI_ARGS")
	if args == "" {
		return
	}
	root := newRootCmd()
	root.SetArgs(strings.Split(args, "\x1f"))
	if err := root.Execute(); err != nil {
		os.Stderr.WriteString("perso: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

func runPersoChild(t *testing.T, env []string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHSMCLIHelperProcess$")
	cmd.Dir = t.TempDir() // no stray perso.yaml
	cmd.Env = append(append(os.Environ(), env...), "PERSO_HSM_CLI_ARGS="+strings.Join(args, "\x1f"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("perso %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

// runHSMInit runs `perso hsm init args…` with env and returns its stdout and
// env extended by the exports it printed (stdout must hold nothing else).
func runHSMInit(t *testing.T, env []string, args ...string) (stdout string, withExports []string) {
	t.Helper()
	out, _ := runPersoChild(t, env, append([]string{"hsm", "init"}, args...)...)
	withExports = append([]string(nil), env...)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			t.Fatalf("unexpected stdout line %q", sc.Text())
		}
		withExports = append(withExports, line)
	}
	return out, withExports
}

// `perso hsm init` provisions a fresh SoftHSM2 token non-interactively and
// prints the exports later commands need; `perso hsm status` and
// `perso bench hsm` then work from those exports alone.
func TestHSMInitStatusBench(t *testing.T) {
	tok := testenv.SoftHSM(t) // SoftHSM2 must be installed (fails in CI, skips by hand)
	dir := filepath.Join(t.TempDir(), "hsm")
	pins := []string{"PERSO_HSM_PIN=" + testPIN, "PERSO_HSM_SO_PIN=" + testSOPIN, "PERSO_HSM_MODULE=" + tok.Module,
		"PERSO_HSM_TRANSPORT_KEY=000102030405060708090a0b0c0d0e0f"}
	out, env := runHSMInit(t, pins, "--dir", dir, "--import-sgp26", testenv.Path(t, "sgp26"))
	if want := "SOFTHSM2_CONF=" + filepath.Join(dir, "softhsm2.conf"); !strings.Contains(out, want) {
		t.Fatalf("stdout lacks %q:\n%s", want, out)
	}
	if strings.Contains(out, pinMark) {
		t.Fatal("hsm init printed a PIN")
	}
	saved, err := os.ReadFile(filepath.Join(dir, "perso-hsm.env"))
	if err != nil || string(saved) != out {
		t.Fatalf("perso-hsm.env differs from stdout (%v)", err)
	}

	status, _ := runPersoChild(t, env, "hsm", "status", "--json")
	var st struct {
		Health string
		Keys   []struct{ Label, Class, Type, Curve string }
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, status)
	}
	labels := map[string]bool{}
	for _, k := range st.Keys {
		labels[k.Label+"/"+k.Class] = true
	}
	for _, want := range []string{"kek-1/secret", "transport-1/secret", "dpauth-nist/private", "dpauth-brp/private",
		"dppb-nist/private", "dppb-brp/private", "dppb-brp/public"} {
		if !labels[want] {
			t.Errorf("token lacks %s (has %v)", want, labels)
		}
	}
	if st.Health != "ok" {
		t.Fatalf("health %q", st.Health)
	}

	bench, _ := runPersoChild(t, env, "bench", "hsm", "--ops", "sign,ecdh,wrap,qos,ppk", "--sessions", "1,2",
		"--duration", "20ms", "--ppk-profiles", "2000", "--format", "json")
	var rep benchHSMReport
	if err := json.Unmarshal([]byte(bench), &rep); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, bench)
	}
	if len(rep.Results) != 3*2*3 || rep.QoS == nil || rep.PPK == nil {
		t.Fatalf("bench report incomplete: %d rows, qos %v, ppk %v", len(rep.Results), rep.QoS != nil, rep.PPK != nil)
	}
	if rep.PPK.RoundTripsPerProfile > 0.01 || rep.PPK.TamperedRecordsDetected != rep.PPK.TamperChecks {
		t.Fatalf("ppk: %+v", rep.PPK)
	}
}
