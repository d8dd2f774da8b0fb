package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/pkg/profile"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

func init() { register(newRunCmd) }

type runOptions struct {
	template, input, batch, profileType string
	report, rejects                     string
	force                               bool
	chunkSize, workers, inFlight        int
	transportKey                        int
	transportAlg                        string
	mcc, mnc                            string
	cpuProfile, memProfile, trace       string
	progress                            string
	worker                              bool
}

func newRunCmd(a *app) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run --template T --input F",
		Short: "Personalise, protect and store every record of an input file (the batch job)",
		Long: `Runs one input file through the batch engine into the store:

  read (CSV, .out, Parquet, Arrow) → validate → personalise (template)
  → protect (fresh PPK per profile) → seal the PPKs (HSM batch key)
  → store, one transaction per chunk of records together with its job.

The batch is resumable: after a crash, kill -9, Ctrl-C or an HSM fault, run
the same command again and it continues where it stopped; no record is lost
or stored twice. A different input under the same --batch is refused.
ICCIDs another batch holds are reported as conflicts, never overwritten.

With --worker, several processes (on one or many machines, reading the same
input path) join the batch on a PostgreSQL store and finish it together:
each takes chunks as River hands them out, the report shows which worker
stored which chunks, and a dead worker's chunks go to the others after
engine.rescue_after (default 30s). Name each worker with engine.worker_id
(PERSO_ENGINE_WORKER_ID; default host:pid).

Ctrl-C or SIGTERM stops taking new chunks and stores the chunks in flight,
for up to engine.stop_grace (default 10s); what is not stored by then rolls
back and is said so. A second signal exits at once.

The batch's CPU-bound stages (validate, personalise, seal) run at a lower
CPU priority, nice engine.nice (default 10; 0 leaves them as started), so
that a perso serve on the same host answers devices first; the stages that
write the store keep the process's priority, so that the server never waits
for a batch transaction the kernel has set aside. Alone on a host this
costs nothing.

The HSM and the store come from the configuration (hsm.*, store.*: flags,
PERSO_* environment, perso.yaml); the HSM PIN (hsm.pin, best from
PERSO_HSM_PIN) is required.

` + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			der, err := readTemplate(cmd, a, o.template)
			if err != nil {
				return err
			}
			return runBatch(cmd.Context(), a, o, der, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.template, "template", "", "SAIP DER profile template (required)")
	f.StringVar(&o.input, "input", "", "personalisation records: CSV, .out, Parquet or Arrow (required)")
	f.StringVar(&o.batch, "batch", "", "batch ID (default: batch- and the input's SHA-256 prefix)")
	f.StringVar(&o.profileType, "profile-type", "", "ES2+ profile type of the profiles (default: the template's file name)")
	f.StringVar(&o.report, "report", "", "write the final report as JSON to this file")
	f.StringVar(&o.rejects, "rejects", "", "reject report (default: INPUT.rejects.csv beside the input)")
	f.BoolVar(&o.force, "force", false, "replace existing report and reject files")
	f.IntVar(&o.chunkSize, "chunk-size", 0, "records per chunk, the unit of commit and resumption (default 1000)")
	f.IntVar(&o.workers, "workers", 0, "goroutines per CPU-bound stage (default: the core count)")
	f.IntVar(&o.inFlight, "in-flight", 0, "chunks in the pipeline at once (default 2 × workers + 4)")
	f.IntVar(&o.transportKey, "transport-key", 0, "the input's Ki/OPc are encrypted under HSM key transport-N")
	f.StringVar(&o.transportAlg, "transport-alg", perso.TransportAES128ECB, "transport algorithm (with --transport-key)")
	f.StringVar(&o.mcc, "mcc", "", "every IMSI must start with this MCC")
	f.StringVar(&o.mnc, "mnc", "", "… and this MNC")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile to this file")
	f.StringVar(&o.memProfile, "memprofile", "", "write a heap profile to this file")
	f.StringVar(&o.trace, "trace", "", "write an execution trace to this file")
	f.BoolVar(&o.worker, "worker", false, "join the batch as one of several workers sharing it (PostgreSQL store only)")
	f.StringVar(&o.progress, "progress", "auto", "progress display: auto (a bar on a terminal, log lines otherwise), bar, log, none")
	f.String("hsm.token", "", "HSM token label (default from config: hsm.token)")
	f.String("store.driver", "", "store driver: sqlite or postgres (default from config: store.driver)")
	f.String("store.dsn", "", "store DSN (default from config: store.dsn)")
	f.String("template.algorithm", "", "auto (the records' algorithm, refused if the template does not declare it), keep (the template's), "+
		"or milenage, tuak128, tuak256, test: switch the template (default from config: template.algorithm)")
	templateMaxSizeFlag(cmd)
	_ = cmd.MarkFlagRequired("template")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}

