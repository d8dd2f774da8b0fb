package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// `perso verify` (ES9+ by default): profiles loaded by `perso run` on a
// SoftHSM2 token with the SGP.26 keys are ordered through the store and
// downloaded over ES9+ (HTTPS, in-process SM-DP+ unless --server) by the
// virtual eUICC; each recovered UPP equals its record personalised
// directly (with --input), or decodes with the stored ICCID and IMSI
// (allocated by profile type, ASN.1 binding). A sample of the input skips
// records whose profiles were downloaded before (and says how many), and
// fails when none is left; asking for more profiles of a type than remain
// Available fails with exit 1; --offline opens the (now Installed)
// profiles locally; a half-given sample definition and --offline beside
// --server are usage errors.
func TestVerifyES9(t *testing.T) {
	sgp26 := testenv.Path(t, "sgp26")
	env := append(provisionedToken(t),
		"PERSO_STORE_DSN="+filepath.Join(t.TempDir(), "perso.db"),
		"PERSO_SERVE_PKI_DIR="+sgp26,
		"PERSO_SERVE_TLS_CERT="+filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"),
		"PERSO_SERVE_TLS_KEY="+filepath.Join(sgp26, "DPtls", "SK_S_SM_DP_TLS_NIST.pem"))
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	dir := t.TempDir()
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", "16", "-o", "in.csv"); res.code != 0 {
		t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
	}
	if res := runChild(t, dir, env, nil, time.Minute, "run", "--template", tmpl, "--input", "in.csv", "--batch", "v",
		"--profile-type", "ts48", "--progress", "none"); res.code != 0 {
		t.Fatalf("run: %d\n%s", res.code, res.stderr)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"sample of the input", []string{"--template", tmpl, "--input", "in.csv", "--sample", "4", "--seed", "3"}, 0,
			[]string{"4 of 4 profiles downloaded over ES9+ and checked, 0 failed", "P-256  json", "brainpoolP256r1  json",
				"equal to the record personalised directly"}},
		{"allocated by the batch's profile type", []string{"--batch", "v", "--sample", "2", "--binding", "asn1"}, 0,
			[]string{"2 of 2 profiles downloaded over ES9+ and checked", "brainpoolP256r1  asn1", "decodes with the stored ICCID and IMSI"}},
		{"from a running perso serve", []string{"--server", "https://" + serveAddr(t, dir, env), "--batch", "v", "--sample", "1"}, 0,
			[]string{"1 of 1 profiles downloaded over ES9+ and checked"}},
		// All 16 records are drawn (2 × 9 + 8 candidates) and the 9 still
		// Available are downloaded: those of the 7 downloaded above met
		// before the last of them are skipped (seeded: some are).
		{"sample skips downloaded profiles (--es9 named)", []string{"--es9", "--template", tmpl, "--input", "in.csv", "--sample", "9", "--seed", "7"}, 0,
			[]string{"9 of 9 profiles downloaded over ES9+ and checked, 0 failed", "sampled records skipped: their profiles were no longer Available"}},
		{"more than remain Available", []string{"--profile-type", "ts48", "--sample", "5"}, exitFailure,
			[]string{"0 of 5 profiles downloaded"}},
		{"sample with nothing Available", []string{"--template", tmpl, "--input", "in.csv", "--sample", "1"}, exitFailure,
			[]string{"none of the sampled records' profiles is Available"}},
		{"offline opens the Installed profiles", []string{"--offline", "--template", tmpl, "--input", "in.csv", "--batch", "v", "--sample", "3"}, 0,
			[]string{"3 of 3 sampled profiles", "opened and equal, 0 failed"}},
		{"offline beside --server", []string{"--offline", "--server", "https://127.0.0.1:1", "--template", tmpl, "--input", "in.csv"}, exitUsage,
			[]string{"--offline opens profiles locally"}},
		{"offline without input", []string{"--offline", "--batch", "v"}, exitUsage, []string{"--template and --input are required"}},
		{"input without template", []string{"--input", "in.csv"}, exitUsage, []string{"--input and --template together"}},
		{"nothing named", nil, exitUsage, []string{"name the profiles"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runChild(t, dir, env, nil, time.Minute, append([]string{"verify", "--sgp26", sgp26}, tc.args...)...)
			if res.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", res.code, tc.code, res.stdout, res.stderr)
			}
			for _, w := range tc.wants {
				if !strings.Contains(res.stdout+res.stderr, w) {
					t.Errorf("output lacks %q:\n%s\n%s", w, res.stdout, res.stderr)
				}
			}
			if strings.Contains(res.stdout+res.stderr, pinMark) {
				t.Error("verify printed the HSM PIN")
			}
		})
	}
}

// serveAddr starts `perso serve` on a loopback port of the test's store
// and token, stopped (SIGTERM) when the test ends, and returns the address
// it announces.
func serveAddr(t *testing.T, dir string, env []string) string {
	t.Helper()
	cmd := exec.Command(persoBinary(t), "serve", "--serve.listen", "127.0.0.1:0")
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "ES9+ on https://"); ok {
				found <- strings.Fields(rest)[0]
				break
			}
		}
		close(found)
		for sc.Scan() { // keep draining so that serve never blocks on stdout
		}
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatal("perso serve ended without announcing its address")
		}
		return addr
	case <-time.After(30 * time.Second):
		t.Fatal("perso serve did not announce its address within 30 s")
	}
	return ""
}
