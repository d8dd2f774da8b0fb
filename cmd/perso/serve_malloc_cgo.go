//go:build linux && cgo

package main

/*
#include <malloc.h>

// limit_arenas caps glibc's malloc arenas; 0 when this libc has no such
// setting (musl).
static int limit_arenas(int n) {
#ifdef M_ARENA_MAX
	return mallopt(M_ARENA_MAX, n);
#else
	return 0;
#endif
}

// trim returns the free memory at the top and inside every arena to the
// OS (glibc >= 2.8 madvises whole free pages in all arenas); nothing
// elsewhere (musl has no arenas to trim).
static void trim(void) {
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}
*/
import "C"

import (
	"os"
	"strconv"
	"sync"
	"time"
)

// setUpMalloc prepares glibc's malloc for a long-running process that
// loads a PKCS#11 module (perso serve, and bench soak as it does): arenas
// capped at n (limitMallocArenas) and their free memory returned to the
// OS periodically (startMallocTrim). It must run before the module is
// loaded. It returns the arena setting in force, for the log and reports.
func setUpMalloc(n int) string {
	startMallocTrim()
	return limitMallocArenas(n)
}

// limitMallocArenas caps glibc's malloc arenas at n unless MALLOC_ARENA_MAX
// is set (then glibc read it at start). SoftHSM2 allocates from whichever
// thread the Go runtime hands its calls to, and without a cap glibc gives
// threads arenas of their own that are never returned — RSS creeps up over
// a long run even with hsm.recycle_after (docs/hsm.md: +14.9 % over 200 000
// binds without, +5.2 % and flat with 2).
func limitMallocArenas(n int) string {
	if v := os.Getenv("MALLOC_ARENA_MAX"); v != "" {
		return "MALLOC_ARENA_MAX=" + v + " (environment)"
	}
	if C.limit_arenas(C.int(n)) == 0 {
		return "malloc arenas not limited (this libc has no M_ARENA_MAX)"
	}
	return "malloc arenas limited to " + strconv.Itoa(n) + " (mallopt M_ARENA_MAX; set MALLOC_ARENA_MAX to choose)"
}

// startMallocTrim returns the arenas' free memory to the OS every
// mallocTrimEvery, from one goroutine however often it is called: between
// module reinitialisations SoftHSM2 frees objects in the middle of arena
// heaps, which glibc gives back only when the top of a heap is free.
// Without the trim the arenas grew from 6 to 8 MiB over 30 000 downloads
// in a soak of perso serve and kept what each reinitialisation had freed;
// the trim takes well under a millisecond with arenas of this size.
func startMallocTrim() {
	mallocTrimOnce.Do(func() {
		go func() {
			for range time.Tick(mallocTrimEvery) {
				C.trim()
			}
		}()
	})
}

// mallocTrimEvery is how often startMallocTrim's goroutine trims.
const mallocTrimEvery = 10 * time.Second

var mallocTrimOnce sync.Once
