package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
)

func testBatches(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	in := store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t1", KeyBlob: []byte{1, 2, 3}, KEKLabel: "kek-1",
		InputSHA256: "ab12", Records: 10, Chunks: 2, Rejected: 1}
	got := must(s.CreateBatch(ctx, in))(t)
	if got.ID != in.ID || !bytes.Equal(got.KeyBlob, in.KeyBlob) || got.Chunks != 2 || got.Records != 10 ||
		got.Rejected != 1 || got.InputSHA256 != "ab12" || got.CreatedAt.IsZero() {
		t.Fatalf("CreateBatch = %+v", got)
	}
	again := must(s.CreateBatch(ctx, in))(t)
	if !again.CreatedAt.Equal(got.CreatedAt) {
		t.Errorf("re-created batch: CreatedAt %v, want the stored %v", again.CreatedAt, got.CreatedAt)
	}
	stored := must(s.GetBatch(ctx, "b1"))(t)
	if stored.KEKLabel != "kek-1" || stored.TemplateID != "t1" || !bytes.Equal(stored.KeyBlob, in.KeyBlob) ||
		stored.InputSHA256 != "ab12" || stored.Records != 10 || stored.Rejected != 1 || stored.Chunks != 2 {
		t.Errorf("GetBatch = %+v", stored)
	}
	for _, tc := range []struct {
		name string
		b    store.Batch
		want error
	}{
		{"other key blob", store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t1", KeyBlob: []byte{9}, KEKLabel: "kek-1", InputSHA256: "ab12", Records: 10, Chunks: 2}, store.ErrConflict},
		{"other chunk count", store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t1", KeyBlob: []byte{1, 2, 3}, KEKLabel: "kek-1", InputSHA256: "ab12", Records: 10, Chunks: 3}, store.ErrConflict},
		{"other input", store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t1", KeyBlob: []byte{1, 2, 3}, KEKLabel: "kek-1", InputSHA256: "cd34", Records: 10, Chunks: 2}, store.ErrConflict},
		{"other template", store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t2", KeyBlob: []byte{1, 2, 3}, KEKLabel: "kek-1", InputSHA256: "ab12", Records: 10, Chunks: 2}, store.ErrConflict},
		{"no id", store.Batch{}, store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.CreateBatch(ctx, tc.b)
			wantErr(t, err, tc.want, "")
		})
	}
	_, err := s.GetBatch(ctx, "nope")
	wantErr(t, err, store.ErrNotFound, "")
}

func testPutBatch(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	must(s.CreateBatch(ctx, store.Batch{ID: "b1", KeyBlob: []byte("k1")}))(t)
	must(s.CreateBatch(ctx, store.Batch{ID: "b2", KeyBlob: []byte("k2")}))(t)

	ps := Profiles(ptype, 0, 10, 300)
	ps[3].Metadata = store.Metadata{ServiceProviderName: "SP", ProfileName: "PN", ProfileClass: 1, IconType: 1,
		Icon: []byte{0x89, 'P', 'N', 'G'}, DER: []byte{0x91, 0x01, 0x02}}
	res := must(s.PutBatch(ctx, "b1", ps))(t)
	if res.Inserted != 10 || res.Duplicates != 0 || len(res.Conflicts) != 0 {
		t.Fatalf("first insert: %+v, want 10 inserted", res)
	}

	got := must(s.GetProfile(ctx, ps[3].ICCID))(t)
	want := ps[3]
	if got.ICCID != want.ICCID || got.IMSI != want.IMSI || got.ProfileType != want.ProfileType ||
		got.TemplateID != want.TemplateID || got.BatchID != "b1" || got.PPKKeyRef != want.PPKKeyRef ||
		!bytes.Equal(got.Segments, want.Segments) || !bytes.Equal(got.ProtectedPPK, want.ProtectedPPK) ||
		got.State != store.StateAvailable || got.EID != "" || got.MatchingID != "" || got.CreatedAt.IsZero() {
		t.Fatalf("GetProfile = %+v\nwant %+v", got, want)
	}
	m := got.Metadata
	if m.ServiceProviderName != "SP" || m.ProfileName != "PN" || m.ProfileClass != 1 || m.IconType != 1 ||
		!bytes.Equal(m.Icon, want.Metadata.Icon) || !bytes.Equal(m.DER, want.Metadata.DER) {
		t.Fatalf("metadata = %+v, want %+v", m, want.Metadata)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt %v not in UTC", got.CreatedAt)
	}

	// Re-inserting (a re-run after a crash) is a no-op, even with other
	// content; under another batch the ICCIDs are conflicts.
	changed := Profiles(ptype, 5, 10, 10) // 5..9 exist, 10..14 new
	res = must(s.PutBatch(ctx, "b1", changed))(t)
	if res.Inserted != 5 || res.Duplicates != 5 || len(res.Conflicts) != 0 {
		t.Fatalf("re-insert: %+v, want 5 inserted, 5 duplicates", res)
	}
	if p := must(s.GetProfile(ctx, ICCID(5)))(t); len(p.Segments) != 300 {
		t.Errorf("a duplicate overwrote the stored profile: %d bytes of segments", len(p.Segments))
	}
	res = must(s.PutBatch(ctx, "b2", Profiles(ptype, 13, 4, 10)))(t) // 13, 14 taken by b1; 15, 16 new
	if res.Inserted != 2 || res.Duplicates != 0 || len(res.Conflicts) != 2 ||
		res.Conflicts[0] != (store.Conflict{ICCID: ICCID(13), BatchID: "b1"}) ||
		res.Conflicts[1] != (store.Conflict{ICCID: ICCID(14), BatchID: "b1"}) {
		t.Fatalf("insert into b2: %+v, want 2 inserted and conflicts 13, 14 held by b1", res)
	}
	if p := must(s.GetProfile(ctx, ICCID(13)))(t); p.BatchID != "b1" {
		t.Errorf("conflicting ICCID moved to batch %s", p.BatchID)
	}

	b1 := must(s.GetBatch(ctx, "b1"))(t)
	b2 := must(s.GetBatch(ctx, "b2"))(t)
	if b1.Profiles != 15 || b1.Duplicates != 5 || b1.Conflicts != 0 || b2.Profiles != 2 || b2.Conflicts != 2 {
		t.Errorf("counters: b1 %d/%d/%d, b2 %d/%d/%d; want 15/5/0 and 2/0/2",
			b1.Profiles, b1.Duplicates, b1.Conflicts, b2.Profiles, b2.Duplicates, b2.Conflicts)
	}
	counts := must(s.CountByState(ctx, "b1"))(t)
	if counts[store.StateAvailable] != 15 || len(counts) != 1 {
		t.Errorf("CountByState(b1) = %v", counts)
	}
	if all := must(s.CountByState(ctx, ""))(t); all[store.StateAvailable] != 17 {
		t.Errorf("CountByState() = %v, want 17 Available", all)
	}

	for _, tc := range []struct {
		name  string
		batch string
		ps    []store.Profile
		want  error
	}{
		{"unknown batch", "nope", Profiles(ptype, 100, 1, 1), store.ErrNotFound},
		{"unknown batch, no profiles", "nope", nil, store.ErrNotFound},
		{"profile without ICCID", "b1", []store.Profile{{IMSI: "1"}}, store.ErrInvalid},
		{"profile of another batch", "b1", []store.Profile{{ICCID: ICCID(200), BatchID: "b2"}}, store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PutBatch(ctx, tc.batch, tc.ps)
			wantErr(t, err, tc.want, "")
		})
	}
	if _, err := s.GetProfile(ctx, ICCID(100)); err == nil {
		t.Error("a refused PutBatch stored a profile")
	}
}

// testWriteBatch: a write's counters, worker tally and ICCID range, and
// InTx: its error rolls the profiles and counters back, its statements
// commit with them.
func testWriteBatch(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	must(s.CreateBatch(ctx, store.Batch{ID: "b1", Records: 30, Chunks: 3, Rejected: 2}))(t)
	must(s.CreateBatch(ctx, store.Batch{ID: "b2"}))(t)
	must(s.PutBatch(ctx, "b2", Profiles(ptype, 25, 1, 10)))(t)

	boom := errors.New("job lost")
	_, err := s.WriteBatch(ctx, "b1", store.BatchWrite{Profiles: Profiles(ptype, 0, 10, 10), Rejected: 1,
		ChunkDone: true, Worker: "w1", InTx: func(ctx context.Context, tx store.Tx) error {
			if tx.SQL() == nil && tx.Pgx() == nil {
				t.Error("InTx got no transaction")
			}
			return boom
		}})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteBatch with a failing InTx = %v, want its error", err)
	}
	if _, err := s.GetProfile(ctx, ICCID(0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rolled-back write stored a profile: %v", err)
	}
	if b := must(s.GetBatch(ctx, "b1"))(t); b.Profiles != 0 || b.Rejected != 2 || b.ChunksDone != 0 {
		t.Fatalf("a rolled-back write moved the counters: %+v", b)
	}

	calls := 0
	inTx := func(ctx context.Context, tx store.Tx) error { calls++; return nil }
	for _, w := range []store.BatchWrite{
		{Profiles: Profiles(ptype, 10, 9, 10), Rejected: 1, ChunkDone: true, Worker: "w1", InTx: inTx},
		{Profiles: Profiles(ptype, 0, 10, 10), ChunkDone: true, Worker: "w2", InTx: inTx},
		{Profiles: Profiles(ptype, 20, 6, 10), Rejected: 3, ChunkDone: true, Worker: "w1", InTx: inTx}, // 25 is b2's
	} {
		must(s.WriteBatch(ctx, "b1", w))(t)
	}
	if calls != 3 {
		t.Errorf("InTx ran %d times, want 3", calls)
	}
	b := must(s.GetBatch(ctx, "b1"))(t)
	if b.Profiles != 24 || b.Conflicts != 1 || b.Rejected != 6 || b.ChunksDone != 3 ||
		b.ICCIDFirst != ICCID(0) || b.ICCIDLast != ICCID(24) {
		t.Errorf("batch = %+v; want 24 profiles, 1 conflict, 6 rejected, 3 chunks, ICCIDs %s..%s", b, ICCID(0), ICCID(24))
	}
	ws := must(s.BatchWorkers(ctx, "b1"))(t)
	want := []store.WorkerTally{{Worker: "w1", Chunks: 2, Profiles: 14}, {Worker: "w2", Chunks: 1, Profiles: 10}}
	if len(ws) != 2 || ws[0] != want[0] || ws[1] != want[1] {
		t.Errorf("BatchWorkers = %+v, want %+v", ws, want)
	}
	all := must(s.ListBatches(ctx))(t)
	if len(all) != 2 {
		t.Errorf("ListBatches = %d batches, want 2", len(all))
	}
	if _, err := s.BatchWorkers(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("BatchWorkers(unknown) = %v, want ErrNotFound", err)
	}
	bytes, n, err := s.Footprint(ctx)
	if err != nil || n != 25 || bytes < 25*10 {
		t.Errorf("Footprint = %d bytes, %d profiles, %v; want 25 profiles", bytes, n, err)
	}
}
