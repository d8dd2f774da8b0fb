package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/template"
)

// runPerso runs the perso command tree in a scratch directory (so that no
// perso.yaml is picked up) and returns stdout.
func runPerso(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Chdir(t.TempDir())
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func ts48File(t *testing.T) string {
	return testenv.Path(t, "ts48", "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der")
}

func TestTemplateInspectJSONMasksSecretsUnlessAsked(t *testing.T) {
	for _, show := range []bool{false, true} {
		args := []string{"template", "inspect", "--json", ts48File(t)}
		if show {
			args = append(args, "--show-secrets")
		}
		out, err := runPerso(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		var r template.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("inspect --json is not a template.Report: %v", err)
		}
		if len(r.PEs) != 30 || r.Header.ICCID != "8949449999999990171" || len(r.Problems) != 0 {
			t.Fatalf("unexpected report: %d PEs, ICCID %q, problems %v", len(r.PEs), r.Header.ICCID, r.Problems)
		}
		secrets := 0
		for _, s := range r.Slots {
			if !s.Secret {
				continue
			}
			secrets++
			if masked := s.Value == template.Masked; masked == show {
				t.Fatalf("--show-secrets=%v: slot %s shows %q", show, s.Name, s.Value)
			}
		}
		if secrets != 19 { // K, OPc ×2, 6 SD keys and 9 PIN/PUK/ADM codes
			t.Fatalf("%d secret slots, want 19", secrets)
		}
	}
}

func TestTemplateValidateExitsWith2OnABrokenTemplate(t *testing.T) {
	der, err := os.ReadFile(ts48File(t))
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.der")
	if err := os.WriteFile(bad, der[:len(der)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runPerso(t, "template", "validate", ts48File(t))
	if err != nil || !strings.Contains(out, ": ok (30 PEs") {
		t.Fatalf("validate of a TS.48 template: %v, %q", err, out)
	}
	out, err = runPerso(t, "template", "validate", bad)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("validate of a truncated template: error %v, want exit status 2", err)
	}
	if !strings.Contains(out, "PE #29 (end) at offset 0x2f7a") {
		t.Fatalf("validate output does not locate the problem: %q", out)
	}
}

func TestTemplatePersonaliseWritesTheValues(t *testing.T) {
	dir := t.TempDir()
	outFile := filepath.Join(dir, "out.der")
	k := "000102030405060708090a0b0c0d0e0f"
	t.Setenv("PERSO_KI", k)
	_, err := runPerso(t, "template", "personalise", "--template", ts48File(t), "-o", outFile,
		"--iccid", "8949449999999990999", "--imsi", "310150123456789", "--opc", "ffeeddccbbaa99887766554433221100",
		"--pin1", "2468", "--puk1", "13572468", "--adm1", "0102030405060708",
		"--sd-key", "02:01:"+strings.Repeat("ab", 16), "--smsc", "+447700900123", "--spn", "perso", "--msisdn", "+447700900999")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("output mode %v, want 0600 (it holds secrets)", st.Mode().Perm())
	}
	der, _ := os.ReadFile(outFile)
	p, err := template.Decode(der)
	if err != nil {
		t.Fatal(err)
	}
	if p.ICCID().String() != "8949449999999990999" {
		t.Fatalf("ICCID %q", p.ICCID())
	}
	imsi, _ := esim.IMSIFromEF(p.First(template.PEUSIM).FS.File("ef-imsi").Content())
	if imsi.String() != "310150123456789" {
		t.Fatalf("IMSI %q", imsi)
	}
	for _, pe := range p.All(template.PEAKAParameter) {
		if hex.EncodeToString(pe.AKA.Algo.Key) != k || hex.EncodeToString(pe.AKA.Algo.OPc) != "ffeeddccbbaa99887766554433221100" {
			t.Fatalf("PE #%d: K/OPc not written", pe.Index)
		}
	}
	sd := p.First(template.PESecurityDomain).SD
	if got := hex.EncodeToString(sd.Key(0x02, 0x01).Components[0].Data); got != strings.Repeat("ab", 16) {
		t.Fatalf("SD key KVN 02 ID 01 = %s", got)
	}
	if got := esim.CodeText(p.PEs[3].PINs.Configs[1].Value); got != "0102030405060708" {
		t.Fatalf("ADM1 = %s", got)
	}
	m := p.First(template.PEOptUSIM).FS.File("ef-msisdn")
	if got, err := template.DecodeMSISDN(m.Content()[:m.FCP.RecordLength()]); err != nil || got != "+447700900999" {
		t.Fatalf("MSISDN = %q, %v", got, err)
	}
}

func TestTemplatePersonaliseRefusesBadInputWithoutEchoingSecrets(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.der")
	secret := "00112233445566778899aabbccddee" // 15 bytes: wrong length
	_, err := runPerso(t, "template", "personalise", "--template", ts48File(t), "-o", out, "--ki", secret)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("error %v, want exit status 2", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error %q echoes the key", err)
	}
	if _, statErr := os.Stat(out); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatal("an output file was written despite the error")
	}
}
