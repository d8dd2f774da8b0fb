package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/perso-esim/perso/internal/testenv"
)

// TestHSMCLIHelperProcess runs `perso` in a child process (so that each CLI
// invocation owns its PKCS#11 module and SOFTHSM2_CONF, as the real binary
// does). It exits as main does. It does nothing in a normal test run.
func TestHSMCLIHelperProcess(t *testing.T) {
	args, ok := os.LookupEnv("PERSO_TEST_HSM_CLI_ARGS")
	if !ok {
		return
	}
	root := newRootCmd()
	root.SetArgs(strings.Split(args, "\x1f"))
	if args == "" {
		root.SetArgs([]string{}) // perso alone
	}
	if err := root.Execute(); err != nil {
		os.Stderr.WriteString("perso: " + err.Error() + "\n")
		os.Exit(exitCode(err))
	}
	os.Exit(0)
}

// execPersoChild runs perso args… in a child process in dir (a fresh
// temporary directory if ""), with env added to this process's environment
// (later entries win), and returns its output and exit status.
func execPersoChild(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHSMCLIHelperProcess$")
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = t.TempDir() // no stray perso.yaml
	}
	// TS.48 templates with perso testdata's Milenage records: keep the
	// template's algorithm explicitly (see cleanEnv); env may override.
	cmd.Env = append(append(append(os.Environ(), "PERSO_TEMPLATE_ALGORITHM=keep"), env...), "PERSO_TEST_HSM_CLI_ARGS="+strings.Join(args, "\x1f"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("perso %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// runPersoChild is execPersoChild for a command that must succeed.
func runPersoChild(t *testing.T, env []string, args ...string) (stdout, stderr string) {
	t.Helper()
	out, errs, code := execPersoChild(t, "", env, args...)
	if code != 0 {
		t.Fatalf("perso %s: exit status %d\n%s", strings.Join(args, " "), code, errs)
	}
	return out, errs
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
		"--duration", "20ms", "--ppk-profiles", "2000", "--format", "json", "--history", "none")
	var res struct {
		Mode    string          `json:"mode"`
		Details benchHSMDetails `json:"details"`
	}
	if err := json.Unmarshal([]byte(bench), &res); err != nil || res.Mode != "hsm" {
		t.Fatalf("bench JSON (mode %q): %v\n%s", res.Mode, err, bench)
	}
	rep := res.Details
	if len(rep.Results) != 3*2*3 || rep.QoS == nil || rep.PPK == nil {
		t.Fatalf("bench report incomplete: %d rows, qos %v, ppk %v", len(rep.Results), rep.QoS != nil, rep.PPK != nil)
	}
	if rep.PPK.RoundTripsPerProfile > 0.01 || rep.PPK.TamperedRecordsDetected != rep.PPK.TamperChecks {
		t.Fatalf("ppk: %+v", rep.PPK)
	}
}

// oneLineError checks that stderr is exactly one "perso: …" line holding
// every want.
func oneLineError(t *testing.T, stderr string, want ...string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "perso: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr is not one error line:\n%s", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("error lacks %q:\n%s", w, stderr)
		}
	}
}

