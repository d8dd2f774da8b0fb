package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/jobs"
)

type holdArgs struct{}

func (holdArgs) Kind() string { return "test_hold" }

// holder takes a job and holds it until released: a worker that went
// silent (from the job table's point of view, a dead one).
type holder struct {
	river.WorkerDefaults[holdArgs]
	taken   chan struct{}
	release chan struct{}
}

func (h *holder) Work(ctx context.Context, _ *river.Job[holdArgs]) error {
	h.taken <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return ctx.Err()
}

// TestRescueAndReclaimWorker: a job held by worker "old" is left alone by
// RescueStuck while younger than its horizon and by ReclaimWorker for
// another ID; ReclaimWorker("old") and RescueStuck past the horizon make
// it available again.
func TestRescueAndReclaimWorker(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db := open(t)
			h := &holder{taken: make(chan struct{}, 1), release: make(chan struct{})}
			workers := river.NewWorkers()
			river.AddWorker(workers, h)
			old, err := jobs.New(ctx, db, jobs.Config{ID: "old", Queues: map[string]int{"q": 1}, Workers: workers})
			if err != nil {
				t.Fatal(err)
			}
			if err := old.InsertMany(ctx, []river.InsertManyParams{{Args: holdArgs{}, InsertOpts: &river.InsertOpts{Queue: "q"}}}); err != nil {
				t.Fatal(err)
			}
			if err := old.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() { close(h.release); old.Stop(context.Background()) }()
			select {
			case <-h.taken:
			case <-ctx.Done():
				t.Fatal("the job was not taken")
			}
			other, err := jobs.New(ctx, db, jobs.Config{ID: "other"})
			if err != nil {
				t.Fatal(err)
			}
			available := func() int {
				rows, err := other.List(ctx, "q", rivertype.JobStateAvailable)
				if err != nil {
					t.Fatal(err)
				}
				return len(rows)
			}
			for _, step := range []struct {
				name string
				do   func() (int, error)
				want int
			}{
				{"RescueStuck, horizon not reached", func() (int, error) { return other.RescueStuck(ctx, "q", time.Hour) }, 0},
				{"ReclaimWorker of another ID", func() (int, error) { return other.ReclaimWorker(ctx, "q", "someone") }, 0},
				{"ReclaimWorker of the holder's ID", func() (int, error) { return other.ReclaimWorker(ctx, "q", "old") }, 1},
			} {
				n, err := step.do()
				if err != nil || n != step.want || available() != step.want {
					t.Fatalf("%s: %d, %v, %d available; want %d", step.name, n, err, available(), step.want)
				}
			}
		})
	}
}
