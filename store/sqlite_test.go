package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

func openSQLite(t *testing.T, opts ...store.Option) *store.DB {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite", filepath.Join(t.TempDir(), "perso.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, openSQLite)
}

// TestSQLiteMaterialFile: the protected material lives in "<path>.blobs";
// a conflicting insert leaves none behind and the sweep removes it there,
// not just from the view GetProfile gives.
func TestSQLiteMaterialFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "perso.db")
	s, err := store.Open(ctx, "sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"a", "b"} {
		if _, err := s.CreateBatch(ctx, store.Batch{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutBatch(ctx, "a", storetest.Profiles("t", 0, 2, 5000)); err != nil {
		t.Fatal(err)
	}
	res, err := s.PutBatch(ctx, "b", storetest.Profiles("t", 1, 2, 5000)) // 1 is a's
	if err != nil || len(res.Conflicts) != 1 || res.Inserted != 1 {
		t.Fatalf("PutBatch(b) = %+v, %v", res, err)
	}
	eid := "89049032123451234512345678901235"
	steps := []func() error{
		func() error {
			_, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: storetest.ICCID(0), EID: eid})
			return err
		},
		func() error {
			_, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: storetest.ICCID(0), ReleaseFlag: true})
			return err
		},
		func() error { _, err := s.AuthenticateClient(ctx, storetest.ICCID(0), eid); return err },
		func() error { _, err := s.BPPDelivered(ctx, storetest.ICCID(0)); return err },
		func() error { _, err := s.InstallResult(ctx, storetest.ICCID(0), true); return err },
		func() error { _, err := s.Sweep(ctx, store.SweepPolicy{}); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}

	blobs, err := sql.Open("sqlite", "file:"+path+".blobs?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	for _, tc := range []struct {
		iccid, batch string
		want         int
	}{
		{storetest.ICCID(0), "a", 0}, // installed and swept
		{storetest.ICCID(1), "a", 1},
		{storetest.ICCID(1), "b", 0}, // refused as a conflict
		{storetest.ICCID(2), "b", 1},
	} {
		var n int
		if err := blobs.QueryRow(`SELECT COUNT(*) FROM blobs WHERE iccid = ? AND batch_id = ? AND (segments IS NOT NULL OR seg_len IS NOT NULL)`,
			tc.iccid, tc.batch).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("material of %s in batch %s: %d rows, want %d", tc.iccid, tc.batch, n, tc.want)
		}
	}
}