func runBatch(ctx context.Context, a *app, o runOptions, der []byte, stdout, stderr io.Writer) (err error) {
	if o.chunkSize < 0 || o.workers < 0 || o.inFlight < 0 {
		return usagef("run: --chunk-size, --workers and --in-flight must not be negative")
	}
	switch o.progress {
	case "auto", "bar", "log", "none":
	default:
		return usagef("run: --progress %q: want auto, bar, log or none", o.progress)
	}
	for _, out := range []struct{ path, flag string }{{o.report, "--report"}, {o.rejects, "--rejects"}} {
		if out.path != "" && out.path != "-" {
			if err := checkOutputPath(out.path, outputOptions{force: o.force, inputs: []string{o.input, o.template}, flag: out.flag}); err != nil {
				return err
			}
		}
	}
	if fi, err := os.Stat(o.input); err != nil || !fi.Mode().IsRegular() {
		return usagef("run: --input %s: not a readable regular file (the engine reads it twice: to survey it, then to process it)", o.input)
	}
	if o.profileType == "" {
		o.profileType = strings.TrimSuffix(filepath.Base(o.template), filepath.Ext(o.template))
	}
	if o.worker && a.v.GetString("store.driver") != "postgres" {
		return usagef("run: --worker needs a PostgreSQL store (store.driver postgres, store.dsn): the workers share the batch " +
			"through it. The embedded SQLite store belongs to one process: run without --worker, alone on the batch")
	}
	plan, ts, err := compileTemplate(a, der)
	if err != nil {
		return err
	}
	workerID := a.v.GetString("engine.worker_id")
	if workerID == "" {
		host, _ := os.Hostname()
		workerID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if o.worker && o.rejects == "" {
		// Workers on one machine must not write one file: each its own.
		o.rejects = defaultRejectsPath(o.input+"."+fileSafe(workerID), perso.RejectCSV)
	}
	grace := a.v.GetDuration("engine.stop_grace")
	// The process stays up while the chunks in flight are stored, plus a
	// moment for the report.
	setStopGrace(grace + 2*time.Second)
	stopProfiles, err := startProfiles(o)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stopProfiles(); perr != nil && err == nil {
			err = perr
		}
	}()

	pool, err := openHSM(ctx, a, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	dsn := a.v.GetString("store.dsn")
	db, err := store.Open(ctx, a.v.GetString("store.driver"), dsn)
	if err != nil {
		return fmt.Errorf("run: opening the store %s: %w", redactDSN(dsn), scrubDSN(err, dsn))
	}
	defer db.Close()

	var rejects *rejectReport
	if o.rejects != "" {
		rejects, err = newRejectReport(o.rejects, perso.RejectCSV, outputOptions{force: o.force, inputs: []string{o.input}, flag: "--rejects"})
	} else {
		rejects, err = defaultRejectReport(o.input, perso.RejectCSV, o.force, stderr)
	}
	if err != nil {
		return err
	}
	defer rejects.abort()

	spec := engine.Spec{BatchID: o.batch, Input: o.input, Template: der, ProfileType: o.profileType,
		Rejects: rejects.sink, Read: perso.Options{Rules: perso.Rules{MCC: o.mcc, MNC: o.mnc}, Logger: a.log,
			MaxLineSetting: "perso.Options.MaxLine", Layout: ts.layout()}, Options: ts.opts, KeepAlgorithm: &ts.keep}
	if o.transportKey != 0 {
		spec.Read.Transport = perso.Transport{Key: o.transportKey, Alg: o.transportAlg}
	}
	prog := newProgress(o.progress, stderr, a)
	cfg := engine.Config{ChunkSize: o.chunkSize, Workers: o.workers, InFlight: o.inFlight, Exclusive: !o.worker,
		WorkerID: workerID, RescueAfter: a.v.GetDuration("engine.rescue_after"), StopGrace: grace,
		Nice: a.v.GetInt("engine.nice"), Logger: a.log, Progress: prog.update}
	rep, runErr := engine.Run(ctx, db, pool, spec, cfg)
	prog.done(rep)
	if errors.Is(runErr, engine.ErrBatchMismatch) {
		return usageError(runErr)
	}
	if errors.Is(runErr, template.ErrUndeclaredAlgorithm) {
		return usageError(fmt.Errorf("run: %w: %s", runErr, algorithmHint(plan)))
	}
	if rep == nil {
		return runErr
	}
	var tally checkTally
	if ferr := rejects.finish(&tally); ferr != nil && runErr == nil {
		runErr = ferr
	}
	printRunReport(stdout, rep, tally.reports)
	if o.report != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		if o.report == "-" {
			stdout.Write(append(data, '\n'))
		} else if werr := writeAtomic(o.report, append(data, '\n'), outputOptions{force: o.force, inputs: []string{o.input}, flag: "--report"}); werr != nil && runErr == nil {
			runErr = werr
		}
	}
	if runErr != nil {
		return runErr
	}
	if rep.Rejected > 0 || rep.Conflicts > 0 {
		return partialError(fmt.Errorf("run: batch %s: %d records rejected, %d ICCIDs held by other batches (see the reject report)",
			rep.BatchID, rep.Rejected, rep.Conflicts))
	}
	return nil
}

