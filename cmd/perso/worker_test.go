package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/testenv"
)

// batchToken is a SoftHSM2 token with the KEK perso run seals batch keys
// under, as PERSO_* variables. The token is the test process's (testenv),
// shared by its tests and by every run of them under -count=N, so the KEK
// may exist already: generating it is idempotent, and every test that
// needs the KEK comes here rather than generating it itself.
func batchToken(t *testing.T) []string {
	t.Helper()
	tok := testenv.SoftHSM(t)
	pool, err := hsmpool.Open(context.Background(), hsmpool.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.GenerateSecretKey(context.Background(), "kek-1", hsmpool.KindKEK); err != nil && !errors.Is(err, hsmpool.ErrKeyExists) {
		t.Fatal(err)
	}
	return []string{"PERSO_HSM_MODULE=" + tok.Module, "PERSO_HSM_TOKEN=" + tok.Label, "PERSO_HSM_PIN=" + tok.PIN}
}

// startChild starts the perso binary; the returned function waits for it
// and returns its exit code and output.
func startChild(t *testing.T, dir string, env []string, args ...string) (*exec.Cmd, *lockedBuffer, func() (int, string, string)) {
	t.Helper()
	cmd := exec.Command(persoBinary(t), args...)
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd, &errb, func() (int, string, string) {
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-done
			t.Fatalf("perso %s: still running after 2 minutes\nstderr: %.3000s", strings.Join(args, " "), errb.String())
		}
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}
}

func readReport(t *testing.T, path string) engine.Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep engine.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// chunkSet parses a WorkerReport's ChunkIDs ("0-3,7").
func chunkSet(t *testing.T, s string) []int {
	t.Helper()
	var out []int
	if s == "" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			t.Fatalf("chunk_ids %q: %v", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				t.Fatalf("chunk_ids %q: %v", s, err)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out
}

// checkWorkersShare: the report is complete, adds up, and its workers'
// chunk lists cover every chunk exactly once, with at least want workers
// contributing.
func checkWorkersShare(t *testing.T, rep engine.Report, want int) {
	t.Helper()
	if !rep.Complete || rep.RecordsRead != crashRecords || rep.Stored != crashRecords || rep.Duplicates != 0 ||
		rep.Stored+rep.Rejected+rep.Conflicts != rep.RecordsRead || rep.Chunks != crashRecords/crashChunk {
		t.Fatalf("report %+v", rep)
	}
	seen := map[int]string{}
	var chunks int
	var profiles int64
	active := 0
	for _, w := range rep.Workers {
		ids := chunkSet(t, w.ChunkIDs)
		if len(ids) != w.Chunks {
			t.Errorf("worker %s: %d chunks tallied, chunk_ids %q lists %d", w.Worker, w.Chunks, w.ChunkIDs, len(ids))
		}
		for _, id := range ids {
			if other, dup := seen[id]; dup {
				t.Errorf("chunk %d stored by %s and %s", id, other, w.Worker)
			}
			seen[id] = w.Worker
		}
		chunks += w.Chunks
		profiles += w.Profiles
		if w.Chunks > 0 {
			active++
		}
	}
	if chunks != rep.Chunks || profiles != rep.Stored || len(seen) != rep.Chunks {
		t.Errorf("workers stored %d chunks (%d distinct), %d profiles; batch has %d chunks, %d profiles: %+v",
			chunks, len(seen), profiles, rep.Chunks, rep.Stored, rep.Workers)
	}
	if active < want {
		t.Errorf("%d workers stored chunks, want %d: %+v", active, want, rep.Workers)
	}
}

// TestRunWorkersShareBatch: two `perso run --worker` processes on one
// PostgreSQL store finish one batch together, every record stored exactly
// once and both workers' chunks in the report; and when one of them is
// killed (-9) mid-batch, the other takes its chunks over after
// engine.rescue_after and finishes the batch, still exactly once.
func TestRunWorkersShareBatch(t *testing.T) {
	hsmEnv := batchToken(t)
	persoBinary(t) // built before the children's time limits start
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	// engine.rescue_after must exceed a chunk's time with a live worker:
	// from River handing it over (River holds 2 x --in-flight chunks) to
	// its commit. Below that the workers take each other's live chunks
	// over, redo them and throw the work away, and at a load average of
	// 12-13 on 2 cores (3s, the default --in-flight 8: 16 held chunks at
	// about 1 chunk/s) the batch stopped progressing for minutes. Both
	// alive: no takeover is needed, so 5m. One killed: --in-flight 2 (4
	// held chunks) and 10s, short enough for the test, long enough for
	// the load.
	for _, tc := range []struct {
		name   string
		kill   bool
		rescue string
	}{{"both finish", false, "5m"}, {"one killed", true, "10s"}} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := testenv.PostgresSchemaDSN(t)
			dir := t.TempDir()
			env := append(hsmEnv[:len(hsmEnv):len(hsmEnv)], "PERSO_STORE_DRIVER=postgres", "PERSO_STORE_DSN="+dsn,
				"PERSO_ENGINE_RESCUE_AFTER="+tc.rescue)
			if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", strconv.Itoa(crashRecords), "-o", "in.csv"); res.code != 0 {
				t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
			}
			args := func(w string) []string {
				return []string{"run", "--worker", "--template", tmpl, "--input", "in.csv", "--batch", "shared",
					"--chunk-size", strconv.Itoa(crashChunk), "--in-flight", "2", "--progress", "log", "--report", "report-" + w + ".json"}
			}
			// w1 logs every stored chunk (debug), so the kill below lands
			// while the batch is still going, however fast the machine.
			c1, stderr1, wait1 := startChild(t, dir, append(env, "PERSO_ENGINE_WORKER_ID=w1", "PERSO_LOG_LEVEL=debug"), args("w1")...)
			_, _, wait2 := startChild(t, dir, append(env, "PERSO_ENGINE_WORKER_ID=w2"), args("w2")...)
			var killed time.Time
			if tc.kill {
				// Kill w1 as soon as it stored its first chunk: it holds
				// the chunks in flight behind it.
				stored := regexp.MustCompile(`chunk stored.*run_stored=[1-9]`)
				for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && !stored.MatchString(stderr1.String()); {
					time.Sleep(10 * time.Millisecond)
				}
				c1.Process.Signal(syscall.SIGKILL)
				killed = time.Now()
			}
			code1, out1, err1 := wait1()
			code2, out2, err2 := wait2()
			if code2 != 0 || !tc.kill && code1 != 0 {
				t.Fatalf("exit w1 %d, w2 %d\nw1 stderr: %.2000s\nw2 stderr: %.2000s", code1, code2, err1, err2)
			}
			rep := readReport(t, filepath.Join(dir, "report-w2.json"))
			if tc.kill {
				checkWorkersShare(t, rep, 2)
				if !strings.Contains(err2, "took over chunks") {
					t.Errorf("w2 did not take w1's chunks over:\n%.3000s", err2)
				}
				t.Logf("w2 finished %s after w1 was killed (rescue_after %s)", time.Since(killed).Round(100*time.Millisecond), tc.rescue)
			} else {
				checkWorkersShare(t, rep, 2)
				if rep1 := readReport(t, filepath.Join(dir, "report-w1.json")); !rep1.Complete {
					t.Errorf("w1's report: %+v", rep1)
				}
				for _, out := range []string{out1, out2} {
					if !strings.Contains(out, "worker       w1") || !strings.Contains(out, "worker       w2") {
						t.Errorf("summary lacks a worker:\n%s", out)
					}
				}
			}
			checkStoredOnce(t, "postgres", dsn, rep)
			t.Logf("workers: %+v (w1 exit %d)", rep.Workers, code1)
		})
	}
}

