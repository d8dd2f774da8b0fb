package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runInDir runs the perso root command in dir (so ./perso.yaml is found)
// with the given environment, and returns stdout.
func runInDir(t *testing.T, dir string, env map[string]string, args ...string) string {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("perso %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

// Configuration layers: built-in defaults < ./perso.yaml < PERSO_* env <
// flags, and secrets never print.
func TestConfigurationLayers(t *testing.T) {
	dir := t.TempDir()
	yaml := "hsm:\n  sessions: 8\n  token: from-file\n  pin: \"0000\"\nstore:\n  driver: postgres\n"
	if err := os.WriteFile(filepath.Join(dir, "perso.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// A file named like the binary must not be mistaken for the configuration.
	if err := os.WriteFile(filepath.Join(dir, "perso"), []byte("\x7fELF\x00binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	out := runInDir(t, dir, map[string]string{"PERSO_HSM_SESSIONS": "16"}, "config")
	for _, want := range []string{
		"hsm.sessions: 16\n",          // env beats file
		"hsm.token: from-file\n",      // file beats default
		"store.driver: postgres\n",    // file beats default
		"store.dsn: perso.db\n",       // default
		"hsm.pin: (set, redacted)\n",  // never the value
		"# config file: perso.yaml\n", // the exact file, not ./perso (the binary)
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "0000") {
		t.Errorf("config printed the PIN:\n%s", out)
	}
}

func TestConfigFlagBeatsEnv(t *testing.T) {
	out := runInDir(t, t.TempDir(), map[string]string{"PERSO_LOG_FORMAT": "json"}, "config", "--log-format", "text")
	if !strings.Contains(out, "log-format: text\n") {
		t.Errorf("flag did not win over env:\n%s", out)
	}
}

func TestConfigRejectsABrokenFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "perso.yaml"), []byte("hsm: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	os.Chdir(dir)
	defer os.Chdir(wd)
	root := newRootCmd()
	root.SetArgs([]string{"config"})
	root.SetOut(new(bytes.Buffer))
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "perso.yaml") {
		t.Fatalf("broken perso.yaml: got %v, want an error naming the file", err)
	}
}
