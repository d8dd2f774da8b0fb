package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"
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
//
// Appends bypass the page cache (O_DIRECT where the file system has it):
// the kernel's copy of every segment into the page cache cost about 20 µs
// of CPU per profile (a fifth of a bulk load's), and at a million profiles
// the dirty pages throttled the writer in balance_dirty_pages; a direct
// write is a DMA from the caller's memory. Direct I/O wants file offsets,
// lengths and memory aligned to the disk's blocks (directAlign), so an
// append starts at a block boundary and ends padded to one (zeros, which
// no extent names: a few KiB per append, not per profile). A run of
// buffers that are adjacent in memory and aligned (the engine protects a
// chunk into one arena) goes to the kernel as it is; anything else, and
// each run's last partial block, is copied into an aligned bounce buffer.
type segmentFile struct {
	f      *os.File // reads, hole punching, size
	direct *os.File // the same file opened for direct I/O; nil: appends go through f
	bounce []byte   // reused bounce memory (small: see appendSync)
}

// directAlign is the alignment of direct appends: the common file-system
// block and a multiple of every disk's logical block (512 or 4096).
const directAlign = 4096

// directMin is the shortest aligned run written from the caller's memory;
// shorter runs are copied (a copy is cheaper than an extra padded block).
const directMin = 64 << 10

// maxBounceKept bounds the bounce memory kept between appends: the
// engine's appends need a few blocks; a PutBatch of separately allocated
// profiles copies them all once, and that memory is not kept.
const maxBounceKept = 1 << 20

func openSegmentFile(path string) (*segmentFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open the segment file: %w", err)
	}
	// nil where direct I/O is refused (tmpfs, other platforms): appends
	// then go through the page cache, as before.
	return &segmentFile{f: f, direct: openDirect(path)}, nil
}

// prepare lays bufs out at the end of the file, in order: offs[i] is
// where bufs[i] will start (meaningless for an empty one). write puts them
// there and flushes them to disk; it may run while the caller does other
// work (inserting the rows that name the extents, which commit only after
// write returned). The caller holds the blobs write lock from prepare
// until write has returned, and calls write once.
func (s *segmentFile) prepare(bufs [][]byte) (offs []int64, write func() error, err error) {
	fi, err := s.f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("store: segment file: %w", err)
	}
	end := fi.Size()
	if s.direct != nil {
		offs, iov, start, done := s.layoutDirect(bufs, end)
		return offs, func() error {
			defer done()
			err := writeVectorAt(s.direct, iov, start)
			if errors.Is(err, syscall.EINVAL) {
				// The file system took O_DIRECT at open but refuses these
				// writes (another alignment): the same bytes at the same
				// offsets through the page cache, and so from now on.
				s.direct.Close()
				s.direct = nil
				err = writeVectorAt(s.f, iov, start)
			}
			if err != nil {
				return fmt.Errorf("store: append to the segment file: %w", err)
			}
			return s.sync()
		}, nil
	}
	offs = make([]int64, len(bufs))
	off := end
	for i, b := range bufs {
		offs[i] = off
		off += int64(len(b))
	}
	return offs, func() error {
		if err := writeVectorAt(s.f, bufs, end); err != nil {
			return fmt.Errorf("store: append to the segment file: %w", err)
		}
		return s.sync()
	}, nil
}

// sync flushes what was written (and the file's size) to disk.
func (s *segmentFile) sync() error {
	if err := syncData(s.f); err != nil {
		return fmt.Errorf("store: flush the segment file: %w", err)
	}
	return nil
}

// appendSync is prepare then write.
func (s *segmentFile) appendSync(bufs [][]byte) ([]int64, error) {
	offs, write, err := s.prepare(bufs)
	if err != nil {
		return nil, err
	}
	return offs, write()
}

