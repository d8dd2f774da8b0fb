package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/riverqueue/river"

	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/cputime"
	"github.com/perso-esim/perso/jobs"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

// ErrBatchMismatch: the batch exists with another input, template or
// profile type. Re-running must use the same ones (or another batch ID).
var ErrBatchMismatch = errors.New("engine: the batch exists with other parameters")

// Config tunes the engine. Zero values choose defaults from the core count.
type Config struct {
	// ChunkSize is the number of good records per chunk: the unit of work,
	// of commit and of resumption (default 1000).
	ChunkSize int
	// Workers is the number of goroutines of each CPU-bound stage
	// (personalise, protect) (default runtime.NumCPU()).
	Workers int
	// InFlight is the number of chunks in the pipeline at once: River's
	// concurrency for the batch's queue, and the number of chunk buffers
	// (≈ ChunkSize × the protected profile's size each) (default
	// 2 × Workers + 4: a chunk per CPU worker and one queued for each, and
	// two groups of two for the store's stages, which write one group's
	// material while the previous group's rows commit).
	InFlight int
	// ReadBatch is the number of rows per Arrow batch the reader produces
	// (default perso.DefaultBatchSize).
	ReadBatch int
	// WorkerID names this process in the job table and the batch's worker
	// tallies (default host:pid).
	WorkerID string
	// Exclusive says that no other process works the batch: unfinished
	// chunk jobs (left by a crashed run) are taken back at once. Without it
	// (worker mode, see worker.go) several processes share the batch, and
	// a dead worker's chunks are taken back after RescueAfter.
	Exclusive bool
	// RescueAfter is how long a chunk may stay with a worker before the
	// others presume it dead and take the chunk over (worker mode). It must
	// exceed the time a chunk spends in the pipeline, InFlight chunks' worth
	// of work (default DefaultRescueAfter).
	RescueAfter time.Duration
	// StopGrace is how long the chunks in flight have to be stored once ctx
	// ends; those not stored by then roll back (default DefaultStopGrace).
	StopGrace time.Duration
	// Nice is the nice value (CPU priority, 1–19) of the CPU-bound stages
	// (validate, personalise, seal), each on a thread of its own, so that
	// a perso serve on the same host keeps its latency; 0 leaves them at
	// the process's. A thread already nicer keeps its value (Linux; no
	// effect elsewhere). The stages that write the store, River and the
	// HSM pool keep the process's priority: a thread the kernel
	// deschedules while it holds the store's writer turn would hold the
	// server's calls with it (docs/performance.md, mixed, sixth round).
	Nice int
	// Logger receives the engine's structured log lines (default slog.Default()).
	Logger *slog.Logger
	// Progress, when set, is called after every stored chunk (from one
	// goroutine; keep it quick).
	Progress func(Progress)
}

