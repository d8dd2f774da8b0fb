package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/internal/testenv"
)

// plantedSecret is a secret value the test hands perso through perso.yaml,
// the environment or a file. Every value is unlikely to occur by chance.
type plantedSecret struct {
	name  string
	value string
	hex   bool // key material in hex: also looked for in upper case and as raw bytes
}

// forms are the byte strings that would reveal s: the value as given and,
// for keys, its other hex case and its raw bytes.
func (s plantedSecret) forms() [][]byte {
	f := [][]byte{[]byte(s.value)}
	if s.hex {
		raw, err := hex.DecodeString(s.value)
		if err != nil {
			panic(s.name + " is not hex")
		}
		f = append(f, []byte(strings.ToUpper(s.value)), []byte(strings.ToLower(s.value)), raw)
	}
	return f
}

// Secrets planted for TestNoCommandRevealsASecret. Hex keys are what an
// HSM or card would hold; the PINs are made of digits where perso wants a
// card PIN, and carry a mark where any string is allowed.
var (
	secHSMPIN     = plantedSecret{name: "HSM user PIN (perso.yaml)", value: "pin-Kx7Qm2-4711"}
	secHSMPINBad  = plantedSecret{name: "wrong HSM user PIN (env)", value: "pin-Wr0ng9-4711"}
	secSOPIN      = plantedSecret{name: "HSM SO PIN (env)", value: "so-Rt5Wn8-47114711"}
	secDSNPass    = plantedSecret{name: "DSN password (perso.yaml)", value: "dsn-Pz4Jc6-pw"}
	secKi         = plantedSecret{name: "Ki (perso.yaml)", value: "c3f1a9e27b5d40c8916e2fa0b7d4e533", hex: true}
	secOPc        = plantedSecret{name: "OPc (env)", value: "7e91d2c4a05b3f68e1c97a2d4b06f85c", hex: true}
	secADM1       = plantedSecret{name: "ADM1 (env)", value: "3f7a9c2e5b1d8f40", hex: true}
	secPIN1       = plantedSecret{name: "PIN1 (perso.yaml)", value: "73924618"}
	secPUK1       = plantedSecret{name: "PUK1 (perso.yaml)", value: "58273946"}
	secSDKey      = plantedSecret{name: "SD key, PPK-like (env)", value: "9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3", hex: true}
	secTransport  = plantedSecret{name: "HSM transport key (file)", value: "a1b2c3d4e5f60718293a4b5c6d7e8f90", hex: true}
	secTDTranport = plantedSecret{name: "testdata transport key (env)", value: "5f4e3d2c1b0a9f8e7d6c5b4a39281706", hex: true}
	secSoftPass   = plantedSecret{name: "software backend passphrase (env)", value: "soft-Gv2Hy9-pass"}

	allSecrets = []plantedSecret{secHSMPIN, secHSMPINBad, secSOPIN, secDSNPass, secKi, secOPc, secADM1, secPIN1, secPUK1,
		secSDKey, secTransport, secTDTranport, secSoftPass}
	// what a personalised profile is meant to carry (in card form)
	profileSecrets = []plantedSecret{secKi, secOPc, secADM1, secPIN1, secPUK1, secSDKey}
)

// secretRun is one way of running a command for the planted-secrets test.
type secretRun struct {
	args []string
	env  []string // added to the common environment
	code int      // expected exit status: the command must get where it is meant to
	// outputs are the files the run is meant to write, with the secrets
	// each may hold in the clear (nil: none).
	outputs map[string][]plantedSecret
	exports bool // stdout holds `export X=Y` lines to add to the environment
}

