//go:build linux

package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Open-file-description locks of two opens of one file conflict like those
// of two processes, so two stores opened on one path in this test process
// behave as a server and a batch on a shared store.

func openPair(t *testing.T) (live, bulk *sqliteBackend, turnPath string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "perso.db")
	l, err := Open(ctx, "sqlite", path, WithLive())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	b, err := Open(ctx, "sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return l.b.(*sqliteBackend), b.b.(*sqliteBackend), path + ".turn"
}

// turnFree reports whether the turn (byte 0 of the turn file) is free, by
// trying it from a third open of the file.
func turnFree(t *testing.T, turnPath string) bool {
	t.Helper()
	f, err := openTurnFile(turnPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	o := f.(*ofdTurn)
	if err := o.setlk(unix.F_OFD_SETLK, unix.F_WRLCK, 0); err != nil {
		return false
	}
	o.unlock()
	return true
}

// eventually polls cond for up to 5 s: the other side is a goroutine
// blocked in a system call.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 5 s", what)
}

// takeInBackground takes tr's turn in a goroutine and gives it back at
// once; the channel closes when it had it.
func takeInBackground(tr *writerTurn) <-chan struct{} {
	got := make(chan struct{})
	go func() {
		tr.acquire(context.Background())
		close(got)
		tr.release()
	}()
	return got
}

func TestTurnEveryUseOfTheWriteConnection(t *testing.T) {
	_, s, path := openPair(t)
	ctx := context.Background()
	if !turnFree(t, path) {
		t.Fatal("turn held with nothing running")
	}
	// A query outside a transaction holds the turn until its rows close
	// (River's fetch is an UPDATE … RETURNING).
	rows, err := s.w.QueryContext(ctx, `SELECT 1`)
	if err != nil {
		t.Fatal(err)
	}
	if turnFree(t, path) {
		t.Error("turn free while a query's rows are open")
	}
	rows.Close()
	if !turnFree(t, path) {
		t.Error("turn still held after the rows closed")
	}
	// A transaction holds it from BEGIN to COMMIT, its statements
	// inside it take nothing more.
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE turn_probe (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if turnFree(t, path) {
		t.Error("turn free inside a transaction")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if !turnFree(t, path) {
		t.Error("turn still held after the commit")
	}
	// A statement outside a transaction waits for the turn.
	hold, err := openTurnFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.close()
	if err := hold.lock(false); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.w.ExecContext(ctx, `INSERT INTO turn_probe (x) VALUES (1)`)
		done <- err
	}()
	eventually(t, "the statement announces that it waits", func() bool { return hold.othersWaiting(false) })
	select {
	case err := <-done:
		t.Fatalf("statement ran while another held the turn (err %v)", err)
	default:
	}
	hold.unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTurnLiveBeforeBulk(t *testing.T) {
	live, bulk, _ := openPair(t)
	ctx := context.Background()
	if !bulk.turn.f.livePresent() {
		t.Fatal("the batch does not see the live process")
	}
	if live.turn.f.livePresent() {
		t.Fatal("the live process sees itself")
	}

	// A batch waiting for the turn is a waiter, not a live one: the live
	// process does not yield to it (except once per bulkEvery).
	if err := live.turn.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	got := takeInBackground(&bulk.turn)
	eventually(t, "the batch announces that it waits", func() bool { return live.turn.f.othersWaiting(false) })
	if live.turn.f.othersWaiting(true) {
		t.Error("a waiting batch announced itself as live")
	}
	live.turn.release()
	<-got

	// A waiting live process is seen as live.
	if err := bulk.turn.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	got = takeInBackground(&live.turn)
	eventually(t, "the live process announces that it waits", func() bool { return bulk.turn.f.othersWaiting(true) })
	bulk.turn.release()
	<-got
}

// Two live processes (two perso serve on one store) still alternate: each
// sees the other's wait as live, and so yields to it.
func TestTurnTwoLiveProcessesYieldToEachOther(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "perso.db")
	var ss [2]*sqliteBackend
	for i := range ss {
		d, err := Open(ctx, "sqlite", path, WithLive())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		ss[i] = d.b.(*sqliteBackend)
	}
	if !ss[0].turn.f.livePresent() || !ss[1].turn.f.livePresent() {
		t.Fatal("a live process does not see the other")
	}
	if err := ss[0].turn.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	got := takeInBackground(&ss[1].turn)
	eventually(t, "the second server announces a live wait", func() bool { return ss[0].turn.f.othersWaiting(true) })
	ss[0].turn.release()
	<-got
	// Its own gate never closes: only batch processes pause.
	if ss[0].turn.gate.Load() != nil || ss[1].turn.gate.Load() != nil {
		t.Error("a live process closed its gate")
	}
}

func TestTurnGateWhileBulkHoldsTheTurn(t *testing.T) {
	live, bulk, _ := openPair(t)
	ctx := context.Background()
	b := &DB{b: bulk}
	b.WaitWriter() // nothing held: returns at once

	// Holding the turn with a live process present but not waiting: the
	// batch's stages go on.
	if err := bulk.turn.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	b.WaitWriter()
	// The live process waits: they pause until the turn is given back.
	got := takeInBackground(&live.turn)
	eventually(t, "the live process announces that it waits", func() bool { return bulk.turn.f.othersWaiting(true) })
	// The stages ask again only once gateCheck has passed since the last
	// answer (the WaitWriter above, before the live process waited).
	time.Sleep(2 * gateCheck)
	waited := make(chan struct{})
	go func() { b.WaitWriter(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("WaitWriter returned while the batch held the turn and a live process waited")
	case <-time.After(50 * time.Millisecond):
	}
	bulk.turn.release()
	<-waited
	<-got

	// The live process never waits for itself.
	l := &DB{b: live}
	if err := live.turn.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	l.WaitWriter()
	live.turn.release()

	// Without a live process a batch's stages never pause.
	live.close()
	if bulk.turn.f.livePresent() {
		t.Fatal("live process still present after it closed the store")
	}
	if err := bulk.turn.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if bulk.turn.gate.Load() != nil {
		t.Error("gate set without a live process")
	}
	b.WaitWriter()
	bulk.turn.release()
}
