package store

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// segmentFile is the append-only file "<path>.segments" that holds the
// protected `86` segments of the SQLite backend; the blobs table keeps
// only each profile's offset and length (and its small wrapped PPK).
//
// Why not SQLite pages: writing 12 KB of already-encrypted bytes per
// profile through the B-tree cost about half the CPU of a bulk load
// (allocating and zeroing each new 64 KiB page, copying cells, pwrite per
// page). Here a group of chunks is one pwritev of the caller's own
// buffers, then one fdatasync.
//
// Protocol (crash-proof without a journal of its own): appends happen only
// inside a write transaction of the blobs file, whose SQLite lock
// serialises writers across processes, at the file's current end; the
// bytes are fdatasync'd before the index rows that name them commit. A
// crash after the append and before that commit leaves unreferenced bytes
// at the tail (protected material, never in the clear), which the next
// append simply follows. Deleting material deletes the index row first,
// then punches a hole over its bytes (the space returns to the file
// system; a crash in between leaves unreferenced bytes, as above). Bytes
// are never rewritten in place, so a reader holding an offset from a
// committed row always reads what was written there.
type segmentFile struct {
	f *os.File
}

func openSegmentFile(path string) (*segmentFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open the segment file: %w", err)
	}
	return &segmentFile{f: f}, nil
}

// appendSync writes the non-empty slices of bufs back to back at the end
// of the file and flushes them to disk. It returns the offset of the
// first byte. The caller holds the blobs write lock.
func (s *segmentFile) appendSync(bufs [][]byte) (int64, error) {
	fi, err := s.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("store: segment file: %w", err)
	}
	off := fi.Size()
	if err := writeVectorAt(s.f, bufs, off); err != nil {
		return 0, fmt.Errorf("store: append to the segment file: %w", err)
	}
	if err := syncData(s.f); err != nil {
		return 0, fmt.Errorf("store: flush the segment file: %w", err)
	}
	return off, nil
}

// read returns n bytes at off.
func (s *segmentFile) read(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("store: segment file: bad extent (%d, %d)", off, n)
	}
	b := make([]byte, n)
	if _, err := s.f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("store: segment file is shorter than a committed extent (%d+%d): %w", off, n, err)
		}
		return nil, fmt.Errorf("store: read the segment file: %w", err)
	}
	return b, nil
}

// release gives the extents' space back; their rows are already deleted.
func (s *segmentFile) release(extents [][2]int64) error {
	for _, e := range extents {
		if e[1] <= 0 {
			continue
		}
		if err := punchHole(s.f, e[0], e[1]); err != nil {
			return fmt.Errorf("store: free segment file space: %w", err)
		}
	}
	return nil
}

// allocated is the disk space the file occupies (holes excluded).
func (s *segmentFile) allocated() (int64, error) {
	return allocatedBytes(s.f)
}

func (s *segmentFile) close() error { return s.f.Close() }
