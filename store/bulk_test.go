package store_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// TestSQLiteBulkWriteInSteps: the engine's three steps on SQLite
// (WriteMaterial, WriteBatchesUnsynced, Sync) store what WriteBatches
// stores: the rows read back with their material, the counters add up, a
// conflicting ICCID is refused and its material removed, and a write that
// had its material written ahead is marked so.
func TestSQLiteBulkWriteInSteps(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "perso.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"a", "b"} {
		if _, err := s.CreateBatch(ctx, store.Batch{ID: id, Chunks: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutBatch(ctx, "a", storetest.Profiles("t", 5, 1, 100)); err != nil { // 5 is a's
		t.Fatal(err)
	}
	ws := []store.BatchWrite{
		{Profiles: storetest.Profiles("t", 0, 4, 3000), Rejected: 1, ChunkDone: true, Worker: "w"},
		{Profiles: storetest.Profiles("t", 4, 3, 5000), ChunkDone: true, Worker: "w"},
	}
	if err := s.WriteMaterial(ctx, "b", ws); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		if !w.MaterialWritten() {
			t.Fatalf("write %d: material not marked written", i)
		}
	}
	want := map[string][]byte{}
	for _, w := range ws {
		for _, p := range w.Profiles {
			want[p.ICCID] = bytes.Clone(p.Segments)
		}
	}
	// The caller may reuse the segments' memory once the material is written.
	for _, w := range ws {
		for i := range w.Profiles {
			clear(w.Profiles[i].Segments)
		}
	}
	res, err := s.WriteBatchesUnsynced(ctx, "b", ws)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if res[0].Inserted != 4 || res[1].Inserted != 2 || len(res[1].Conflicts) != 1 || res[1].Conflicts[0].ICCID != storetest.ICCID(5) {
		t.Fatalf("results %+v", res)
	}
	b, err := s.GetBatch(ctx, "b")
	if err != nil || b.Profiles != 6 || b.Rejected != 1 || b.Conflicts != 1 || b.ChunksDone != 2 {
		t.Fatalf("batch b: %+v, %v", b, err)
	}
	for iccid, segs := range want {
		p, err := s.GetProfile(ctx, iccid)
		if iccid == storetest.ICCID(5) {
			if err != nil || p.BatchID != "a" || len(p.Segments) != 100 {
				t.Fatalf("the conflicting ICCID: %v, batch %q, %d segment bytes; want a's 100", err, p.BatchID, len(p.Segments))
			}
			continue
		}
		if err != nil || p.BatchID != "b" || !bytes.Equal(p.Segments, segs) {
			t.Fatalf("%s: %v, batch %q, %d segment bytes, want %d as written", iccid, err, p.BatchID, len(p.Segments), len(segs))
		}
	}
}
