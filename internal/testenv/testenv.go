// Package testenv locates the repository's test data (testdata/) and the
// external services (SoftHSM2, PostgreSQL) that perso's tests use.
//
// Tests that need a service call SoftHSM or PostgresDSN. Under `make test` and
// in CI the services are always present (scripts/with-services.sh starts
// them); there a missing service fails the test. Only when a developer runs
// `go test` by hand without the services does a test skip, and it says so
// loudly on stderr.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// ServicesRequired reports whether a missing service is a test failure
// rather than a reason to skip: in CI and under scripts/with-services.sh.
func ServicesRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("PERSO_REQUIRE_SERVICES") == "1"
}

// unavailable fails the test in CI and skips it loudly elsewhere.
func unavailable(t testing.TB, what string) {
	t.Helper()
	if ServicesRequired() {
		t.Fatalf("%s is required here (CI or make test) but unavailable", what)
	}
	msg := "SKIPPED (not in CI): " + what + " unavailable; run `make test` to include this test"
	os.Stderr.WriteString("\n*** " + t.Name() + ": " + msg + " ***\n")
	t.Skip(msg)
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// Root returns the module root: the nearest directory at or above the test's
// working directory (its package directory under `go test`) that holds go.mod.
func Root(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				rootDir = d
				return
			}
			if filepath.Dir(d) == d {
				rootErr = fmt.Errorf("no go.mod in %s or any parent", wd)
				return
			}
		}
	})
	if rootErr != nil {
		t.Fatalf("cannot find the module root: %v", rootErr)
	}
	return rootDir
}

// Path joins elem onto the repository's testdata directory, which holds the
// reference data the tests read (TS.48 profiles in ts48/, the SGP.26 test PKI
// in sgp26/, the BSP vectors in vectors/; see testdata/README.md). The result
// may be a glob pattern; only testdata itself must exist.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	dir := filepath.Join(Root(t), "testdata")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("repository test data missing: %v", err)
	}
	return filepath.Join(append([]string{dir}, elem...)...)
}

// TS48 returns the paths of every TS.48 profile in testdata/ts48, sorted.
func TS48(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(Path(t, "ts48", "*.der"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no TS.48 profiles in %s", Path(t, "ts48"))
	}
	sort.Strings(files)
	return files
}

// PostgresDSN returns the DSN of the throwaway test database started by
// scripts/with-services.sh.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("PERSO_TEST_PG_DSN")
	if dsn == "" {
		unavailable(t, "PostgreSQL (PERSO_TEST_PG_DSN)")
	}
	return dsn
}

// Token describes a SoftHSM2 token created for this test process.
type Token struct {
	Module  string // PKCS#11 module path
	Label   string
	PIN     string
	SOPIN   string
	ConfDir string // directory holding softhsm2.conf and the token files
}

var (
	tokenOnce sync.Once
	token     Token
	tokenErr  string
)

// SoftHSM returns a fresh SoftHSM2 token private to this test process. The
// token lives in a temporary directory; SOFTHSM2_CONF is set for the process
// before any PKCS#11 module is loaded, so call this before opening a session.
func SoftHSM(t testing.TB) Token {
	t.Helper()
	tokenOnce.Do(initToken)
	if tokenErr != "" {
		unavailable(t, "SoftHSM2 ("+tokenErr+")")
	}
	return token
}

func initToken() {
	module := os.Getenv("PERSO_PKCS11_MODULE")
	if module == "" {
		module = "/usr/lib/softhsm/libsofthsm2.so"
	}
	if _, err := os.Stat(module); err != nil {
		tokenErr = "no PKCS#11 module at " + module
		return
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		tokenErr = "softhsm2-util not on PATH"
		return
	}
	dir, err := os.MkdirTemp("", "perso-softhsm-")
	if err != nil {
		tokenErr = err.Error()
		return
	}
	tokens := filepath.Join(dir, "tokens")
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		tokenErr = err.Error()
		return
	}
	body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tokenErr = err.Error()
		return
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	tok := Token{Module: module, Label: "perso-test", PIN: "1234", SOPIN: "12345678", ConfDir: dir}
	cmd := exec.Command(util, "--init-token", "--free", "--label", tok.Label, "--pin", tok.PIN, "--so-pin", tok.SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		tokenErr = "softhsm2-util --init-token: " + strings.TrimSpace(string(out))
		return
	}
	token = tok
}