// commandPaths lists every command a user can run ("perso" for the root,
// "hsm init", …), including cobra's help and completion commands.
func commandPaths() []string {
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var paths []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() {
			paths = append(paths, strings.TrimPrefix(c.CommandPath(), "perso "))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	sort.Strings(paths)
	return paths
}

// findSecrets lists every planted secret found in data, except those
// allowed there.
func findSecrets(data []byte, allowed []plantedSecret) []string {
	var found []string
	for _, s := range allSecrets {
		ok := false
		for _, a := range allowed {
			ok = ok || a.name == s.name
		}
		if ok {
			continue
		}
		for _, f := range s.forms() {
			if i := bytes.Index(data, f); i >= 0 {
				found = append(found, fmt.Sprintf("the %s at byte %d", s.name, i))
				break
			}
		}
	}
	return found
}

func scanForSecrets(t *testing.T, where string, data []byte, allowed []plantedSecret) {
	t.Helper()
	for _, f := range findSecrets(data, allowed) {
		t.Errorf("%s reveals %s", where, f)
	}
}

// The planted-secrets test: every CLI command, run the way an operator
// would with secrets in perso.yaml, the environment and files, at log
// level debug, must not reveal any of them in stdout, stderr (logs and
// errors) or any file it writes, except where a file is meant to hold key
// material (a personalised profile). A command added to perso without a
// row in the table below fails the test.
func TestNoCommandRevealsASecret(t *testing.T) {
	tok := testenv.SoftHSM(t) // SoftHSM2 must be installed (fails in CI, skips by hand)
	// So is PostgreSQL (trust authentication: any password is accepted). A
	// fresh schema: batches of an earlier run (-count=2) were sealed under
	// the KEK of that run's token and would clash with this run's.
	pgDSN := testenv.PostgresSchemaDSN(t)
	u, err := url.Parse(pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), secDSNPass.value)
	dsn := u.String()
	deadDSN := "postgres://perso:" + secDSNPass.value + "@127.0.0.1:1/perso?sslmode=disable&connect_timeout=2"

	work := t.TempDir()
	inputs := map[string]bool{}
	input := func(name, content string) {
		writeFile(t, filepath.Join(work, name), content)
		inputs[name] = true
	}
	input("perso.yaml", fmt.Sprintf("hsm:\n  pin: %q\nstore:\n  driver: postgres\n  dsn: %q\nki: %q\npin1: %q\npuk1: %q\n",
		secHSMPIN.value, dsn, secKi.value, secPIN1.value, secPUK1.value))
	input("transport.hex", secTransport.value+"\n")
	input("engine.sh", "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --report ] && echo '{\"records_read\": 20}' > \"$2\"; shift; done\n")
	if err := os.Chmod(filepath.Join(work, "engine.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	input("broken.yaml", "hsm:\n  pin: \""+secHSMPIN.value+"\n  so_pin: ["+secSOPIN.value+"\n")
	input("unknown.yaml", "hsm:\n  pinn: \""+secHSMPIN.value+"\"\nstore:\n  dsn: 5\n")
	// Records for check: one valid, one with a bad ICCID Luhn digit, one
	// with a bad OPc; all carry the planted Ki, which no reject report
	// may show.
	const header = "iccid,imsi,ki,opc,op,algorithm,pin1,puk1,pin2,puk2,adm1,msisdn,smsc,spn,profile_name,service_provider,profile_type,profile_class\n"
	input("records-in.csv", header+
		"8944150000000000017,234150000000001,"+secKi.value+","+secOPc.value+",,milenage,"+secPIN1.value[:4]+","+secPUK1.value+",6781,92015071,72058784,,,,,,,\n"+
		"8944150000000000018,234150000000002,"+secKi.value+","+secOPc.value+",,milenage,6114,"+secPUK1.value+",6781,92015071,72058784,,,,,,,\n"+
		"8944150000000000025,234150000000003,"+secKi.value+",zz"+secOPc.value[2:]+",,milenage,6114,27994917,6781,92015071,72058784,,,,,,,\n")
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")

	env := []string{
		"PERSO_LOG_LEVEL=debug",
		"PERSO_HSM_PIN=", // from perso.yaml
		"PERSO_HSM_SO_PIN=" + secSOPIN.value,
		"PERSO_HSM_MODULE=" + tok.Module,
		"PERSO_HSM_TOKEN=perso-secrets",
		"PERSO_OPC=" + secOPc.value,
		"PERSO_ADM1=" + secADM1.value,
		"PERSO_SD_KEY=01:01:" + secSDKey.value,
		"PERSO_TESTDATA_TRANSPORT_KEY=" + secTDTranport.value,
		"PERSO_HSM_SOFTWARE_PASSPHRASE=" + secSoftPass.value,
		"PERSO_HSM_TRANSPORT_KEY=",
	}
	usage := secretRun{code: exitUsage}
	// Commands in the order they run (hsm init first: later commands use
	// its token). Several rows may exercise one command.
	table := []struct {
		command string
		run     secretRun
	}{
		{"hsm init", secretRun{args: []string{"--dir", "hsm", "--label", "perso-secrets", "--import-sgp26", testenv.Path(t, "sgp26"),
			"--transport-key-file", "transport.hex"}, exports: true, outputs: map[string][]plantedSecret{"hsm": nil}}},
		{"hsm init", secretRun{args: []string{"--dir", "soft", "--software"}, outputs: map[string][]plantedSecret{"soft": nil}}},
		{"hsm init", secretRun{args: []string{"--dir", "hsm"}, code: exitUsage}}, // exists: refused
		{"hsm status", secretRun{args: []string{"--json"}}},
		{"hsm status", secretRun{env: []string{"PERSO_HSM_PIN=" + secHSMPINBad.value}, code: exitFailure}},
		{"hsm status", secretRun{env: []string{"PERSO_HSM_BACKEND=software", "PERSO_HSM_MODULE=", "PERSO_HSM_SOFTWARE_FILE=soft/keys.json"}}},
		{"hsm", usage},
		{"bench hsm", secretRun{args: []string{"--ops", "sign", "--sessions", "1", "--duration", "5ms", "--raw=false", "--format", "table",
			"--json", "bench.json"}, outputs: map[string][]plantedSecret{"bench.json": nil}}},
		{"bench store", secretRun{args: []string{"--profiles", "200", "--chunk", "100", "--loaders", "1", "--orders", "20", "--callers", "2",
			"--segment-bytes", "512", "--json", "store.json", "--history", "history.jsonl", "--plots", "plots"},
			outputs: map[string][]plantedSecret{"store.json": nil, "history.jsonl": nil, "plots": nil}}},
		{"bench store", secretRun{args: []string{"--profiles", "10", "--orders", "1", "--store.dsn", deadDSN, "--history", "none"}, code: exitFailure}},
		{"bench soak", secretRun{args: []string{"--target", "hsmpool", "--binds", "100", "--workers", "2", "--samples", "2", "--json", "soak.json", "--history", "none"},
			outputs: map[string][]plantedSecret{"soak.json": nil}}},
		// No profiles of that type: refused before a server starts.
		{"bench download", secretRun{args: []string{"--downloads", "1", "--euiccs", "1", "--curves", "nist", "--profile-type", "no-such-type",
			"--sgp26", testenv.Path(t, "sgp26"), "--history", "none"}, code: exitFailure}},
		// The engine in a scratch schema of the PostgreSQL store whose DSN carries the password.
		{"bench engine", secretRun{args: []string{"--records", "30", "--template", tmpl, "--json", "engine.json", "--history", "none"},
			outputs: map[string][]plantedSecret{"engine.json": nil}}},
		// The test binary cannot be perso serve: a dead DSN fails before a server starts.
		{"bench mixed", secretRun{args: []string{"--records", "10", "--downloads", "1", "--template", tmpl, "--store.dsn", deadDSN,
			"--sgp26", testenv.Path(t, "sgp26"), "--history", "none"}, code: exitFailure}},
		{"bench", usage},
		{"demo", secretRun{args: []string{"--template", tmpl, "--count", "2"}}},
		{"demo", secretRun{args: []string{"--template", tmpl, "--count", "1", "--store.dsn", deadDSN}, code: exitFailure}},
		// A PostgreSQL DSN given to the SQLite driver: the driver quotes it in its error.
		{"demo", secretRun{args: []string{"--template", tmpl, "--count", "1", "--store.dsn", deadDSN},
			env: []string{"PERSO_STORE_DRIVER=sqlite"}, code: exitFailure}},
		// serve: the HSM from hsm init (SGP.26 keys imported), PKI and TLS from testdata.
		{"serve", secretRun{args: []string{"--serve.listen", "127.0.0.1:0", "--stop-after", "300ms"}, env: []string{
			"PERSO_SERVE_PKI_DIR=" + testenv.Path(t, "sgp26"),
			"PERSO_SERVE_TLS_CERT=" + testenv.Path(t, "sgp26", "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"),
			"PERSO_SERVE_TLS_KEY=" + testenv.Path(t, "sgp26", "DPtls", "SK_S_SM_DP_TLS_NIST.pem")}}},
		{"serve", secretRun{args: []string{"--serve.listen", "127.0.0.1:0", "--stop-after", "300ms"}, code: exitUsage,
			env: []string{"PERSO_SERVE_PKI_DIR=no-such-dir"}}},
		{"template personalise", secretRun{args: []string{"--template", tmpl, "--iccid", "8949449999999990999", "--imsi", "001010123456789",
			"-o", "profile.der"}, outputs: map[string][]plantedSecret{"profile.der": profileSecrets}}},
		{"template inspect", secretRun{args: []string{"profile.der"}}},
		{"template inspect", secretRun{args: []string{"--json", "profile.der"}}},
		{"template validate", secretRun{args: []string{"profile.der"}}},
		{"template", usage},
		{"testdata perso", secretRun{args: []string{"--count", "20", "--transport-key", "1", "-o", "records.csv"},
			outputs: map[string][]plantedSecret{"records.csv": nil}}},
		{"testdata", usage},
		{"check", secretRun{args: []string{"--transport-key", "1", "records.csv"}}},
		{"check", secretRun{args: []string{"--rejects", "rejects.json", "--reject-format", "json", "records-in.csv"}, code: exitPartial,
			outputs: map[string][]plantedSecret{"rejects.json": nil}}},
		{"check", secretRun{args: []string{"records-in.csv"}, code: exitPartial,
			outputs: map[string][]plantedSecret{"records-in.csv.rejects.csv": nil}}},
		{"run", secretRun{args: []string{"--template", tmpl, "--input", "records.csv", "--transport-key", "1", "--batch", "sec",
			"--report", "report.json"}, outputs: map[string][]plantedSecret{"report.json": nil}}},
		{"run", secretRun{args: []string{"--template", tmpl, "--input", "records-in.csv", "--rejects", "run-rejects.csv",
			"--progress", "log"}, code: exitPartial, outputs: map[string][]plantedSecret{"run-rejects.csv": nil}}},
		// The test binary is not a perso binary: a stand-in engine writes
		// the report (perso run itself is covered by the run rows).
		{"bench compare", secretRun{args: []string{"--input", "records.csv", "--template", tmpl, "--engine", "./engine.sh",
			"--reference", "cat {input} > {out}/copy.csv", "--runs", "1", "--json", "compare.json", "--history", "none"},
			outputs: map[string][]plantedSecret{"compare.json": nil}}},
		{"batch list", secretRun{}},
		{"batch show", secretRun{args: []string{"sec", "--json"}}},
		{"verify", secretRun{args: []string{"--offline", "--template", tmpl, "--input", "records.csv", "--transport-key", "1", "--batch", "sec", "--sample", "3"}}},
		// Over ES9+ with an in-process SM-DP+ on the token's SGP.26 keys:
		// two profiles of the batch ordered, downloaded and Installed.
		{"verify", secretRun{args: []string{"--es9", "--template", tmpl, "--input", "records.csv", "--transport-key", "1", "--batch", "sec",
			"--sample", "2", "--sgp26", testenv.Path(t, "sgp26")}, env: []string{"PERSO_SERVE_PKI_DIR=" + testenv.Path(t, "sgp26"),
			"PERSO_SERVE_TLS_CERT=" + testenv.Path(t, "sgp26", "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"),
			"PERSO_SERVE_TLS_KEY=" + testenv.Path(t, "sgp26", "DPtls", "SK_S_SM_DP_TLS_NIST.pem")}}},
		{"batch", usage},
		// ES2+: an operator recorded from the (expired) SGP.26 operator
		// certificate; no SM-DP+ listens on port 1, so order fails (exit 1)
		// after loading the client key.
		{"operator add", secretRun{args: []string{"op-sec", "--trust", testenv.Path(t, "sgp26", "es2-mno-client", "CERT_MNO_ECDSA_NIST.pem"),
			"--callback-url", "https://bss.example/cb"}}},
		{"operator add", secretRun{args: []string{"op-key", "--trust", testenv.Path(t, "sgp26", "es2-mno-client", "SK_MNO_ECDSA_NIST.pem")}, code: exitUsage}},
		{"operator list", secretRun{}},
		{"operator remove", secretRun{args: []string{"op-sec"}}},
		{"operator", usage},
		{"order", secretRun{args: []string{"--server", "https://127.0.0.1:1", "--requester", "op-sec", "--profile-type", "t1",
			"--client-cert", testenv.Path(t, "sgp26", "es2-mno-client", "CERT_MNO_ECDSA_NIST.pem"),
			"--client-key", testenv.Path(t, "sgp26", "es2-mno-client", "SK_MNO_ECDSA_NIST.pem"), "--qr", "code.png"}, code: exitFailure}},
		{"order", secretRun{args: []string{"--server", "http://127.0.0.1:1", "--requester", "op-sec", "--iccid", "1",
			"--client-cert", "x", "--client-key", "y"}, code: exitUsage}},
		// No SM-DP+ listens on port 1: the download fails after loading the eUICC (exit 1).
		{"euicc download", secretRun{args: []string{"LPA:1$127.0.0.1:1$MATCH", "--sgp26", testenv.Path(t, "sgp26"), "--tls-root", "system",
			"-o", "upp.der"}, code: exitFailure}},
		{"euicc download", secretRun{args: []string{"LPA:2$smdp.example.com$MATCH"}, code: exitUsage}},
		{"euicc", usage},
		{"config", secretRun{}},
		{"config", secretRun{args: []string{"--config", "broken.yaml"}, code: exitUsage}},
		{"config", secretRun{args: []string{"--config", "unknown.yaml"}, code: exitUsage}},
		{"config", secretRun{env: []string{"PERSO_STORE_DSN=host=db user=perso password=" + secDSNPass.value}}},
		{"version", secretRun{}},
		{"help", secretRun{}},
		{"completion bash", secretRun{}},
		{"completion zsh", secretRun{}},
		{"completion fish", secretRun{}},
		{"completion powershell", secretRun{}},
		{"perso", usage},
	}

	covered := map[string]bool{}
	for _, row := range table {
		covered[row.command] = true
	}
	var missing []string
	for _, p := range commandPaths() {
		if !covered[p] {
			missing = append(missing, p)
		}
		delete(covered, p)
	}
	if len(missing) > 0 {
		t.Fatalf("commands missing from the planted-secrets table (add how to run them): %s", strings.Join(missing, ", "))
	}
	for c := range covered {
		t.Errorf("the planted-secrets table runs %q, which is not a perso command", c)
	}

	written := map[string][]plantedSecret{}
	for i, row := range table {
		args := append(strings.Fields(row.command), row.run.args...)
		if row.command == "perso" {
			args = row.run.args
		}
		name := fmt.Sprintf("#%d perso %s", i, strings.Join(args, " "))
		stdout, stderr, code := execPersoChild(t, work, append(env[:len(env):len(env)], row.run.env...), args...)
		if code != row.run.code {
			t.Errorf("%s: exit status %d, want %d\n%s", name, code, row.run.code, stderr)
		}
		scanForSecrets(t, name+": stdout", []byte(stdout), nil)
		scanForSecrets(t, name+": stderr", []byte(stderr), nil)
		for f, allowed := range row.run.outputs {
			written[f] = allowed
		}
		if row.run.exports && code == 0 {
			sc := bufio.NewScanner(strings.NewReader(stdout))
			for sc.Scan() {
				if e, ok := strings.CutPrefix(sc.Text(), "export "); ok {
					env = append(env, e)
				}
			}
		}
	}

	// Every file in the working directory: inputs aside, each may hold
	// only what its command is meant to write.
	err = filepath.WalkDir(work, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(work, path)
		if inputs[rel] {
			return nil
		}
		top := strings.Split(rel, string(filepath.Separator))[0]
		allowed, ok := written[rel]
		if !ok {
			if allowed, ok = written[top]; !ok {
				t.Errorf("%s: written by no command that should write it", rel)
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanForSecrets(t, "file "+rel, data, allowed)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The scan itself can fail: each form of a planted secret is found, and
// an allowed one is not reported.
func TestFindSecretsFindsEveryForm(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    []byte
		allowed []plantedSecret
		want    int
	}{
		{"text", []byte("x " + secHSMPIN.value + " y"), nil, 1},
		{"hex lower", []byte("k=" + secKi.value), nil, 1},
		{"hex upper", []byte("k=" + strings.ToUpper(secKi.value)), nil, 1},
		{"raw bytes", append([]byte{0x80, 0x10}, must(hex.DecodeString(secKi.value))...), nil, 1},
		{"allowed", must(hex.DecodeString(secKi.value)), profileSecrets, 0},
		{"two", []byte(secSOPIN.value + secDSNPass.value), nil, 2},
		{"none", []byte("nothing to see"), nil, 0},
	} {
		if got := findSecrets(tc.data, tc.allowed); len(got) != tc.want {
			t.Errorf("%s: found %v, want %d findings", tc.name, got, tc.want)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
