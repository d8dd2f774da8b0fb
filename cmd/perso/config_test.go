package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// execInDir runs the perso root command in-process in dir (so ./perso.yaml
// is found) with the given environment, and returns stdout and the error.
func execInDir(t *testing.T, dir string, env map[string]string, args ...string) (string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Chdir(dir)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(new(bytes.Buffer))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// runInDir is execInDir for a command that must succeed.
func runInDir(t *testing.T, dir string, env map[string]string, args ...string) string {
	t.Helper()
	out, err := execInDir(t, dir, env, args...)
	if err != nil {
		t.Fatalf("perso %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// configLine returns the `perso config` line of key, without the column
// padding: "key: value # source".
func configLine(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, key+": ") {
			v, src, _ := strings.Cut(l, "#")
			return strings.TrimSpace(v) + " # " + strings.TrimSpace(src)
		}
	}
	return ""
}

// Configuration layers: built-in defaults < ./perso.yaml < PERSO_* env <
// flags; each value names its source, and secrets never print.
func TestConfigurationLayers(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "perso.yaml"),
		"hsm:\n  sessions: 8\n  token: from-file\n  pin: \"0000-pin-q7Zx\"\nstore:\n  driver: postgres\n")
	// A file named like the binary must not be mistaken for the configuration.
	if err := os.WriteFile(filepath.Join(dir, "perso"), []byte("\x7fELF\x00binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	out := runInDir(t, dir, map[string]string{"PERSO_HSM_SESSIONS": "16", "PERSO_LOG_FORMAT": "json"},
		"config", "--log-format", "text")
	for key, want := range map[string]string{
		"hsm.sessions": "hsm.sessions: 16 # env PERSO_HSM_SESSIONS", // env beats file
		"hsm.token":    "hsm.token: from-file # file perso.yaml:3",  // file beats default
		"store.driver": "store.driver: postgres # file perso.yaml:6",
		"store.dsn":    "store.dsn: perso.db # default",
		"hsm.pin":      "hsm.pin: (set, redacted) # file perso.yaml:4", // never the value
		"hsm.so_pin":   "hsm.so_pin: (unset) # default",
		"hsm.module":   `hsm.module: "" # default`,             // no development module by default
		"log-format":   "log-format: text # flag --log-format", // flag beats env
	} {
		if got := configLine(out, key); got != want {
			t.Errorf("config line of %s = %q, want %q", key, got, want)
		}
	}
	if !strings.HasPrefix(out, "# config file: perso.yaml\n") { // the exact file, not ./perso (the binary)
		t.Errorf("config output does not name perso.yaml first:\n%s", out)
	}
	if strings.Contains(out, "q7Zx") {
		t.Errorf("config printed the PIN:\n%s", out)
	}
}

// `perso config` with a DSN password and a Ki in perso.yaml shows neither;
// every key off the allow-list is redacted, whatever its source.
func TestConfigRedactsSecrets(t *testing.T) {
	const (
		dsnPass = "dsn-pw-Vq3r"
		ki      = "5e3c1a0b9f8e7d6c5b4a39281706f5e4"
		opc     = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
		pass    = "soft-pass-Lm9k"
		soPIN   = "so-pin-Hh2w"
	)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "perso.yaml"), fmt.Sprintf(
		"store:\n  driver: postgres\n  dsn: \"postgres://perso:%s@db.example:5432/perso?sslmode=verify-full\"\nki: \"%s\"\nhsm:\n  software:\n    passphrase: \"%s\"\n",
		dsnPass, ki, pass))
	out := runInDir(t, dir, map[string]string{"PERSO_OPC": opc, "PERSO_HSM_SO_PIN": soPIN}, "config")
	for _, secret := range []string{dsnPass, ki, opc, pass, soPIN} {
		if strings.Contains(out, secret) {
			t.Errorf("config printed the secret %q:\n%s", secret, out)
		}
	}
	for key, want := range map[string]string{
		"store.dsn":               "store.dsn: \"postgres://perso:REDACTED@db.example:5432/perso?sslmode=verify-full\" # file perso.yaml:3",
		"ki":                      "ki: (set, redacted) # file perso.yaml:4",
		"opc":                     "opc: (set, redacted) # env PERSO_OPC",
		"hsm.so_pin":              "hsm.so_pin: (set, redacted) # env PERSO_HSM_SO_PIN",
		"hsm.software.passphrase": "hsm.software.passphrase: (set, redacted) # file perso.yaml:7",
	} {
		if got := configLine(out, key); got != want {
			t.Errorf("config line of %s = %q, want %q", key, got, want)
		}
	}
}

