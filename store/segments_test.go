package store

import (
	"bytes"
	"crypto/rand"
	"path/filepath"
	"testing"
)

// TestSegmentAppend: appends of every shape (one aligned arena cut into
// profiles with empty ones between, separately allocated buffers, an
// unaligned arena, an append after one through the page cache that left an
// unaligned end) read back at the offsets appendSync returns, no two
// extents overlap, and direct appends leave the file's end on a block.
func TestSegmentAppend(t *testing.T) {
	for _, direct := range []bool{true, false} {
		name := map[bool]string{true: "direct", false: "page-cache"}[direct]
		t.Run(name, func(t *testing.T) {
			s, err := openSegmentFile(filepath.Join(t.TempDir(), "x.segments"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			if direct && s.direct == nil {
				t.Skip("the temporary directory's file system refuses O_DIRECT")
			}
			if !direct && s.direct != nil {
				s.direct.Close()
				s.direct = nil
			}
			random := func(n int) []byte {
				b := make([]byte, n)
				rand.Read(b)
				return b
			}
			arena := alignedBytes(40 * 12345)
			rand.Read(arena)
			var chunk [][]byte // profiles of one arena, as the engine protects them
			for i, at := 0, 0; at+12345 <= len(arena); i++ {
				if i%7 == 3 {
					chunk = append(chunk, arena[at:at]) // a refused record
					continue
				}
				chunk = append(chunk, arena[at:at+12345]) // the arena's capacity shows they are one array
				at += 12345
			}
			unaligned := random(200_001)[1:]
			var written [][]byte
			var extents [][2]int64
			appendAll := func(bufs [][]byte) {
				t.Helper()
				offs, err := s.appendSync(bufs)
				if err != nil {
					t.Fatal(err)
				}
				if len(offs) != len(bufs) {
					t.Fatalf("%d offsets for %d buffers", len(offs), len(bufs))
				}
				for i, b := range bufs {
					if len(b) == 0 {
						continue
					}
					written = append(written, bytes.Clone(b))
					extents = append(extents, [2]int64{offs[i], int64(len(b))})
				}
				if fi, _ := s.f.Stat(); s.direct != nil && fi.Size()%directAlign != 0 {
					t.Fatalf("a direct append left the end at %d, not on a block", fi.Size())
				}
			}
			appendAll([][]byte{random(100)}) // a short first append
			if direct {
				// An end left unaligned by an append through the page cache
				// (a store written before direct appends).
				if err := writeVectorAt(s.f, [][]byte{random(77)}, 100); err != nil {
					t.Fatal(err)
				}
			}
			appendAll(chunk)
			appendAll(append(append([][]byte{random(5000), random(3)}, chunk[:9]...), unaligned, random(1), nil))
			appendAll([][]byte{unaligned[:70000], chunk[10], chunk[11], random(4096)})
			for i, e := range extents {
				got, err := s.read(e[0], e[1])
				if err != nil || !bytes.Equal(got, written[i]) {
					t.Fatalf("extent %d (%d+%d) reads back wrong: %v", i, e[0], e[1], err)
				}
				for j := range i {
					f := extents[j]
					if e[0] < f[0]+f[1] && f[0] < e[0]+e[1] {
						t.Fatalf("extents %d (%d+%d) and %d (%d+%d) overlap", i, e[0], e[1], j, f[0], f[1])
					}
				}
			}
		})
	}
}