func (c Config) withDefaults() Config {
	if c.ChunkSize <= 0 {
		c.ChunkSize = 1000
	}
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.InFlight <= 0 {
		c.InFlight = 2*c.Workers + 4
	}
	if c.ReadBatch <= 0 {
		c.ReadBatch = perso.DefaultBatchSize
	}
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		c.WorkerID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RescueAfter <= 0 {
		c.RescueAfter = DefaultRescueAfter
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	return c
}

// Spec says what to run: one input file into one batch.
type Spec struct {
	// BatchID names the batch (default: "batch-" and the first 16 hex
	// digits of the input's SHA-256, so that re-running the same command
	// resumes it).
	BatchID string
	// Input is the path of the operator's file (CSV, .out, Parquet, Arrow).
	Input string
	// Template is the SAIP DER of the profile template.
	Template []byte
	// ProfileType is the ES2+ profile type the profiles are ordered by.
	ProfileType string
	// Read configures the reader (rules, transport key, layout, line
	// limit). Its Decrypter defaults to the HSM; Rejects, BatchSize and
	// Allocator are the engine's.
	Read perso.Options
	// KeepAlgorithm leaves the template's network algorithm whatever the
	// records say (see Values). nil: keep it when the template declares
	// exactly one.
	KeepAlgorithm *bool
	// Options are the template's settings (template.CompileWith): an
	// algorithm switch, the derived fields and per-template constants.
	Options template.Options
	// Rejects receives every rejected record of the input, on every run
	// (the survey finds them all before any chunk runs). nil: counted only.
	Rejects perso.RejectSink
}

// Progress is the state of a run after a stored chunk.
type Progress struct {
	BatchID    string
	Records    int64 // good and bad records of the input
	Done       int64 // records accounted for: stored, rejected or conflicting (all runs)
	Stored     int64 // profiles stored (all runs)
	Rejected   int64
	Conflicts  int64
	Chunks     int
	ChunksDone int
	Elapsed    time.Duration // this run
	RunStored  int64         // profiles stored by this run
}

// Report is the outcome of a run. Counts cover the whole batch (every run
// that worked on it); rates cover this run.
type Report struct {
	BatchID        string         `json:"batch_id"`
	Input          string         `json:"input"`
	InputSHA256    string         `json:"input_sha256"`
	TemplateSHA256 string         `json:"template_sha256"`
	ProfileType    string         `json:"profile_type"`
	Complete       bool           `json:"complete"`
	Resumed        bool           `json:"resumed"`
	RecordsRead    int64          `json:"records_read"`
	Stored         int64          `json:"stored"`
	Rejected       int64          `json:"rejected"`
	Duplicates     int64          `json:"duplicates"`
	Conflicts      int64          `json:"conflicts"`
	Chunks         int            `json:"chunks"`
	ChunksDone     int            `json:"chunks_done"`
	Workers        []WorkerReport `json:"workers"`
	ICCIDFirst     string         `json:"iccid_first"`
	ICCIDLast      string         `json:"iccid_last"`

	RunStored int64 `json:"run_stored"`
	RunChunks int   `json:"run_chunks"`
	// Stopped: this run was stopped (Ctrl-C, SIGTERM) before the batch was
	// complete; the chunks in flight were stored, except RunRolledBack of
	// them (not stored within Config.StopGrace, or failed).
	Stopped            bool    `json:"stopped"`
	RunRolledBack      int     `json:"run_rolled_back"`
	Worker             string  `json:"worker"` // this process's worker ID
	WallSeconds        float64 `json:"wall_seconds"`
	ProfilesPerSecond  float64 `json:"profiles_per_second"`
	CPUMicrosPerProf   float64 `json:"cpu_us_per_profile"`
	HSMCallsPerProfile float64 `json:"hsm_calls_per_profile"`
	PeakRSSBytes       int64   `json:"peak_rss_bytes"`
	StoreBytesPerProf  float64 `json:"store_bytes_per_profile"`
	// Algorithm says how the profiles got their authentication algorithm
	// (AlgorithmReport): "keep (usim-test-algorithm)", "switch …" or
	// "record (milenage)".
	Algorithm string `json:"algorithm"`
}

// AlgorithmReport describes the algorithm policy of a run: the template's
// algorithm kept whatever the records say, the template switched at
// compile time (Plan.Switch), or the records' algorithm among those the
// template declares.
func AlgorithmReport(plan *template.Plan, keep bool) string {
	var names []string
	for _, a := range plan.Algorithms() {
		names = append(names, a.String())
	}
	list := strings.Join(names, ", ")
	switch {
	case plan.Switch() != "":
		return "switch " + plan.Switch()
	case keep:
		return "keep (" + list + ")"
	}
	return "record (" + list + ")"
}

// ChunkArgs is the River job of one chunk: good records [First,
// First+Count) of the batch's input, in reading order.
type ChunkArgs struct {
	Batch string `json:"batch"`
	Chunk int    `json:"chunk"`
	First int64  `json:"first"`
	Count int    `json:"count"`
}

// Kind implements river.JobArgs.
func (ChunkArgs) Kind() string { return "perso_chunk" }

// Queue is the River queue of a batch's chunk jobs: one per batch, so that
// a process works only the batch whose input it reads.
func Queue(batchID string) string {
	h := sha256.Sum256([]byte(batchID))
	return "batch_" + hex.EncodeToString(h[:12])
}

// Run processes one input into one batch until every chunk is stored, ctx
// ends, or a stage fails. A run that stops early leaves the batch
// resumable: run it again with the same Spec.
func Run(ctx context.Context, db *store.DB, hsm *hsmpool.Pool, spec Spec, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	log := cfg.Logger
	start, cpu0, calls0 := time.Now(), cputime.Process(), hsm.HSMCalls()

	plan, err := template.CompileWith(spec.Template, spec.Options)
	if err != nil {
		return nil, fmt.Errorf("engine: template: %w", err)
	}
	keep := len(plan.Algorithms()) == 1
	if spec.KeepAlgorithm != nil {
		keep = *spec.KeepAlgorithm
	}
	algorithm := AlgorithmReport(plan, keep)
	if spec.Read.Decrypter == nil {
		spec.Read.Decrypter = hsm
	}
	spec.Read.BatchSize = cfg.ReadBatch
	tsum := sha256.Sum256(spec.Template)
	templateID := "sha256:" + hex.EncodeToString(tsum[:])

	sv, err := survey(ctx, spec, plan, keep)
	if err != nil {
		return nil, err
	}
	if spec.BatchID == "" {
		spec.BatchID = "batch-" + sv.sha256[:16]
	}
	log.Info("input surveyed", "batch", spec.BatchID, "input", spec.Input, "records", sv.rows,
		"good", sv.good, "rejected", sv.readRejected+sv.tmplRejected, "sha256", sv.sha256)

	workers := river.NewWorkers()
	requests := make(chan *chunk)
	stopped := make(chan struct{})
	var run runStats
	river.AddWorker(workers, &chunkWorker{requests: requests, stopped: stopped, stats: &run})
	queue := Queue(spec.BatchID)
	// River's own rescuer is only the backstop: it updates jobs by ID
	// alone, while the workers' rescue (worker.go) checks the attempt.
	jc, err := jobs.New(ctx, db, jobs.Config{ID: cfg.WorkerID, Queues: map[string]int{queue: 2 * cfg.InFlight},
		Workers: workers, RescueAfter: max(4*cfg.RescueAfter, jobs.DefaultRescueAfter), Logger: slog.New(warnOnly{log.Handler()})})
	if err != nil {
		return nil, err
	}

	b, bk, resumed, err := openBatch(ctx, db, hsm, jc, spec, templateID, sv, cfg.ChunkSize)
	if err != nil {
		return nil, err
	}
	defer bk.Close()
	if resumed {
		log.Info("resuming batch", "batch", b.ID, "chunks_done", b.ChunksDone, "chunks", b.Chunks, "stored", b.Profiles)
	}
	rep := &Report{BatchID: b.ID, Input: spec.Input, InputSHA256: sv.sha256, TemplateSHA256: templateID,
		ProfileType: b.ProfileType, Resumed: resumed, Worker: cfg.WorkerID, Algorithm: algorithm}

	if b.ChunksDone < b.Chunks {
		// Alone on the batch, every unfinished chunk is an earlier run's;
		// among workers, only those this worker ID held in a previous life.
		reclaim := func() (int, error) { return jc.ReclaimWorker(ctx, queue, cfg.WorkerID) }
		if cfg.Exclusive {
			reclaim = func() (int, error) { return jc.Reclaim(ctx, queue) }
		}
		n, rerr := reclaim()
		if rerr != nil {
			return nil, rerr
		}
		if n > 0 {
			log.Info("reclaimed unfinished chunks of an earlier run", "batch", b.ID, "chunks", n, "worker", cfg.WorkerID)
		}
		p := &pipeline{cfg: cfg, spec: spec, plan: plan, keep: keep, db: db, bk: bk, batch: b,
			requests: requests, stopped: stopped, stats: &run, start: start, log: log}
		err = p.run(ctx, jc)
	}
	// The report reads the batch back: it covers earlier runs too.
	if b2, gerr := db.GetBatch(context.WithoutCancel(ctx), b.ID); gerr == nil {
		b = b2
	}
	ws, _ := db.BatchWorkers(context.WithoutCancel(ctx), b.ID)
	rep.fill(b, workerReports(context.WithoutCancel(ctx), jc, b.ID, ws))
	rep.Stopped = ctx.Err() != nil && !rep.Complete
	rep.RunRolledBack = int(run.rolledBack.Load())
	if run.graceOver.Load() {
		log.Warn("stopped: chunks in flight were not stored within the grace period and rolled back; they run again",
			"batch", b.ID, "chunks", rep.RunRolledBack, "grace", cfg.StopGrace)
	}
	wall := time.Since(start)
	rep.RunStored, rep.RunChunks = run.stored.Load(), int(run.chunks.Load())
	rep.WallSeconds = wall.Seconds()
	if rep.RunStored > 0 {
		rep.ProfilesPerSecond = float64(rep.RunStored) / wall.Seconds()
		rep.CPUMicrosPerProf = float64((cputime.Process() - cpu0).Microseconds()) / float64(rep.RunStored)
		rep.HSMCallsPerProfile = float64(hsm.HSMCalls()-calls0) / float64(rep.RunStored)
	}
	rep.PeakRSSBytes = peakRSS()
	if bytes, n, ferr := db.Footprint(context.WithoutCancel(ctx)); ferr == nil && n > 0 {
		rep.StoreBytesPerProf = float64(bytes) / float64(n)
	}
	return rep, err
}

func (r *Report) fill(b store.Batch, ws []WorkerReport) {
	r.ProfileType = b.ProfileType
	r.RecordsRead, r.Stored, r.Rejected = b.Records, b.Profiles, b.Rejected
	r.Duplicates, r.Conflicts = b.Duplicates, b.Conflicts
	r.Chunks, r.ChunksDone = b.Chunks, b.ChunksDone
	r.Complete = b.ChunksDone >= b.Chunks
	r.ICCIDFirst, r.ICCIDLast = b.ICCIDFirst, b.ICCIDLast
	r.Workers = ws
	if r.Workers == nil {
		r.Workers = []WorkerReport{}
	}
}

// BatchReport is the report of a batch read back from the store (perso
// batch show): the counts of Run's report, without this run's rates.
func BatchReport(ctx context.Context, db *store.DB, id string) (*Report, error) {
	b, err := db.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	ws, err := db.BatchWorkers(ctx, id)
	if err != nil {
		return nil, err
	}
	// A client without queues only reads the jobs (which worker stored
	// which chunk).
	jc, err := jobs.New(ctx, db, jobs.Config{Logger: slog.New(warnOnly{slog.Default().Handler()})})
	if err != nil {
		return nil, err
	}
	r := &Report{BatchID: b.ID, InputSHA256: b.InputSHA256, TemplateSHA256: b.TemplateID}
	r.fill(b, workerReports(ctx, jc, b.ID, ws))
	return r, nil
}

// openBatch creates the batch with its chunk jobs, or checks and returns
// the existing one, and opens its data key.
func openBatch(ctx context.Context, db *store.DB, hsm *hsmpool.Pool, jc *jobs.Client, spec Spec, templateID string,
	sv *surveyResult, chunkSize int) (store.Batch, *hsmpool.BatchKey, bool, error) {
	b, err := db.GetBatch(ctx, spec.BatchID)
	switch {
	case err == nil:
		if err := sameInput(b, spec, templateID, sv); err != nil {
			return b, nil, false, err
		}
		bk, err := hsm.OpenBatchKey(hsmpool.WithLane(ctx, hsmpool.Batch), b.KeyBlob)
		if err != nil {
			return b, nil, false, fmt.Errorf("engine: opening the data key of batch %s: %w", b.ID, err)
		}
		return b, bk, true, nil
	case !errors.Is(err, store.ErrNotFound):
		return b, nil, false, err
	}
	bk, err := hsm.NewBatchKey(hsmpool.WithLane(ctx, hsmpool.Batch), spec.BatchID)
	if err != nil {
		return b, nil, false, fmt.Errorf("engine: batch key: %w", err)
	}
	chunks := int((sv.good + int64(chunkSize) - 1) / int64(chunkSize))
	in := store.Batch{ID: spec.BatchID, ProfileType: spec.ProfileType, TemplateID: templateID,
		KeyBlob: bk.Blob(), KEKLabel: bk.KeyRef(), InputSHA256: sv.sha256, Records: sv.rows,
		Chunks: chunks, Rejected: sv.readRejected}
	var args []river.InsertManyParams
	for i := 0; i < chunks; i++ {
		first := int64(i) * int64(chunkSize)
		args = append(args, river.InsertManyParams{
			Args:       ChunkArgs{Batch: spec.BatchID, Chunk: i, First: first, Count: int(min(int64(chunkSize), sv.good-first))},
			InsertOpts: &river.InsertOpts{Queue: Queue(spec.BatchID), MaxAttempts: 1000},
		})
	}
	// The batch and its jobs commit together: a crash leaves neither or both.
	b, err = db.CreateBatchTx(ctx, in, func(ctx context.Context, tx store.Tx) error {
		return jc.InsertManyTx(ctx, tx, args)
	})
	if errors.Is(err, store.ErrConflict) {
		// Another worker created it first (with its own data key).
		bk.Close()
		return openBatch(ctx, db, hsm, jc, spec, templateID, sv, chunkSize)
	}
	if err != nil {
		bk.Close()
		return b, nil, false, err
	}
	return b, bk, false, nil
}

// sameInput refuses to resume a batch with another input, template or
// profile type.
func sameInput(b store.Batch, spec Spec, templateID string, sv *surveyResult) error {
	var diff []string
	if b.InputSHA256 != sv.sha256 {
		diff = append(diff, fmt.Sprintf("input SHA-256 %s, this input %s", short(b.InputSHA256), short(sv.sha256)))
	}
	if b.TemplateID != templateID {
		diff = append(diff, fmt.Sprintf("template %s, this template %s", short(b.TemplateID), short(templateID)))
	}
	if b.ProfileType != spec.ProfileType {
		diff = append(diff, fmt.Sprintf("profile type %q, this run %q", b.ProfileType, spec.ProfileType))
	}
	if len(diff) > 0 {
		return fmt.Errorf("%w: batch %s has %s (re-run with the same ones, or choose another batch ID)",
			ErrBatchMismatch, b.ID, strings.Join(diff, "; "))
	}
	return nil
}

func short(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// runStats counts what this run stored.
type runStats struct {
	stored atomic.Int64
	chunks atomic.Int64

	graceOver  atomic.Bool  // a stop's drain ran out of StopGrace
	rolledBack atomic.Int64 // chunks handed to the pipeline and not stored
	inFlight   atomic.Int64 // chunks handed to the pipeline and not yet answered
}

// peakRSS is the process's maximum resident set size so far.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // kilobytes on Linux
}

// warnOnly passes River's warnings and errors on, not its routine lines.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}
func (w warnOnly) WithAttrs(a []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(a)} }
func (w warnOnly) WithGroup(n string) slog.Handler      { return warnOnly{w.Handler.WithGroup(n)} }