// Commands that log in to the HSM refuse to start without a PIN or a
// module, with a one-line explanation and exit status 2: they never try a
// guessed PIN (it would spend the token's retries) nor a default module.
// No HSM is needed: the refusal comes before the module is loaded.
func TestHSMCommandsRefuseWithoutPINOrModule(t *testing.T) {
	module, _ := os.Executable() // any existing file: it is never loaded
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	noPIN := []string{"PERSO_HSM_PIN=", "PERSO_HSM_MODULE=" + module}
	pinMsg := "hsm.pin is not set: set PERSO_HSM_PIN (or hsm.pin in perso.yaml) to the token's user PIN"
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"status without PIN", noPIN, []string{"hsm", "status"}, []string{pinMsg}},
		{"bench without PIN", noPIN, []string{"bench", "hsm", "--duration", "1ms"}, []string{pinMsg}},
		{"demo without PIN", noPIN, []string{"demo", "--template", tmpl, "--store.dsn", "x.db"}, []string{pinMsg}},
		{"status without module", []string{"PERSO_HSM_PIN=" + testPIN, "PERSO_HSM_MODULE="}, []string{"hsm", "status"},
			[]string{"hsm.module is not set: set PERSO_HSM_MODULE"}},
		{"status with a missing module", []string{"PERSO_HSM_PIN=" + testPIN, "PERSO_HSM_MODULE=/nonexistent/libpkcs11.so"},
			[]string{"hsm", "status"}, []string{"hsm.module", "/nonexistent/libpkcs11.so", "env PERSO_HSM_MODULE"}},
		{"init without PINs", []string{"PERSO_HSM_PIN=", "PERSO_HSM_SO_PIN=", "PERSO_HSM_MODULE=" + module},
			[]string{"hsm", "init", "--dir", "tok"}, []string{"hsm.pin is not set", "PERSO_HSM_PIN", "--demo-pins"}},
		{"init without SO PIN", []string{"PERSO_HSM_PIN=" + testPIN, "PERSO_HSM_SO_PIN=", "PERSO_HSM_MODULE=" + module},
			[]string{"hsm", "init", "--dir", "tok"}, []string{"hsm.so_pin is not set", "PERSO_HSM_SO_PIN", "--demo-pins"}},
		{"software without key file", []string{"PERSO_HSM_BACKEND=software", "PERSO_HSM_SOFTWARE_FILE=", "PERSO_HSM_MODULE="},
			[]string{"hsm", "status"}, []string{"hsm.software.file is not set", "PERSO_HSM_SOFTWARE_FILE"}},
		{"live reservation leaves batch nothing", []string{"PERSO_HSM_PIN=" + testPIN, "PERSO_HSM_MODULE=" + module,
			"PERSO_HSM_SESSIONS=2", "PERSO_HSM_LIVE_RESERVED=2"}, []string{"hsm", "status"},
			[]string{"hsm.live_reserved 2 (from env PERSO_HSM_LIVE_RESERVED)", "hsm.sessions 2 (from env PERSO_HSM_SESSIONS)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, stderr, code := execPersoChild(t, dir, tc.env, tc.args...)
			if code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			oneLineError(t, stderr, tc.want...)
			if strings.Contains(stderr, pinMark) {
				t.Error("the error shows a PIN")
			}
			if _, err := os.Stat(filepath.Join(dir, "tok")); err == nil {
				t.Error("a refused hsm init left its directory behind")
			}
		})
	}
}

// leftovers lists what a failed hsm init left in parent besides keep.
func leftovers(t *testing.T, parent string, keep ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			left = append(left, e.Name())
		}
	}
	return left
}

// `perso hsm init` is atomic: a run that fails at any step leaves neither
// DIR nor its temporary directory behind, so the retry succeeds; it never
// touches a DIR that holds anything.
func TestHSMInitIsAtomic(t *testing.T) {
	tok := testenv.SoftHSM(t) // SoftHSM2 must be installed (fails in CI, skips by hand)
	parent := t.TempDir()
	dir := filepath.Join(parent, "hsm")
	env := []string{"PERSO_HSM_PIN=" + testPIN, "PERSO_HSM_SO_PIN=" + testSOPIN, "PERSO_HSM_MODULE=" + tok.Module}
	noKeys := t.TempDir() // no DPauth/DPpb PEM files: fails after the token exists
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"SGP.26 keys missing", env, []string{"--import-sgp26", noKeys}, exitFailure, "SK_S_SM_DPauth_ECDSA_NIST.pem"},
		{"transport key not hex", append(env[:len(env):len(env)], "PERSO_HSM_TRANSPORT_KEY=zz"), nil, exitUsage, "not hex"},
		{"unknown transport algorithm", env, []string{"--transport-alg", "rc4"}, exitUsage, "--transport-alg"},
		{"label too long", env, []string{"--label", strings.Repeat("l", 33)}, exitUsage, "1 to 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := execPersoChild(t, "", tc.env, append([]string{"hsm", "init", "--dir", dir}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if left := leftovers(t, parent); len(left) > 0 {
				t.Errorf("the failed init left %v in %s", left, parent)
			}
		})
	}
	// The retry after all those failures works.
	out, withExports := runHSMInit(t, env, "--dir", dir, "--import-sgp26", testenv.Path(t, "sgp26"))
	if left := leftovers(t, parent, "hsm"); len(left) > 0 {
		t.Errorf("init left %v beside the token directory", left)
	}
	for _, f := range []string{"softhsm2.conf", "tokens", "perso-hsm.env"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("token directory lacks %s: %v", f, err)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "softhsm2.conf"))
	if want := "directories.tokendir = " + filepath.Join(dir, "tokens") + "\n"; !strings.Contains(string(conf), want) {
		t.Errorf("softhsm2.conf does not point at the renamed tokens directory:\n%s", conf)
	}
	if !strings.Contains(out, "SOFTHSM2_CONF="+filepath.Join(dir, "softhsm2.conf")) {
		t.Errorf("exports name the wrong configuration:\n%s", out)
	}
	runPersoChild(t, withExports, "hsm", "status")

	// A DIR that holds anything is refused and left as it was.
	_, stderr, code := execPersoChild(t, "", env, "hsm", "init", "--dir", dir)
	if code != exitUsage || !strings.Contains(stderr, "not empty") {
		t.Errorf("init over an existing token: exit %d, %s", code, stderr)
	}
	if conf2, _ := os.ReadFile(filepath.Join(dir, "softhsm2.conf")); !bytes.Equal(conf, conf2) {
		t.Error("init over an existing token changed it")
	}
}