// printReport writes the human summary.
func printRunReport(w io.Writer, r *engine.Report, rejectFiles []string) {
	state := "complete"
	if !r.Complete {
		state = fmt.Sprintf("incomplete: %d of %d chunks stored; run the same command again to continue", r.ChunksDone, r.Chunks)
	}
	fmt.Fprintf(w, "batch        %s (%s)\n", r.BatchID, state)
	if r.Input != "" {
		fmt.Fprintf(w, "input        %s (sha256 %s)\n", r.Input, r.InputSHA256)
	}
	fmt.Fprintf(w, "profile type %s\n", r.ProfileType)
	fmt.Fprintf(w, "algorithm    %s\n", r.Algorithm)
	fmt.Fprintf(w, "records      %d read: %d stored, %d rejected, %d conflicts, %d duplicates\n",
		r.RecordsRead, r.Stored, r.Rejected, r.Conflicts, r.Duplicates)
	if r.ICCIDFirst != "" {
		fmt.Fprintf(w, "ICCIDs       %s … %s\n", r.ICCIDFirst, r.ICCIDLast)
	}
	fmt.Fprintf(w, "chunks       %d of %d\n", r.ChunksDone, r.Chunks)
	for _, wt := range r.Workers {
		me := ""
		if wt.Worker == r.Worker {
			me = " (this process)"
		}
		fmt.Fprintf(w, "worker       %s%s: %d chunks, %d profiles", wt.Worker, me, wt.Chunks, wt.Profiles)
		if wt.ChunkIDs != "" {
			fmt.Fprintf(w, "; chunks %s", wt.ChunkIDs)
		}
		fmt.Fprintln(w)
	}
	if r.Stopped {
		if r.RunRolledBack > 0 {
			fmt.Fprintf(w, "stopped      %d chunks in flight were not stored within the grace period (engine.stop_grace) and rolled back; they run again\n", r.RunRolledBack)
		} else {
			fmt.Fprintf(w, "stopped      every chunk in flight was stored before stopping\n")
		}
	}
	if r.WallSeconds > 0 {
		fmt.Fprintf(w, "this run     %d profiles in %.1f s: %.0f profiles/s, %.1f µs CPU/profile, %.4f HSM calls/profile, peak RSS %d MiB\n",
			r.RunStored, r.WallSeconds, r.ProfilesPerSecond, r.CPUMicrosPerProf, r.HSMCallsPerProfile, r.PeakRSSBytes>>20)
	}
	if r.StoreBytesPerProf > 0 {
		fmt.Fprintf(w, "store        %.0f bytes per stored profile\n", r.StoreBytesPerProf)
	}
	for _, f := range rejectFiles {
		fmt.Fprintf(w, "rejects      %s\n", f)
	}
}

