package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// txGroup commits the concurrent order transactions of this process
// together: one BEGIN IMMEDIATE … COMMIT for every call that queued while
// the previous group held the write lock.
//
// Why: an ES9+ call's transaction writes a few rows, but its BEGIN (the
// read snapshot, the WAL index, the writer turn) and its COMMIT (a WAL
// frame per page it dirtied) cost more than its statements. Concurrent
// calls dirty the same pages (the sessions table's last leaf, neighbouring
// profile rows), so a group writes each of them once and pays BEGIN and
// COMMIT once.
//
// Each call of a group runs inside a SAVEPOINT: a call that fails rolls
// back only its own writes, and no call's answer leaves before the
// group's COMMIT (a call is told it is stored only once it is). A group
// of one runs exactly as a transaction of its own. The first caller to
// find no group running leads: it takes the turn, runs the queue and
// hands the lead to the first caller that queued meanwhile, so no
// goroutine waits for work and nothing runs when nothing is queued.
type txGroup struct {
	mu      sync.Mutex
	pending []*groupCall
	leading bool
	runs    atomic.Int64 // group transactions begun
	calls   atomic.Int64 // calls run in them
}

// maxGroupCalls bounds a group, so that one commit never delays a call by
// more than a few dozen others' statements.
const maxGroupCalls = 32

// groupCall is one caller's transaction body. run reports whether it
// wrote something to commit; its error rolls back its own writes.
type groupCall struct {
	ctx context.Context
	run func(ctx context.Context, tx *sql.Tx) (wrote bool, err error)
	err error
	// wake tells the caller that its call ran (false: err is its outcome)
	// or that it leads the next group (true). Buffered: the leader never
	// waits for a caller, its own call included, to read it.
	wake chan bool
}

// The savepoint statements, prepared at open (sqliteTxStmts).
const (
	sqlSavepoint  = `SAVEPOINT perso_call`
	sqlRelease    = `RELEASE perso_call`
	sqlRollbackTo = `ROLLBACK TO perso_call`
)

func init() {
	sqliteTxStmts = append(sqliteTxStmts, sqlSavepoint, sqlRelease, sqlRollbackTo)
}

// inGroup runs run in the next group transaction and returns its error,
// or the group's when the group could not commit (then nothing of run
// is stored either).
func (b *sqliteBackend) inGroup(ctx context.Context, run func(ctx context.Context, tx *sql.Tx) (bool, error)) error {
	c := &groupCall{ctx: ctx, run: run, wake: make(chan bool, 1)}
	g := &b.group
	g.mu.Lock()
	g.pending = append(g.pending, c)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		// Wait even when ctx ends meanwhile: the call may be running in
		// the group's transaction, and its outcome is what the caller
		// must learn. The leader skips calls whose ctx ended before they
		// ran.
		if lead := <-c.wake; !lead {
			return c.err
		}
	}
	b.leadGroups(ctx)
	return c.err
}

// leadGroups runs one group, then hands the lead on to the first call
// queued meanwhile, or ends the lead when none is.
func (b *sqliteBackend) leadGroups(ctx context.Context) {
	g := &b.group
	calls, err := b.runGroup(ctx)
	for _, c := range calls {
		if err != nil {
			c.err = err
		}
		c.wake <- false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.pending) == 0 {
		g.leading = false
		return
	}
	// The oldest queued call leads the next group and is part of it.
	g.pending[0].wake <- true
}

// runGroup begins a transaction (in the writer turn: turnConnector), then
// takes the queued calls (at most maxGroupCalls), those that queued while
// it waited for the turn included, and runs them in it. It returns the
// calls it took and the error that failed all of them (nil when each
// call's own error stands).
func (b *sqliteBackend) runGroup(ctx context.Context) ([]*groupCall, error) {
	// The group's transaction is not any one caller's: a caller whose
	// context ends must not roll the others back.
	ctx = context.WithoutCancel(ctx)
	tx, beginErr := b.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock is held from here
	g := &b.group
	g.mu.Lock()
	n := min(len(g.pending), maxGroupCalls)
	calls := append([]*groupCall(nil), g.pending[:n]...)
	g.pending = append(g.pending[:0], g.pending[n:]...)
	g.mu.Unlock()
	if beginErr != nil {
		return calls, beginErr
	}
	defer tx.Rollback()
	g.calls.Add(int64(len(calls)))
	g.runs.Add(1)
	wrote, err := b.runCalls(ctx, tx, calls)
	if err != nil || !wrote {
		return calls, err
	}
	return calls, tx.Commit()
}

// runCalls runs each call in tx, in a savepoint when the group has more
// than one, and tells whether any call wrote.
func (b *sqliteBackend) runCalls(ctx context.Context, tx *sql.Tx, calls []*groupCall) (wrote bool, err error) {
	if len(calls) == 1 {
		c := calls[0]
		if c.err = c.ctx.Err(); c.err != nil {
			return false, nil
		}
		// A single call's error leaves nothing to commit: the deferred
		// rollback undoes what it wrote.
		w, err := c.run(context.WithoutCancel(c.ctx), tx)
		c.err = err
		return w && err == nil, nil
	}
	for _, c := range calls {
		if c.err = c.ctx.Err(); c.err != nil {
			continue
		}
		if err := b.execOne(ctx, tx, nil, sqlSavepoint); err != nil {
			return false, err
		}
		w, err := c.run(context.WithoutCancel(c.ctx), tx)
		c.err = err
		if err != nil {
			if err := b.execOne(ctx, tx, nil, sqlRollbackTo); err != nil {
				return false, err
			}
		}
		if err := b.execOne(ctx, tx, nil, sqlRelease); err != nil {
			return false, err
		}
		wrote = wrote || (w && err == nil)
	}
	return wrote, nil
}
