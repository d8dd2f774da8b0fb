package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// writerTurn shares the SQLite write lock fairly between processes for
// order transactions (allocation and row updates).
//
// Why: SQLite's busy handler sleeps 1, 2, 5 … up to 100 ms between
// attempts, while a process with a queue of order transactions releases
// the lock for microseconds between them. Two `perso serve` processes on
// one store therefore did not share it: one emptied a pool of 10,000
// profiles while the other slept in the busy handler
// (TestTwoProcessAllocation). Here a process waits for its turn blocked
// on a file lock (woken by the kernel as soon as the lock is free, not by
// polling), and announces that it waits; the process that holds the turn
// checks after each transaction whether another waits, and if so pauses
// its own writers until the waiter has taken the turn (bounded by
// maxYield). Under contention the processes alternate; without it the
// cost is three uncontended lock calls per transaction (take, give back,
// ask whether another waits).
//
// Every use of the inventory's write connection takes the turn
// (turnConnector): order and row transactions, River's statements,
// migrations, WAL restarts. SQLite's lock and busy timeout still guarantee
// correctness (against a process that does not take the turn, such as the
// sqlite3 shell); the turn decides who goes first, and keeps SQLite's busy
// handler, which sleeps in growing steps, out of the way.
//
// Live before bulk. A process that serves live requests (perso serve,
// WithLive) and one that loads a batch (perso run) do not take turns
// evenly: a device waits for every transaction of the batch it meets, and
// the batch's writer shares the CPUs with its own CPU-bound stages and
// with the server, so each of its transactions can be slow to end once
// the server waits for it. So a live process yields only to another live
// one (two servers still alternate), and to a waiting batch at most once
// per bulkEvery; and while a batch holds the turn and a live process waits
// for it, the batch's CPU-bound stages wait (DB.WaitWriter), so that its
// transaction gets the process's CPUs and ends.
type writerTurn struct {
	mu   sync.Mutex // the turn is per process: its writers take it one at a time
	f    turnFile   // nil: no cross-process turn (the platform has none)
	live bool       // this process serves live requests (set before first use)

	lastBulkYield time.Time // live: when this process last yielded to a batch

	// A batch process's gate: set while it holds the turn with a live
	// process present, closed when it gives the turn back. Its stages
	// wait on it (wait) only while a live process waits for the turn,
	// which they ask at most once per gateCheck between them.
	gate      atomic.Pointer[chan struct{}]
	lastCheck atomic.Int64 // UnixNano of the last ask
	liveWaits atomic.Bool  // its answer
}

// gateCheck bounds how often a batch's stages ask whether a live process
// waits (a system call) while their process holds the turn.
const gateCheck = 100 * time.Microsecond

// bulkEvery bounds how long a live process keeps the turn from a waiting
// batch: under any live load the batch still gets a transaction in.
const bulkEvery = 50 * time.Millisecond

// maxYield bounds how long a process that releases the turn waits for a
// waiting process to take it (the waiter may have given up or be slow to
// be scheduled): fairness never costs more than this per transaction.
const maxYield = 20 * time.Millisecond

// acquire takes the turn. The file lock wait is not interruptible; it
// lasts one transaction of the holder (bounded by its busy timeout).
func (t *writerTurn) acquire(ctx context.Context) error {
	t.mu.Lock()
	if t.f == nil {
		return nil
	}
	if err := t.f.lock(t.live); err != nil {
		t.mu.Unlock()
		return err
	}
	if !t.live && t.f.livePresent() {
		ch := make(chan struct{})
		t.lastCheck.Store(0)
		t.liveWaits.Store(false)
		t.gate.Store(&ch)
	}
	return nil
}

// release gives the turn back and, if another process waits for it,
// lets that process have it before this process's next transaction.
func (t *writerTurn) release() {
	defer t.mu.Unlock()
	if t.f == nil {
		return
	}
	t.f.unlock()
	if ch := t.gate.Swap(nil); ch != nil {
		close(*ch)
	}
	liveOnly := t.live
	if t.live && time.Since(t.lastBulkYield) > bulkEvery && t.f.othersWaiting(false) {
		liveOnly = false
		t.lastBulkYield = time.Now()
	}
	deadline := time.Now().Add(maxYield)
	for t.f.othersWaiting(liveOnly) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
}

// wait blocks while this (batch) process holds the turn and a live
// process waits for it. Nothing held: one atomic load.
func (t *writerTurn) wait() {
	ch := t.gate.Load()
	if ch == nil {
		return
	}
	now := time.Now().UnixNano()
	if last := t.lastCheck.Load(); now-last > int64(gateCheck) && t.lastCheck.CompareAndSwap(last, now) {
		t.liveWaits.Store(t.f.othersWaiting(true))
	}
	if t.liveWaits.Load() {
		<-*ch
	}
}

func (t *writerTurn) close() error {
	if t.f == nil {
		return nil
	}
	return t.f.close()
}

// turnFile is the cross-process part: an exclusive "turn" lock and a
// shared "waiting" lock, on one file beside the database.
type turnFile interface {
	// markLive announces, for as long as the file is open, that this
	// process serves live requests.
	markLive() error
	// livePresent reports whether another process announced it is live.
	livePresent() bool
	// lock takes the turn; when another process holds it, it announces a
	// waiter (a live one when live), waits for the turn and withdraws the
	// announcement.
	lock(live bool) error
	unlock()
	// othersWaiting reports whether another process announced it waits
	// (liveOnly: a live process).
	othersWaiting(liveOnly bool) bool
	close() error
}
