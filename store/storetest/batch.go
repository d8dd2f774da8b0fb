package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
)

func testBatches(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	in := store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t1", KeyBlob: []byte{1, 2, 3}, KEKLabel: "kek-1", Chunks: 2}
	got := must(s.CreateBatch(ctx, in))(t)
	if got.ID != in.ID || !bytes.Equal(got.KeyBlob, in.KeyBlob) || got.Chunks != 2 || got.CreatedAt.IsZero() {
		t.Fatalf("CreateBatch = %+v", got)
	}
	again := must(s.CreateBatch(ctx, in))(t)
	if !again.CreatedAt.Equal(got.CreatedAt) {
		t.Errorf("re-created batch: CreatedAt %v, want the stored %v", again.CreatedAt, got.CreatedAt)
	}
	stored := must(s.GetBatch(ctx, "b1"))(t)
	if stored.KEKLabel != "kek-1" || stored.TemplateID != "t1" || !bytes.Equal(stored.KeyBlob, in.KeyBlob) {
		t.Errorf("GetBatch = %+v", stored)
	}
	for _, tc := range []struct {
		name string
		b    store.Batch
		want error
	}{
		{"other key blob", store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t1", KeyBlob: []byte{9}, KEKLabel: "kek-1", Chunks: 2}, store.ErrConflict},
		{"other chunk count", store.Batch{ID: "b1", ProfileType: ptype, TemplateID: "t1", KeyBlob: []byte{1, 2, 3}, KEKLabel: "kek-1", Chunks: 3}, store.ErrConflict},
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

func testChunks(t *testing.T, open Opener) {
	ctx := context.Background()
	clock := NewClock()
	s := open(t, store.WithClock(clock.Now))
	must(s.CreateBatch(ctx, store.Batch{ID: "b1", Chunks: 3}))(t)
	must(s.CreateBatch(ctx, store.Batch{ID: "b0"}))(t)

	c0 := must(s.ClaimChunk(ctx, "b1", "w1", time.Minute))(t)
	c1 := must(s.ClaimChunk(ctx, "b1", "w2", time.Minute))(t)
	c2 := must(s.ClaimChunk(ctx, "b1", "w1", time.Minute))(t)
	if c0.Index != 0 || c1.Index != 1 || c2.Index != 2 || c0.Worker != "w1" || c1.Claims != 1 ||
		!c0.LeaseUntil.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("claims: %+v %+v %+v", c0, c1, c2)
	}
	_, err := s.ClaimChunk(ctx, "b1", "w3", time.Minute)
	wantErr(t, err, store.ErrNoChunkAvailable, "")

	if err := s.CompleteChunk(ctx, c0); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteChunk(ctx, c0); err != nil {
		t.Fatalf("completing twice: %v", err)
	}
	// w2 dies: its lease runs out and w3 takes chunk 1 over.
	clock.Advance(2 * time.Minute)
	c1b := must(s.ClaimChunk(ctx, "b1", "w3", time.Minute))(t)
	if c1b.Index != 1 || c1b.Claims != 2 {
		t.Fatalf("re-claim after lease expiry: %+v, want chunk 1, second claim", c1b)
	}
	wantErr(t, s.CompleteChunk(ctx, c1), store.ErrLeaseLost, "")
	if err := s.CompleteChunk(ctx, c1b); err != nil {
		t.Fatal(err)
	}
	c2b := must(s.ClaimChunk(ctx, "b1", "w3", time.Minute))(t) // chunk 2's lease expired too
	if c2b.Index != 2 {
		t.Fatalf("claim = %+v, want chunk 2", c2b)
	}
	if err := s.CompleteChunk(ctx, c2b); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	_, err = s.ClaimChunk(ctx, "b1", "w1", time.Minute)
	wantErr(t, err, store.ErrNoChunkAvailable, "")
	if b := must(s.GetBatch(ctx, "b1"))(t); b.ChunksDone != 3 {
		t.Errorf("ChunksDone = %d, want 3", b.ChunksDone)
	}

	for _, tc := range []struct {
		name          string
		batch, worker string
		lease         time.Duration
		want          error
	}{
		{"batch without chunks", "b0", "w1", time.Minute, store.ErrNoChunkAvailable},
		{"unknown batch", "nope", "w1", time.Minute, store.ErrNotFound},
		{"no worker", "b1", "", time.Minute, store.ErrInvalid},
		{"no lease", "b1", "w1", 0, store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ClaimChunk(ctx, tc.batch, tc.worker, tc.lease)
			wantErr(t, err, tc.want, "")
		})
	}
	wantErr(t, s.CompleteChunk(ctx, store.Chunk{BatchID: "b1", Index: 7, Worker: "w1"}), store.ErrNotFound, "")
}
