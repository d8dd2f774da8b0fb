package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/jobs"
)

type tagArgs struct {
	N int `json:"n"`
}

func (tagArgs) Kind() string { return "test_tag" }

type tagWorker struct {
	river.WorkerDefaults[tagArgs]
}

func (tagWorker) Work(context.Context, *river.Job[tagArgs]) error { return nil }

// TestEarlierPending: a job tagged like an earlier unfinished job of the
// queue has one pending before it; the first of a tag, a job of another
// tag or queue, and any job once the earlier ones finished have none.
func TestEarlierPending(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			db := open(t)
			workers := river.NewWorkers()
			river.AddWorker(workers, tagWorker{})
			c, err := jobs.New(ctx, db, jobs.Config{Queues: map[string]int{"q": 2}, Workers: workers, PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ins := func(queue, tag string, n int) {
				if err := c.InsertMany(ctx, []river.InsertManyParams{{Args: tagArgs{N: n},
					InsertOpts: &river.InsertOpts{Queue: queue, Tags: []string{tag}}}}); err != nil {
					t.Fatal(err)
				}
			}
			ins("q", "o-1", 0)
			ins("q", "o-2", 1)
			ins("other", "o-3", 2)
			ins("q", "o-1", 3)
			ins("q", "o-3", 4)
			rows, err := c.List(ctx, "q")
			if err != nil || len(rows) != 4 {
				t.Fatalf("jobs of q: %d, %v", len(rows), err)
			}
			check := func(row *rivertype.JobRow, want bool) {
				t.Helper()
				got, err := c.EarlierPending(ctx, "q", row.Tags[0], row.ID)
				if err != nil || got != want {
					t.Errorf("job %d (%s): earlier pending %v, %v; want %v", row.ID, row.Tags[0], got, err, want)
				}
			}
			check(rows[0], false)
			check(rows[1], false)
			check(rows[2], true)  // o-1 after job 0
			check(rows[3], false) // o-3's earlier job is in another queue

			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer c.Stop(context.WithoutCancel(ctx))
			for {
				done, err := c.List(ctx, "q", rivertype.JobStateCompleted)
				if err != nil {
					t.Fatal(err)
				}
				if len(done) == 4 {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("%d of 4 jobs completed", len(done))
				case <-time.After(20 * time.Millisecond):
				}
			}
			check(rows[2], false)
		})
	}
}
