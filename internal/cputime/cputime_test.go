package cputime

import (
	"testing"
	"time"
)

func TestProcessGrowsWithWork(t *testing.T) {
	before := Process()
	deadline := time.Now().Add(50 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	if after := Process(); after <= before {
		t.Fatalf("CPU time did not grow over 50ms of busy work (%v → %v, %d spins)", before, after, x)
	}
}
