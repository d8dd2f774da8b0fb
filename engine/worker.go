package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/jobs"
	"github.com/perso-esim/perso/store"
)

// Several workers, and stopping.
//
// Worker mode (Config.Exclusive false) lets several processes, on one or
// many machines reading the same input, work one batch on a shared
// PostgreSQL store. River hands each chunk job to one of them; a chunk's
// profiles and its job completion commit in one transaction, so a chunk
// is stored once whoever works it. What River does not do quickly is
// notice a dead worker: its rescuer runs on the elected leader every 30 s
// and then waits for the retry backoff. So every worker also runs rescue:
// chunks running for more than RescueAfter (by the database's clock) and
// chunks waiting for a retry become available at once.
//
// Stopping (ctx ends: Ctrl-C, SIGTERM) is a drain, not an abort: River
// stops handing out chunks, the chunks already in the pipeline are still
// stored, for up to StopGrace; what is left then rolls back (its jobs stay
// unfinished and are worked again by the next run or another worker).

// Defaults of Config.RescueAfter and Config.StopGrace.
const (
	DefaultRescueAfter = 30 * time.Second
	DefaultStopGrace   = 10 * time.Second
)

// errGraceOver ends the stages when the chunks in flight were not all
// stored within StopGrace of a stop.
var errGraceOver = errors.New("engine: stop grace period over")

// errDrained ends the stages once every chunk in flight at a stop was
// answered.
var errDrained = errors.New("engine: stopped after storing the chunks in flight")

// rescueEvery is how often a worker looks for dead workers' chunks.
func rescueEvery(after time.Duration) time.Duration {
	return min(max(after/4, time.Second), 10*time.Second)
}

// rescue makes dead workers' chunks available again until ctx ends
// (worker mode only).
func (p *pipeline) rescue(ctx context.Context, jc *jobs.Client) error {
	t := time.NewTicker(rescueEvery(p.cfg.RescueAfter))
	defer t.Stop()
	queue := Queue(p.batch.ID)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := jc.RescueStuck(ctx, queue, p.cfg.RescueAfter)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A failed look is retried at the next tick; the store is
			// shared, so a transient error must not end this worker.
			p.log.Warn("looking for dead workers' chunks", "batch", p.batch.ID, "err", err)
			continue
		}
		if n > 0 {
			p.log.Info("took over chunks of a dead or stopped worker", "batch", p.batch.ID, "chunks", n,
				"rescue_after", p.cfg.RescueAfter)
		}
	}
}

// drain waits for ctx (the caller's) to end while the stages run on work,
// then stops River from handing out chunks and lets the chunks in flight
// be stored for up to StopGrace, and ends the stages with end.
func (p *pipeline) drain(ctx, work context.Context, end context.CancelCauseFunc, jc *jobs.Client) {
	select {
	case <-work.Done():
		return
	case <-ctx.Done():
	}
	p.log.Info("stopping: taking no new chunks, storing the chunks in flight", "batch", p.batch.ID, "grace", p.cfg.StopGrace)
	sctx, cancel := context.WithTimeout(work, p.cfg.StopGrace)
	defer cancel()
	// Stop returns once every Work call returned: every chunk River had
	// handed to the pipeline is stored (or failed).
	if err := jc.Stop(sctx); err != nil && work.Err() == nil {
		p.stats.graceOver.Store(true)
		end(errGraceOver)
		return
	}
	end(errDrained)
}

// WorkerReport is what one worker contributed to a batch.
type WorkerReport struct {
	Worker   string `json:"worker"`
	Chunks   int    `json:"chunks"`
	Profiles int64  `json:"profiles"`
	// ChunkIDs lists the chunk numbers the worker stored, as ranges
	// ("0-3,7,9-12"), from the completed chunk jobs. Empty when River's
	// completed jobs were not readable.
	ChunkIDs string `json:"chunk_ids"`
}

// workerReports joins the store's per-worker tallies with the chunk
// numbers of the batch's completed jobs, by the worker that completed
// them (the last in a job's attempted_by: only the current attempt can
// complete a job).
func workerReports(ctx context.Context, jc *jobs.Client, batchID string, ws []store.WorkerTally) []WorkerReport {
	ids := map[string][]int{}
	if jc != nil {
		done, err := jc.List(ctx, Queue(batchID), rivertype.JobStateCompleted)
		if err == nil {
			for _, j := range done {
				if len(j.AttemptedBy) == 0 {
					continue
				}
				var a ChunkArgs
				if err := json.Unmarshal(j.EncodedArgs, &a); err != nil || a.Batch != batchID {
					continue
				}
				w := j.AttemptedBy[len(j.AttemptedBy)-1]
				ids[w] = append(ids[w], a.Chunk)
			}
		}
	}
	out := make([]WorkerReport, 0, len(ws))
	for _, w := range ws {
		out = append(out, WorkerReport{Worker: w.Worker, Chunks: w.Chunks, Profiles: w.Profiles, ChunkIDs: ranges(ids[w.Worker])})
	}
	return out
}

// ranges writes chunk numbers as "0-3,7,9-12".
func ranges(ns []int) string {
	slices.Sort(ns)
	ns = slices.Compact(ns)
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ns[i]))
		if j > i {
			fmt.Fprintf(&b, "-%d", ns[j])
		}
		i = j + 1
	}
	return b.String()
}