// TestSQLiteSweepCollectsOrphanedMaterial: material stored without its
// profile row (a PutBatch that crashed between its two commits and was
// never re-run; written here straight into the blobs file) is deleted by
// the sweep once older than OrphanAfter, and only then; material that has
// its row is kept, and each piece is examined once.
func TestSQLiteSweepCollectsOrphanedMaterial(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "perso.db")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s, err := store.Open(ctx, "sqlite", path, store.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, "a", storetest.Profiles("t", 0, 3, 2000)); err != nil {
		t.Fatal(err)
	}
	blobs, err := sql.Open("sqlite", "file:"+path+".blobs?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	orphan := func(iccid, batch string, at time.Time) {
		t.Helper()
		if _, err := blobs.Exec(`INSERT INTO blobs (iccid, batch_id, protected_ppk, segments, created_at)
			VALUES (?, ?, x'01', x'02', ?)`, iccid, batch, at.UnixMicro()); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int) {
		t.Helper()
		if err := blobs.QueryRow(`SELECT COUNT(*) FROM blobs`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	orphan(storetest.ICCID(7), "a", now)                  // crashed batch a: row never written
	orphan(storetest.ICCID(1), "gone", now)               // ICCID held by a, material of another batch
	orphan(storetest.ICCID(8), "a", now.Add(2*time.Hour)) // written after the horizon: kept for now
	tx, err := blobs.Begin()                              // a whole crashed batch: more than one page of the scan
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2500 {
		if _, err := tx.Exec(`INSERT INTO blobs (iccid, batch_id, segments, created_at) VALUES (?, 'crashed', x'02', ?)`,
			storetest.ICCID(100+i), now.UnixMicro()); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	policy := store.SweepPolicy{InstalledFor: -1, OrphanAfter: time.Hour}

	for _, step := range []struct {
		at          time.Time
		wantOrphans int
		wantLeft    int
	}{
		{now.Add(30 * time.Minute), 0, 2506}, // younger than OrphanAfter
		{now.Add(61 * time.Minute), 2502, 4}, // the first two and the crashed batch
		{now.Add(62 * time.Minute), 0, 4},    // nothing new to examine
		{now.Add(4 * time.Hour), 1, 3},       // the late one; a's three profiles keep theirs
	} {
		now = step.at
		res, err := s.Sweep(ctx, policy)
		if err != nil {
			t.Fatal(err)
		}
		if res.Orphans != step.wantOrphans || count() != step.wantLeft {
			t.Fatalf("sweep at %v: %d orphans collected, %d pieces left; want %d and %d",
				step.at, res.Orphans, count(), step.wantOrphans, step.wantLeft)
		}
	}
	for i := range 3 {
		if p, err := s.GetProfile(ctx, storetest.ICCID(i)); err != nil || len(p.Segments) == 0 {
			t.Fatalf("profile %d after the sweeps: %v, %d segment bytes", i, err, len(p.Segments))
		}
	}
	if res, err := s.Sweep(ctx, store.SweepPolicy{InstalledFor: -1, OrphanAfter: -1}); err != nil || res.Orphans != 0 {
		t.Fatalf("sweep with orphan collection disabled: %+v, %v", res, err)
	}
}

// TestSQLiteBulkRows: rows go to the inventory fifty to a statement; a
// statement that meets an existing ICCID falls back to one row at a time,
// so duplicates and conflicts are counted exactly as for single rows,
// wherever they fall among the statements of a write (groups, remainder,
// several writes of one WriteBatches), and the material of conflicts is
// not kept.
func TestSQLiteBulkRows(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	for _, id := range []string{"b1", "b2"} {
		if _, err := s.CreateBatch(ctx, store.Batch{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutBatch(ctx, "b2", storetest.Profiles("t", 230, 5, 10)); err != nil { // b2 holds 230..234
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, "b1", storetest.Profiles("t", 0, 120, 10)); err != nil { // b1 holds 0..119
		t.Fatal(err)
	}
	dup := storetest.Profiles("t", 300, 1, 10) // one ICCID twice in one statement
	tests := []struct {
		name                   string
		ws                     [][]store.Profile
		inserted, dups, nConfl []int
	}{
		{"clean groups and remainder", [][]store.Profile{storetest.Profiles("t", 120, 77, 10)}, []int{77}, []int{0}, []int{0}},
		{"duplicates in the second group and the remainder", [][]store.Profile{storetest.Profiles("t", 60, 150, 10)},
			[]int{210 - 197}, []int{197 - 60}, []int{0}},
		{"conflicts in a later write of the same transaction", [][]store.Profile{
			storetest.Profiles("t", 210, 10, 10), storetest.Profiles("t", 220, 60, 10)}, []int{10, 55}, []int{0, 0}, []int{0, 5}},
		{"one ICCID twice in one statement", [][]store.Profile{append(append(storetest.Profiles("t", 400, 48, 10), dup...), dup...)},
			[]int{49}, []int{1}, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := make([]store.BatchWrite, len(tt.ws))
			for i, ps := range tt.ws {
				ws[i] = store.BatchWrite{Profiles: ps}
			}
			res, err := s.WriteBatches(ctx, "b1", ws)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				if r.Inserted != tt.inserted[i] || r.Duplicates != tt.dups[i] || len(r.Conflicts) != tt.nConfl[i] {
					t.Errorf("write %d: inserted %d, duplicates %d, conflicts %d; want %d, %d, %d", i,
						r.Inserted, r.Duplicates, len(r.Conflicts), tt.inserted[i], tt.dups[i], tt.nConfl[i])
				}
				for _, c := range r.Conflicts {
					if c.BatchID != "b2" {
						t.Errorf("conflict %s held by %q, want b2", c.ICCID, c.BatchID)
					}
				}
			}
		})
	}
	// b2's ICCIDs kept b2's material.
	p, err := s.GetProfile(ctx, storetest.ICCID(232))
	if err != nil || p.BatchID != "b2" || len(p.Segments) == 0 {
		t.Fatalf("ICCID 232: batch %q, %d bytes of material, %v; want b2's", p.BatchID, len(p.Segments), err)
	}
	b, err := s.GetBatch(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(120 + 77 + 13 + 10 + 55 + 49); b.Profiles != want || b.Conflicts != 5 || b.Duplicates != 137+1 {
		t.Errorf("b1: %d profiles, %d conflicts, %d duplicates; want %d, 5, 138", b.Profiles, b.Conflicts, b.Duplicates, want)
	}
}

// TestSQLiteChunkRowsInPieces: a chunk write larger than a transaction's
// share commits its rows piece by piece and its counters and InTx last. A
// write whose last transaction fails (InTx, or a crash) leaves rows
// stored but uncounted; writing the chunk again counts exactly what one
// clean write counts: duplicates within the chunk and with other chunks,
// and conflicts with other batches, stay what they are, and the rows the
// first attempt stored count as inserted, once. A write that fits in one
// transaction stays all or nothing.
func TestSQLiteChunkRowsInPieces(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("boom: the job could not be completed")
	fail := func(context.Context, store.Tx) error { return errBoom }
	// Chunk 2: ICCIDs 100..349, with ICCID 5 (chunk 1's) at 20, 1002
	// (batch b2's) at 120 and 150 a second time at 230: three pieces of
	// 100 rows.
	chunk2 := storetest.Profiles("t", 100, 250, 10)
	chunk2 = slices.Insert(chunk2, 20, storetest.Profiles("t", 5, 1, 10)...)
	chunk2 = slices.Insert(chunk2, 120, storetest.Profiles("t", 1002, 1, 10)...)
	chunk2 = slices.Insert(chunk2, 230, storetest.Profiles("t", 150, 1, 10)...)
	setup := func(t *testing.T) *store.DB {
		s := openSQLite(t)
		store.SetSQLiteRowsPerTx(s, 100)
		for _, id := range []string{"b1", "b2"} {
			if _, err := s.CreateBatch(ctx, store.Batch{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.PutBatch(ctx, "b2", storetest.Profiles("t", 1000, 5, 10)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteBatch(ctx, "b1", store.BatchWrite{Profiles: storetest.Profiles("t", 0, 10, 10), ChunkDone: true, Chunk: 1}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	rows := func(t *testing.T, s *store.DB) int64 {
		t.Helper()
		c, err := s.CountByState(ctx, "b1")
		if err != nil {
			t.Fatal(err)
		}
		return c[store.StateAvailable]
	}
	for _, tc := range []struct {
		name     string
		attempts []store.BatchWrite // written before the clean write, each failing
		leftRows int64              // b1's rows after the failed attempts
	}{
		{"one clean write", nil, 10},
		{"after a failed last transaction", []store.BatchWrite{{Profiles: chunk2, ChunkDone: true, Chunk: 2, InTx: fail}}, 260},
		{"after two, the second with other pieces", []store.BatchWrite{
			{Profiles: chunk2[:150], ChunkDone: true, Chunk: 2, InTx: fail},
			{Profiles: chunk2, ChunkDone: true, Chunk: 2, InTx: fail},
		}, 260},
		{"a write in one transaction stays all or nothing", []store.BatchWrite{{Profiles: chunk2[:60], ChunkDone: true, Chunk: 2, InTx: fail}}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			for i, w := range tc.attempts {
				if i == 1 {
					store.SetSQLiteRowsPerTx(s, 50)
				}
				if _, err := s.WriteBatch(ctx, "b1", w); !errors.Is(err, errBoom) {
					t.Fatalf("attempt %d: %v, want the InTx error", i, err)
				}
			}
			b, err := s.GetBatch(ctx, "b1")
			if err != nil {
				t.Fatal(err)
			}
			if n := rows(t, s); n != tc.leftRows || b.Profiles != 10 || b.ChunksDone != 1 {
				t.Fatalf("after the failed attempts: %d rows, %d counted, %d chunks done; want %d rows, 10 counted, 1 chunk",
					n, b.Profiles, b.ChunksDone, tc.leftRows)
			}
			res, err := s.WriteBatch(ctx, "b1", store.BatchWrite{Profiles: chunk2, ChunkDone: true, Chunk: 2, Worker: "w"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Inserted != 250 || res.Duplicates != 2 || len(res.Conflicts) != 1 || res.Conflicts[0].BatchID != "b2" {
				t.Errorf("the clean write: inserted %d, duplicates %d, conflicts %v; want 250, 2, [1002 held by b2]",
					res.Inserted, res.Duplicates, res.Conflicts)
			}
			b, err = s.GetBatch(ctx, "b1")
			if err != nil {
				t.Fatal(err)
			}
			if n := rows(t, s); n != 260 || b.Profiles != 260 || b.Duplicates != 2 || b.Conflicts != 1 || b.ChunksDone != 2 ||
				b.ICCIDFirst != storetest.ICCID(0) || b.ICCIDLast != storetest.ICCID(349) {
				t.Errorf("b1 after the clean write: %d rows; counters %d profiles, %d duplicates, %d conflicts, %d chunks, ICCIDs %s…%s",
					n, b.Profiles, b.Duplicates, b.Conflicts, b.ChunksDone, b.ICCIDFirst, b.ICCIDLast)
			}
			ws, err := s.BatchWorkers(ctx, "b1")
			if err != nil || len(ws) != 1 || ws[0].Profiles != 250 || ws[0].Chunks != 1 {
				t.Errorf("worker tally %+v, %v; want w with 1 chunk and 250 profiles", ws, err)
			}
			// The conflict's material is b2's, whole.
			if p, err := s.GetProfile(ctx, storetest.ICCID(1002)); err != nil || p.BatchID != "b2" || len(p.Segments) != 10 {
				t.Errorf("ICCID 1002: batch %q, %d bytes of material, %v; want b2's", p.BatchID, len(p.Segments), err)
			}
		})
	}
}

// TestSQLiteSegmentFile: the segments go to "<path>.segments", not into
// the blobs file; they read back after a reopen, beside material written
// inline before the segment file existed (a legacy row); the material of
// a conflict and of a swept profile gives its space back (the file's
// allocated size shrinks), and what is left still reads back.
func TestSQLiteSegmentFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "perso.db")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	open := func() *store.DB {
		t.Helper()
		s, err := store.Open(ctx, "sqlite", path, store.WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const segSize = 64 << 10 // whole file-system blocks, so freed space shows
	s := open()
	for _, id := range []string{"a", "b"} {
		if _, err := s.CreateBatch(ctx, store.Batch{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	ps := storetest.Profiles("t", 0, 4, segSize)
	for i := range ps {
		ps[i].Segments = append([]byte(nil), ps[i].Segments...)
		ps[i].Segments[0] = byte(i + 1) // tell them apart
	}
	if _, err := s.PutBatch(ctx, "a", ps); err != nil {
		t.Fatal(err)
	}
	before, _, err := s.Footprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.PutBatch(ctx, "b", storetest.Profiles("t", 3, 2, segSize)) // 3 is a's
	if err != nil || len(res.Conflicts) != 1 || res.Inserted != 1 {
		t.Fatalf("PutBatch(b) = %+v, %v", res, err)
	}
	afterConflict, _, err := s.Footprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b's one stored profile added a segment; the conflict's was freed.
	if grew := afterConflict - before; grew >= 2*segSize {
		t.Errorf("footprint grew by %d bytes for one stored %d-byte segment: the conflict's space was not freed", grew, segSize)
	}
	s.Close()

	blobs, err := sql.Open("sqlite", "file:"+path+".blobs?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer blobs.Close()
	var inline int
	if err := blobs.QueryRow(`SELECT COUNT(*) FROM blobs WHERE segments IS NOT NULL`).Scan(&inline); err != nil || inline != 0 {
		t.Fatalf("%d rows carry their segments inline (%v), want 0", inline, err)
	}
	if _, err := blobs.Exec(`UPDATE blobs SET segments = x'0badc0de', seg_off = NULL, seg_len = NULL
		WHERE iccid = ? AND batch_id = 'b'`, storetest.ICCID(4)); err != nil { // as written before the segment file
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	for i := range ps {
		p, err := s.GetProfile(ctx, ps[i].ICCID)
		if err != nil || string(p.Segments) != string(ps[i].Segments) || string(p.ProtectedPPK) != string(ps[i].ProtectedPPK) {
			t.Fatalf("profile %d after reopen: %v, %d segment bytes (first %v), want %d (first %d)",
				i, err, len(p.Segments), p.Segments[:min(1, len(p.Segments))], segSize, i+1)
		}
	}
	if p, err := s.GetProfile(ctx, storetest.ICCID(4)); err != nil || string(p.Segments) != "\x0b\xad\xc0\xde" {
		t.Fatalf("legacy inline material: %v, %x", err, p.Segments)
	}
	now = now.Add(2 * time.Hour) // every profile expires
	if res, err := s.Sweep(ctx, store.SweepPolicy{InstalledFor: -1, MaxAge: time.Hour, OrphanAfter: -1}); err != nil || res.Expired != 5 {
		t.Fatalf("sweep: %+v, %v; want 5 expired", res, err)
	}
	swept, _, err := s.Footprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if freed := afterConflict - swept; freed < 4*segSize {
		t.Errorf("sweeping 4 profiles of %d segment bytes from the segment file freed %d bytes", segSize, freed)
	}
}
