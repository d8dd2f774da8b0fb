package store

import (
	"context"
	"sync"
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
// The turn is advisory and only among order transactions of this
// package: bulk writes, migrations and River keep relying on SQLite's lock
// and busy timeout, which still guarantees correctness; the turn only
// decides who tries first.
type writerTurn struct {
	mu sync.Mutex // the turn is per process: its writers take it one at a time
	f  turnFile   // nil: no cross-process turn (the platform has none)
}

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
	if err := t.f.lock(); err != nil {
		t.mu.Unlock()
		return err
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
	deadline := time.Now().Add(maxYield)
	for t.f.othersWaiting() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
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
	// lock takes the turn; when another process holds it, it announces a
	// waiter, waits for the turn and withdraws the announcement.
	lock() error
	unlock()
	// othersWaiting reports whether another process announced it waits.
	othersWaiting() bool
	close() error
}