// Every bad configuration value is a usage error (exit status 2) that names
// the key, the value (unless secret), the expectation and the source.
func TestConfigRejectsBadValues(t *testing.T) {
	const secret = "s3cret-Qp8w"
	for _, tc := range []struct {
		name  string
		yaml  string // perso.yaml ("" for none)
		env   map[string]string
		args  []string
		want  []string // substrings of the error
		never string   // must not appear in the error
	}{
		{name: "wrong type in file", yaml: "hsm:\n  sessions: banana\n",
			want: []string{"perso.yaml:2", "hsm.sessions", `"banana"`, "integer from 1 to 256"}},
		{name: "negative in file", yaml: "hsm:\n  sessions: -3\n",
			want: []string{"perso.yaml:2", "hsm.sessions", "-3", "out of range", "1 to 256"}},
		{name: "too large in env", env: map[string]string{"PERSO_HSM_SESSIONS": "100000"},
			want: []string{"hsm.sessions", "100000", "1 to 256", "env PERSO_HSM_SESSIONS"}},
		{name: "not an integer in env", env: map[string]string{"PERSO_HSM_BATCH_WHILE_LIVE": "two"},
			want: []string{"hsm.batch_while_live", `"two"`, "env PERSO_HSM_BATCH_WHILE_LIVE"}},
		{name: "log level in file is blamed on the file", yaml: "log-level: loud\n",
			want: []string{"perso.yaml:1", "log-level", `"loud"`, "debug, info, warn, error"}, never: "flag"},
		{name: "log level flag", args: []string{"--log-level", "loud"},
			want: []string{"log-level", `"loud"`, "flag --log-level"}},
		{name: "log format env", env: map[string]string{"PERSO_LOG_FORMAT": "xml"},
			want: []string{"log-format", `"xml"`, "text, json", "env PERSO_LOG_FORMAT"}},
		{name: "enums are exact", yaml: "store:\n  driver: Postgres\n",
			want: []string{"perso.yaml:2", "store.driver", `"Postgres"`, "sqlite, postgres"}},
		{name: "duration out of range", yaml: "hsm:\n  spin_wait: 1h\n",
			want: []string{"perso.yaml:2", "hsm.spin_wait", "1h0m0s", "at most 100ms"}},
		{name: "duration not a duration", env: map[string]string{"PERSO_HSM_SPIN_WAIT": "fast"},
			want: []string{"hsm.spin_wait", `"fast"`, "duration", "env PERSO_HSM_SPIN_WAIT"}},
		{name: "token label too long", yaml: "hsm:\n  token: \"" + strings.Repeat("t", 33) + "\"\n",
			want: []string{"perso.yaml:2", "hsm.token", "33 bytes", "at most 32"}},
		{name: "empty token label", env: map[string]string{"PERSO_HSM_TOKEN": ""}, yaml: "hsm:\n  token: \"\"\n",
			want: []string{"perso.yaml:2", "hsm.token", "empty"}},
		{name: "unknown key, value not shown", yaml: "hsm:\n  pim: \"" + secret + "\"\n",
			want: []string{"perso.yaml:2", `unknown configuration key "hsm.pim"`, `did you mean "hsm.pin"`}, never: secret},
		{name: "unknown top-level key", yaml: "transport_key: \"" + secret + "\"\n",
			want: []string{"perso.yaml:1", `"transport_key"`}, never: secret},
		{name: "PIN as a number loses digits", yaml: "hsm:\n  pin: 0123\n",
			want: []string{"perso.yaml:2", "hsm.pin", "number", "quoted string"}, never: "0123"},
		{name: "secret of the wrong shape", yaml: "hsm:\n  pin:\n    - " + secret + "\n",
			want: []string{"perso.yaml:2", "hsm.pin", "got a list"}, never: secret},
		{name: "section given a value", yaml: "hsm: 5\n",
			want: []string{"perso.yaml:1", "hsm is a section"}},
		{name: "not a mapping", yaml: "- a\n- b\n", want: []string{"perso.yaml:1", "mapping"}},
		{name: "broken YAML", yaml: "hsm: [unclosed\n", want: []string{"perso.yaml"}},
		{name: "config key in the file", yaml: "config: other.yaml\n",
			want: []string{"perso.yaml:1", "only be given on the command line"}},
		{name: "demo pins cannot be configured", yaml: "demo-pins: true\n",
			want: []string{"perso.yaml:1", "demo-pins", "command line"}},
		{name: "demo pins cannot come from the environment", env: map[string]string{"PERSO_DEMO_PINS": "true"},
			want: []string{"PERSO_DEMO_PINS", "command line"}},
		{name: "missing --config file", args: []string{"--config", "missing.yaml"},
			want: []string{"--config", "missing.yaml"}},
		{name: "oversized --config file", args: []string{"--config", "/dev/zero"},
			want: []string{"/dev/zero", "larger than"}},
		{name: "size setting", yaml: "template:\n  max_size: huge\n",
			want: []string{"perso.yaml:2", "template.max_size", `"huge"`, "integer from 1024"}},
		{name: "command flag of the wrong type in file", yaml: "count: many\n", args: []string{"testdata", "perso", "-o", "x.csv"},
			want: []string{"perso.yaml:1", "count", "an integer", "--count"}},
		{name: "command flag of the wrong type in env", env: map[string]string{"PERSO_COUNT": "many"},
			args: []string{"testdata", "perso", "-o", "x.csv"},
			want: []string{"count", "an integer", "env PERSO_COUNT"}},
		{name: "command flag string unquoted", yaml: "iccid-start: 8944150000000000017\n", args: []string{"testdata", "perso", "-o", "x.csv"},
			want: []string{"perso.yaml:1", "iccid-start", "quoted string"}},
		{name: "DSN password never in an error", yaml: "store:\n  dsn:\n    url: \"postgres://u:" + secret + "@h/db\"\n",
			want: []string{"perso.yaml:2", "store.dsn", "got a mapping"}, never: secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.yaml != "" {
				writeFile(t, filepath.Join(dir, "perso.yaml"), tc.yaml)
			}
			args := tc.args
			if len(args) == 0 || strings.HasPrefix(args[0], "--") {
				args = append([]string{"config"}, args...)
			}
			_, err := execInDir(t, dir, tc.env, args...)
			if err == nil {
				t.Fatalf("accepted; want a configuration error")
			}
			if code := exitCode(err); code != exitUsage {
				t.Errorf("exit status %d, want %d (%v)", code, exitUsage, err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if tc.never != "" && strings.Contains(msg, tc.never) {
				t.Errorf("error %q contains %q", msg, tc.never)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

// Values that look odd but are valid are accepted, and a key left without a
// value in YAML is unset.
func TestConfigAcceptsValidValues(t *testing.T) {
	for _, tc := range []struct{ name, yaml, key, want string }{
		{"negative spin wait", "hsm:\n  spin_wait: -1s\n", "hsm.spin_wait", "hsm.spin_wait: -1s # file perso.yaml:2"},
		{"bounds", "hsm:\n  sessions: 256\n", "hsm.sessions", "hsm.sessions: 256 # file perso.yaml:2"},
		{"section named like a flag", "template:\n  max_size: 8388608\n", "template.max_size", "template.max_size: 8388608 # file perso.yaml:2"},
		{"null is unset", "hsm:\n  token:\n", "hsm.token", "hsm.token: perso # default"},
		{"keys are case-insensitive", "HSM:\n  Token: \"tok\"\n", "hsm.token", "hsm.token: tok # file perso.yaml:2"},
		{"only comments", "# nothing yet\n", "hsm.token", "hsm.token: perso # default"},
		{"a command's flag", "iccid-start: \"8944150000000000017\"\n", "iccid-start", "iccid-start: (set, redacted) # file perso.yaml:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "perso.yaml"), tc.yaml)
			out := runInDir(t, dir, nil, "config")
			if got := configLine(out, tc.key); got != tc.want {
				t.Errorf("config line of %s = %q, want %q\n%s", tc.key, got, tc.want, out)
			}
		})
	}
}

func TestRedactDSN(t *testing.T) {
	for _, tc := range []struct{ dsn, want, secret string }{
		{"postgres://perso:pw-Aa1@db:5432/perso?sslmode=disable", "postgres://perso:REDACTED@db:5432/perso?sslmode=disable", "pw-Aa1"},
		{"postgresql://perso:p%40ss%2Fw0rd@db/perso", "postgresql://perso:REDACTED@db/perso", "p%40ss%2Fw0rd"},
		{"postgres://perso:p@ss/w:rd@db/perso", "postgres://perso:REDACTED@db/perso", "ss/w:rd"}, // unescaped '@', '/', ':'
		{"postgres://perso@db/perso", "postgres://perso@db/perso", ""},
		{"postgres://db/perso?user=perso&password=qpw-77&sslmode=require", "postgres://db/perso?user=perso&password=REDACTED&sslmode=require", "qpw-77"},
		{"postgres://db/perso?sslpassword=kpw-88", "postgres://db/perso?sslpassword=REDACTED", "kpw-88"},
		{"host=db user=perso password=kv-pw-9 dbname=perso", "host=db user=perso password=REDACTED dbname=perso", "kv-pw-9"},
		{"host=db password = 'se cret\\' x' dbname=perso", "host=db password = REDACTED dbname=perso", "cret"},
		{"host=db PASSWORD=Up-Pw-1", "host=db PASSWORD=REDACTED", "Up-Pw-1"},
		{"host=db sslpassword=ssl-pw-2 user=u", "host=db sslpassword=REDACTED user=u", "ssl-pw-2"},
		{"perso.db", "perso.db", ""},
		{"/var/lib/perso/perso.db", "/var/lib/perso/perso.db", ""},
	} {
		got := redactDSN(tc.dsn)
		if got != tc.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
		if tc.secret != "" && strings.Contains(got, tc.secret) {
			t.Errorf("redactDSN(%q) kept %q", tc.dsn, tc.secret)
		}
	}
}

// scrubDSN removes the password from any message, keeping the error chain.
func TestScrubDSN(t *testing.T) {
	base := errors.New("connection refused")
	for _, dsn := range []string{
		"postgres://perso:scrub-pw-1@db/perso",
		"postgres://perso:scrub%2Dpw%2D1@db/perso",
		"host=db password=scrub-pw-1",
	} {
		err := scrubDSN(fmt.Errorf("cannot parse %q (password scrub-pw-1): %w", dsn, base), dsn)
		if strings.Contains(err.Error(), "scrub-pw-1") || strings.Contains(err.Error(), "scrub%2Dpw") {
			t.Errorf("%s: scrubbed error still holds the password: %v", dsn, err)
		}
		if !errors.Is(err, base) {
			t.Errorf("%s: scrubbed error lost its chain", dsn)
		}
	}
	if err := scrubDSN(base, "perso.db"); err != base {
		t.Errorf("an error without a DSN changed: %v", err)
	}
}
