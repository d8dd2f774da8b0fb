//go:build linux

package store

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ofdTurn implements turnFile with open-file-description byte-range locks
// (F_OFD_SETLK*): owned by this open file, not by the process, so they
// behave the same whichever goroutine's thread takes them. Byte 0 is the
// turn, byte 1 the waiting announcement, byte 2 the same for live
// processes, byte 3 held shared by every live process while it runs.
type ofdTurn struct {
	f  *os.File
	fd uintptr // f's descriptor, taken once (File.Fd does more than return it)
}

func openTurnFile(path string) (turnFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open the writer turn file: %w", err)
	}
	return &ofdTurn{f: f, fd: f.Fd()}, nil
}

func (o *ofdTurn) setlk(cmd int, typ int16, start int64) error {
	return o.fcntl(cmd, &unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: 1})
}

// fcntl runs one lock command on byte lk.Start, retried when a signal
// interrupts it.
func (o *ofdTurn) fcntl(cmd int, lk *unix.Flock_t) error {
	for {
		err := unix.FcntlFlock(o.fd, cmd, lk)
		if err != unix.EINTR {
			return err
		}
	}
}

// lock tries the turn first (one fcntl when no other process holds it,
// the usual case); only when it is held does it announce a waiter, wait,
// and withdraw the announcement. Why: the turn is taken four times per ES9+
// download, and announcing before every attempt cost two system calls
// more each time for a wait that almost never happens. The holder may miss
// a waiter that tried but has not announced yet and run one transaction
// more before it yields; the waiter is announced by the holder's next
// release.
func (o *ofdTurn) lock(live bool) error {
	err := o.setlk(unix.F_OFD_SETLK, unix.F_WRLCK, 0)
	if err == nil {
		return nil
	}
	if err != unix.EAGAIN && err != unix.EACCES {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	announce := []int64{1}
	if live {
		announce = append(announce, 2)
	}
	for _, b := range announce {
		if err := o.setlk(unix.F_OFD_SETLKW, unix.F_RDLCK, b); err != nil {
			return fmt.Errorf("store: writer turn: %w", err)
		}
	}
	err = o.setlk(unix.F_OFD_SETLKW, unix.F_WRLCK, 0)
	for _, b := range announce {
		o.setlk(unix.F_OFD_SETLK, unix.F_UNLCK, b)
	}
	if err != nil {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	return nil
}

func (o *ofdTurn) markLive() error {
	if err := o.setlk(unix.F_OFD_SETLKW, unix.F_RDLCK, 3); err != nil {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	return nil
}

func (o *ofdTurn) livePresent() bool { return o.conflicts(3) }

func (o *ofdTurn) unlock() { o.setlk(unix.F_OFD_SETLK, unix.F_UNLCK, 0) }

// othersWaiting asks whether another process announced it waits (byte 1,
// or byte 2 for live processes only).
func (o *ofdTurn) othersWaiting(liveOnly bool) bool {
	if liveOnly {
		return o.conflicts(2)
	}
	return o.conflicts(1)
}

// conflicts asks whether a write lock on byte b would conflict
// (F_OFD_GETLK: one system call, nothing to undo), i.e. whether another
// open file holds it shared. An error answers yes: yielding, or pausing
// for a live process, is harmless.
func (o *ofdTurn) conflicts(b int64) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: b, Len: 1}
	if err := o.fcntl(unix.F_OFD_GETLK, &lk); err != nil {
		return true
	}
	return lk.Type != unix.F_UNLCK
}

func (o *ofdTurn) close() error { return o.f.Close() }
