package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/bench/storebench"
	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
)

// soakServerOptions are bench soak --target serve's settings.
type soakServerOptions struct {
	binds, workers, samples  int
	warmup                   float64
	curve                    esim.Curve
	binding, sgp26, template string
	http                     string
}

// procMem is a process's memory from /proc/PID/status, in MiB.
type procMem struct {
	rss, hwm, anon, file float64
}

// readProcMem reads /proc/PID/status; zeros when the process or /proc is
// not there.
func readProcMem(pid int) procMem {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procMem{}
	}
	var m procMem
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(string(f[1]), 64)
		switch string(f[0]) {
		case "VmRSS:":
			m.rss = kb / 1024
		case "VmHWM:":
			m.hwm = kb / 1024
		case "RssAnon:":
			m.anon = kb / 1024
		case "RssFile:":
			m.file = kb / 1024
		}
	}
	return m
}

// soakServeResult is what bench soak --target serve measured.
type soakServeResult struct {
	binds, failed          int
	wall, client, server   time.Duration
	orderWall              time.Duration
	load                   time.Duration // the engine's load of the profiles
	samples                []bench.Point // (downloads done, server RSS MiB) after each segment
	warm, end              procMem       // after the warm-up, at the end
	maxAfterWarm           float64       // the highest RSS seen after the warm-up (segment ends and the 1 s sampler)
	maxAt                  int           // downloads done at the segment end before that maximum (it lies in the next segment)
	timeline               []bench.Point // (seconds since the downloads began, server RSS MiB), every second
	start                  procMem       // when the server listened
	reinits, reinitsAtWarm float64       // perso_hsm_module_reinits_total at the end and after the warm-up
	errors                 map[string]int
}

