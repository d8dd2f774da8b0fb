package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

func openPG(t *testing.T, opts ...store.Option) *store.DB {
	t.Helper()
	s, err := store.Open(context.Background(), "postgres", testenv.PostgresSchemaDSN(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, openPG)
}

// TestPostgresTwoWritersOverlappingChunks: two workers (two pools) write
// the same chunk of one batch at the same time, one of them as the second
// write of a group (a rescued chunk written by its old and its new owner).
// The first transaction is held after its first write until the second is
// seen waiting for a lock, so the interleaving that can deadlock (each
// holding what the other needs: the ICCIDs of chunk B, the batch row) is
// the one that runs. Both must succeed, the chunk stored once, the
// counters equal to the rows.
func TestPostgresTwoWritersOverlappingChunks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := testenv.PostgresSchemaDSN(t)
	open := func() *store.DB {
		s, err := store.Open(ctx, "postgres", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	w1, w2 := open(), open()
	if _, err := w1.CreateBatch(ctx, store.Batch{ID: "b"}); err != nil {
		t.Fatal(err)
	}
	watch, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	chunkA := storetest.Profiles("t", 0, 200, 512)
	chunkB := storetest.Profiles("t", 200, 200, 512)

	started := make(chan struct{})
	var res1, res2 []store.PutResult
	var err1, err2 error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		res1, err1 = w1.WriteBatches(ctx, "b", []store.BatchWrite{
			{Profiles: chunkA, ChunkDone: true, Worker: "w1", InTx: func(ctx context.Context, _ store.Tx) error {
				close(started)
				// Hold this transaction until the other writer waits on it.
				for {
					var waiting int
					if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
						WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting); err != nil {
						return err
					}
					if waiting > 0 {
						return nil
					}
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(5 * time.Millisecond):
					}
				}
			}},
			{Profiles: chunkB, ChunkDone: true, Worker: "w1"},
		})
	}()
	go func() {
		defer wg.Done()
		<-started
		res2, err2 = w2.WriteBatches(ctx, "b", []store.BatchWrite{{Profiles: chunkB, ChunkDone: true, Worker: "w2"}})
	}()
	wg.Wait()
	if err1 != nil || err2 != nil {
		t.Fatalf("writer 1: %v; writer 2: %v", err1, err2)
	}
	inserted, dups := 0, 0
	for _, r := range append(res1, res2...) {
		inserted += r.Inserted
		dups += r.Duplicates
		if len(r.Conflicts) > 0 {
			t.Errorf("conflicts within one batch: %+v", r.Conflicts)
		}
	}
	if inserted != 400 || dups != 200 {
		t.Errorf("inserted %d, duplicates %d; want 400 and 200", inserted, dups)
	}
	b, err := w1.GetBatch(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if b.Profiles != 400 {
		t.Errorf("batch counts %d profiles, want 400", b.Profiles)
	}
}
