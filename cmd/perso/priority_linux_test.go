package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestLowerPriority runs in a child process (the test process keeps its
// priority): lowerPriority sets every thread, threads started afterwards
// inherit the value, and a process already nicer keeps its value.
func TestLowerPriority(t *testing.T) {
	if os.Getenv("PERSO_TEST_NICE_CHILD") != "" {
		lowerPriorityChild()
		return
	}
	if _, err := exec.LookPath("nice"); err != nil {
		t.Fatalf("nice(1) not found: %v", err)
	}
	for _, tc := range []struct {
		name          string
		startAt, want int
	}{
		{"from nice 0 to engine.nice 7", 0, 7},
		{"already at 12: kept, never raised", 12, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := exec.Command("nice", "-n", strconv.Itoa(tc.startAt), os.Args[0], "-test.run=^TestLowerPriority$")
			c.Env = append(os.Environ(), "PERSO_TEST_NICE_CHILD=7")
			out, err := c.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			want := fmt.Sprintf("threads at nice %d", tc.want)
			if !strings.Contains(string(out), want) {
				t.Fatalf("child said %q, want %q", out, want)
			}
		})
	}
}

// lowerPriorityChild lowers its priority, starts threads, and prints the
// one nice value all its threads have (or exits 1 naming the odd ones).
func lowerPriorityChild() {
	n, _ := strconv.Atoi(os.Getenv("PERSO_TEST_NICE_CHILD"))
	if err := lowerPriority(n); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// Goroutines locked to their threads while others block force the
	// runtime to start new threads after the call.
	done, started := make(chan struct{}), make(chan struct{})
	for range 4 {
		go func() {
			runtime.LockOSThread()
			started <- struct{}{}
			<-done
		}()
	}
	for range 4 {
		<-started
	}
	defer close(done)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	values := map[int][]string{}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if err == nil {
			values[20-raw] = append(values[20-raw], task.Name())
		}
	}
	if len(values) != 1 || len(tasks) < 5 {
		fmt.Printf("threads: %d, by nice value: %v\n", len(tasks), values)
		os.Exit(1)
	}
	for v := range values {
		fmt.Printf("threads at nice %d\n", v)
	}
}
