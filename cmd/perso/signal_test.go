package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSIGTERMStopsLongCommands sends SIGTERM to each long-running command
// once it is busy: it must exit within a second with status 143, saying it
// stopped, and leave nothing half-written (no output, no temporary file).
func TestSIGTERMStopsLongCommands(t *testing.T) {
	type job struct {
		dir    string
		env    []string
		args   []string
		busy   func(stdout, stderr string) bool // the command is mid-work
		absent []string                         // outputs that must not exist afterwards
	}
	tempExists := func(dir, prefix string) func(string, string) bool {
		return func(string, string) bool {
			m, _ := filepath.Glob(filepath.Join(dir, "."+prefix+".tmp-*"))
			for _, p := range m {
				if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
					return true
				}
			}
			return false
		}
	}
	hsmEnv := func(t *testing.T) []string {
		if testing.Short() {
			t.Skip("needs SoftHSM2")
		}
		return provisionedToken(t)
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) job
	}{
		{"check large file with a reject report", func(t *testing.T, dir string) job {
			in := filepath.Join(dir, "big.csv")
			f, err := os.Create(in)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("iccid,imsi,ki,opc\n")
			f.Write(bytes.Repeat([]byte("x\n"), 20<<20)) // 20 M rejected rows
			f.Close()
			return job{args: []string{"check", in, "--rejects", "rejects.csv"},
				busy: tempExists(dir, "rejects.csv"), absent: []string{"rejects.csv"}}
		}},
		{"check endless FIFO", func(t *testing.T, dir string) job {
			fifo := endlessFIFO(t, dir, "fifo", []byte("iccid,imsi,ki,opc\n")) // a header, then rows of rejects
			return job{args: []string{"check", "--format", "csv", fifo},
				busy: func(_, stderr string) bool { return strings.Contains(stderr, "reject: ") }}
		}},
		{"testdata big count", func(t *testing.T, dir string) job {
			return job{args: []string{"testdata", "perso", "--count", "100000000", "-o", "a.parquet"},
				busy: tempExists(dir, "a.parquet"), absent: []string{"a.parquet"}}
		}},
		{"bench hsm", func(t *testing.T, dir string) job {
			return job{env: hsmEnv(t), args: []string{"bench", "hsm", "--ops", "sign", "--sessions", "1", "--raw=false",
				"--duration", "30s", "--json", "bench.json"},
				busy: func(_, stderr string) bool { return strings.Contains(stderr, "bench hsm: measuring") }, absent: []string{"bench.json"}}
		}},
		{"serve", func(t *testing.T, dir string) job {
			env := append(hsmEnv(t), "PERSO_SERVE_PKI_DIR="+testenv.Path(t, "sgp26"),
				"PERSO_SERVE_TLS_CERT="+testenv.Path(t, "sgp26", "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"),
				"PERSO_SERVE_TLS_KEY="+testenv.Path(t, "sgp26", "DPtls", "SK_S_SM_DP_TLS_NIST.pem"))
			return job{env: env, args: []string{"serve", "--serve.listen", "127.0.0.1:0", "--store.dsn", filepath.Join(dir, "perso.db")},
				busy: func(stdout, _ string) bool { return strings.Contains(stdout, "ES9+ on https://") }}
		}},
		{"demo", func(t *testing.T, dir string) job {
			return job{env: hsmEnv(t), args: []string{"demo", "--template", testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"),
				"--count", "10000", "--store.dsn", filepath.Join(dir, "perso.db")},
				busy: func(stdout, _ string) bool { return strings.Contains(stdout, "template  ") }}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			j := c.setup(t, dir)
			cmd := exec.Command(persoBinary(t), append([]string{"--log-level", "error"}, j.args...)...)
			cmd.Dir = dir
			cmd.Env = append(cleanEnv(), j.env...)
			var out, errb lockedBuffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			deadline := time.After(30 * time.Second)
		wait:
			for !j.busy(out.String(), errb.String()) {
				select {
				case err := <-exited:
					t.Fatalf("exited before it was busy (%v)\nstdout: %.1000s\nstderr: %.1000s", err, out.String(), errb.String())
				case <-deadline:
					cmd.Process.Kill()
					t.Fatalf("never busy\nstdout: %.1000s\nstderr: %.1000s", out.String(), errb.String())
				case <-time.After(10 * time.Millisecond):
					continue wait
				}
			}
			sent := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("still running 10 s after SIGTERM\nstderr: %.2000s", errb.String())
			}
			took := time.Since(sent)
			if took > time.Second {
				t.Errorf("stopped %s after SIGTERM, want within a second", took)
			}
			if code := cmd.ProcessState.ExitCode(); code != exitTerminated {
				t.Errorf("exit status %d, want %d\nstderr: %.2000s", code, exitTerminated, errb.String())
			}
			stderr := errb.String()
			if !strings.Contains(stderr, "stopped by SIGTERM") || strings.Contains(stderr, "panic:") {
				t.Errorf("stderr does not report the stop:\n%.3000s", lastLines(stderr, 5))
			}
			for _, name := range j.absent {
				if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
					t.Errorf("%s was written although the command was stopped", name)
				}
			}
			noTempFiles(t, dir)
			t.Logf("stopped %s after SIGTERM: %s", took.Round(time.Millisecond), lastLines(stderr, 1))
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
