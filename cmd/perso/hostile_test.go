package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// The perso binary the CLI tests run as a child process, built once per
// test binary (lazily, so that helper child processes of other tests, which
// re-run this test binary, do not build it again).
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func persoBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "perso-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "perso")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		// Without -race: the tests measure the binary operators run.
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestMain removes the binary built by persoBinary.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// childResult is what one run of the binary did.
type childResult struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
	maxRSS         int64 // bytes
}

// runChild runs the perso binary in dir with env and stdin, killing it
// after limit.
func runChild(t *testing.T, dir string, env []string, stdin *os.File, limit time.Duration, args ...string) childResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, persoBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := childResult{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("perso %s: still running after %s (killed)\nstderr: %.2000s", strings.Join(args, " "), limit, r.stderr)
	}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("perso %s: %v", strings.Join(args, " "), err)
		}
	}
	r.code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = int64(ru.Maxrss) * 1024 // kilobytes on Linux
	}
	return r
}

// cleanEnv is the test's environment without PERSO_* settings, so that a
// developer's configuration does not change the outcome. The tests run
// perso testdata's Milenage records through TS.48 templates (USIM test
// algorithm) to exercise the pipeline: they keep the template's algorithm
// explicitly (template.algorithm keep; the default refuses the mismatch).
// A test's own env entries come later and win.
func cleanEnv() []string {
	env := []string{"PERSO_TEMPLATE_ALGORITHM=keep"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PERSO_") {
			env = append(env, e)
		}
	}
	return env
}

// Values passed to commands that must never appear in any output.
const (
	hostileKi  = "5a17e5ec7e70000000000000000f00d1"
	hostileOPc = "0bad5ec7e7000000000000000000cafe"
	hostilePIN = "73915"
)

// endlessFIFO makes a FIFO in dir fed with pattern forever (until the
// reader goes away) and returns its path.
func endlessFIFO(t *testing.T, dir, name string, pattern []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		buf := bytes.Repeat(pattern, (64<<10)/len(pattern)+1)
		for {
			if _, err := f.Write(buf); err != nil {
				return // EPIPE: the reader is gone
			}
		}
	}()
	t.Cleanup(func() {
		// Unblock a writer still waiting for a reader, then wait for it.
		if f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		<-done
	})
	return path
}