// soakServe is bench soak --target serve: profiles loaded, one perso serve
// child, complete downloads by virtual eUICCs in segments, the child's RSS
// after each.
func soakServe(ctx context.Context, cmd *cobra.Command, a *app, o soakServerOptions, out *benchOutput, started time.Time) error {
	binding, err := euiccsim.ParseBinding(o.binding)
	if err != nil {
		return usagef("--binding: %v", err)
	}
	if o.http != "2" && o.http != "1.1" {
		return usagef("--http %q: want 2 or 1.1", o.http)
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
	r := a.benchStart(ctx, cmd, "soak", "store.driver", "store.dsn", "hsm.backend", "hsm.module", "hsm.token", "hsm.pin", "hsm.sessions",
		"hsm.live_reserved", "hsm.recycle_after", "serve.address")
	r.HSM = hsmInfo(a)
	r.Store = backend.Driver
	stderr := cmd.ErrOrStderr()
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "bench soak: "+format+"\n", args...) }

	work, err := os.MkdirTemp("", "perso-bench-soak-")
	if err != nil {
		return fmt.Errorf("bench soak: a temporary directory: %w", err)
	}
	defer os.RemoveAll(work)
	dsn, drop, err := storebench.Scratch(ctx, work, backend)
	if err != nil {
		return err
	}
	defer drop()
	db, err := store.Open(ctx, backend.Driver, dsn)
	if err != nil {
		return fmt.Errorf("bench soak: opening the scratch store: %w", scrubDSN(err, dsn))
	}
	defer db.Close()

	// The profiles, loaded by the engine in this process; its HSM pool is
	// closed before the server starts, so that the server has the token
	// to itself as in a deployment.
	res := &soakServeResult{binds: o.binds, errors: map[string]int{}}
	input := filepath.Join(work, "soak.csv")
	if err := generateRecords(ctx, input, int64(o.binds), "8944153000000000014", "234153000000001"); err != nil {
		return err
	}
	say("loading %d profiles", o.binds)
	pool, err := openHSM(ctx, a, false)
	if err != nil {
		return err
	}
	spec := engine.Spec{BatchID: "bench-soak", Input: input, Template: der, ProfileType: "bench-soak",
		Read: perso.Options{Logger: a.log}, KeepAlgorithm: &keepTemplateAlgorithm}
	t0 := time.Now()
	_, err = measureEngine(ctx, db, pool, spec, engine.Config{Exclusive: true, WorkerID: "bench-soak", Logger: a.log}, nil)
	pool.Close()
	if err != nil {
		return err
	}
	res.load = time.Since(t0)
	os.Remove(input)

	// The server's recycling setting: flags are not passed to the child,
	// the environment is.
	if f := cmd.Flags().Lookup("hsm.recycle_after"); f != nil && f.Changed {
		restore := setEnvFor("PERSO_HSM_RECYCLE_AFTER", f.Value.String())
		defer restore()
	}
	srv, err := startServeChild(ctx, cmd, serveChildOptions{dsn: dsn, metrics: true})
	if err != nil {
		return err
	}
	defer srv.stop()
	host := strings.TrimPrefix(strings.TrimPrefix(srv.url, "https://"), "http://")
	address := a.v.GetString("serve.address")
	resolve := map[string]string{address: host}
	res.start = readProcMem(srv.pid)

	// Segments of the downloads; each segment's orders are placed while
	// the one before it downloads.
	segSize := max(o.binds/o.samples, 1)
	type segment struct {
		codes []string
		wall  time.Duration
		err   error
	}
	segs := make(chan segment, 1)
	octx, cancelOrders := context.WithCancel(ctx)
	defer cancelOrders()
	go func() {
		defer close(segs)
		for done := 0; done < o.binds; done += segSize {
			n := min(segSize, o.binds-done)
			t := time.Now()
			codes, err := placeOrders(octx, db, "bench-soak", address, n)
			select {
			case segs <- segment{codes: codes, wall: time.Since(t), err: err}:
			case <-octx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	// The 1 s sampler: the maximum RSS after the warm-up, between
	// segment ends.
	var mu sync.Mutex
	warmDone := false
	done := 0 // downloads done at the last segment end, under mu
	dl0 := time.Now()
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampler:
				return
			case <-tick.C:
				m := readProcMem(srv.pid)
				mu.Lock()
				res.timeline = append(res.timeline, bench.Point{X: time.Since(dl0).Seconds(), Y: m.rss})
				if warmDone && m.rss > res.maxAfterWarm {
					res.maxAfterWarm, res.maxAt = m.rss, done
				}
				mu.Unlock()
			}
		}
	}()
	warm := int(float64(o.binds) * o.warmup)
	say("%d downloads by %d virtual eUICCs against one perso serve (pid %d, RSS %.1f MiB at start), %d segments",
		o.binds, o.workers, srv.pid, res.start.rss, (o.binds+segSize-1)/segSize)
	for seg := range segs {
		if seg.err != nil {
			close(stopSampler)
			<-samplerDone
			return seg.err
		}
		res.orderWall += seg.wall
		d, err := runDownloads(ctx, o.sgp26, o.curve, binding, roots, resolve, seg.codes, downloadLoad{workers: o.workers, pid: srv.pid, http1: o.http == "1.1"})
		if err != nil {
			close(stopSampler)
			<-samplerDone
			return err
		}
		res.wall += d.wall
		res.client += d.client
		res.server += d.server
		res.failed += d.n - d.ok
		for k, v := range d.errors {
			res.errors[k] += v
		}
		m := readProcMem(srv.pid)
		mu.Lock()
		done += d.n
		res.samples = append(res.samples, bench.Point{X: float64(done), Y: m.rss})
		if !warmDone && done >= warm {
			warmDone = true
			res.warm = m
			res.reinitsAtWarm, _ = scrapeCounter(ctx, srv.metrics, "perso_hsm_module_reinits_total")
		} else if warmDone && m.rss > res.maxAfterWarm {
			res.maxAfterWarm, res.maxAt = m.rss, done-d.n
		}
		mu.Unlock()
		res.end = m
		say("%d downloads (%d failed), server RSS %.1f MiB (anon %.1f, file %.1f), %.0f downloads/s in this segment",
			done, res.failed, m.rss, m.anon, m.file, float64(d.ok)/d.wall.Seconds())
	}
	close(stopSampler)
	<-samplerDone
	if err := ctx.Err(); err != nil {
		return err
	}
	res.binds = done
	res.end = readProcMem(srv.pid)
	if res.end.rss > res.maxAfterWarm {
		res.maxAfterWarm, res.maxAt = res.end.rss, done
	}
	var serr error
	res.reinits, serr = scrapeCounter(ctx, srv.metrics, "perso_hsm_module_reinits_total")
	if serr != nil {
		r.Notes = append(r.Notes, "the server's module reinitialisations could not be read from its /metrics: "+serr.Error())
	}
	if res.failed > res.binds/100 {
		return fmt.Errorf("bench soak: %d of %d downloads failed: %s", res.failed, res.binds, errorSummary(res.errors))
	}
	addSoakServe(r, res, a.v.GetInt("hsm.recycle_after"), o)
	r.Notes = append(r.Notes,
		fmt.Sprintf("target serve: one perso serve child process (pid %d), the HSM's SoftHSM2 module in it; %d virtual eUICCs, HTTP/%s, %s binding, store %s",
			srv.pid, o.workers, o.http, o.binding, backend.Driver),
		fmt.Sprintf("profiles loaded by the engine before the server started (%.1f s); orders placed through the store one segment ahead of the downloads (%.1f s in all)",
			res.load.Seconds(), res.orderWall.Seconds()),
		"the server's memory set-up is perso serve's own (malloc arenas capped at 2 unless MALLOC_ARENA_MAX is set)")
	return out.finish(ctx, r, started, cmd.OutOrStdout(), stderr)
}

// setEnvFor sets an environment variable for the child processes started
// until the returned function restores it.
func setEnvFor(key, value string) func() {
	old, had := os.LookupEnv(key)
	os.Setenv(key, value)
	return func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	}
}

