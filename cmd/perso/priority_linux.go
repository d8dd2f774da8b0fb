package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// lowerPriority lowers this process's CPU priority to nice value n, and
// never raises it: a process already nicer (started under nice -n 15)
// keeps its value. Linux keeps the nice value per thread and a new thread
// inherits its creator's, so every thread of the process is set, twice,
// to catch one the runtime started meanwhile.
func lowerPriority(n int) error {
	if n <= 0 {
		return nil
	}
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("listing this process's threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// getpriority(2) returns 20 - nice, so that it is never negative.
			raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
			if err != nil {
				continue // the thread has exited
			}
			if 20-raw >= n {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil && err != syscall.ESRCH {
				return fmt.Errorf("setting thread %d to nice %d: %w", tid, n, err)
			}
		}
	}
	return nil
}