// fileSafe makes a worker ID usable in a file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
}

// startProfiles starts the profiles the flags ask for; all three can run
// together. pkg/profile allows one profile per process (a second Start
// exits), so it takes the CPU profile, and the heap profile and the
// execution trace use runtime/pprof and runtime/trace directly. Each file
// is written under a temporary name beside its path and renamed when
// complete (createOutput), so that a run killed or failing half way leaves
// no truncated profile under the name asked for. Profiles, like go test's,
// replace an existing file without --force; never an input or a link.
// The returned stop writes the files; its error names the one that failed.
func startProfiles(o runOptions) (stop func() error, err error) {
	seen := map[string]string{}
	for _, p := range []struct{ path, flag string }{{o.cpuProfile, "--cpuprofile"}, {o.memProfile, "--memprofile"}, {o.trace, "--trace"}} {
		if p.path == "" {
			continue
		}
		abs, _ := filepath.Abs(p.path)
		if other, dup := seen[abs]; dup {
			return nil, usagef("run: %s and %s name the same file %s: give each its own", other, p.flag, p.path)
		}
		seen[abs] = p.flag
		if err := checkOutputPath(p.path, outputOptions{force: true, inputs: []string{o.input, o.template}, flag: p.flag}); err != nil {
			return nil, err
		}
	}
	// Each stop writes its file (keep) or discards it (a later profile
	// failed to start: no file for a run that did not happen).
	var stops []func(keep bool) error
	stopAll := func(keep bool) error {
		var errs []error
		// Last started, first stopped: the CPU profile (started first)
		// covers the writing of the others.
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i](keep))
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (func() error, error) {
		stopAll(false)
		return nil, err
	}
	if o.cpuProfile != "" {
		dir, err := os.MkdirTemp(filepath.Dir(o.cpuProfile), ".perso-profile-*")
		if err != nil {
			return nil, usagef("run: --cpuprofile %s: %v", o.cpuProfile, err)
		}
		s := profile.Start(profile.CPUProfile, profile.ProfilePath(dir), profile.Quiet, profile.NoShutdownHook)
		path := o.cpuProfile
		stops = append(stops, func(keep bool) error {
			s.Stop()
			defer os.RemoveAll(dir)
			if !keep {
				return nil
			}
			// The rename is the atomic step; the profile was closed by Stop.
			if err := os.Rename(filepath.Join(dir, "cpu.pprof"), path); err != nil {
				return fmt.Errorf("run: --cpuprofile: %w", err)
			}
			return nil
		})
	}
	if o.trace != "" {
		f, err := createOutput(o.trace, outputOptions{force: true, inputs: []string{o.input, o.template}, flag: "--trace"})
		if err != nil {
			return fail(err)
		}
		if err := trace.Start(f); err != nil {
			f.Abort()
			return fail(fmt.Errorf("run: --trace: %w", err))
		}
		stops = append(stops, func(keep bool) error {
			trace.Stop()
			if !keep {
				f.Abort()
				return nil
			}
			return f.Commit()
		})
	}
	if o.memProfile != "" {
		f, err := createOutput(o.memProfile, outputOptions{force: true, inputs: []string{o.input, o.template}, flag: "--memprofile"})
		if err != nil {
			return fail(err)
		}
		// pkg/profile's rate, so that the figures compare with earlier
		// profiles: one sample per 4 KiB allocated rather than 512 KiB.
		old := runtime.MemProfileRate
		runtime.MemProfileRate = profile.DefaultMemProfileRate
		stops = append(stops, func(keep bool) error {
			if !keep {
				runtime.MemProfileRate = old
				f.Abort()
				return nil
			}
			// The heap as of the last GC: collect first so that it is the
			// end of the run's, not a cycle ago's.
			runtime.GC()
			err := pprof.Lookup("heap").WriteTo(f, 0)
			runtime.MemProfileRate = old
			if err != nil {
				f.Abort()
				return fmt.Errorf("run: --memprofile: %w", err)
			}
			return f.Commit()
		})
	}
	return func() error { return stopAll(true) }, nil
}

