package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// Tests that need several processes re-execute the test binary; TestMain
// turns such a child into a store client instead of a test run.
const childEnv = "PERSO_STORE_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		if err := runChild(role); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	childProfiles = 12000 // crash test: profiles the writer inserts
	childChunk    = 400   // … per PutBatch call
	childSegSize  = 2048
)

func runChild(role string) error {
	ctx := context.Background()
	s, err := store.Open(ctx, os.Getenv("PERSO_STORE_DRIVER"), os.Getenv("PERSO_STORE_DSN"))
	if err != nil {
		return err
	}
	defer s.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	switch role {
	case "allocate":
		// Report ready, wait for the start line on stdin, then order from
		// the shared pool until it is empty; print each ICCID.
		fmt.Fprintln(out, "ready")
		out.Flush()
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for the start: %w", err)
		}
		workers, _ := strconv.Atoi(os.Getenv("PERSO_STORE_WORKERS"))
		var mu sync.Mutex
		var wg sync.WaitGroup
		var firstErr error
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					p, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: "pool", EID: "89049032000000000000000000000001"})
					mu.Lock()
					if err != nil {
						if !errors.Is(err, store.ErrNoProfileAvailable) && firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						return
					}
					fmt.Fprintln(out, p.ICCID)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return firstErr
	case "insert":
		// Insert the batch chunk by chunk, reporting each commit at once.
		if _, err := s.CreateBatch(ctx, store.Batch{ID: "crash", KeyBlob: []byte("wrapped")}); err != nil {
			return err
		}
		for first := 0; first < childProfiles; first += childChunk {
			fmt.Fprintln(out, "inserting", first)
			out.Flush()
			if _, err := s.PutBatch(ctx, "crash", storetest.Profiles("crash", first, childChunk, childSegSize)); err != nil {
				return err
			}
			fmt.Fprintln(out, "committed", first+childChunk)
			out.Flush()
		}
		return nil
	}
	return fmt.Errorf("unknown role %q", role)
}

func child(t *testing.T, role, driver, dsn string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "PERSO_STORE_DRIVER="+driver, "PERSO_STORE_DSN="+dsn)
	cmd.Env = append(cmd.Env, extra...)
	cmd.Stderr = os.Stderr
	return cmd
}

type backendCase struct {
	name   string
	driver string
	dsn    func(t *testing.T) string
}

