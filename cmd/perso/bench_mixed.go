package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/bench/storebench"
	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
)

func init() { registerBench(newBenchMixedCmd) }

// The service-quality targets of the mixed load (issue #17).
const (
	targetLiveP99Ratio = 2.0  // live p99 with the batch ≤ 2 × without
	targetBatchShare   = 0.70 // batch throughput with live load ≥ 70 % of solo
)

type mixedOptions struct {
	records, downloads, euiccs int
	curve, binding, sgp26      string
	template                   string
	sampleEvery                time.Duration
	rate                       float64 // live downloads due per second (0: closed loop)
}

func newBenchMixedCmd(a *app) *cobra.Command {
	var (
		o   mixedOptions
		out benchOutput
	)
	cmd := &cobra.Command{
		Use:   "mixed",
		Short: "A batch at full speed and live downloads at once: live latency with and without the batch, batch throughput with and without live load",
		Long: `Measures the design's hardest promise: live downloads keep their latency while a batch runs.
On a fresh store (a temporary SQLite file, or a scratch schema of the configured PostgreSQL
database) it loads profiles for the live side, places their orders, starts perso serve as a
child process (as deployed: perso run and perso serve are separate processes), then runs
three phases:

  batch solo   perso run as a child process (as deployed, at its engine.nice) on
               --records generated records;
  live idle    --downloads full downloads by --euiccs virtual eUICCs (bench download's
               load generator) at --rate downloads per second, nothing else running;
  mixed        perso run on another --records records and, for as long as it runs, the
               same live load (at most 4 × --downloads downloads).

The live load is open: a download is due every 1/--rate seconds whether or not the
earlier ones finished, and its latency counts from when it was due. --rate 0 makes it
closed (each eUICC starts its next download when its last ends): the eUICCs then take
every CPU cycle they can, and their latency measures the share of the CPU they get
beside the batch rather than how long a device waits at a given load.

Reported: p50/p99 per ES9+ call and per download with and without the batch, downloads/s,
batch profiles/s solo and under live load (perso run's report), and the ratios against the
targets (live p99 ≤ 2 × idle, batch ≥ 70 % of solo). Every --sample-every, each phase records
what could be saturated: the machine's CPU (busy share and run queue, /proc/stat), the HSM
lanes' queue depth in the server (its /metrics), and the store
(latency of a small query); when a target is missed the report names the resources that
were saturated, from those measurements.

Needs a token with the SGP.26 keys (perso hsm init --import-sgp26) and serve's PKI and TLS
settings (defaults: testdata/sgp26 of the repository). Plots (--plots):
mixed-latency-distribution.png (latency by percentile, with and without the batch).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			defer func() { err = benchError(ctx, "mixed", err) }()
			started := time.Now()
			if o.records < 1 || o.downloads < 1 || o.euiccs < 1 || o.sampleEvery <= 0 || o.rate < 0 {
				return usagef("bench mixed: --records, --downloads, --euiccs and --sample-every must be positive, --rate not negative")
			}
			curves, err := serveCurves(o.curve)
			if err != nil || len(curves) != 1 {
				return usagef("bench mixed: --curve %q: want nist or brp", o.curve)
			}
			binding, err := euiccsim.ParseBinding(o.binding)
			if err != nil {
				return usagef("--binding: %v", err)
			}
			if err := out.check(); err != nil {
				return err
			}
			if o.sgp26 == "" {
				o.sgp26 = filepath.Dir(filepath.Dir(a.v.GetString("serve.tls_cert")))
			}
			roots, err := euiccsim.LoadTLSRoots(filepath.Join(o.sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"))
			if err != nil {
				return usagef("--sgp26 %s: %v", o.sgp26, err)
			}
			der, err := benchTemplate(cmd, a, o.template)
			if err != nil {
				return err
			}
			backend, err := benchStoreBackend(a)
			if err != nil {
				return err
			}
			r := a.benchStart(ctx, cmd, "mixed", "store.driver", "store.dsn", "hsm.backend", "hsm.module", "hsm.token", "hsm.pin",
				"hsm.sessions", "hsm.live_reserved", "serve.address")
			r.HSM = hsmInfo(a)
			r.Store = backend.Driver
			stderr := cmd.ErrOrStderr()
			say := func(format string, args ...any) { fmt.Fprintf(stderr, "bench mixed: "+format+"\n", args...) }

			work, err := os.MkdirTemp("", "perso-bench-mixed-")
			if err != nil {
				return fmt.Errorf("bench mixed: a temporary directory: %w", err)
			}
			defer os.RemoveAll(work)
			dsn, drop, err := storebench.Scratch(ctx, work, backend)
			if err != nil {
				return err
			}
			defer drop()
			db, err := store.Open(ctx, backend.Driver, dsn)
			if err != nil {
				return fmt.Errorf("bench mixed: opening the scratch store: %w", scrubDSN(err, dsn))
			}
			defer db.Close()
			pool, err := openHSM(ctx, a, false)
			if err != nil {
				return err
			}
			defer pool.Close()

			// Inputs: the live side's profiles and the two batches, with
			// ICCIDs and IMSIs apart so that no batch meets another's.
			inputs := []struct {
				name, iccid, imsi string
				n                 int
			}{
				{"live", "8944150000000000017", "234150000000001", 5 * o.downloads},
				{"solo", "8944151000000000016", "234151000000001", o.records},
				{"mixed", "8944152000000000015", "234152000000001", o.records},
			}
			for _, in := range inputs {
				if err := generateRecords(ctx, filepath.Join(work, in.name+".csv"), int64(in.n), in.iccid, in.imsi); err != nil {
					return err
				}
			}
			runBatch := func(name string, progress func(engine.Progress)) (*engineRun, error) {
				spec := engine.Spec{BatchID: "bench-" + name, Input: filepath.Join(work, name+".csv"), Template: der,
					ProfileType: "bench-" + name, Read: perso.Options{Logger: a.log}, KeepAlgorithm: &keepTemplateAlgorithm}
				cfg := engine.Config{Exclusive: true, WorkerID: "bench-mixed", Logger: a.log}
				return measureEngine(ctx, db, pool, spec, cfg, progress)
			}
			say("loading %d profiles for the live side", inputs[0].n)
			if _, err := runBatch("live", nil); err != nil {
				return err
			}
			templatePath := filepath.Join(work, "template.der")
			if err := os.WriteFile(templatePath, der, 0o600); err != nil {
				return fmt.Errorf("bench mixed: %w", err)
			}
			childBatch := func(name string) (*engine.Report, error) {
				return runBatchChild(ctx, cmd, batchChildOptions{driver: backend.Driver, dsn: dsn, template: templatePath,
					input: filepath.Join(work, name+".csv"), batch: "bench-" + name, report: filepath.Join(work, name+".report.json")})
			}
			address := a.v.GetString("serve.address")
			codes, err := placeOrders(ctx, db, "bench-live", address, inputs[0].n)
			if err != nil {
				return err
			}
			srv, err := startServeChild(ctx, cmd, serveChildOptions{dsn: dsn, metrics: true})
			if err != nil {
				return err
			}
			defer srv.stop()
			host := strings.TrimPrefix(strings.TrimPrefix(srv.url, "https://"), "http://")
			resolve := map[string]string{address: host}
			live := func(codes []string, stop <-chan struct{}) (*downloadResult, error) {
				return runDownloads(ctx, o.sgp26, curves[0], binding, roots, resolve, codes,
					downloadLoad{workers: o.euiccs, pid: srv.pid, stop: stop, rate: o.rate})
			}
			mon := &resourceMonitor{every: o.sampleEvery, db: db, probeBatch: "bench-live", metricsURL: srv.metrics}

			say("phase 1 of 3: batch solo, %d records", o.records)
			stopMon := mon.start(ctx, "batch solo")
			solo, err := childBatch("solo")
			stopMon()
			if err != nil {
				return err
			}
			say("phase 2 of 3: live idle, %d downloads by %d eUICCs", o.downloads, o.euiccs)
			stopMon = mon.start(ctx, "live idle")
			idle, err := live(codes[:o.downloads], nil)
			stopMon()
			if err != nil {
				return err
			}
			say("phase 3 of 3: mixed, %d records and live downloads while they run", o.records)
			stopMon = mon.start(ctx, "mixed")
			batchDone := make(chan struct{})
			var mixed *engine.Report
			var batchErr error
			go func() {
				defer close(batchDone)
				mixed, batchErr = childBatch("mixed")
			}()
			under, liveErr := live(codes[o.downloads:], batchDone)
			<-batchDone
			stopMon()
			if batchErr != nil {
				return batchErr
			}
			if liveErr != nil {
				return liveErr
			}
			if under.n >= len(codes)-o.downloads {
				r.Notes = append(r.Notes, fmt.Sprintf("the live load ran out of orders (%d) before the batch ended: the batch's last %.1f s ran without it",
					under.n, mixed.WallSeconds-under.wall.Seconds()))
			}
			addMixed(r, o, a.v.GetInt("engine.nice"), solo, mixed, idle, under, mon)
			return out.finish(ctx, r, started, cmd.OutOrStdout(), stderr)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.records, "records", 100000, "records of each batch (solo, and under live load)")
	f.IntVar(&o.downloads, "downloads", 500, "downloads of the idle phase (the mixed phase takes at most four times as many)")
	f.IntVar(&o.euiccs, "euiccs", 16, "concurrent virtual eUICCs")
	f.StringVar(&o.curve, "curve", "nist", "eUICC curve: nist or brp")
	f.StringVar(&o.binding, "binding", "json", "ES9+ binding: json or asn1")
	f.StringVar(&o.sgp26, "sgp26", "", "SGP.26 test PKI directory (default: two levels above serve.tls_cert)")
	f.StringVar(&o.template, "template", "", "SAIP DER template of the batches (default: "+defaultTemplate+" of the perso repository)")
	f.Float64Var(&o.rate, "rate", 100, "live downloads due per second (an open load; 0: closed, each eUICC downloads again as soon as it is done)")
	f.DurationVar(&o.sampleEvery, "sample-every", 100*time.Millisecond, "how often CPU, HSM queues and the store are sampled")
	f.String("store.driver", "", "store driver: sqlite (a temporary file) or postgres (a scratch schema of store.dsn) (default from config: store.driver)")
	f.String("store.dsn", "", "PostgreSQL DSN whose database gets the scratch schema (default from config: store.dsn)")
	templateMaxSizeFlag(cmd)
	out.addFlags(f)
	return cmd
}

// resourceMonitor samples, during each phase, what a missed target could
// be waiting for: the CPUs, the HSM lanes (server and batch), the store.
type resourceMonitor struct {
	every      time.Duration
	db         *store.DB
	probeBatch string
	metricsURL string // the server's /metrics

	mu     sync.Mutex
	phases []*phaseSamples
}

// phaseSamples are one phase's measurements.
type phaseSamples struct {
	name                       string
	n                          int
	cpuBusy, runQueue          float64 // sums: busy share of all CPUs, runnable tasks per CPU
	cpuBusyMax                 float64
	srvLiveQ, srvBatchQ        float64 // sums of the server's queue depth by lane
	srvLiveQMax                float64
	storeProbe                 hsmpool.Histogram
	srvScrapes, srvScrapeFails int
}

func (p *phaseSamples) mean(sum float64) float64 { return bench.Ratio(sum, float64(p.n)) }

// start samples until the returned function is called.
func (m *resourceMonitor) start(ctx context.Context, name string) func() {
	ph := &phaseSamples{name: name}
	m.mu.Lock()
	m.phases = append(m.phases, ph)
	m.mu.Unlock()
	done := make(chan struct{})
	finished := make(chan struct{})
	client := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(finished)
		t := time.NewTicker(m.every)
		defer t.Stop()
		prev := readCPUStat()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cur := readCPUStat()
			busy := cur.busyShare(prev)
			prev = cur
			ph.n++
			ph.cpuBusy += busy
			ph.cpuBusyMax = max(ph.cpuBusyMax, busy)
			ph.runQueue += float64(cur.running) / float64(runtime.NumCPU())
			if m.metricsURL != "" {
				live, batch, err := scrapeQueueDepth(ctx, client, m.metricsURL)
				ph.srvScrapes++
				if err != nil {
					ph.srvScrapeFails++
				} else {
					ph.srvLiveQ += live
					ph.srvBatchQ += batch
					ph.srvLiveQMax = max(ph.srvLiveQMax, live)
				}
			}
			t0 := time.Now()
			if _, err := m.db.GetBatch(ctx, m.probeBatch); err == nil {
				ph.storeProbe.Record(time.Since(t0))
			}
		}
	}()
	return func() { close(done); <-finished }
}

// cpuStat is the aggregate line of /proc/stat and its procs_running.
type cpuStat struct {
	busy, total uint64
	running     int
}

func readCPUStat() cpuStat {
	var s cpuStat
	f, err := os.Open("/proc/stat")
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "cpu":
			for i, v := range fields[1:] {
				n, _ := strconv.ParseUint(v, 10, 64)
				if i >= 8 { // guest time is already in user
					break
				}
				s.total += n
				if i != 3 && i != 4 { // idle, iowait
					s.busy += n
				}
			}
		case "procs_running":
			if len(fields) > 1 {
				s.running, _ = strconv.Atoi(fields[1])
			}
		}
	}
	return s
}

// busyShare is the share of CPU time spent busy since prev (0..1).
func (s cpuStat) busyShare(prev cpuStat) float64 {
	if s.total <= prev.total {
		return 0
	}
	return float64(s.busy-prev.busy) / float64(s.total-prev.total)
}

// scrapeQueueDepth reads perso_hsm_queue_depth by lane from a /metrics page.
func scrapeQueueDepth(ctx context.Context, c *http.Client, url string) (live, batch float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "perso_hsm_queue_depth{")
		if !ok {
			continue
		}
		labels, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, perr := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if perr != nil {
			continue
		}
		switch {
		case strings.Contains(labels, `lane="live"`):
			live, found = v, found+1
		case strings.Contains(labels, `lane="batch"`):
			batch, found = v, found+1
		}
	}
	if found == 0 {
		return 0, 0, fmt.Errorf("no perso_hsm_queue_depth in %s", url)
	}
	return live, batch, nil
}

var mixedPercentiles = []float64{0.5, 0.75, 0.9, 0.95, 0.99, 0.999}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// addMixed fills the result: latency with and without the batch, batch
// throughput with and without live load, the ratios against the targets,
// the resources sampled in each phase and, for a missed target, which of
// them were saturated.
func addMixed(r *bench.Result, o mixedOptions, nice int, solo, mixed *engine.Report, idle, under *downloadResult, mon *resourceMonitor) {
	lt := bench.Table{Title: "live ES9+ latency without and with the batch",
		Columns: []bench.Column{{Name: "call"}, {Name: "idle count"}, {Name: "idle p50", Unit: "ms"}, {Name: "idle p99", Unit: "ms"},
			{Name: "mixed count"}, {Name: "mixed p50", Unit: "ms"}, {Name: "mixed p99", Unit: "ms"}, {Name: "p99 ratio"}}}
	rows := []latencyRow{}
	for _, call := range es9Calls {
		if idle.calls[call].Count() > 0 || under.calls[call].Count() > 0 {
			rows = append(rows, latencyRow{call, idle.calls[call], under.calls[call]})
		}
	}
	rows = append(rows, latencyRow{"whole download", &idle.total, &under.total})
	for i, rw := range rows {
		ratio := bench.Ratio(msOf(rw.under.Quantile(0.99)), msOf(rw.idle.Quantile(0.99)))
		lt.AddRow(bench.Text(rw.name), bench.Num(float64(rw.idle.Count()), 0), bench.Num(msOf(rw.idle.Quantile(0.5)), 1),
			bench.Num(msOf(rw.idle.Quantile(0.99)), 1), bench.Num(float64(rw.under.Count()), 0), bench.Num(msOf(rw.under.Quantile(0.5)), 1),
			bench.Num(msOf(rw.under.Quantile(0.99)), 1), bench.Num(ratio, 2))
		if rw.name != "whole download" {
			r.Add("live "+rw.name+" p99 ratio", ratio, "ratio", bench.Lower, "p99 with the batch / without")
		}
		for _, ph := range []struct {
			h    *hsmpool.Histogram
			name string
			dash bool
		}{{rw.idle, "idle", true}, {rw.under, "with batch", false}} {
			s := bench.Series{Plot: "mixed-latency-distribution", Title: "live ES9+ latency by percentile: without the batch (dashed) and with it",
				Name: rw.name + " " + ph.name, XLabel: "percentile in nines (0.3 = p50, 1 = p90, 2 = p99, 3 = p99.9)", YLabel: "latency", YUnit: "ms",
				Dashed: ph.dash, Group: strconv.Itoa(i)}
			if ph.h.Count() == 0 {
				continue
			}
			for _, q := range mixedPercentiles {
				s.Points = append(s.Points, bench.Point{X: -math.Log10(1 - q), Y: msOf(ph.h.Quantile(q))})
			}
			r.Series = append(r.Series, s)
		}
	}
	r.Tables = append(r.Tables, lt)

	liveRatio := bench.Ratio(msOf(under.total.Quantile(0.99)), msOf(idle.total.Quantile(0.99)))
	worstCall, worstRatio := "", 0.0
	for _, rw := range rows[:len(rows)-1] {
		if x := bench.Ratio(msOf(rw.under.Quantile(0.99)), msOf(rw.idle.Quantile(0.99))); x > worstRatio {
			worstCall, worstRatio = rw.name, x
		}
	}
	batchShare := bench.Ratio(mixed.ProfilesPerSecond, solo.ProfilesPerSecond)
	idleRate := float64(idle.ok) / idle.wall.Seconds()
	underRate := float64(under.ok) / under.wall.Seconds()

	tt := bench.Table{Title: "targets", Columns: []bench.Column{{Name: "figure"}, {Name: "without"}, {Name: "with"}, {Name: "ratio"}, {Name: "target"}, {Name: ""}}}
	liveOK, callOK, batchOK := liveRatio <= targetLiveP99Ratio, worstRatio <= targetLiveP99Ratio, batchShare >= targetBatchShare
	tt.AddRow(bench.Text("live download p99, ms (without / with the batch)"), bench.Num(msOf(idle.total.Quantile(0.99)), 1),
		bench.Num(msOf(under.total.Quantile(0.99)), 1), bench.Num(liveRatio, 2), bench.Text("≤ 2"), bench.Text(checkMark(liveOK)))
	tt.AddRow(bench.Text("worst ES9+ call p99 ("+worstCall+"), ms"), bench.Num(msOf(rowByName(rows, worstCall).idle.Quantile(0.99)), 1),
		bench.Num(msOf(rowByName(rows, worstCall).under.Quantile(0.99)), 1), bench.Num(worstRatio, 2), bench.Text("≤ 2"), bench.Text(checkMark(callOK)))
	tt.AddRow(bench.Text("batch profiles/s (solo / with live load)"), bench.Num(solo.ProfilesPerSecond, bench.FigurePrec),
		bench.Num(mixed.ProfilesPerSecond, bench.FigurePrec), bench.Num(batchShare, 2), bench.Text("≥ 0.70"), bench.Text(checkMark(batchOK)))
	tt.AddRow(bench.Text("live downloads/s (idle / with the batch)"), bench.Num(idleRate, 1), bench.Num(underRate, 1),
		bench.Num(bench.Ratio(underRate, idleRate), 2), bench.Text(""), bench.Text(""))
	r.Tables = append(r.Tables, tt)

	r.Add("live download p99 idle", msOf(idle.total.Quantile(0.99)), "ms", bench.Lower, "")
	r.Add("live download p99 with batch", msOf(under.total.Quantile(0.99)), "ms", bench.Lower, "")
	r.Add("live download p50 idle", msOf(idle.total.Quantile(0.5)), "ms", bench.Lower, "")
	r.Add("live download p50 with batch", msOf(under.total.Quantile(0.5)), "ms", bench.Lower, "")
	r.Add("live p99 ratio", liveRatio, "ratio", bench.Lower, "whole download, with the batch / without; target ≤ 2: "+checkMark(liveOK))
	r.Add("live worst call p99 ratio", worstRatio, "ratio", bench.Lower, worstCall+"; target ≤ 2: "+checkMark(callOK))
	r.Add("batch solo", solo.ProfilesPerSecond, "profiles/s", bench.Higher, "perso run's report")
	r.Add("batch with live load", mixed.ProfilesPerSecond, "profiles/s", bench.Higher, "perso run's report")
	r.Add("batch share", batchShare, "ratio", bench.Higher, "with live load / solo; target ≥ 0.70: "+checkMark(batchOK))
	r.Add("live idle", idleRate, "downloads/s", bench.Higher, "")
	r.Add("live with batch", underRate, "downloads/s", bench.Higher, "")

	rt := bench.Table{Title: fmt.Sprintf("resources sampled (every %s)", mon.every),
		Columns: []bench.Column{{Name: "phase"}, {Name: "samples"}, {Name: "CPU busy", Unit: "% mean"}, {Name: "CPU busy", Unit: "% max"},
			{Name: "runnable", Unit: "per CPU"}, {Name: "server live q", Unit: "mean"}, {Name: "server live q", Unit: "max"},
			{Name: "store probe p50", Unit: "ms"}, {Name: "store probe p99", Unit: "ms"}}}
	byName := map[string]*phaseSamples{}
	for _, ph := range mon.phases {
		byName[ph.name] = ph
		rt.AddRow(bench.Text(ph.name), bench.Num(float64(ph.n), 0), bench.Num(100*ph.mean(ph.cpuBusy), 0), bench.Num(100*ph.cpuBusyMax, 0),
			bench.Num(ph.mean(ph.runQueue), 2), bench.Num(ph.mean(ph.srvLiveQ), 2), bench.Num(ph.srvLiveQMax, 0),
			bench.Num(msOf(ph.storeProbe.Quantile(0.5)), 2), bench.Num(msOf(ph.storeProbe.Quantile(0.99)), 2))
		if ph.srvScrapeFails > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%s: %d of %d scrapes of the server's /metrics failed", ph.name, ph.srvScrapeFails, ph.srvScrapes))
		}
	}
	r.Tables = append(r.Tables, rt)
	if m := byName["mixed"]; m != nil {
		r.Add("mixed cpu busy", 100*m.mean(m.cpuBusy), "%", bench.Lower, "all CPUs, mean over the mixed phase")
		r.Add("mixed server live queue", m.mean(m.srvLiveQ), "requests", bench.Lower, "HSM live-lane requests waiting in perso serve, mean")
		r.Add("mixed store probe p99", msOf(m.storeProbe.Quantile(0.99)), "ms", bench.Lower, "a batch-row read while the phase runs")
	}
	load := fmt.Sprintf("open: %.0f downloads due per second by at most %d eUICCs, latency counted from when each was due", o.rate, o.euiccs)
	if o.rate == 0 {
		load = fmt.Sprintf("closed: %d eUICCs each downloading again as soon as done; their latency follows the CPU share they get beside the batch", o.euiccs)
	}
	r.Notes = append(r.Notes, "live load "+load)
	r.Notes = append(r.Notes, fmt.Sprintf("the batch (perso run, at nice %d: engine.nice) and the server are separate processes with their own HSM pools "+
		"(SoftHSM2 runs in each process): the live lane orders HSM work within the server only, so on a host they share, "+
		"the batch competes for CPU, not for HSM sessions", nice))
	if liveOK && callOK && batchOK {
		r.Notes = append(r.Notes, "both targets met: live p99 within 2× of idle and the batch at ≥ 70 % of its solo throughput")
		return
	}
	for _, s := range saturated(byName) {
		r.Notes = append(r.Notes, "saturated: "+s)
	}
}

// latencyRow is one ES9+ call (or the whole download) without and with
// the batch.
type latencyRow struct {
	name        string
	idle, under *hsmpool.Histogram
}

func rowByName(rows []latencyRow, name string) latencyRow {
	for _, r := range rows {
		if r.name == name {
			return r
		}
	}
	return rows[len(rows)-1]
}

// saturated names, from the samples, the resources that ran out in the
// mixed phase compared with the phases that ran alone.
func saturated(ph map[string]*phaseSamples) []string {
	m, idle, solo := ph["mixed"], ph["live idle"], ph["batch solo"]
	if m == nil || m.n == 0 {
		return []string{"nothing sampled in the mixed phase (it was shorter than --sample-every)"}
	}
	var out []string
	// More runnable tasks than CPUs means work waiting for a CPU, even
	// when the sampled busy share dips between bursts.
	if busy, rq := m.mean(m.cpuBusy), m.mean(m.runQueue); busy >= 0.9 || rq >= 1.5 {
		out = append(out, fmt.Sprintf("CPU: %.0f %% of all %d CPUs busy on average (max %.0f %%), %.2f runnable tasks per CPU (live idle: %.0f %%, batch solo: %.0f %%)",
			100*busy, runtime.NumCPU(), 100*m.cpuBusyMax, m.mean(m.runQueue), 100*meanOr(idle, func(p *phaseSamples) float64 { return p.cpuBusy }),
			100*meanOr(solo, func(p *phaseSamples) float64 { return p.cpuBusy })))
	}
	if q := m.mean(m.srvLiveQ); q >= 0.5 {
		out = append(out, fmt.Sprintf("HSM live lane in perso serve: %.2f requests waiting for a session on average (max %.0f; live idle: %.2f)",
			q, m.srvLiveQMax, meanOr(idle, func(p *phaseSamples) float64 { return p.srvLiveQ })))
	}
	if idle != nil && idle.storeProbe.Count() > 0 {
		p99m, p99i := msOf(m.storeProbe.Quantile(0.99)), msOf(idle.storeProbe.Quantile(0.99))
		if p99m > 2*p99i && p99m > 10 {
			out = append(out, fmt.Sprintf("store: a small read's p99 %.1f ms with the batch against %.1f ms without", p99m, p99i))
		}
	}
	if len(out) == 0 {
		out = append(out, "none of CPU, HSM lane queues or store latency crossed its threshold (CPU ≥ 90 % busy or ≥ 1.5 runnable tasks per CPU, live queue ≥ 0.5, store p99 > 2× idle and > 10 ms): see the resources table")
	}
	return out
}

func meanOr(p *phaseSamples, f func(*phaseSamples) float64) float64 {
	if p == nil {
		return 0
	}
	return p.mean(f(p))
}

// batchChildOptions name one perso run of bench mixed.
type batchChildOptions struct {
	driver, dsn, template, input, batch, report string
}

// runBatchChild runs perso run as a child process, as deployed beside
// perso serve (at its engine.nice, with its own HSM pool), and returns its
// report. The child inherits the configuration: the same --config, the
// PERSO_* environment.
func runBatchChild(ctx context.Context, cmd *cobra.Command, o batchChildOptions) (*engine.Report, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--template", o.template, "--input", o.input, "--batch", o.batch, "--profile-type", o.batch,
		"--report", o.report, "--progress", "none", "--template.algorithm", "keep",
		"--store.driver", o.driver, "--store.dsn", o.dsn, "--log-level", "warn"}
	args = append(args, childConfigArgs(cmd)...)
	c := exec.CommandContext(ctx, exe, args...)
	// On Ctrl-C the child stops as perso run does: after its chunks in flight.
	c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
	c.WaitDelay = 15 * time.Second
	c.Env = append(os.Environ(), "PERSO_ENGINE_WORKER_ID=bench-mixed")
	c.Stdout = io.Discard // the human summary; the report file has the figures
	c.Stderr = cmd.ErrOrStderr()
	if err := c.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("bench mixed: perso run --batch %s (its errors are above): %w", o.batch, err)
	}
	data, err := os.ReadFile(o.report)
	if err != nil {
		return nil, fmt.Errorf("bench mixed: perso run's report: %w", err)
	}
	var rep engine.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("bench mixed: perso run's report %s: %w", o.report, err)
	}
	if !rep.Complete || rep.RunStored == 0 {
		return nil, fmt.Errorf("bench mixed: perso run --batch %s stored %d profiles, %d of %d chunks", o.batch, rep.RunStored, rep.ChunksDone, rep.Chunks)
	}
	return &rep, nil
}
