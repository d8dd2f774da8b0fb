package engine

import (
	"fmt"
	"runtime"
	"syscall"
)

// lowerThread moves the calling goroutine to an OS thread of its own for
// the rest of its life and lowers that thread's CPU priority to nice n
// (never raising it: a thread already nicer keeps its value). Linux keeps
// the nice value per thread. The goroutine never unlocks, so when it
// returns the runtime ends the thread rather than hand a lowered thread to
// other goroutines.
func lowerThread(n int) error {
	if n <= 0 {
		return nil
	}
	runtime.LockOSThread()
	tid := syscall.Gettid()
	// getpriority(2) returns 20 - nice, so that it is never negative.
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		return fmt.Errorf("engine: reading thread %d's nice value: %w", tid, err)
	}
	if 20-raw >= n {
		return nil
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil {
		return fmt.Errorf("engine: setting thread %d to nice %d: %w", tid, n, err)
	}
	return nil
}
