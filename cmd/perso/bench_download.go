package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/cputime"
	"github.com/perso-esim/perso/store"
)

func init() { registerBench(newBenchDownloadCmd) }

func newBenchDownloadCmd(a *app) *cobra.Command {
	var (
		euiccs, downloads      int
		curveList, server, pt  string
		bindingName, sgp26Root string
		cpuProfile, httpVer    string
		serverPID              int
		out                    benchOutput
	)
	cmd := &cobra.Command{
		Use:   "download",
		Short: "Full SGP.22 downloads by N concurrent virtual eUICCs against perso serve: throughput, latency per ES9+ call, server CPU",
		Long: `Places --downloads orders per curve through the store (ES2+ DownloadOrder + ConfirmOrder on
store.dsn, profiles of --profile-type loaded by perso run), then --euiccs virtual eUICCs
(euiccsim, SGP.26 certificates) download them concurrently over HTTPS: initiateAuthentication,
authenticateClient, getBoundProfilePackage, handleNotification, each eUICC with its own TLS
connections.

Without --server, perso serve runs as a child process of this one (serve.listen 127.0.0.1:0,
no rate limit, the same configuration and store), so that its CPU time is read apart from the
client's (/proc/PID/stat). The server's CPU includes the HSM's when the module runs in its
process (SoftHSM2). With --server URL, the running server is measured from outside: no
server CPU.

Reported: downloads/s, p50/p99/p99.9 per ES9+ call, errors by SGP.22 code, CPU per download
(client and server). Plots (--plots): download-latency-by-call.png.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			defer func() { err = benchError(ctx, "download", err) }()
			started := time.Now()
			if euiccs < 1 || downloads < 1 {
				return usagef("--euiccs and --downloads must be positive")
			}
			curves, err := serveCurves(curveList)
			if err != nil {
				return usagef("--curves: %v", err)
			}
			binding, err := euiccsim.ParseBinding(bindingName)
			if err != nil {
				return usagef("--binding: %v", err)
			}
			if err := out.check(); err != nil {
				return err
			}
			if httpVer != "2" && httpVer != "1.1" {
				return usagef("--http %q: want 2 or 1.1", httpVer)
			}
			if sgp26Root == "" {
				sgp26Root = filepath.Dir(filepath.Dir(a.v.GetString("serve.tls_cert")))
			}
			roots, err := euiccsim.LoadTLSRoots(filepath.Join(sgp26Root, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"))
			if err != nil {
				return usagef("--sgp26 %s: %v", sgp26Root, err)
			}
			r := a.benchStart(ctx, cmd, "download", "store.driver", "store.dsn", "hsm.backend", "hsm.module", "hsm.token", "hsm.pin",
				"hsm.sessions", "hsm.recycle_after", "serve.address")
			r.HSM = hsmInfo(a)
			r.Store = a.v.GetString("store.driver")
			dsn := a.v.GetString("store.dsn")
			db, err := store.Open(ctx, a.v.GetString("store.driver"), dsn)
			if err != nil {
				return fmt.Errorf("bench download: opening the store %s: %w", redactDSN(dsn), scrubDSN(err, dsn))
			}
			defer db.Close()

			// Orders first: a store without profiles fails before a server starts.
			address := a.v.GetString("serve.address")
			codes := map[esim.Curve][]string{}
			for _, c := range curves {
				if codes[c], err = placeOrders(ctx, db, pt, address, downloads); err != nil {
					return err
				}
			}
			url, pid := server, 0
			if server != "" {
				pid = serverPID
			} else {
				var o serveChildOptions
				if f := cmd.Flags().Lookup("store.dsn"); f != nil && f.Changed {
					o.dsn = f.Value.String()
				}
				srv, err := startServeChild(ctx, cmd, o)
				if err != nil {
					return err
				}
				defer srv.stop()
				url, pid = srv.url, srv.pid
			}
			host := strings.TrimPrefix(strings.TrimPrefix(url, "https://"), "http://")
			if cpuProfile != "" { // the downloads only, not the orders placed above
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			for _, c := range curves {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench download: %s: %d downloads by %d eUICCs against %s\n", c, downloads, euiccs, url)
				res, err := runDownloads(ctx, sgp26Root, c, binding, roots, map[string]string{address: host}, codes[c],
					downloadLoad{workers: euiccs, pid: pid, http1: httpVer == "1.1"})
				if err != nil {
					return err
				}
				addDownload(r, c, res, pid != 0)
			}
			if pid == 0 {
				r.Notes = append(r.Notes, "server CPU not measured: --server points at a server outside this process tree (give its --server-pid)")
			}
			r.Notes = append(r.Notes, fmt.Sprintf("machine load average at start: see env; %d concurrent eUICCs and the server share its CPUs", euiccs),
				"HTTP/"+httpVer+" keep-alive connections, one per eUICC (--http)")
			return out.finish(ctx, r, started, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&euiccs, "euiccs", 64, "concurrent virtual eUICCs")
	f.IntVar(&downloads, "downloads", 2000, "downloads per curve (orders placed before the measurement)")
	f.StringVar(&curveList, "curves", "nist,brp", "eUICC curves, measured one after the other: nist, brp")
	f.StringVar(&server, "server", "", "URL of a running perso serve (https://host:port); default: run one as a child process")
	f.StringVar(&pt, "profile-type", "ts48-demo", "profile type the orders take profiles of")
	f.StringVar(&bindingName, "binding", "json", "ES9+ binding: json or asn1")
	f.StringVar(&sgp26Root, "sgp26", "", "SGP.26 test PKI directory (eUICC certificates, DPtls root; default: two levels above serve.tls_cert)")
	f.String("store.dsn", "", "store DSN (default from config: store.dsn)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the virtual eUICCs and LPAs) to this file (go tool pprof)")
	f.StringVar(&httpVer, "http", "2", "HTTP version of the virtual eUICCs' keep-alive connections: 2, or 1.1 (as pySim's client and libcurl without HTTP/2)")
	f.IntVar(&serverPID, "server-pid", 0, "with --server: the server's process id on this machine, to read its CPU time (/proc/PID/stat) around the downloads")
	out.addFlags(f)
	return cmd
}

// placeOrders orders n profiles of type pt through the store (ES2+
// DownloadOrder + ConfirmOrder with release) and returns their activation
// codes.
func placeOrders(ctx context.Context, db *store.DB, pt, address string, n int) ([]string, error) {
	codes := make([]string, 0, n)
	for range n {
		p, err := db.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: pt})
		if err != nil {
			return nil, fmt.Errorf("bench download: ordering profile %d of %d (type %s): %w (load profiles with perso run --profile-type %s)", len(codes)+1, n, pt, err, pt)
		}
		if p, err = db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: p.ICCID, ReleaseFlag: true}); err != nil {
			return nil, fmt.Errorf("bench download: confirming the order of %s: %w", p.ICCID, err)
		}
		codes = append(codes, "LPA:1$"+address+"$"+p.MatchingID)
	}
	return codes, nil
}

type serveChild struct {
	url, metrics string // metrics: the /metrics URL when asked for
	pid          int
	stop         func()
}

var (
	serveURL        = regexp.MustCompile(`ES9\+ on (https?://\S+)`)
	serveMetricsURL = regexp.MustCompile(`metrics and health on (http://\S+)`)
)

// serveChildOptions: dsn, when set, is the child's store.dsn; metrics
// turns on serve.metrics_listen on a free loopback port.
type serveChildOptions struct {
	dsn     string
	metrics bool
}

// childConfigArgs passes this command's --config, when given, on to a
// perso child process (the PERSO_* environment is inherited as is).
func childConfigArgs(cmd *cobra.Command) []string {
	if f := cmd.Root().PersistentFlags().Lookup("config"); f != nil && f.Changed {
		return []string{"--config", f.Value.String()}
	}
	return nil
}

// startServeChild runs this binary's serve on a free loopback port, with
// the same configuration (flags are not passed on: the environment and
// the configuration file are), without a rate limit.
func startServeChild(ctx context.Context, cmd *cobra.Command, o serveChildOptions) (*serveChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--serve.listen", "127.0.0.1:0", "--log-level", "warn"}
	if o.dsn != "" {
		args = append(args, "--store.dsn", o.dsn)
	}
	if o.metrics {
		args = append(args, "--serve.metrics_listen", "127.0.0.1:0")
	}
	args = append(args, childConfigArgs(cmd)...)
	c := exec.Command(exe, args...)
	c.Env = append(os.Environ(), "PERSO_SERVE_RATE_LIMIT=0")
	c.Stderr = cmd.ErrOrStderr()
	stdout, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting perso serve: %w", err)
	}
	stop := func() {
		c.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.Process.Kill()
			<-done
		}
	}
	urls, metrics := make(chan string, 1), make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := serveURL.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
			if m := serveMetricsURL.FindStringSubmatch(sc.Text()); m != nil {
				metrics <- m[1] + "/metrics"
			}
		}
		close(urls)
		close(metrics)
	}()
	srv := &serveChild{pid: c.Process.Pid, stop: stop}
	timeout := time.After(60 * time.Second)
	for srv.url == "" || o.metrics && srv.metrics == "" {
		var ok bool
		select {
		case srv.url, ok = <-urls:
		case srv.metrics, ok = <-metrics:
		case <-timeout:
			stop()
			return nil, errors.New("bench: perso serve did not listen within 60 s")
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		}
		if !ok {
			stop()
			return nil, errors.New("bench: perso serve exited before listening (its errors are above)")
		}
	}
	return srv, nil
}

