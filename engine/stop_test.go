package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/perso"
)

// TestStopDrainsOrRollsBack: a run whose context ends mid-batch stores
// the chunks in flight when StopGrace allows it (nothing rolled back), and
// rolls them back, counted, when it does not; either way the same run
// again completes the batch exactly once.
func TestStopDrainsOrRollsBack(t *testing.T) {
	pool := openHSM(t)
	der, err := os.ReadFile(testenv.Path(t, "ts48", ts48))
	if err != nil {
		t.Fatal(err)
	}
	const n, chunk = 3000, 100
	for i, tc := range []struct {
		name     string
		grace    time.Duration
		rollback bool
	}{{"drained", time.Minute, false}, {"grace over", time.Nanosecond, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openStore(t, "sqlite", filepath.Join(dir, "perso.db"))
			iccid, err := perso.ICCIDWithCheck(fmt.Sprintf("894944998%d%08d", i, 100))
			if err != nil {
				t.Fatal(err)
			}
			path := writeInput(t, dir, perso.FormatCSV, n, iccid, fmt.Sprintf("0010108%d0000001", i), false)
			spec := engine.Spec{Input: path, Template: der, ProfileType: "ts48", BatchID: "stop"}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := engine.Config{ChunkSize: chunk, Exclusive: true, StopGrace: tc.grace,
				Progress: func(p engine.Progress) {
					if p.RunStored > 0 {
						cancel() // stop after the first stored chunk: the others are in flight
					}
				}}
			rep, err := engine.Run(ctx, db, pool, spec, cfg)
			if err == nil || ctx.Err() == nil {
				t.Fatalf("stopped run: err %v (ctx %v)", err, ctx.Err())
			}
			if rep.Complete {
				// 30 chunks and at most Workers+2 in flight when the first
				// is stored: a complete batch means the stop was ignored.
				t.Fatalf("the batch completed although the run was stopped after its first chunk: %+v", rep)
			}
			if !rep.Stopped || (rep.RunRolledBack > 0) != tc.rollback {
				t.Fatalf("stopped report: stopped %v, rolled back %d (grace %s)", rep.Stopped, rep.RunRolledBack, tc.grace)
			}
			if rep.Stored != int64(rep.ChunksDone*chunk) || rep.Duplicates != 0 {
				t.Fatalf("after the stop %d chunks, %d profiles stored", rep.ChunksDone, rep.Stored)
			}
			rep, err = engine.Run(context.Background(), db, pool, spec, engine.Config{ChunkSize: chunk, Exclusive: true})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Complete || rep.Stored != n || rep.Duplicates != 0 || rep.Stored+rep.Rejected+rep.Conflicts != rep.RecordsRead {
				t.Fatalf("after the re-run: %+v", rep)
			}
		})
	}
}

// TestCompleteRunCountsEveryChunkAsItsOwn: a run that stores a whole batch
// alone reports every chunk as stored by this run and none rolled back,
// also when the last group commit holds several chunks (the batch is
// complete in the store before the checkpoint has seen all of them).
func TestCompleteRunCountsEveryChunkAsItsOwn(t *testing.T) {
	pool := openHSM(t)
	der, err := os.ReadFile(testenv.Path(t, "ts48", ts48))
	if err != nil {
		t.Fatal(err)
	}
	const n, chunk, runs = 800, 100, 8
	dir := t.TempDir()
	db := openStore(t, "sqlite", filepath.Join(dir, "perso.db"))
	for i := 0; i < runs; i++ {
		iccid, err := perso.ICCIDWithCheck(fmt.Sprintf("89494499%d%09d", i, 100))
		if err != nil {
			t.Fatal(err)
		}
		path := writeInput(t, t.TempDir(), perso.FormatCSV, n, iccid, fmt.Sprintf("00101077%d000001", i), false)
		rep, err := engine.Run(context.Background(), db, pool, engine.Spec{Input: path, Template: der,
			ProfileType: "ts48"}, engine.Config{ChunkSize: chunk, Exclusive: true})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Complete || rep.Stored != n || rep.RunStored != n || rep.RunChunks != n/chunk || rep.RunRolledBack != 0 {
			t.Fatalf("run %d: stored %d (this run %d in %d chunks), rolled back %d; want %d in %d chunks, none rolled back",
				i, rep.Stored, rep.RunStored, rep.RunChunks, rep.RunRolledBack, n, n/chunk)
		}
	}
}
