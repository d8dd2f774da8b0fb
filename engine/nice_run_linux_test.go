package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/perso"
)

// threadsAt counts this process's threads at nice value n.
func threadsAt(t *testing.T, n int) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid); err == nil && 20-raw == n {
			count++
		}
	}
	return count
}

// Config.Nice lowers the CPU-bound stages (validate, personalise, seal: one
// thread each) and nothing else: the goroutine that reports progress after
// each commit keeps the process's priority, and the lowered threads end
// with the run.
func TestRunLowersItsCPUStagesOnly(t *testing.T) {
	const nice, workers = 9, 2
	base := 20 - must(syscall.Getpriority(syscall.PRIO_PROCESS, os.Getpid()))
	if base >= nice || threadsAt(t, nice) != 0 {
		t.Fatalf("the test process has threads at nice %d already (process at %d)", nice, base)
	}
	pool := openHSM(t)
	der, err := os.ReadFile(testenv.Path(t, "ts48", ts48))
	if err != nil {
		t.Fatal(err)
	}
	db := openStore(t, "sqlite", filepath.Join(t.TempDir(), "perso.db"))
	iccid, _ := perso.ICCIDWithCheck("89494499800000100")
	input := writeInput(t, t.TempDir(), perso.FormatCSV, 200, iccid, "001010800000001", false)
	var (
		mu                sync.Mutex
		most, reporterAt  int
		reporterAtLowered bool
	)
	cfg := engine.Config{ChunkSize: 25, Workers: workers, Exclusive: true, Nice: nice, Progress: func(engine.Progress) {
		n := threadsAt(t, nice)
		self := 20 - must(syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid()))
		mu.Lock()
		defer mu.Unlock()
		most = max(most, n)
		if self == nice {
			reporterAtLowered = true
		}
		reporterAt = self
	}}
	rep, err := engine.Run(context.Background(), db, pool, engine.Spec{BatchID: "nice", Input: input, Template: der, ProfileType: "ts48"}, cfg)
	if err != nil || !rep.Complete || rep.Stored != 200 {
		t.Fatalf("run: %v, %+v", err, rep)
	}
	if want := workers + 2; most != want {
		t.Errorf("at most %d threads at nice %d during the run, want %d (validator, %d personalisers, sealer)", most, nice, want, workers)
	}
	if reporterAtLowered {
		t.Errorf("the progress reporter ran on a lowered thread (last at nice %d): the store's side must keep the process's priority", reporterAt)
	}
	for deadline := time.Now().Add(2 * time.Second); threadsAt(t, nice) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d threads still at nice %d after the run", threadsAt(t, nice), nice)
		}
	}
}

func must(v int, err error) int {
	if err != nil {
		panic(err)
	}
	return v
}
