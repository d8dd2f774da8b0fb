//go:build !linux

package store

import "os"

// writeVectorAt writes bufs back to back at off (one copy into a single
// buffer: portable, and not the platform the throughput targets are for).
func writeVectorAt(f *os.File, bufs [][]byte, off int64) error {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	all := make([]byte, 0, n)
	for _, b := range bufs {
		all = append(all, b...)
	}
	_, err := f.WriteAt(all, off)
	return err
}

func syncData(f *os.File) error { return f.Sync() }

// punchHole overwrites the extent with zeros: the material is gone, the
// space is not returned (no portable hole punching).
func punchHole(f *os.File, off, n int64) error {
	_, err := f.WriteAt(make([]byte, n), off)
	return err
}

func allocatedBytes(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// openDirect: direct I/O is used on Linux only.
func openDirect(string) *os.File { return nil }
