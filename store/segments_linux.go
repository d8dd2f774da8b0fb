//go:build linux

package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// iovMax is how many buffers one pwritev takes (Linux IOV_MAX).
const iovMax = 1024

// writeVectorAt writes bufs back to back at off with pwritev: the
// caller's buffers go to the kernel without being copied into one.
func writeVectorAt(f *os.File, bufs [][]byte, off int64) error {
	fd := int(f.Fd())
	var iov [][]byte
	for _, b := range bufs {
		if len(b) > 0 {
			iov = append(iov, b)
		}
	}
	for len(iov) > 0 {
		n, err := unix.Pwritev(fd, iov[:min(len(iov), iovMax)], off)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err
		}
		off += int64(n)
		// Drop what was written (pwritev may write less than asked).
		for n > 0 && len(iov) > 0 {
			if n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
				continue
			}
			iov[0] = iov[0][n:]
			n = 0
		}
	}
	return nil
}

// syncData flushes the file's data and the metadata needed to read it
// (its size), not its timestamps.
func syncData(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

func allocatedBytes(f *os.File) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// openDirect opens path for direct I/O (O_DIRECT: no page cache), or
// returns nil where the file system refuses it (tmpfs).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}