func writeTestFile(t *testing.T, path string, data []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// sparseFile creates a file of size bytes that takes no disk space.
func sparseFile(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// fixture is what a case's setup prepared.
type fixture struct {
	dir   string
	args  []string
	env   []string
	stdin *os.File
	check func(t *testing.T, r childResult) // extra checks after the run
}

// TestHostileInputs feeds every command hostile inputs. Each run must end
// with the documented exit status within a few seconds, under 256 MB, with
// one error line naming the file and the problem, no panic and no secret.
func TestHostileInputs(t *testing.T) {
	ts48 := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	tmplBytes, err := os.ReadFile(ts48)
	if err != nil {
		t.Fatal(err)
	}
	goodCSV := func(t *testing.T, dir string) string {
		r := runChild(t, dir, nil, nil, 20*time.Second, "--log-level", "error", "testdata", "perso", "--count", "50", "-o", "good.csv")
		if r.code != 0 {
			t.Fatalf("testdata: %d %s", r.code, r.stderr)
		}
		return filepath.Join(dir, "good.csv")
	}
	personalise := func(extra ...string) []string {
		return append([]string{"template", "personalise", "--template", "t.der", "--iccid", "8949449999999990999",
			"--imsi", "001010123456789", "--pin1", hostilePIN + "1"}, extra...)
	}
	withTemplate := func(t *testing.T, dir string) { writeTestFile(t, filepath.Join(dir, "t.der"), tmplBytes, 0o644) }
	keys := []string{"PERSO_KI=" + hostileKi, "PERSO_OPC=" + hostileOPc}
	unchanged := func(name string, want []byte) func(t *testing.T, r childResult) {
		return func(t *testing.T, r childResult) {
			got, err := os.ReadFile(name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s changed (err %v)", name, err)
			}
		}
	}

	cases := []struct {
		name  string
		setup func(t *testing.T, f *fixture)
		code  int
		want  []string // in the error line
	}{
		// perso check
		{"check /dev/zero", func(t *testing.T, f *fixture) { f.args = []string{"check", "/dev/zero"} }, 2, []string{"/dev/zero", "line limit", "--max-line"}},
		{"check /dev/zero as csv", func(t *testing.T, f *fixture) { f.args = []string{"check", "--format", "csv", "/dev/zero"} }, 2, []string{"/dev/zero", "line limit"}},
		{"check sparse 10 GB", func(t *testing.T, f *fixture) {
			f.args = []string{"check", sparseFile(t, filepath.Join(f.dir, "big.csv"), 10<<30)}
		}, 2, []string{"big.csv", "line limit"}},
		{"check sparse 10 GB after a header", func(t *testing.T, f *fixture) {
			p := sparseFile(t, filepath.Join(f.dir, "big.csv"), 10<<30)
			fh, _ := os.OpenFile(p, os.O_WRONLY, 0)
			fh.WriteString("iccid,imsi,ki,opc\n")
			fh.Close()
			f.args = []string{"check", p}
		}, 2, []string{"big.csv", "no line end within 64 MiB"}},
		{"check endless FIFO", func(t *testing.T, f *fixture) {
			f.args = []string{"check", endlessFIFO(t, f.dir, "fifo", []byte{0})}
		}, 2, []string{"fifo", "line limit"}},
		{"check endless FIFO of newlines then zeros", func(t *testing.T, f *fixture) {
			f.args = []string{"check", "--format", "out", endlessFIFO(t, f.dir, "fifo", []byte("*\n"))}
		}, 2, []string{"fifo", "no var_out line", "1 MiB"}},
		{"check stdin /dev/zero", func(t *testing.T, f *fixture) {
			z, err := os.Open("/dev/zero")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { z.Close() })
			f.stdin, f.args = z, []string{"check", "-"}
		}, 2, []string{"stdin", "line limit"}},
		{"check random bytes", func(t *testing.T, f *fixture) {
			f.args = []string{"check", writeTestFile(t, filepath.Join(f.dir, "r.csv"), randomBytes(256<<10), 0o644)}
		}, 2, []string{"r.csv"}},
		{"check truncated csv", func(t *testing.T, f *fixture) {
			b, _ := os.ReadFile(goodCSV(t, f.dir))
			f.args = []string{"check", writeTestFile(t, filepath.Join(f.dir, "cut.csv"), b[:len(b)-40], 0o644)}
			f.check = func(t *testing.T, r childResult) {
				rep, err := os.ReadFile(filepath.Join(f.dir, "cut.csv.rejects.csv"))
				if err != nil || !bytes.Contains(rep, []byte("truncated last line")) {
					t.Errorf("reject report beside the input: %v\n%s", err, rep)
				}
			}
		}, 3, []string{"1 record(s) rejected", "cut.csv.rejects.csv"}},
		{"check truncated parquet", func(t *testing.T, f *fixture) {
			r := runChild(t, f.dir, nil, nil, 20*time.Second, "testdata", "perso", "--count", "100", "-o", "a.parquet")
			if r.code != 0 {
				t.Fatal(r.stderr)
			}
			b, _ := os.ReadFile(filepath.Join(f.dir, "a.parquet"))
			f.args = []string{"check", writeTestFile(t, filepath.Join(f.dir, "cut.parquet"), b[:len(b)/2], 0o644)}
		}, 2, []string{"cut.parquet"}},
		{"check truncated arrow", func(t *testing.T, f *fixture) {
			r := runChild(t, f.dir, nil, nil, 20*time.Second, "testdata", "perso", "--count", "100", "-o", "a.arrow")
			if r.code != 0 {
				t.Fatal(r.stderr)
			}
			b, _ := os.ReadFile(filepath.Join(f.dir, "a.arrow"))
			f.args = []string{"check", writeTestFile(t, filepath.Join(f.dir, "cut.arrow"), b[:len(b)/2], 0o644)}
		}, 2, []string{"cut.arrow"}},
		{"check missing file", func(t *testing.T, f *fixture) { f.args = []string{"check", "nope.csv"} }, 2, []string{"nope.csv", "no such file"}},
		{"check directory", func(t *testing.T, f *fixture) { f.args = []string{"check", f.dir} }, 2, []string{"is a directory"}},
		{"check rejects through a symlink", func(t *testing.T, f *fixture) {
			in := goodCSV(t, f.dir)
			os.Symlink(filepath.Join(f.dir, "elsewhere"), filepath.Join(f.dir, "rej.csv"))
			f.args = []string{"check", in, "--rejects", "rej.csv"}
		}, 2, []string{"rej.csv", "symbolic link"}},
		{"check rejects = input", func(t *testing.T, f *fixture) {
			in := goodCSV(t, f.dir)
			b, _ := os.ReadFile(in)
			f.args, f.check = []string{"check", in, "--rejects", in, "--force"}, unchanged(in, b)
		}, 2, []string{"good.csv", "is the input"}},
		{"check existing default report", func(t *testing.T, f *fixture) {
			in := goodCSV(t, f.dir)
			writeTestFile(t, in+".rejects.csv", []byte("keep me\n"), 0o644)
			f.args, f.check = []string{"check", in}, unchanged(in+".rejects.csv", []byte("keep me\n"))
		}, 2, []string{"good.csv.rejects.csv", "already exists", "--force"}},
		{"check bad --max-line", func(t *testing.T, f *fixture) { f.args = []string{"check", "x.csv", "--max-line", "banana"} }, 2, []string{"--max-line", "banana"}},
		{"check bad --delimiter", func(t *testing.T, f *fixture) { f.args = []string{"check", "x.csv", "--delimiter", ";;"} }, 2, []string{"--delimiter"}},
		{"check no argument", func(t *testing.T, f *fixture) { f.args = []string{"check"} }, 2, []string{"perso check", "arg"}},
		{"check unknown flag", func(t *testing.T, f *fixture) { f.args = []string{"check", "--colour", "x.csv"} }, 2, []string{"unknown flag", "--colour"}},

		// perso template
		{"inspect /dev/zero", func(t *testing.T, f *fixture) { f.args = []string{"template", "inspect", "/dev/zero"} }, 2, []string{"/dev/zero", "4 MiB", "--template-max-size"}},
		{"inspect sparse 10 GB", func(t *testing.T, f *fixture) {
			f.args = []string{"template", "inspect", sparseFile(t, filepath.Join(f.dir, "big.der"), 10<<30)}
		}, 2, []string{"big.der", "10 GiB", "exceeds", "template.max_size"}},
		{"inspect endless FIFO", func(t *testing.T, f *fixture) {
			f.args = []string{"template", "inspect", endlessFIFO(t, f.dir, "fifo", []byte{0x30, 0x80})}
		}, 2, []string{"fifo", "more than 4 MiB"}},
		{"inspect random bytes", func(t *testing.T, f *fixture) {
			f.args = []string{"template", "inspect", writeTestFile(t, filepath.Join(f.dir, "r.der"), randomBytes(4096), 0o644)}
		}, 2, []string{"r.der"}},
		{"inspect truncated template", func(t *testing.T, f *fixture) {
			f.args = []string{"template", "inspect", writeTestFile(t, filepath.Join(f.dir, "cut.der"), tmplBytes[:len(tmplBytes)*2/3], 0o644)}
		}, 2, []string{"cut.der"}},
		{"inspect over a lowered limit", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			f.args = []string{"template", "inspect", "t.der", "--template-max-size", "2KiB"}
		}, 2, []string{"t.der", "2 KiB"}},
		{"inspect bad limit in config", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			f.args, f.env = []string{"template", "inspect", "t.der"}, []string{"PERSO_TEMPLATE_MAX_SIZE=banana"}
		}, 2, []string{"template.max_size", "banana"}},
		{"validate random bytes", func(t *testing.T, f *fixture) {
			f.args = []string{"template", "validate", writeTestFile(t, filepath.Join(f.dir, "r.der"), randomBytes(4096), 0o644)}
		}, 2, []string{"template(s) invalid"}},
		{"personalise without keys", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			f.args = personalise("-o", "out.der")
		}, 2, []string{"--ki and --opc are required", "--keep-template-keys"}},
		{"personalise bad Luhn", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			f.args, f.env = []string{"template", "personalise", "--template", "t.der", "--iccid", "8949449999999990998", "-o", "out.der"}, keys
		}, 2, []string{"--iccid", "Luhn"}},
		{"personalise SPN not UTF-8", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			f.args, f.env = personalise("--spn", "\xff\xfeop", "-o", "out.der"), keys
		}, 2, []string{"--spn", "UTF-8"}},
		{"personalise output = template", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			f.args, f.env, f.check = personalise("-o", "t.der", "--force"), keys, unchanged(filepath.Join(f.dir, "t.der"), tmplBytes)
		}, 2, []string{"t.der", "is the input"}},
		{"personalise output through a symlink", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			os.Symlink("t.der", filepath.Join(f.dir, "link.der"))
			f.args, f.env, f.check = personalise("-o", "link.der", "--force"), keys, unchanged(filepath.Join(f.dir, "t.der"), tmplBytes)
		}, 2, []string{"link.der", "symbolic link"}},
		{"personalise existing output", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			writeTestFile(t, filepath.Join(f.dir, "out.der"), []byte("old"), 0o644)
			f.args, f.env, f.check = personalise("-o", "out.der"), keys, unchanged(filepath.Join(f.dir, "out.der"), []byte("old"))
		}, 2, []string{"out.der", "already exists", "--force"}},
		{"personalise --force over a 0644 file", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			writeTestFile(t, filepath.Join(f.dir, "out.der"), []byte("old"), 0o644)
			f.args, f.env = personalise("-o", "out.der", "--force"), keys
			f.check = func(t *testing.T, r childResult) {
				fi, err := os.Stat(filepath.Join(f.dir, "out.der"))
				if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() < 1000 {
					t.Errorf("out.der: %v, mode %v, want 0600 and the profile", err, fi.Mode())
				}
			}
		}, 0, nil},
		{"inspect masks codes", func(t *testing.T, f *fixture) {
			withTemplate(t, f.dir)
			f.args = []string{"template", "inspect", "--json", "t.der"}
			f.check = func(t *testing.T, r childResult) {
				// TS.48 test profiles carry PIN1 1234 ("31323334FFFFFFFF") and ADM1 keys.
				for _, v := range []string{`"value": "1234"`, `"value": "31323334`} {
					if strings.Contains(r.stdout, v) {
						t.Errorf("inspect shows a code: %s", v)
					}
				}
			}
		}, 0, nil},
		{"template unknown subcommand", func(t *testing.T, f *fixture) { f.args = []string{"template", "inspekt", "t.der"} }, 2, []string{"unknown command", "inspekt", "inspect"}},

		// perso testdata
		{"testdata unknown extension", func(t *testing.T, f *fixture) { f.args = []string{"testdata", "perso", "-o", "x.xlsx"} }, 2, []string{"x.xlsx", "--format"}},
		{"testdata ICCID overflow", func(t *testing.T, f *fixture) {
			f.args = []string{"testdata", "perso", "--count", "100", "--iccid-start", "8999999999999999997", "-o", "a.csv"}
		}, 2, []string{"--iccid-start", "8999999… to 9000000…"}},
		{"testdata ICCID carry into the issuer", func(t *testing.T, f *fixture) {
			f.args = []string{"testdata", "perso", "--count", "100", "--iccid-start", "8944159999999999990", "-o", "a.csv"}
		}, 2, []string{"--iccid-start", "issuer"}},
		{"testdata existing output", func(t *testing.T, f *fixture) {
			writeTestFile(t, filepath.Join(f.dir, "a.csv"), []byte("old"), 0o644)
			f.args, f.check = []string{"testdata", "perso", "--count", "10", "-o", "a.csv"}, unchanged(filepath.Join(f.dir, "a.csv"), []byte("old"))
		}, 2, []string{"a.csv", "already exists"}},
		{"testdata output through a symlink", func(t *testing.T, f *fixture) {
			os.Symlink("/dev/null", filepath.Join(f.dir, "a.csv"))
			f.args = []string{"testdata", "perso", "--count", "10", "-o", "a.csv", "--force"}
		}, 2, []string{"a.csv", "symbolic link"}},
		{"testdata bad count", func(t *testing.T, f *fixture) {
			f.args = []string{"testdata", "perso", "--count", "lots", "-o", "a.csv"}
		}, 2, []string{"--count", "lots"}},
		{"testdata unknown subcommand", func(t *testing.T, f *fixture) { f.args = []string{"testdata", "persso"} }, 2, []string{"unknown command", "persso"}},
		{"testdata stray argument", func(t *testing.T, f *fixture) { f.args = []string{"testdata", "perso", "-o", "a.csv", "extra"} }, 2, []string{"extra"}},

		// the other command groups and the root
		{"unknown command", func(t *testing.T, f *fixture) { f.args = []string{"chek", "x.csv"} }, 2, []string{"unknown command", "chek", "check"}},
		{"hsm unknown subcommand", func(t *testing.T, f *fixture) { f.args = []string{"hsm", "stauts"} }, 2, []string{"unknown command", "stauts"}},
		{"bench unknown subcommand", func(t *testing.T, f *fixture) { f.args = []string{"bench", "disk"} }, 2, []string{"unknown command", "disk"}},
		{"bench hsm unknown op", func(t *testing.T, f *fixture) { f.args = []string{"bench", "hsm", "--ops", "sing"} }, 2, []string{"--ops", "sing"}},
		{"bench hsm json through a symlink", func(t *testing.T, f *fixture) {
			os.Symlink("/dev/null", filepath.Join(f.dir, "r.json"))
			f.args = []string{"bench", "hsm", "--json", "r.json"}
		}, 2, []string{"r.json", "symbolic link"}},
		{"demo template /dev/zero", func(t *testing.T, f *fixture) {
			f.args = []string{"demo", "--template", "/dev/zero", "--demo-pins"}
		}, 2, []string{"/dev/zero", "4 MiB"}},
		{"bad config value", func(t *testing.T, f *fixture) {
			writeTestFile(t, filepath.Join(f.dir, "perso.yaml"), []byte("hsm:\n  sessions: banana\n"), 0o644)
			f.args = []string{"check", "x.csv"}
		}, 2, []string{"hsm.sessions", "banana"}},
		{"config /dev/zero", func(t *testing.T, f *fixture) { f.args = []string{"--config", "/dev/zero", "check", "x.csv"} }, 2, []string{"/dev/zero"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fixture{dir: t.TempDir()}
			c.setup(t, f)
			args := append([]string{"--log-level", "error"}, f.args...)
			r := runChild(t, f.dir, f.env, f.stdin, 20*time.Second, args...)
			all := r.stdout + r.stderr
			if r.code != c.code {
				t.Fatalf("exit status %d, want %d\nstdout: %.1500s\nstderr: %.1500s", r.code, c.code, r.stdout, r.stderr)
			}
			if r.elapsed > 5*time.Second {
				t.Errorf("took %s", r.elapsed)
			}
			if r.maxRSS > 256<<20 {
				t.Errorf("max RSS %d MB", r.maxRSS>>20)
			}
			if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("panic:\n%s", r.stderr)
			}
			for _, s := range []string{hostileKi, hostileOPc, strings.ToUpper(hostileKi), hostilePIN} {
				if strings.Contains(all, s) {
					t.Errorf("a secret value appears in the output")
				}
			}
			if c.code != 0 {
				var errs []string
				for _, l := range strings.Split(r.stderr, "\n") {
					if strings.HasPrefix(l, "perso: ") {
						errs = append(errs, l)
					}
				}
				if len(errs) != 1 {
					t.Fatalf("want one error line, got %d:\n%s", len(errs), r.stderr)
				}
				for _, w := range c.want {
					if !strings.Contains(errs[0], w) {
						t.Errorf("error line lacks %q: %s", w, errs[0])
					}
				}
			}
			if c.code != 0 {
				noTempFiles(t, f.dir)
			}
			if f.check != nil {
				f.check(t, r)
			}
		})
	}
}

// noTempFiles fails if an output's temporary file was left in dir.
func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
}
