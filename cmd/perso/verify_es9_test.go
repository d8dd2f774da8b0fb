package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// `perso verify --es9`: profiles loaded by `perso run` on a SoftHSM2 token
// with the SGP.26 keys are ordered through the store and downloaded over
// ES9+ (HTTPS, in-process SM-DP+) by the virtual eUICC; each recovered UPP
// equals its record personalised directly (with --input), or decodes with
// the stored ICCID and IMSI (allocated by profile type, ASN.1 binding);
// asking for more profiles than remain Available fails with exit 1, and a
// half-given sample definition is a usage error.
func TestVerifyES9(t *testing.T) {
	sgp26 := testenv.Path(t, "sgp26")
	env := append(provisionedToken(t),
		"PERSO_STORE_DSN="+filepath.Join(t.TempDir(), "perso.db"),
		"PERSO_SERVE_PKI_DIR="+sgp26,
		"PERSO_SERVE_TLS_CERT="+filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"),
		"PERSO_SERVE_TLS_KEY="+filepath.Join(sgp26, "DPtls", "SK_S_SM_DP_TLS_NIST.pem"))
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	dir := t.TempDir()
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", "8", "-o", "in.csv"); res.code != 0 {
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
		{"sample of the input", []string{"--template", tmpl, "--input", "in.csv", "--sample", "4"}, 0,
			[]string{"4 of 4 profiles downloaded over ES9+ and checked, 0 failed", "P-256  json", "brainpoolP256r1  json",
				"equal to the record personalised directly"}},
		{"allocated by the batch's profile type", []string{"--batch", "v", "--sample", "2", "--binding", "asn1"}, 0,
			[]string{"2 of 2 profiles downloaded over ES9+ and checked", "brainpoolP256r1  asn1", "decodes with the stored ICCID and IMSI"}},
		{"more than remain Available", []string{"--profile-type", "ts48", "--sample", "5"}, exitFailure,
			[]string{"2 of 5 profiles downloaded"}},
		{"input without template", []string{"--input", "in.csv"}, exitUsage, []string{"--input and --template together"}},
		{"nothing named", nil, exitUsage, []string{"name the profiles"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runChild(t, dir, env, nil, time.Minute, append([]string{"verify", "--es9", "--sgp26", sgp26}, tc.args...)...)
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
