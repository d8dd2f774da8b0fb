package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/cputime"
)

func init() { registerBench(newBenchSoakCmd) }

func newBenchSoakCmd(a *app) *cobra.Command {
	var (
		binds, workers, samples int
		warmup                  float64
		curveName, target       string
		o                       soakServerOptions
		out                     benchOutput
	)
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Many binds served by one perso serve process (or run on the HSM pool alone) while its memory is watched",
		Long: `Watches the resident memory (RSS) of one long-running process over --binds binds, each the
one-time ECDH and DPpb signature of a getBoundProfilePackage.

--target serve (the default, issue #15's soak): on a fresh store (a temporary SQLite file, or
a scratch schema of the configured PostgreSQL database) it loads --binds profiles with the
engine (generated records, --template), then starts ONE perso serve as a child process (as
deployed, with the configuration, HSM token and SoftHSM2 module of this one; serve.listen
127.0.0.1:0, no rate limit) and has --workers virtual eUICCs (euiccsim, SGP.26 certificates,
TLS) download every profile completely: initiateAuthentication, authenticateClient,
getBoundProfilePackage, handleNotification. Orders are placed through the store (ES2+
DownloadOrder + ConfirmOrder) one segment ahead of the downloads. After each of --samples
segments the server's RSS is read from /proc/PID/status (and every second in between, for
the maximum); the server's module reinitialisations come from its /metrics.

--target hsmpool: the older, narrower loop: the binds run on the HSM pool inside this
process, from --workers goroutines, without server, store or TLS.

The figure that matters is the RSS growth from the end of the warm-up (--warmup, a fraction
of the binds) to the end, and to the maximum after it: a long-running server must stay flat.
SoftHSM 2.6.1 frees destroyed session objects only when the module is finalized;
hsm.recycle_after (default 0: every 20000 operations on SoftHSM2) reinitialises the module
after that many operations, in the server as here. Run once with --hsm.recycle_after -1 to
see the growth without it.

Needs a token with the SGP.26 keys (perso hsm init --import-sgp26) and, for serve, serve's
PKI and TLS settings (defaults: testdata/sgp26 of the repository).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			defer func() { err = benchError(ctx, "soak", err) }()
			started := time.Now()
			if binds < 100 || workers < 1 || samples < 2 || warmup <= 0 || warmup >= 1 {
				return usagef("want --binds ≥ 100, --workers ≥ 1, --samples ≥ 2 and 0 < --warmup < 1")
			}
			if target != "serve" && target != "hsmpool" {
				return usagef("--target %q: want serve or hsmpool", target)
			}
			curves, err := serveCurves(curveName)
			if err != nil || len(curves) != 1 {
				return usagef("--curve %q: want nist or brp", curveName)
			}
			if err := out.check(); err != nil {
				return err
			}
			if target == "serve" {
				o.binds, o.workers, o.samples, o.warmup, o.curve = binds, workers, samples, warmup, curves[0]
				return soakServe(ctx, cmd, a, o, &out, started)
			}
			r := a.benchStart(ctx, cmd, "soak", "hsm.backend", "hsm.module", "hsm.token", "hsm.pin", "hsm.sessions",
				"hsm.live_reserved", "hsm.recycle_after")
			r.HSM = hsmInfo(a)
			arenas := setUpMalloc(2) // as perso serve does, before the module loads
			pool, err := openHSM(ctx, a, false)
			if err != nil {
				return err
			}
			defer pool.Close()
			r.Notes = append(r.Notes, "target hsmpool: binds on the HSM pool in this process (no server, store or TLS)",
				"memory set-up as in perso serve: "+arenas+"; hsm.recycle_after "+strconv.Itoa(a.v.GetInt("hsm.recycle_after"))+
					" (0: every 20000 operations on SoftHSM2)")
			res, err := soak(ctx, pool, curves[0], binds, workers, samples, warmup, func(done int, rss float64) {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench soak: %d binds, RSS %.1f MiB\n", done, rss)
			})
			if err != nil {
				return fmt.Errorf("bench soak: %w", err)
			}
			st := pool.Stats()
			addSoak(r, res, st, a.v.GetInt("hsm.recycle_after"))
			return out.finish(ctx, r, started, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "serve", "what serves the binds: serve (one perso serve child process, complete ES9+ downloads) or hsmpool (the HSM pool in this process)")
	f.IntVar(&binds, "binds", 200000, "number of binds (serve: complete downloads, one getBoundProfilePackage each; hsmpool: ECDH + signature)")
	f.IntVar(&workers, "workers", 8, "concurrent callers (serve: virtual eUICCs)")
	f.IntVar(&samples, "samples", 40, "RSS samples over the run (serve: segments of the downloads)")
	f.Float64Var(&warmup, "warmup", 0.1, "fraction of the binds before the baseline RSS is taken")
	f.StringVar(&curveName, "curve", "nist", "curve of the one-time keys and the DPpb key (serve: of the eUICCs): nist or brp")
	f.StringVar(&o.binding, "binding", "json", "serve: ES9+ binding: json or asn1")
	f.StringVar(&o.sgp26, "sgp26", "", "serve: SGP.26 test PKI directory (default: two levels above serve.tls_cert)")
	f.StringVar(&o.template, "template", "", "serve: SAIP DER template of the loaded profiles (default: "+defaultTemplate+" of the perso repository)")
	f.StringVar(&o.http, "http", "2", "serve: HTTP version of the virtual eUICCs' keep-alive connections: 2 or 1.1")
	f.String("hsm.recycle_after", "", "reinitialise the PKCS#11 module after this many operations; -1: never (default from config: hsm.recycle_after)")
	f.String("store.driver", "", "serve: store driver: sqlite (a temporary file) or postgres (a scratch schema of store.dsn) (default from config: store.driver)")
	f.String("store.dsn", "", "serve: PostgreSQL DSN whose database gets the scratch schema (default from config: store.dsn)")
	templateMaxSizeFlag(cmd)
	out.addFlags(f)
	return cmd
}

type soakResult struct {
	binds, errors int
	wall, cpu     time.Duration
	samples       []bench.Point // (binds done, RSS MiB)
	baseline      float64       // RSS after the warm-up, MiB
	end           float64       // RSS at the end, MiB
	peak          float64
}

// soak runs the binds and samples RSS after every binds/samples of them.
func soak(ctx context.Context, pool *hsmpool.Pool, curve esim.Curve, binds, workers, samples int, warmup float64,
	progress func(done int, rssMiB float64)) (soakResult, error) {
	var peer []byte
	switch curve {
	case esim.CurveP256:
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return soakResult{}, err
		}
		peer = k.PublicKey().Bytes()
	default:
		// A brainpool point from the HSM itself (its own one-time key).
		otpk, _, err := pool.EphemeralECDH(ctx, curve, mustBrainpoolPeer(ctx, pool))
		if err != nil {
			return soakResult{}, err
		}
		peer = otpk
	}
	label := hsmpool.DPpbLabel(curve)
	ctx = hsmpool.WithLane(ctx, hsmpool.Live)
	var next, done, errs atomic.Int64
	step := int64(max(binds/samples, 1))
	warm := int64(float64(binds) * warmup)
	res := soakResult{}
	var mu sync.Mutex
	var firstErr error
	record := func(n int64) {
		rss := rssMiB()
		mu.Lock()
		res.samples = append(res.samples, bench.Point{X: float64(n), Y: rss})
		if n >= warm && res.baseline == 0 {
			res.baseline = rss
		}
		res.peak = max(res.peak, rss)
		mu.Unlock()
		if progress != nil {
			progress(int(n), rss)
		}
	}
	runtime.GC()
	cpu0, t0 := cputime.Process(), time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d [32]byte
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(binds) {
					return
				}
				_, z, err := pool.EphemeralECDH(ctx, curve, peer)
				if err == nil {
					d = sha256.Sum256(z)
					clear(z)
					_, err = pool.Sign(ctx, label, d[:])
				}
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
				if n := done.Add(1); n%step == 0 || n == warm {
					record(n)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.wall, res.cpu = time.Since(t0), cputime.Process()-cpu0
	res.binds, res.errors = int(done.Load()), int(errs.Load())
	runtime.GC()
	res.end = rssMiB()
	if res.errors > res.binds/100 {
		return res, fmt.Errorf("%d of %d binds failed; first: %w", res.errors, res.binds, firstErr)
	}
	return res, nil
}

// mustBrainpoolPeer returns a valid brainpoolP256r1 point: the one-time
// public key of an ECDH with the curve's DPpb public key as the peer.
func mustBrainpoolPeer(ctx context.Context, pool *hsmpool.Pool) []byte {
	_, pt, err := pool.PublicKey(ctx, hsmpool.DPpbLabel(esim.CurveBrainpoolP256r1))
	if err != nil {
		return nil // EphemeralECDH then says why
	}
	return pt
}

// rssMiB is the process's resident set size (VmRSS) in MiB; 0 when
// /proc is not there.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := bytes.Fields(sc.Bytes()); len(f) >= 2 && string(f[0]) == "VmRSS:" {
			kb, _ := strconv.ParseFloat(string(f[1]), 64)
			return kb / 1024
		}
	}
	return 0
}

func addSoak(r *bench.Result, s soakResult, st hsmpool.Stats, recycleAfter int) {
	growth := 100 * (s.end - s.baseline) / s.baseline
	r.Add("soak RSS after warm-up", s.baseline, "MiB", bench.Lower, "")
	r.Add("soak RSS at end", s.end, "MiB", bench.Lower, fmt.Sprintf("after %d binds", s.binds))
	r.Add("soak RSS growth after warm-up", growth, "%", bench.Lower, "target: within 10 %")
	r.Add("soak binds", float64(s.binds)/s.wall.Seconds(), "binds/s", bench.Higher, "ECDH + sign, live lane")
	r.Add("soak cpu per bind", float64(s.cpu.Microseconds())/float64(s.binds), "cpu-µs/bind", bench.Lower, "process CPU (SoftHSM in-process)")
	r.Tables = append(r.Tables, bench.Table{
		Title: fmt.Sprintf("soak: %d binds (ECDH + sign), hsm.recycle_after %d, %d module reinitialisations, %d sessions replaced", s.binds, recycleAfter,
			st.ModuleReinits, st.SessionsReplaced),
		Columns: []bench.Column{{Name: "binds"}, {Name: "errors"}, {Name: "RSS after warm-up", Unit: "MiB"}, {Name: "RSS end", Unit: "MiB"},
			{Name: "peak", Unit: "MiB"}, {Name: "growth", Unit: "%"}, {Name: "binds/s"}, {Name: "cpu/bind", Unit: "µs"}},
		Rows: [][]bench.Cell{{bench.Num(float64(s.binds), 0), bench.Num(float64(s.errors), 0), bench.Num(s.baseline, 1), bench.Num(s.end, 1),
			bench.Num(s.peak, 1), bench.Num(growth, 1), bench.Num(float64(s.binds)/s.wall.Seconds(), 0),
			bench.Num(float64(s.cpu.Microseconds())/float64(s.binds), 0)}},
	})
	r.Series = append(r.Series, bench.Series{Plot: "soak-rss", Title: "Process RSS over a soak of binds (ECDH + sign)",
		Name: fmt.Sprintf("recycle_after %d", recycleAfter), XLabel: "binds", YLabel: "RSS", YUnit: "MiB", Points: s.samples})
}
