package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/jobs"
	"github.com/perso-esim/perso/store"
)

type writeArgs struct {
	First int  `json:"first"`
	Fail  bool `json:"fail"`
}

func (writeArgs) Kind() string { return "test_write" }

// writer stores two profiles per job and completes the job in the same
// transaction; with Fail it completes the job and then fails the write.
type writer struct {
	river.WorkerDefaults[writeArgs]
	db   *store.DB
	done chan int
}

func (w *writer) Work(ctx context.Context, job *river.Job[writeArgs]) error {
	ps := []store.Profile{{ICCID: fmt.Sprintf("8949%015d", job.Args.First)}, {ICCID: fmt.Sprintf("8949%015d", job.Args.First+1)}}
	_, err := w.db.WriteBatch(ctx, "b", store.BatchWrite{Profiles: ps, ChunkDone: true, Worker: "w",
		InTx: func(_ context.Context, tx store.Tx) error {
			if err := jobs.CompleteTx(ctx, tx, job); err != nil {
				return err
			}
			if job.Args.Fail {
				return errors.New("failed after completing")
			}
			return nil
		}})
	w.done <- job.Args.First
	if job.Args.Fail {
		return river.JobCancel(err) // do not retry in this test
	}
	return err
}

func backends(t *testing.T) map[string]func(t *testing.T) *store.DB {
	return map[string]func(t *testing.T) *store.DB{
		"sqlite": func(t *testing.T) *store.DB {
			db, err := store.Open(context.Background(), "sqlite", filepath.Join(t.TempDir(), "s.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		"postgres": func(t *testing.T) *store.DB {
			db, err := store.Open(context.Background(), "postgres", testenv.PostgresSchemaDSN(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
	}
}

// TestCompleteInStoreTransaction: a job's profiles and its completion
// commit together; a write that fails after completing leaves neither.
func TestCompleteInStoreTransaction(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db := open(t)
			if _, err := db.CreateBatch(ctx, store.Batch{ID: "b", Chunks: 3}); err != nil {
				t.Fatal(err)
			}
			w := &writer{db: db, done: make(chan int, 3)}
			workers := river.NewWorkers()
			river.AddWorker(workers, w)
			c, err := jobs.New(ctx, db, jobs.Config{ID: "test-worker", Queues: map[string]int{"q": 2}, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			var ins []river.InsertManyParams
			for _, a := range []writeArgs{{First: 0}, {First: 10, Fail: true}, {First: 20}} {
				ins = append(ins, river.InsertManyParams{Args: a, InsertOpts: &river.InsertOpts{Queue: "q"}})
			}
			if err := c.InsertMany(ctx, ins); err != nil {
				t.Fatal(err)
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				select {
				case <-w.done:
				case <-ctx.Done():
					t.Fatal("jobs did not run")
				}
			}
			if err := c.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			b, err := db.GetBatch(ctx, "b")
			if err != nil {
				t.Fatal(err)
			}
			if b.Profiles != 4 || b.ChunksDone != 2 {
				t.Errorf("batch: %d profiles, %d chunks; want 4 and 2 (the failed write rolled back)", b.Profiles, b.ChunksDone)
			}
			if _, err := db.GetProfile(ctx, fmt.Sprintf("8949%015d", 10)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("profile of the failed write: %v, want not found", err)
			}
			rows, err := c.List(ctx, "q")
			if err != nil {
				t.Fatal(err)
			}
			states := map[rivertype.JobState]int{}
			for _, r := range rows {
				states[r.State]++
				if r.State == rivertype.JobStateCompleted && (len(r.AttemptedBy) == 0 || r.AttemptedBy[0] != "test-worker") {
					t.Errorf("completed job %d attempted by %v, want test-worker", r.ID, r.AttemptedBy)
				}
			}
			if states[rivertype.JobStateCompleted] != 2 || states[rivertype.JobStateCancelled] != 1 {
				t.Errorf("job states %v, want 2 completed and 1 cancelled", states)
			}
			// Reclaim makes the cancelled job available again.
			n, err := c.Reclaim(ctx, "q")
			if err != nil || n != 1 {
				t.Fatalf("Reclaim = %d, %v; want 1", n, err)
			}
			if rows, err := c.List(ctx, "q", rivertype.JobStateAvailable); err != nil || len(rows) != 1 {
				t.Fatalf("available after Reclaim: %d, %v; want 1", len(rows), err)
			}
		})
	}
}