// HSM errors say what to fix: a wrong token label lists the labels that
// exist; a wrong SOFTHSM2_CONF is named. `--demo-pins` is the explicit,
// only way to the demo PINs, for hsm init and demo alike.
func TestHSMErrorsCarryHints(t *testing.T) {
	tok := testenv.SoftHSM(t) // SoftHSM2 must be installed (fails in CI, skips by hand)
	dir := filepath.Join(t.TempDir(), "hsm")
	env := []string{"PERSO_HSM_PIN=", "PERSO_HSM_SO_PIN=", "PERSO_HSM_MODULE=" + tok.Module}
	_, withExports := runHSMInit(t, env, "--dir", dir, "--label", "perso-hints", "--demo-pins")
	conf := filepath.Join(dir, "softhsm2.conf")
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"wrong token label", []string{"PERSO_HSM_PIN=" + demoPIN, "PERSO_HSM_TOKEN=perso-typo"}, []string{"hsm", "status"}, exitFailure,
			[]string{`hsm: opening token "perso-typo"`, "CKR_TOKEN_NOT_PRESENT", `tokens present: "perso-hints"`,
				"SOFTHSM2_CONF=" + conf, "hsm.token from env PERSO_HSM_TOKEN", "hsm.module from env PERSO_HSM_MODULE"}},
		{"wrong SOFTHSM2_CONF", []string{"PERSO_HSM_PIN=" + demoPIN, "SOFTHSM2_CONF=" + conf + ".missing"}, []string{"hsm", "status"}, exitFailure,
			[]string{"SOFTHSM2_CONF=" + conf + ".missing", tok.Module}},
		{"wrong PIN", []string{"PERSO_HSM_PIN=wrong-" + pinMark}, []string{"hsm", "status"}, exitFailure,
			[]string{`token "perso-hints" refused: wrong PIN`}},
		{"demo needs --demo-pins", []string{"PERSO_HSM_PIN="}, []string{"demo", "--template",
			testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"), "--store.dsn", "demo.db"}, exitUsage,
			[]string{"hsm.pin is not set"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := execPersoChild(t, "", append(withExports[:len(withExports):len(withExports)], tc.env...), tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d", code, tc.code)
			}
			oneLineError(t, stderr, tc.want...)
			if strings.Contains(stderr, pinMark) {
				t.Error("the error shows the PIN")
			}
		})
	}
	// --demo-pins logs in to the token hsm init --demo-pins made.
	out, stderr := runPersoChild(t, append(withExports, "PERSO_HSM_PIN="), "demo", "--demo-pins", "--count", "2", "--template",
		testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"), "--store.dsn", filepath.Join(t.TempDir(), "demo.db"))
	if !strings.Contains(out, "every opened UPP equals the personalised one: OK") || !strings.Contains(stderr, "demo PIN") {
		t.Errorf("demo --demo-pins:\n%s\n%s", out, stderr)
	}
}