// progress shows a run's progress: a bar on a terminal, log lines
// otherwise.
type progress struct {
	a       *app
	mode    string
	p       *mpb.Progress
	bar     *mpb.Bar
	last    time.Time     // log mode: the last info line
	elapsed time.Duration // bar mode: Progress.Elapsed of the last update
	rejects atomic.Int64  // read by the bar's decorator goroutine
}

func newProgress(mode string, stderr io.Writer, a *app) *progress {
	if mode == "auto" {
		mode = "log"
		if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			mode = "bar"
		}
	}
	pr := &progress{a: a, mode: mode}
	if mode == "bar" {
		// Auto refresh even when stderr is no terminal: --progress bar
		// asked for the bar (mpb would otherwise draw nothing into a pipe).
		// The container's width is the line's where mpb cannot ask a
		// terminal (the bar itself is 40 wide, see update): wide enough for
		// the counters, rate, ETA and rejects.
		pr.p = mpb.New(mpb.WithOutput(stderr), mpb.WithWidth(160), mpb.WithAutoRefresh())
	}
	return pr
}

func (pr *progress) update(p engine.Progress) {
	switch pr.mode {
	case "bar":
		pr.rejects.Store(p.Rejected + p.Conflicts)
		if pr.bar == nil {
			// Age 30 is the EWMA without a warm-up (VividCortex/ewma's
			// SimpleEWMA): the rate and ETA show from the first chunk.
			pr.bar = pr.p.AddBar(p.Records, mpb.BarWidth(40),
				mpb.PrependDecorators(decor.Name("batch "+p.BatchID+" "), decor.CountersNoUnit("%d / %d")),
				mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.EwmaSpeed(0, "%.0f records/s", 30),
					decor.Name(" ETA "), decor.EwmaETA(decor.ET_STYLE_GO, 30),
					decor.Any(func(decor.Statistics) string { return fmt.Sprintf(" rejects %d", pr.rejects.Load()) })))
			// The first update sets the bar without a rate sample: what
			// earlier runs did is not this run's speed, and the time to
			// the first chunk is mostly start-up (the survey reads the
			// whole input), which would weigh on the average for many
			// chunks. The rate and ETA show from the second chunk.
			pr.bar.SetCurrent(p.Done)
			pr.elapsed = p.Elapsed
			return
		}
		// EwmaSetCurrent alone: it samples the increment since the bar's
		// current value (a SetCurrent before it would make that zero and
		// the rate and ETA would never move), over the time since the last
		// update, measured by the engine.
		pr.bar.EwmaSetCurrent(p.Done, p.Elapsed-pr.elapsed)
		pr.elapsed = p.Elapsed
	case "log":
		// Every update at debug level, so that an operator (and the worker
		// tests) can follow each chunk; the info line is throttled.
		pr.a.log.Debug("chunk stored", "batch", p.BatchID, "chunks_done", p.ChunksDone, "run_stored", p.RunStored)
		if time.Since(pr.last) < 2*time.Second && p.ChunksDone < p.Chunks {
			return
		}
		pr.last = time.Now()
		rate := 0.0
		if p.Elapsed > 0 {
			rate = float64(p.RunStored) / p.Elapsed.Seconds()
		}
		pr.a.log.Info("progress", "batch", p.BatchID, "done", p.Done, "records", p.Records, "stored", p.Stored,
			"rejected", p.Rejected, "conflicts", p.Conflicts, "chunks_done", p.ChunksDone, "chunks", p.Chunks,
			"run_stored", p.RunStored, "profiles_per_second", int64(rate))
	}
}

func (pr *progress) done(*engine.Report) {
	if pr.p == nil {
		return
	}
	if pr.bar != nil && !pr.bar.Completed() {
		pr.bar.Abort(false)
	}
	pr.p.Wait()
}
