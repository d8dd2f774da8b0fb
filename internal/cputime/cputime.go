// Package cputime measures the CPU time a process has used, for benchmarks
// that report work per CPU-second. On a shared, noisy machine wall-clock
// throughput swings with the neighbours' load; CPU time per unit of work
// does not (much), so perso's benchmarks report both.
package cputime

import (
	"syscall"
	"time"
)

// Process returns the user + system CPU time of this process, all threads
// included (so garbage collection on other cores counts too). It returns 0
// if the platform cannot tell.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