var backends = []backendCase{
	{"sqlite", "sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "perso.db") }},
	{"postgres", "postgres", func(t *testing.T) string { return testenv.PostgresSchemaDSN(t) }},
}

// TestTwoProcessAllocation: two processes with 32 goroutines each order
// from one pool (2,000 profiles) in a shared database; every profile is
// allocated exactly once, and both processes get a fair share.
//
// On SQLite, before the writer turn (turn.go), a process that found the
// database locked backed off in SQLite's busy handler (sleeps of up to
// 100 ms) while the other re-took the lock within microseconds: pools of
// 1,000 and 10,000 were emptied by one process alone, and the test needed
// 50,000 profiles (95 s under -race) for both to get any.
func TestTwoProcessAllocation(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			const pool = 2000
			ctx := context.Background()
			dsn := bc.dsn(t)
			s, err := store.Open(ctx, bc.driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.CreateBatch(ctx, store.Batch{ID: "pool"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutBatch(ctx, "pool", storetest.Profiles("pool", 0, pool, 64)); err != nil {
				t.Fatal(err)
			}
			// Both children open the store, then start ordering together.
			var cmds [2]*exec.Cmd
			var outs [2]*bufio.Scanner
			var starts [2]io.WriteCloser
			for i := range cmds {
				cmds[i] = child(t, "allocate", bc.driver, dsn, "PERSO_STORE_WORKERS=32")
				stdout, err := cmds[i].StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if starts[i], err = cmds[i].StdinPipe(); err != nil {
					t.Fatal(err)
				}
				if err := cmds[i].Start(); err != nil {
					t.Fatal(err)
				}
				outs[i] = bufio.NewScanner(stdout)
				if !outs[i].Scan() || outs[i].Text() != "ready" {
					t.Fatalf("child %d did not get ready: %q", i, outs[i].Text())
				}
			}
			for _, w := range starts {
				io.WriteString(w, "go\n")
				w.Close()
			}
			var all []string
			for i, c := range cmds {
				var got []string
				for outs[i].Scan() {
					got = append(got, outs[i].Text())
				}
				if err := c.Wait(); err != nil {
					t.Fatalf("child %d: %v", i, err)
				}
				// Both processes allocate: each gets at least an eighth.
				// They start together (ready/go) and split near half on a
				// quiet machine, but under -race beside CI's other test
				// binaries one has been seen at 475 of 2000 on PostgreSQL,
				// whose SKIP LOCKED promises no fairness; exactly-once is
				// CheckAllocation's below.
				if len(got) < pool/8 {
					t.Errorf("child %d allocated %d of %d profiles: the processes did not share the store", i, len(got), pool)
				}
				t.Logf("child %d allocated %d of %d", i, len(got), pool)
				all = append(all, got...)
			}
			storetest.CheckAllocation(t, all, pool)
			counts, err := s.CountByState(ctx, "pool")
			if err != nil {
				t.Fatal(err)
			}
			if counts[store.StateLinked] != int64(pool) {
				t.Fatalf("states after the race: %v", counts)
			}
		})
	}
}

// TestCrashDuringBulkInsert: a writer killed with SIGKILL in the middle of a
// bulk insert, then run again, leaves every profile present exactly once
// and the batch counters equal to the rows.
func TestCrashDuringBulkInsert(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := bc.dsn(t)

			cmd := child(t, "insert", bc.driver, dsn)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Kill as the writer enters its fourth PutBatch, three chunks
			// committed: the signal lands inside that transaction.
			lines := bufio.NewScanner(stdout)
			for started := 0; started < 4 && lines.Scan(); {
				if strings.HasPrefix(lines.Text(), "inserting") {
					started++
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			werr := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("writer was not killed mid-insert: %v", werr)
			}

			s, err := store.Open(ctx, bc.driver, dsn)
			if err != nil {
				t.Fatalf("reopen after the crash: %v", err)
			}
			defer s.Close()
			b, err := s.GetBatch(ctx, "crash")
			if err != nil {
				t.Fatal(err)
			}
			if b.Profiles < 3*childChunk || b.Profiles >= childProfiles || b.Profiles%childChunk != 0 {
				t.Fatalf("after the crash %d profiles are counted: want whole chunks, at least 3, fewer than all", b.Profiles)
			}
			before := countAll(t, s)
			if before != b.Profiles {
				t.Fatalf("after the crash: %d rows, batch counter %d", before, b.Profiles)
			}

			rerun := child(t, "insert", bc.driver, dsn)
			rerun.Stdout = nil
			if err := rerun.Run(); err != nil {
				t.Fatalf("re-run: %v", err)
			}
			b, err = s.GetBatch(ctx, "crash")
			if err != nil {
				t.Fatal(err)
			}
			if n := countAll(t, s); n != childProfiles || b.Profiles != childProfiles || b.Duplicates != before {
				t.Fatalf("after the re-run: %d rows, counters %d inserted, %d duplicates; want %d rows and inserted, %d duplicates",
					n, b.Profiles, b.Duplicates, childProfiles, before)
			}
			// Every profile around the point of the kill, and the ends, is
			// whole: row and protected material.
			check := []int{0, childProfiles - 1}
			for i := max(0, int(before)-childChunk); i < min(childProfiles, int(before)+2*childChunk); i++ {
				check = append(check, i)
			}
			for _, i := range check {
				p, err := s.GetProfile(ctx, storetest.ICCID(i))
				if err != nil || len(p.Segments) != childSegSize || p.BatchID != "crash" {
					t.Fatalf("profile %d after the re-run: %d bytes of segments, batch %q, %v", i, len(p.Segments), p.BatchID, err)
				}
			}
		})
	}
}

func countAll(t *testing.T, s *store.DB) int64 {
	t.Helper()
	c, err := s.CountByState(context.Background(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}
