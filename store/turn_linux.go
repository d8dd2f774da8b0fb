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
// turn, byte 1 the waiting announcement.
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
func (o *ofdTurn) lock() error {
	err := o.setlk(unix.F_OFD_SETLK, unix.F_WRLCK, 0)
	if err == nil {
		return nil
	}
	if err != unix.EAGAIN && err != unix.EACCES {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	if err := o.setlk(unix.F_OFD_SETLKW, unix.F_RDLCK, 1); err != nil {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	err = o.setlk(unix.F_OFD_SETLKW, unix.F_WRLCK, 0)
	o.setlk(unix.F_OFD_SETLK, unix.F_UNLCK, 1)
	if err != nil {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	return nil
}

func (o *ofdTurn) unlock() { o.setlk(unix.F_OFD_SETLK, unix.F_UNLCK, 0) }

// othersWaiting asks whether a write lock on the announcement byte would
// conflict (F_OFD_GETLK: one system call, nothing to undo), i.e. whether
// another process holds it shared while it waits.
func (o *ofdTurn) othersWaiting() bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 1, Len: 1}
	if err := o.fcntl(unix.F_OFD_GETLK, &lk); err != nil {
		return true // yielding is harmless
	}
	return lk.Type != unix.F_UNLCK
}

func (o *ofdTurn) close() error { return o.f.Close() }