// procCPU is the user+system CPU time of process pid (/proc/PID/stat,
// clock ticks of 10 ms, the Linux USER_HZ).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// timedTransport records each ES9+ call's latency by its path's last
// element (the function; "asn1" for the ASN.1 binding).
type timedTransport struct {
	base http.RoundTripper
	h    map[string]*hsmpool.Histogram
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t0 := time.Now()
	resp, err := t.base.RoundTrip(req)
	if h := t.h[filepath.Base(req.URL.Path)]; h != nil {
		h.Record(time.Since(t0))
	}
	return resp, err
}

func (t *timedTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

var es9Calls = []string{"initiateAuthentication", "authenticateClient", "getBoundProfilePackage", "handleNotification", "cancelSession", "asn1"}

type downloadResult struct {
	n, ok                int
	wall, client, server time.Duration
	total                hsmpool.Histogram
	calls                map[string]*hsmpool.Histogram
	errors               map[string]int
}

// downloadLoad shapes the load runDownloads offers.
type downloadLoad struct {
	workers int             // concurrent virtual eUICCs
	pid     int             // the server's process, whose CPU is measured (0: not measured)
	stop    <-chan struct{} // when closed, no new download starts (nil: run every code)
	http1   bool            // HTTP/1.1 instead of HTTP/2
	// rate, when positive, makes the load open: downloads are due at
	// rate per second, whether or not earlier ones finished, and each
	// download's time counts from when it was due, so that a download
	// waiting for a free eUICC is slow too (no coordinated omission).
	// Zero: closed, each eUICC starts its next download when the last ends.
	rate float64
}

// runDownloads downloads codes by load.workers concurrent virtual eUICCs,
// until every code is taken or load.stop is closed.
func runDownloads(ctx context.Context, sgp26 string, c esim.Curve, binding euiccsim.Binding, roots *x509.CertPool, resolve map[string]string,
	codes []string, load downloadLoad) (*downloadResult, error) {
	workers, pid, stop, http1 := load.workers, load.pid, load.stop, load.http1
	res := &downloadResult{n: len(codes), calls: map[string]*hsmpool.Histogram{}, errors: map[string]int{}}
	for _, name := range es9Calls {
		res.calls[name] = new(hsmpool.Histogram)
	}
	cred, err := euiccsim.LoadSGP26(sgp26, c)
	if err != nil {
		return nil, fmt.Errorf("bench download: %w", err)
	}
	lpas := make([]*euiccsim.LPA, workers)
	var clients []*http.Client
	defer func() {
		for _, cl := range clients {
			cl.CloseIdleConnections() // so that the server's shutdown finds no connection open
		}
	}()
	for i := range lpas {
		eu, err := euiccsim.New(cred)
		if err != nil {
			return nil, err
		}
		cl := euiccsim.NewHTTPClient(roots, resolve)
		if http1 {
			cl = euiccsim.NewHTTP1Client(roots, resolve)
		}
		cl.Transport = &timedTransport{base: cl.Transport, h: res.calls}
		clients = append(clients, cl)
		lpas[i] = euiccsim.NewLPA(eu, euiccsim.LPAConfig{Binding: binding, HTTPClient: cl})
	}
	var next atomic.Int64
	var mu sync.Mutex
	var ok, tried atomic.Int64
	cpu0, srv0, t0 := cputime.Process(), procCPU(pid), time.Now()
	var wg sync.WaitGroup
	for _, l := range lpas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				select {
				case <-stop:
					return
				default:
				}
				i := int(next.Add(1)) - 1
				if i >= len(codes) {
					return
				}
				d0 := time.Now()
				if load.rate > 0 {
					d0 = t0.Add(time.Duration(float64(i) / load.rate * float64(time.Second)))
					if !sleepUntil(ctx, d0, stop) {
						return
					}
				}
				tried.Add(1)
				_, err := l.Download(ctx, codes[i])
				if err == nil {
					res.total.Record(time.Since(d0))
					ok.Add(1)
					continue
				}
				key := "other"
				var de *euiccsim.DownloadError
				if errors.As(err, &de) {
					key = de.Step
					if !de.Status.IsZero() {
						key += " " + de.Status.Code()
					}
				}
				mu.Lock()
				res.errors[key]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.wall, res.client, res.server = time.Since(t0), cputime.Process()-cpu0, procCPU(pid)-srv0
	res.ok, res.n = int(ok.Load()), int(tried.Load())
	if res.ok == 0 {
		var keys []string
		for k, v := range res.errors {
			keys = append(keys, fmt.Sprintf("%s ×%d", k, v))
		}
		return nil, fmt.Errorf("bench download: no download succeeded: %s", strings.Join(keys, "; "))
	}
	return res, nil
}

// sleepUntil waits for t; false when ctx ends or stop closes first.
func sleepUntil(ctx context.Context, t time.Time, stop <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
}

func addDownload(r *bench.Result, c esim.Curve, d *downloadResult, serverCPU bool) {
	name := strings.ToLower(c.SGP26Name())
	rate := float64(d.ok) / d.wall.Seconds()
	r.Add("download "+name, rate, "downloads/s", bench.Higher, "complete downloads (all ES9+ calls, TLS), client included")
	r.Add("download "+name+" client cpu", float64(d.client.Microseconds())/1000/float64(d.ok), "cpu-ms/download", bench.Lower, "this process: virtual eUICCs, LPAs, TLS clients")
	if serverCPU {
		r.Add("download "+name+" server cpu", float64(d.server.Microseconds())/1000/float64(d.ok), "cpu-ms/download", bench.Lower,
			"perso serve process, SoftHSM2 in-process crypto included")
	}
	t := bench.Table{Title: fmt.Sprintf("download %s: %d of %d downloads in %.1f s (%.0f/s)", name, d.ok, d.n, d.wall.Seconds(), rate),
		Columns: []bench.Column{{Name: "call"}, {Name: "count"}, {Name: "p50", Unit: "ms"}, {Name: "p99", Unit: "ms"}, {Name: "p99.9", Unit: "ms"}, {Name: "max", Unit: "ms"}}}
	ms := func(x time.Duration) bench.Cell { return bench.Num(float64(x.Microseconds())/1000, 1) }
	s := bench.Series{Plot: "download-latency-by-call", Title: "ES9+ call latency under load (p50 solid points, by call)", Name: name + " p99",
		XLabel: "call (1 initiate, 2 authenticate, 3 getBPP, 4 notification)", YLabel: "p99 latency", YUnit: "ms"}
	for i, call := range es9Calls {
		h := d.calls[call]
		if h.Count() == 0 {
			continue
		}
		t.AddRow(bench.Text(call), bench.Num(float64(h.Count()), 0), ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Quantile(0.999)), ms(h.Max()))
		r.Add("download "+name+" "+call+" p99", float64(h.Quantile(0.99).Microseconds())/1000, "ms", bench.Lower, "")
		s.Points = append(s.Points, bench.Point{X: float64(i + 1), Y: float64(h.Quantile(0.99).Microseconds()) / 1000})
	}
	t.AddRow(bench.Text("whole download"), bench.Num(float64(d.total.Count()), 0), ms(d.total.Quantile(0.5)), ms(d.total.Quantile(0.99)),
		ms(d.total.Quantile(0.999)), ms(d.total.Max()))
	r.Tables = append(r.Tables, t)
	r.Series = append(r.Series, s)
	if len(d.errors) > 0 {
		et := bench.Table{Title: "download " + name + " errors (step and SGP.22 code)", Columns: []bench.Column{{Name: "error"}, {Name: "count"}}}
		var keys []string
		for k := range d.errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			et.AddRow(bench.Text(k), bench.Num(float64(d.errors[k]), 0))
		}
		r.Tables = append(r.Tables, et)
	}
}