// scrapeCounter reads one unlabelled sample from a Prometheus text
// exposition at url.
func scrapeCounter(ctx context.Context, url, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no sample %s", url, name)
}

func errorSummary(errs map[string]int) string {
	var parts []string
	for k, v := range errs {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
	}
	return strings.Join(parts, "; ")
}

func addSoakServe(r *bench.Result, s *soakServeResult, recycleAfter int, o soakServerOptions) {
	growth := 100 * (s.end.rss - s.warm.rss) / s.warm.rss
	maxGrowth := 100 * (s.maxAfterWarm - s.warm.rss) / s.warm.rss
	ok := s.binds - s.failed
	r.Add("soak RSS after warm-up", s.warm.rss, "MiB", bench.Lower, fmt.Sprintf("perso serve, after %.0f %% of the downloads", 100*o.warmup))
	r.Add("soak RSS at end", s.end.rss, "MiB", bench.Lower, fmt.Sprintf("perso serve, after %d downloads", s.binds))
	r.Add("soak RSS max after warm-up", s.maxAfterWarm, "MiB", bench.Lower,
		fmt.Sprintf("segment ends and a 1 s sampler; in the segment after %d downloads", s.maxAt))
	r.Add("soak RSS growth after warm-up", growth, "%", bench.Lower, "end against warm-up; target: within 10 %")
	r.Add("soak RSS max growth after warm-up", maxGrowth, "%", bench.Lower, "maximum against warm-up; target: within 10 %")
	r.Add("soak binds", float64(ok)/s.wall.Seconds(), "binds/s", bench.Higher, "complete downloads (all ES9+ calls, TLS), client included")
	r.Add("soak cpu per bind", float64(s.server.Microseconds())/float64(ok), "cpu-µs/bind", bench.Lower,
		"perso serve process per download, SoftHSM2 in-process crypto included")
	r.Add("soak client cpu per bind", float64(s.client.Microseconds())/float64(ok), "cpu-µs/bind", bench.Lower, "this process: virtual eUICCs, LPAs, orders")
	r.Tables = append(r.Tables, bench.Table{
		Title: fmt.Sprintf("soak: %d complete downloads served by one perso serve (%d virtual eUICCs, %s), hsm.recycle_after %d, %.0f module reinitialisations (%.0f after the warm-up)",
			s.binds, o.workers, o.curve, recycleAfter, s.reinits, s.reinits-s.reinitsAtWarm),
		Columns: []bench.Column{{Name: "downloads"}, {Name: "failed"}, {Name: "RSS at start", Unit: "MiB"}, {Name: "RSS after warm-up", Unit: "MiB"},
			{Name: "RSS end", Unit: "MiB"}, {Name: "max after warm-up", Unit: "MiB"}, {Name: "peak (VmHWM)", Unit: "MiB"}, {Name: "growth", Unit: "%"},
			{Name: "max growth", Unit: "%"}, {Name: "end anon/file", Unit: "MiB"}, {Name: "downloads/s"}, {Name: "server cpu/download", Unit: "µs"}},
		Rows: [][]bench.Cell{{bench.Num(float64(s.binds), 0), bench.Num(float64(s.failed), 0), bench.Num(s.start.rss, 1), bench.Num(s.warm.rss, 1),
			bench.Num(s.end.rss, 1), bench.Num(s.maxAfterWarm, 1), bench.Num(s.end.hwm, 1), bench.Num(growth, 1), bench.Num(maxGrowth, 1),
			bench.Text(fmt.Sprintf("%.1f / %.1f", s.end.anon, s.end.file)), bench.Num(float64(ok)/s.wall.Seconds(), 0),
			bench.Num(float64(s.server.Microseconds())/float64(ok), 0)}},
	})
	if len(s.errors) > 0 {
		et := bench.Table{Title: "soak download errors (step and SGP.22 code)", Columns: []bench.Column{{Name: "error"}, {Name: "count"}}}
		for k, v := range s.errors {
			et.AddRow(bench.Text(k), bench.Num(float64(v), 0))
		}
		r.Tables = append(r.Tables, et)
	}
	name := fmt.Sprintf("serve, recycle_after %d", recycleAfter)
	r.Series = append(r.Series, bench.Series{Plot: "soak-rss", Title: "perso serve RSS over a soak of complete downloads",
		Name: name, XLabel: "downloads", YLabel: "RSS", YUnit: "MiB", Points: s.samples})
	// A soak shorter than the sampler's period has no timeline: no chart
	// rather than an empty one.
	if len(s.timeline) > 0 {
		r.Series = append(r.Series, bench.Series{Plot: "soak-rss-time", Title: "perso serve RSS every second over the soak",
			Name: name, XLabel: "seconds", YLabel: "RSS", YUnit: "MiB", Points: s.timeline})
	}
}
