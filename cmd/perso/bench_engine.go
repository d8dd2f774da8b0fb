package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/bench/storebench"
	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

func init() { registerBench(newBenchEngineCmd) }

// The targets of issue #13 for `perso run` (1,000,000 records, TS.48
// template, SoftHSM2, a 2-core machine), printed beside each figure.
const (
	targetSQLitePerSec   = 20000
	targetPostgresPerSec = 10000
	targetCPUMicros      = 90
	targetHSMCalls       = 0.01
	targetPeakRSS        = 1 << 30
	targetRSSGrowthPct   = 10
	targetStoreOverPPP   = 1.1
)

// keepTemplateAlgorithm: the benches keep the template's network
// algorithm whatever the generated records say (perso run
// --template.algorithm keep), so that any template measures as it is.
var keepTemplateAlgorithm = true

// defaultTemplate is the TS.48 template of the repository's testdata,
// relative to the repository root.
const defaultTemplate = "testdata/ts48/TS48v5_SAIP2.3_NoBERTLV.der"

type engineBenchOptions struct {
	records                      int64
	input, template              string
	chunkSize, workers, inFlight int
}

func newBenchEngineCmd(a *app) *cobra.Command {
	var (
		o   engineBenchOptions
		out benchOutput
	)
	cmd := &cobra.Command{
		Use:   "engine",
		Short: "perso run's engine on N generated records: profiles/s, CPU and HSM calls per profile, RSS, store bytes, throughput over time",
		Long: `Runs the batch engine of perso run in this process on --records generated records (CSV, as
perso testdata perso writes them) with a TS.48 template, the configured HSM (hsm.*: a SoftHSM2
token from perso hsm init) and a fresh store: embedded SQLite in a temporary directory, or,
with store.driver postgres and store.dsn, a scratch schema of that database (created and
dropped; the user needs CREATE on the database).

Reported beside the targets of the engine's issue (1,000,000 records on a 2-core machine):
profiles/s end to end (≥ 20 000 on SQLite, ≥ 10 000 on PostgreSQL), CPU µs per profile
(≤ 90; this process: PostgreSQL's server CPU is not in it), HSM calls per profile (≤ 0.01),
peak RSS (< 1 GiB) and its growth from 10 % of the records to the end (≤ 10 %: memory flat
whatever the input size), store bytes per profile against the protected package's size
(≤ 1.1×), and throughput over time: the rate in each tenth of the run, and the last quarter
against the second (flat means ≈ 1). The figures are the engine's own report (perso run
--report), which --json keeps whole under "details".

Plots (--plots): engine-throughput-over-time.png, engine-rss-over-time.png and the history of
each figure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			defer func() { err = benchError(ctx, "engine", err) }()
			started := time.Now()
			if o.records < 1 || o.chunkSize < 0 || o.workers < 0 || o.inFlight < 0 {
				return usagef("bench engine: --records must be positive; --chunk-size, --workers and --in-flight must not be negative")
			}
			if err := out.check(); err != nil {
				return err
			}
			der, err := benchTemplate(cmd, a, o.template)
			if err != nil {
				return err
			}
			r := a.benchStart(ctx, cmd, "engine", "store.driver", "store.dsn", "hsm.backend", "hsm.module", "hsm.token", "hsm.pin",
				"hsm.sessions", "hsm.live_reserved")
			r.HSM = hsmInfo(a)
			backend, err := benchStoreBackend(a)
			if err != nil {
				return err
			}
			r.Store = backend.Driver
			stderr := cmd.ErrOrStderr()

			pool, err := openHSM(ctx, a, false)
			if err != nil {
				return err
			}
			defer pool.Close()
			work, err := os.MkdirTemp("", "perso-bench-engine-")
			if err != nil {
				return fmt.Errorf("bench engine: a temporary directory: %w", err)
			}
			defer os.RemoveAll(work)
			input := o.input
			if input == "" {
				input = filepath.Join(work, "records.csv")
				fmt.Fprintf(stderr, "bench engine: generating %d records\n", o.records)
				if err := generateRecords(ctx, input, o.records, "8944150000000000017", "234150000000001"); err != nil {
					return err
				}
			}
			db, closeDB, err := storebench.Open(ctx, work, backend)
			if err != nil {
				return err
			}
			defer closeDB()
			fmt.Fprintf(stderr, "bench engine: perso run's engine on %s into %s\n", input, backend.Driver)
			spec := engine.Spec{BatchID: "bench-engine", Input: input, Template: der, ProfileType: "bench-engine",
				Read: perso.Options{Logger: a.log}, KeepAlgorithm: &keepTemplateAlgorithm}
			cfg := engine.Config{ChunkSize: o.chunkSize, Workers: o.workers, InFlight: o.inFlight, Exclusive: true,
				WorkerID: "bench-engine", Logger: a.log}
			shown := -1
			run, err := measureEngine(ctx, db, pool, spec, cfg, func(p engine.Progress) {
				if tenth := 10 * p.ChunksDone / max(1, p.Chunks); tenth != shown {
					shown = tenth
					fmt.Fprintf(stderr, "bench engine: %d of %d chunks\n", p.ChunksDone, p.Chunks)
				}
			})
			if err != nil {
				return err
			}
			ppp, err := pppSize(der)
			if err != nil {
				return err
			}
			if err := addEngine(r, run, backend.Driver, ppp); err != nil {
				return err
			}
			return out.finish(ctx, r, started, cmd.OutOrStdout(), stderr)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.records, "records", 1000000, "records generated and run through the engine")
	f.StringVar(&o.input, "input", "", "run this input file instead of generated records (--records is then ignored)")
	f.StringVar(&o.template, "template", "", "SAIP DER template (default: "+defaultTemplate+" of the perso repository)")
	f.IntVar(&o.chunkSize, "chunk-size", 0, "records per chunk (default: the engine's, 1000)")
	f.IntVar(&o.workers, "workers", 0, "goroutines per CPU-bound stage (default: the core count)")
	f.IntVar(&o.inFlight, "in-flight", 0, "chunks in the pipeline at once (default 2 × workers + 4)")
	f.String("store.driver", "", "store driver: sqlite (a temporary file) or postgres (a scratch schema of store.dsn) (default from config: store.driver)")
	f.String("store.dsn", "", "PostgreSQL DSN whose database gets the scratch schema (default from config: store.dsn)")
	templateMaxSizeFlag(cmd)
	out.addFlags(f)
	return cmd
}

// benchTemplate reads --template, or the repository's TS.48 template.
func benchTemplate(cmd *cobra.Command, a *app, path string) ([]byte, error) {
	if path == "" {
		root := persoRepoRoot()
		if root == "" {
			return nil, usagef("bench: --template: not inside the perso repository, so there is no default template; give a SAIP DER file")
		}
		path = filepath.Join(root, defaultTemplate)
	}
	return readTemplate(cmd, a, path)
}

// benchStoreBackend is the store a bench writes into: a temporary SQLite
// file, or a scratch schema of the configured PostgreSQL database.
func benchStoreBackend(a *app) (storebench.Backend, error) {
	switch d := a.v.GetString("store.driver"); d {
	case "sqlite":
		return storebench.Backend{Driver: "sqlite"}, nil
	case "postgres":
		dsn := a.v.GetString("store.dsn")
		return storebench.Backend{Driver: "postgres", DSN: dsn, Redacted: redactDSN(dsn)}, nil
	default:
		return storebench.Backend{}, usagef("bench: store.driver %q: want sqlite or postgres", d)
	}
}

// generateRecords writes n generated records as CSV to path (0600: they
// hold Ki and OPc), the way perso testdata perso does.
func generateRecords(ctx context.Context, path string, n int64, iccidStart, imsiStart string) error {
	g, err := perso.NewGenerator(perso.GenOptions{Count: n, ICCIDStart: iccidStart, IMSIStart: imsiStart,
		Layout: perso.Layout{KiBytes: 16}})
	if err != nil {
		return fmt.Errorf("bench: generating records: %w", err)
	}
	defer g.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := perso.NewWriter(bw, perso.FormatCSV, g.Schema(), perso.OutFileHeader{})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		rec, err := g.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("bench: generating records: %w", err)
		}
		err = w.Write(rec)
		rec.Release()
		if err != nil {
			return fmt.Errorf("bench: writing %s: %w", path, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("bench: writing %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("bench: writing %s: %w", path, err)
	}
	return f.Close()
}

// engineSample is the state of a run after a stored chunk.
type engineSample struct {
	at             time.Duration // since the run started
	stored         int64         // profiles stored by this run
	rss, peakSoFar int64         // bytes: resident now, and the peak so far (VmHWM)
}

// engineRun is one engine run with its samples.
type engineRun struct {
	rep     *engine.Report
	samples []engineSample
	records int64
}

// measureEngine runs the engine once and samples its progress and memory
// after every stored chunk; progress, when set, is called too.
func measureEngine(ctx context.Context, db *store.DB, pool *hsmpool.Pool, spec engine.Spec, cfg engine.Config,
	progress func(engine.Progress)) (*engineRun, error) {
	run := &engineRun{}
	var mu sync.Mutex
	t0 := time.Now()
	cfg.Progress = func(p engine.Progress) {
		rss, peak := procMemory()
		mu.Lock()
		run.samples = append(run.samples, engineSample{at: time.Since(t0), stored: p.RunStored, rss: rss, peakSoFar: peak})
		run.records = p.Records
		mu.Unlock()
		if progress != nil {
			progress(p)
		}
	}
	rep, err := engine.Run(ctx, db, pool, spec, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: the engine: %w", err)
	}
	if !rep.Complete {
		return nil, fmt.Errorf("bench: the engine stopped with %d of %d chunks stored", rep.ChunksDone, rep.Chunks)
	}
	if rep.RunStored == 0 {
		return nil, fmt.Errorf("bench: the engine stored no profile (%d records read, %d rejected)", rep.RecordsRead, rep.Rejected)
	}
	run.rep = rep
	return run, nil
}

// procMemory is this process's resident set now and its peak so far
// (VmRSS, VmHWM of /proc/self/status), in bytes; 0 where unknown.
func procMemory() (rss, peak int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		if k == "VmRSS" {
			rss = n << 10
		} else {
			peak = n << 10
		}
	}
	return rss, peak
}

// pppSize is the size of one protected profile package of the template:
// a generated record personalised and its segments' protected size.
func pppSize(der []byte) (int, error) {
	plan, err := template.Compile(der)
	if err != nil {
		return 0, fmt.Errorf("bench: template: %w", err)
	}
	g, err := perso.NewGenerator(perso.GenOptions{Count: 1, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
		Layout: perso.Layout{KiBytes: 16}})
	if err != nil {
		return 0, err
	}
	defer g.Close()
	batch, err := g.Next()
	if err != nil {
		return 0, err
	}
	defer batch.Release()
	rec, err := perso.RecordAt(batch, 0)
	if err != nil {
		return 0, err
	}
	vals, err := engine.Values(&rec, len(plan.Algorithms()) == 1)
	if err != nil {
		return 0, err
	}
	upp, err := plan.Apply(&vals, nil)
	if err != nil {
		return 0, fmt.Errorf("bench: personalising a generated record: %w", err)
	}
	size, _ := bpp.ProtectedSize(len(upp))
	return size, nil
}

// windowRates is the engine's rate in n equal windows from its first
// stored chunk to its last (before the first: the survey and the pipeline
// filling up), from the samples (linear between chunks). X is the end of
// each window, in seconds since the run started.
func windowRates(samples []engineSample, n int) []bench.Point {
	if len(samples) < 2 || samples[len(samples)-1].at <= samples[0].at {
		return nil
	}
	at := func(t time.Duration) float64 { // profiles stored by time t
		prev := engineSample{}
		for _, s := range samples {
			if s.at >= t {
				if s.at == prev.at {
					return float64(s.stored)
				}
				return float64(prev.stored) + float64(s.stored-prev.stored)*float64(t-prev.at)/float64(s.at-prev.at)
			}
			prev = s
		}
		return float64(prev.stored)
	}
	var pts []bench.Point
	first := samples[0].at
	step := (samples[len(samples)-1].at - first) / time.Duration(n)
	for i := range n {
		a, b := first+step*time.Duration(i), first+step*time.Duration(i+1)
		// Whole seconds (tenths on short runs): the axis labels its points.
		x := math.Round(b.Seconds())
		if samples[len(samples)-1].at < 20*time.Second {
			x = math.Round(b.Seconds()*10) / 10
		}
		pts = append(pts, bench.Point{X: x, Y: (at(b) - at(a)) / step.Seconds()})
	}
	return pts
}

func checkMark(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// addEngine turns an engine run into figures, the table against the
// targets and the plots. The numbers are the engine's report; what the
// report has no field for (memory along the way, rate per window) comes
// from the samples.
func addEngine(r *bench.Result, run *engineRun, driver string, ppp int) error {
	rep := run.rep
	if err := r.SetDetails(rep); err != nil {
		return err
	}
	target := float64(targetSQLitePerSec)
	if driver == "postgres" {
		target = targetPostgresPerSec
	}
	// RSS growth: the peak up to 10 % of the records against the peak at
	// the end (100k against 1M at the default size).
	tenth := rep.RunStored / 10
	var peak10 int64
	for _, s := range run.samples {
		if s.stored <= max(tenth, run.samples[0].stored) {
			peak10 = s.peakSoFar
		}
	}
	_, peakEnd := procMemory()
	if rep.PeakRSSBytes > peakEnd {
		peakEnd = rep.PeakRSSBytes
	}
	// A peak never falls; but the kernel's high-water mark is updated from
	// per-thread counters that lag by up to a few hundred KiB, and the
	// engine unmaps its segment arenas at the end: the mark read then may
	// be a little under one read during the run.
	for _, s := range run.samples {
		peakEnd = max(peakEnd, s.peakSoFar)
	}
	growth := 100 * (bench.Ratio(float64(peakEnd), float64(peak10)) - 1)
	rates := windowRates(run.samples, 10)
	// Flatness: the last quarter of the storing against the second (the
	// first still has the pipeline filling up).
	flat := math.NaN()
	if q := windowRates(run.samples, 4); len(q) == 4 {
		flat = bench.Ratio(q[3].Y, q[1].Y)
	}
	overPPP := bench.Ratio(rep.StoreBytesPerProf, float64(ppp))

	t := bench.Table{Title: fmt.Sprintf("perso run's engine: %d records, %d stored, %s store, %.1f s", rep.RecordsRead, rep.Stored, driver, rep.WallSeconds),
		Columns: []bench.Column{{Name: "figure"}, {Name: "value"}, {Name: "unit"}, {Name: "target"}, {Name: ""}}}
	row := func(name string, v float64, unit, tgt string, ok bool) {
		t.AddRow(bench.Text(name), bench.Num(v, bench.FigurePrec), bench.Text(unit), bench.Text(tgt), bench.Text(checkMark(ok)))
	}
	row("profiles/s end to end", rep.ProfilesPerSecond, "profiles/s", fmt.Sprintf("≥ %s", bench.Num(target, bench.FigurePrec)), rep.ProfilesPerSecond >= target)
	row("CPU per profile", rep.CPUMicrosPerProf, "µs", fmt.Sprintf("≤ %d", targetCPUMicros), rep.CPUMicrosPerProf <= targetCPUMicros)
	row("HSM calls per profile", rep.HSMCallsPerProfile, "calls", fmt.Sprintf("≤ %g", targetHSMCalls), rep.HSMCallsPerProfile <= targetHSMCalls)
	row("peak RSS", float64(peakEnd)/(1<<20), "MiB", "< 1 024", peakEnd < targetPeakRSS)
	row("peak RSS growth, 10 % → 100 % of records", growth, "%", fmt.Sprintf("≤ %d", targetRSSGrowthPct), growth <= targetRSSGrowthPct)
	row("store bytes per profile", rep.StoreBytesPerProf, "bytes", fmt.Sprintf("≤ 1.1 × PPP %d = %.0f", ppp, targetStoreOverPPP*float64(ppp)),
		overPPP <= targetStoreOverPPP)
	row("throughput last quarter / second quarter", flat, "ratio", "≈ 1 (flat)", flat >= 0.9)
	r.Tables = append(r.Tables, t)

	note := func(tgt string, ok bool) string { return "target " + tgt + ": " + checkMark(ok) }
	r.Add(driver+" profiles/s", rep.ProfilesPerSecond, "profiles/s", bench.Higher,
		note(fmt.Sprintf("≥ %.0f at 1M records", target), rep.ProfilesPerSecond >= target))
	r.Add("cpu per profile", rep.CPUMicrosPerProf, "µs", bench.Lower, note("≤ 90", rep.CPUMicrosPerProf <= targetCPUMicros)+"; this process only")
	r.Add("hsm calls per profile", rep.HSMCallsPerProfile, "calls", bench.Lower, note("≤ 0.01", rep.HSMCallsPerProfile <= targetHSMCalls))
	r.Add("peak rss", float64(peakEnd)/(1<<20), "MiB", bench.Lower, note("< 1 GiB", peakEnd < targetPeakRSS))
	r.Add("peak rss growth 10%-100% of records", growth, "%", bench.Lower, note("≤ 10 %", growth <= targetRSSGrowthPct))
	r.Add("store bytes per profile", rep.StoreBytesPerProf, "bytes", bench.Lower, fmt.Sprintf("PPP %d bytes", ppp))
	r.Add("store bytes / ppp", overPPP, "ratio", bench.Lower, note("≤ 1.1", overPPP <= targetStoreOverPPP))
	r.Add("throughput flatness", flat, "ratio", bench.Higher, "rate in the last quarter of the run / in the second; ≈ 1 is flat")

	s := bench.Series{Plot: "engine-throughput-over-time", Title: fmt.Sprintf("perso run's engine, %d records, %s: does it stay flat? (first to last stored chunk)", rep.RecordsRead, driver),
		Name: "profiles/s, each tenth of the run", XLabel: "time", XUnit: "s", YLabel: "throughput", YUnit: "profiles/s", Points: rates}
	tgt := bench.Series{Plot: s.Plot, Name: fmt.Sprintf("target %.0f", target), Dashed: true,
		Points: []bench.Point{{X: 0, Y: target}, {X: math.Ceil(rep.WallSeconds), Y: target}}}
	m := bench.Series{Plot: "engine-rss-over-time", Title: "perso run's engine: resident memory", Name: "RSS after each chunk",
		XLabel: "profiles stored", YLabel: "RSS", YUnit: "MiB"}
	for _, x := range run.samples {
		m.Points = append(m.Points, bench.Point{X: float64(x.stored), Y: float64(x.rss) / (1 << 20)})
	}
	r.Series = append(r.Series, s, tgt, m)
	r.Notes = append(r.Notes, fmt.Sprintf("the issue's figures are for 1 000 000 records; this run had %d", rep.RecordsRead))
	if driver == "postgres" {
		r.Notes = append(r.Notes, "CPU per profile is perso's own: the PostgreSQL server's CPU is not in it")
	}
	return nil
}