// TestRunWorkerNeedsPostgres: --worker on the embedded store is refused
// with a message that says why and what to do.
func TestRunWorkerNeedsPostgres(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "in.csv"), []byte("iccid,imsi,ki,opc\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "t.der"), []byte{0x30, 0}, 0o600)
	res := runChild(t, dir, []string{"PERSO_STORE_DSN=" + filepath.Join(dir, "perso.db")}, nil, time.Minute,
		"run", "--worker", "--template", "t.der", "--input", "in.csv")
	if res.code != 2 || !strings.Contains(res.stderr, "--worker needs a PostgreSQL store") ||
		!strings.Contains(res.stderr, "run without --worker") {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
}

// TestRunCtrlCStoresChunksInFlight: SIGINT mid-batch stops taking chunks,
// stores those in flight and says so; the same command then completes
// the batch, exactly once.
func TestRunCtrlCStoresChunksInFlight(t *testing.T) {
	env := batchToken(t)
	persoBinary(t) // built before the children's time limits start
	dir := t.TempDir()
	dsn := filepath.Join(dir, "perso.db")
	env = append(env, "PERSO_STORE_DSN="+dsn)
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", strconv.Itoa(crashRecords), "-o", "in.csv"); res.code != 0 {
		t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
	}
	args := []string{"run", "--template", testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"), "--input", "in.csv",
		"--batch", "stop", "--chunk-size", strconv.Itoa(crashChunk), "--progress", "log", "--report", "report.json", "--force"}
	cmd, stderr, wait := startChild(t, dir, append(env, "PERSO_LOG_LEVEL=debug"), args...)
	// Stop once the first chunk is stored (its debug line): the other
	// chunks are in flight or waiting, however fast the machine.
	stored := regexp.MustCompile(`chunk stored.*run_stored=[1-9]`)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && !stored.MatchString(stderr.String()); {
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	code, out, errs := wait()
	rep := readReport(t, filepath.Join(dir, "report.json"))
	if rep.Complete {
		t.Fatalf("the batch completed although SIGINT came after its first chunk (exit %d)\n%.3000s", code, errs)
	}
	if code != exitInterrupted || !rep.Stopped || rep.RunRolledBack != 0 ||
		!strings.Contains(out, "every chunk in flight was stored before stopping") {
		t.Fatalf("exit %d, report %+v\nstdout:\n%s\nstderr:\n%.3000s", code, rep, out, errs)
	}
	if rep.Stored != int64(rep.ChunksDone*crashChunk) {
		t.Errorf("stopped with %d chunks and %d profiles stored", rep.ChunksDone, rep.Stored)
	}
	res := runChild(t, dir, env, nil, time.Minute, args...)
	if res.code != 0 {
		t.Fatalf("re-run: exit %d\n%s", res.code, res.stderr)
	}
	rep = readReport(t, filepath.Join(dir, "report.json"))
	checkStoredOnce(t, "sqlite", dsn, rep)
	if !rep.Complete || rep.Stored != crashRecords || rep.Duplicates != 0 {
		t.Fatalf("after the re-run: %+v", rep)
	}
}
