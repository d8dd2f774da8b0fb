package engine

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The main goroutine keeps the main thread: a goroutine locked to the main
// thread is parked when it exits, not ended, and the test below watches
// the lowered threads end.
func init() { runtime.LockOSThread() }

func threadNice(t *testing.T, tid int) int {
	t.Helper()
	raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		t.Fatalf("getpriority(%d): %v", tid, err)
	}
	return 20 - raw
}

// lowerThread lowers the calling goroutine's own thread only, never raises
// a thread's priority, and the lowered thread ends with its goroutine.
func TestLowerThread(t *testing.T) {
	base := threadNice(t, os.Getpid())
	if base >= 7 {
		t.Fatalf("the test process runs at nice %d; run it below 7", base)
	}
	for _, tc := range []struct {
		name          string
		startAt, want int
	}{
		{"from the process's value to 7", base, 7},
		{"already at 12: kept, never raised", 12, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				tid, nice int
				err       error
			}
			got, release := make(chan result), make(chan struct{})
			go func() {
				runtime.LockOSThread()
				tid := syscall.Gettid()
				if tc.startAt != base {
					syscall.Setpriority(syscall.PRIO_PROCESS, tid, tc.startAt)
				}
				err := lowerThread(7)
				got <- result{tid, threadNice(t, tid), err}
				<-release
			}()
			r := <-got
			if r.err != nil || r.nice != tc.want {
				t.Errorf("thread %d at nice %d (err %v), want %d", r.tid, r.nice, r.err, tc.want)
			}
			if n := threadNice(t, os.Getpid()); n != base {
				t.Errorf("the main thread went from nice %d to %d", base, n)
			}
			close(release)
			path := "/proc/self/task/" + strconv.Itoa(r.tid)
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(path); os.IsNotExist(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the lowered thread %d still runs after its goroutine returned", r.tid)
				}
			}
		})
	}
}
