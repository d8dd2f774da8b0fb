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
type ofdTurn struct{ f *os.File }

func openTurnFile(path string) (turnFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open the writer turn file: %w", err)
	}
	return &ofdTurn{f: f}, nil
}

func (o *ofdTurn) setlk(cmd int, typ int16, start int64) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: 1}
	for {
		err := unix.FcntlFlock(o.f.Fd(), cmd, &lk)
		if err != unix.EINTR {
			return err
		}
	}
}

func (o *ofdTurn) lock() error {
	if err := o.setlk(unix.F_OFD_SETLKW, unix.F_RDLCK, 1); err != nil {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	err := o.setlk(unix.F_OFD_SETLKW, unix.F_WRLCK, 0)
	o.setlk(unix.F_OFD_SETLK, unix.F_UNLCK, 1)
	if err != nil {
		return fmt.Errorf("store: writer turn: %w", err)
	}
	return nil
}

func (o *ofdTurn) unlock() { o.setlk(unix.F_OFD_SETLK, unix.F_UNLCK, 0) }

func (o *ofdTurn) othersWaiting() bool {
	if err := o.setlk(unix.F_OFD_SETLK, unix.F_WRLCK, 1); err != nil {
		return true // held shared by a waiter (EAGAIN); on another error, yielding is harmless
	}
	o.setlk(unix.F_OFD_SETLK, unix.F_UNLCK, 1)
	return false
}

func (o *ofdTurn) close() error { return o.f.Close() }