// layoutDirect lays bufs out from end rounded up to directAlign (see
// segmentFile): the offsets, the vector of one direct write at start, and
// done, which wipes and releases the bounce memory once it is written.
func (s *segmentFile) layoutDirect(bufs [][]byte, end int64) (offs []int64, iov [][]byte, start int64, done func()) {
	start = (end + directAlign - 1) &^ (directAlign - 1)
	pos := start
	offs = make([]int64, len(bufs))
	// Pass 1: cut bufs into runs adjacent in memory, decide what is written
	// from the caller's memory and what is copied, and size the bounce
	// memory.
	type piece struct {
		direct []byte // written as it is
		copied []byte // copied into the bounce memory, after direct
		pad    bool   // the bounce block ends here: pad it to a block
	}
	var pieces []piece
	pending := 0 // bytes in the current bounce block
	need := 0
	for i := 0; i < len(bufs); {
		j, run := runOf(bufs[i:])
		n := len(run)
		for k, at := i, pos; k < i+j; k++ {
			offs[k] = at
			at += int64(len(bufs[k]))
		}
		i += j
		if n == 0 {
			continue
		}
		if pending == 0 && directRun(run) {
			body := n &^ (directAlign - 1)
			pieces = append(pieces, piece{direct: run[:body], copied: run[body:]})
			pending = n - body
		} else {
			pieces = append(pieces, piece{copied: run})
			pending += n
		}
		pos += int64(n)
		if pending == 0 {
			continue
		}
		// A block of bounce memory ends before the next direct run (the
		// caller's memory cannot follow unaligned bytes) and at the end.
		if _, next := runOf(bufs[i:]); next == nil || directRun(next) {
			pad := (pending + directAlign - 1) &^ (directAlign - 1)
			pieces[len(pieces)-1].pad = true
			need += pad
			pos += int64(pad - pending)
			pending = 0
		}
	}
	if need > cap(s.bounce) {
		s.bounce = alignedBytes(need)
	}
	bounce := s.bounce[:need]
	done = func() {
		clear(bounce) // protected material, but no copy of it outlives the write
		if cap(s.bounce) > maxBounceKept {
			s.bounce = nil
		}
	}
	// Pass 2: fill the bounce memory and build the vector.
	used, blockStart := 0, 0
	for _, p := range pieces {
		if len(p.direct) > 0 {
			iov = append(iov, p.direct)
		}
		used += copy(bounce[used:], p.copied)
		if p.pad {
			next := (used + directAlign - 1) &^ (directAlign - 1)
			clear(bounce[used:next])
			used = next
			iov = append(iov, bounce[blockStart:used])
			blockStart = used
		}
	}
	return offs, iov, start, done
}

// runOf returns the longest prefix bufs[:j] of buffers that follow each
// other in one array (empty ones anywhere in it), and the memory they
// cover. A buffer continues the run when it starts where the run ends
// within the capacity of the run's first buffer: the engine passes the
// profiles of a chunk as slices of one arena, with the arena's capacity
// (memory merely adjacent to another allocation is not joined).
func runOf(bufs [][]byte) (j int, run []byte) {
	var full []byte // the first non-empty buffer up to its capacity
	n := 0
	for ; j < len(bufs); j++ {
		b := bufs[j]
		if len(b) == 0 {
			continue
		}
		if full == nil {
			full, n = b[:cap(b)], len(b)
			continue
		}
		if n+len(b) > len(full) || &full[n] != &b[0] {
			break
		}
		n += len(b)
	}
	if full == nil {
		return j, nil
	}
	return j, full[:n]
}

// directRun reports whether a run is written from the caller's memory:
// long enough and aligned.
func directRun(run []byte) bool {
	return len(run)&^(directAlign-1) >= directMin && aligned(run)
}

func aligned(b []byte) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign == 0
}

// alignedBytes returns n bytes whose first is directAlign-aligned.
func alignedBytes(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := int((directAlign - uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign) % directAlign)
	return b[skip : skip+n : skip+n]
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

func (s *segmentFile) close() error {
	if s.direct != nil {
		s.direct.Close()
	}
	return s.f.Close()
}
