package hsmpool

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/cputime"
)

// BenchOps lists the operations Bench knows, in display order.
var BenchOps = []string{"sign", "sign-brp", "ecdh", "ecdh-brp", "wrap", "unwrap", "decrypt", "random"}

// BenchConfig configures Bench.
type BenchConfig struct {
	Ops      []string      // subset of BenchOps (default: sign, ecdh, wrap)
	Sessions []int         // session counts to try (default 1,2,4,8,16)
	Duration time.Duration // per (op, session count) run (default 10s)
	Workers  int           // concurrent callers per session (default 2)
	Raw      bool          // also measure the raw single-session PKCS#11 baseline
	// Keys used (defaults: dppb-nist, dppb-brp, transport-1).
	SignLabel, SignBrpLabel, TransportLabel string
}

// BenchResult is one row of Bench's table.
type BenchResult struct {
	Op        string  `json:"op"`
	Mode      string  `json:"mode"` // "pool" or "raw" (one session, no pool)
	Sessions  int     `json:"sessions"`
	Workers   int     `json:"workers"`
	Ops       uint64  `json:"ops"`
	Errors    uint64  `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
	P999      float64 `json:"p999_us"`
	// VsRaw is OpsPerSec divided by the raw single-session figure of the
	// same operation (pool rows only, when Raw was measured).
	VsRaw float64 `json:"vs_raw,omitempty"`
	// VsShared is OpsPerSec divided by the "raw-shared" figure: one bare
	// session shared by Workers goroutines through a sync.Mutex, the
	// cheapest way for several callers to share a session. It separates
	// the pool's own cost from what any concurrent caller pays (on a small
	// machine with an in-process token, waking the next caller competes
	// with the token's own thread).
	VsShared float64 `json:"vs_shared,omitempty"`
	// CPUPerOp is the process's CPU time (user + system, all threads: the
	// pool, the module if it runs in-process as SoftHSM2 does, GC) per
	// completed operation over this row's slices, in µs. Wall-clock ops/s
	// swings with a shared machine's load; CPU per op much less.
	CPUPerOp float64 `json:"cpu_us_per_op,omitempty"`
	// Handover is how the pool row's requests reached their sessions and
	// their results their callers (pool rows only).
	Handover *Handover `json:"handover,omitempty"`
}

func (c *BenchConfig) defaults() {
	if len(c.Ops) == 0 {
		c.Ops = []string{"sign", "ecdh", "wrap"}
	}
	if len(c.Sessions) == 0 {
		c.Sessions = []int{1, 2, 4, 8, 16}
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.SignLabel == "" {
		c.SignLabel = "dppb-nist"
	}
	if c.SignBrpLabel == "" {
		c.SignBrpLabel = "dppb-brp"
	}
	if c.TransportLabel == "" {
		c.TransportLabel = "transport-1"
	}
}

// benchInputs are the fixed inputs of each operation.
type benchInputs struct {
	digest []byte
	peer   map[esim.Curve][]byte
	blob   []byte
	wrap   []byte
	ct     []byte
}

func newBenchInputs(ctx context.Context, p *Pool, bc BenchConfig, op string) (*benchInputs, error) {
	d := sha256.Sum256([]byte("perso bench"))
	in := &benchInputs{digest: d[:], peer: map[esim.Curve][]byte{}, ct: make([]byte, 32)}
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		_, x, y, err := elliptic.GenerateKey(c.Elliptic(), rand.Reader)
		if err != nil {
			return nil, err
		}
		in.peer[c] = elliptic.Marshal(c.Elliptic(), x, y) //nolint:staticcheck // generic curve
	}
	if op == "unwrap" {
		bk, err := p.NewBatchKey(ctx, "bench")
		if err != nil {
			return nil, err
		}
		in.blob = bk.Blob()
		bk.Close()
		_, _, _, in.wrap, _ = parseBlob(in.blob)
	}
	return in, nil
}

// poolOp returns the pool call measured for op: the PKCS#11 work of rawOp,
// through the pool. wrap and unwrap are the token's part of NewBatchKey and
// OpenBatchKey (the software key schedule NewBatchKey adds is not PKCS#11
// work, and unwrap bypasses the data-key cache so that every call reaches
// the token).
func poolOp(p *Pool, bc BenchConfig, op string, in *benchInputs) (func(ctx context.Context) error, error) {
	switch op {
	case "sign":
		return func(ctx context.Context) error { _, err := p.Sign(ctx, bc.SignLabel, in.digest); return err }, nil
	case "sign-brp":
		return func(ctx context.Context) error { _, err := p.Sign(ctx, bc.SignBrpLabel, in.digest); return err }, nil
	case "ecdh", "ecdh-brp":
		c := esim.CurveP256
		if op == "ecdh-brp" {
			c = esim.CurveBrainpoolP256r1
		}
		return func(ctx context.Context) error {
			_, z, err := p.EphemeralECDH(ctx, c, in.peer[c])
			clear(z)
			return err
		}, nil
	case "wrap":
		return func(ctx context.Context) error {
			return p.do(ctx, "wrap", LaneOf(ctx, Batch), p.cfg.KEK, func(slot int) error {
				k, _, err := p.be.newDataKey(ctx, slot, p.cfg.KEK)
				clear(k)
				return err
			})
		}, nil
	case "unwrap":
		return func(ctx context.Context) error {
			return p.do(ctx, "unwrap", LaneOf(ctx, Live), p.cfg.KEK, func(slot int) error {
				k, err := p.be.unwrapDataKey(ctx, slot, p.cfg.KEK, in.wrap)
				clear(k)
				return err
			})
		}, nil
	case "decrypt":
		return func(ctx context.Context) error {
			pt, err := p.DecryptTransport(ctx, bc.TransportLabel, AlgAES128CBC, in.ct)
			clear(pt)
			return err
		}, nil
	case "random":
		return func(ctx context.Context) error { _, err := p.Random(ctx, 32); return err }, nil
	}
	return nil, fmt.Errorf("hsmpool: unknown bench op %q (want one of %v)", op, BenchOps)
}

// rawOp returns the same PKCS#11 call sequence on one session without the
// pool (no scheduler, no metrics, no retry wrapper): the baseline.
func rawOp(b *p11Backend, p *Pool, bc BenchConfig, op string, in *benchInputs) (func(sh pkcs11.SessionHandle) error, error) {
	switch op {
	case "sign":
		return func(sh pkcs11.SessionHandle) error { _, err := b.signOn(sh, bc.SignLabel, in.digest); return err }, nil
	case "sign-brp":
		return func(sh pkcs11.SessionHandle) error { _, err := b.signOn(sh, bc.SignBrpLabel, in.digest); return err }, nil
	case "ecdh", "ecdh-brp":
		c := esim.CurveP256
		if op == "ecdh-brp" {
			c = esim.CurveBrainpoolP256r1
		}
		return func(sh pkcs11.SessionHandle) error {
			_, z, err := b.ecdhOn(sh, c, in.peer[c])
			clear(z)
			return err
		}, nil
	case "wrap":
		return func(sh pkcs11.SessionHandle) error {
			k, _, err := b.newDataKeyOn(sh, p.cfg.KEK)
			clear(k)
			return err
		}, nil
	case "unwrap":
		return func(sh pkcs11.SessionHandle) error {
			k, err := b.unwrapDataKeyOn(sh, p.cfg.KEK, in.wrap)
			clear(k)
			return err
		}, nil
	case "decrypt":
		a, _ := parseTransportAlg(AlgAES128CBC)
		return func(sh pkcs11.SessionHandle) error {
			pt, err := b.decryptOn(sh, bc.TransportLabel, a, in.ct)
			clear(pt)
			return err
		}, nil
	case "random":
		return func(sh pkcs11.SessionHandle) error { _, err := b.api.GenerateRandom(sh, 32); return err }, nil
	}
	return nil, fmt.Errorf("hsmpool: unknown bench op %q", op)
}

func result(op, mode string, sessions, workers int, n, errs uint64, el time.Duration, h *Histogram) BenchResult {
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return BenchResult{Op: op, Mode: mode, Sessions: sessions, Workers: workers, Ops: n, Errors: errs,
		OpsPerSec: float64(n) / el.Seconds(), P50: us(h.Quantile(0.5)), P99: us(h.Quantile(0.99)), P999: us(h.Quantile(0.999))}
}

// Bench measures each operation at each session count through the pool,
// calling report after each row. It opens and closes one pool per session
// count with the given base Config.
//
// With Raw, each pool measurement is interleaved with the raw baseline on
// the same token in the same process: slices of up to 100ms alternate
// between the pool (Workers callers per session) and one bare session driven
// by one goroutine with the same PKCS#11 call sequence (no scheduler, no
// metrics, no retry wrapper). Interleaving makes the comparison fair on a
// shared, noisy machine. A third slice drives one bare session from Workers
// goroutines serialised by a mutex (mode "raw-shared"). The raw rows precede
// their pool row; VsRaw and VsShared are the ratios.
func Bench(ctx context.Context, base Config, bc BenchConfig, report func(BenchResult)) ([]BenchResult, error) {
	bc.defaults()
	for _, op := range bc.Ops {
		if !slices.Contains(BenchOps, op) {
			return nil, fmt.Errorf("hsmpool: unknown bench op %q (want some of %v)", op, BenchOps)
		}
	}
	var out []BenchResult
	for _, n := range bc.Sessions {
		cfg := base
		cfg.Sessions = n
		cfg.LiveReserved = 0
		p, err := Open(ctx, cfg)
		if err != nil {
			return out, err
		}
		if bc.Raw {
			if _, ok := p.be.(*p11Backend); !ok {
				p.Close()
				return out, errors.New("hsmpool: the raw baseline needs the pkcs11 backend")
			}
		}
		for _, op := range bc.Ops {
			rows, err := benchOp(ctx, p, bc, op, n)
			if err != nil {
				p.Close()
				return out, err
			}
			for _, r := range rows {
				out = append(out, r)
				if report != nil {
					report(r)
				}
			}
		}
		if err := p.Close(); err != nil {
			return out, err
		}
	}
	return out, ctx.Err()
}

const benchSlice = 100 * time.Millisecond

func benchOp(ctx context.Context, p *Pool, bc BenchConfig, op string, sessions int) ([]BenchResult, error) {
	in, err := newBenchInputs(ctx, p, bc, op)
	if err != nil {
		return nil, err
	}
	call, err := poolOp(p, bc, op, in)
	if err != nil {
		return nil, err
	}
	if err := call(WithLane(ctx, Live)); err != nil { // warm the handle cache, fail fast
		return nil, fmt.Errorf("bench %s: %w", op, err)
	}
	var rawCall func(pkcs11.SessionHandle) error
	if bc.Raw {
		if rawCall, err = rawOp(p.be.(*p11Backend), p, bc, op, in); err != nil {
			return nil, err
		}
	}
	workers := sessions * bc.Workers
	var poolH, rawH, sharedH Histogram
	var poolN, poolErr, rawN, rawErr, sharedN, sharedErr uint64
	var poolT, rawT, sharedT time.Duration
	var poolCPU, rawCPU, sharedCPU time.Duration
	h0 := p.sched.counts.snapshot()
	nslices := max(1, int((bc.Duration+benchSlice-1)/benchSlice))
	slice := bc.Duration / time.Duration(nslices)
	for range nslices {
		c0 := cputime.Process()
		n, e, el := runPoolSlice(ctx, call, workers, slice, &poolH)
		c1 := cputime.Process()
		poolN, poolErr, poolT, poolCPU = poolN+n, poolErr+e, poolT+el, poolCPU+c1-c0
		if rawCall != nil {
			n, e, el, err := runRawSlice(ctx, p, rawCall, 1, slice, &rawH)
			if err != nil {
				return nil, err
			}
			c2 := cputime.Process()
			rawN, rawErr, rawT, rawCPU = rawN+n, rawErr+e, rawT+el, rawCPU+c2-c1
			n, e, el, err = runRawSlice(ctx, p, rawCall, bc.Workers, slice, &sharedH)
			if err != nil {
				return nil, err
			}
			sharedN, sharedErr, sharedT, sharedCPU = sharedN+n, sharedErr+e, sharedT+el, sharedCPU+cputime.Process()-c2
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	pr := result(op, "pool", sessions, workers, poolN, poolErr, poolT, &poolH)
	pr.CPUPerOp = cpuPerOp(poolCPU, poolN)
	h := p.sched.counts.snapshot().since(h0)
	pr.Handover = &h
	if rawCall == nil {
		return []BenchResult{pr}, nil
	}
	rr := result(op, "raw", 1, 1, rawN, rawErr, rawT, &rawH)
	sr := result(op, "raw-shared", 1, bc.Workers, sharedN, sharedErr, sharedT, &sharedH)
	rr.CPUPerOp, sr.CPUPerOp = cpuPerOp(rawCPU, rawN), cpuPerOp(sharedCPU, sharedN)
	if rr.OpsPerSec > 0 {
		pr.VsRaw = pr.OpsPerSec / rr.OpsPerSec
	}
	if sr.OpsPerSec > 0 {
		pr.VsShared = pr.OpsPerSec / sr.OpsPerSec
	}
	return []BenchResult{rr, sr, pr}, nil
}

func cpuPerOp(cpu time.Duration, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / 1e3 / float64(n)
}

func runPoolSlice(ctx context.Context, call func(context.Context) error, workers int, d time.Duration, h *Histogram) (n, errs uint64, el time.Duration) {
	var nn, ee atomic.Uint64
	runCtx, cancel := context.WithTimeout(WithLane(ctx, Live), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				t0 := time.Now()
				if err := call(runCtx); err != nil {
					if runCtx.Err() == nil {
						ee.Add(1)
					}
					continue
				}
				h.Record(time.Since(t0))
				nn.Add(1)
			}
		}()
	}
	wg.Wait()
	return nn.Load(), ee.Load(), time.Since(start)
}

// runRawSlice drives one bare session for d from workers goroutines (one:
// a plain loop; more: serialised by a mutex).
func runRawSlice(ctx context.Context, p *Pool, call func(pkcs11.SessionHandle) error, workers int, d time.Duration, h *Histogram) (n, errs uint64, el time.Duration, err error) {
	b := p.be.(*p11Backend)
	slot, err := p.sched.acquire(ctx, Live)
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.sched.release(slot, Live)
	sh, err := b.session(slot)
	if err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	deadline := start.Add(d)
	if workers <= 1 {
		for t0 := start; t0.Before(deadline) && ctx.Err() == nil; {
			if err := call(sh); err != nil {
				errs++
			} else {
				n++
			}
			t1 := time.Now()
			h.Record(t1.Sub(t0))
			t0 = t1
		}
		return n, errs, time.Since(start), nil
	}
	var mu sync.Mutex
	var nn, ee atomic.Uint64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t0 := time.Now(); t0.Before(deadline) && ctx.Err() == nil; t0 = time.Now() {
				mu.Lock()
				err := call(sh)
				mu.Unlock()
				if err != nil {
					ee.Add(1)
				} else {
					nn.Add(1)
				}
				h.Record(time.Since(t0))
			}
		}()
	}
	wg.Wait()
	return nn.Load(), ee.Load(), time.Since(start), nil
}

// PPKBenchResult reports the batch key-protection benchmark.
type PPKBenchResult struct {
	Profiles                int     `json:"profiles"`
	PerBatchKey             int     `json:"profiles_per_batch_key"`
	BatchKeys               int     `json:"batch_keys"`
	ProtectHSMOps           uint64  `json:"protect_hsm_ops"`
	ProtectPKCS11Calls      uint64  `json:"protect_pkcs11_calls"`
	RoundTripsPerProfile    float64 `json:"protect_round_trips_per_profile"`
	ProtectPerSec           float64 `json:"protect_per_sec"`
	UnprotectHSMOps         uint64  `json:"unprotect_hsm_ops"`
	UnprotectPerSec         float64 `json:"unprotect_per_sec"`
	TamperedRecordsDetected int     `json:"tampered_records_detected"`
	TamperedBlobsDetected   int     `json:"tampered_blobs_detected"`
	TamperChecks            int     `json:"tamper_checks_each"`
}

// BenchPPK protects profiles random PPKs through the pool (a new batch key
// every perBatchKey profiles, as the batch engine does per batch), then
// unprotects all of them on the live path, counts the HSM round trips, and
// checks that tampering with sampled records and blobs is detected.
func BenchPPK(ctx context.Context, p *Pool, profiles, perBatchKey int) (PPKBenchResult, error) {
	if perBatchKey <= 0 {
		perBatchKey = 1000
	}
	r := PPKBenchResult{Profiles: profiles, PerBatchKey: perBatchKey}
	type rec struct {
		iccid string
		batch int
		prot  []byte
		sum   [32]byte
	}
	recs := make([]rec, profiles)
	var blobs [][]byte
	ops0, calls0 := p.hsmOps(), p.HSMCalls()
	start := time.Now()
	ppk := make([]byte, PPKLen)
	bctx := WithLane(ctx, Batch)
	for i := 0; i < profiles; i += perBatchKey {
		bk, err := p.NewBatchKey(bctx, "bench-"+strconv.Itoa(i/perBatchKey))
		if err != nil {
			return r, err
		}
		for j := i; j < min(i+perBatchKey, profiles); j++ {
			rand.Read(ppk)
			recs[j].iccid = fmt.Sprintf("89%017d", j)
			recs[j].batch = len(blobs)
			recs[j].sum = sha256.Sum256(ppk)
			if recs[j].prot, err = bk.Protect(recs[j].iccid, ppk); err != nil {
				bk.Close()
				return r, err
			}
		}
		blobs = append(blobs, bk.Blob())
		bk.Close()
	}
	clear(ppk)
	el := time.Since(start)
	r.BatchKeys = len(blobs)
	r.ProtectHSMOps = p.hsmOps() - ops0
	r.ProtectPKCS11Calls = p.HSMCalls() - calls0
	r.RoundTripsPerProfile = float64(r.ProtectHSMOps) / float64(profiles)
	r.ProtectPerSec = float64(profiles) / el.Seconds()

	p.cache.purge()
	ops0 = p.hsmOps()
	start = time.Now()
	for _, x := range recs {
		got, err := p.UnprotectPPK(ctx, blobs[x.batch], x.iccid, x.prot)
		if err != nil {
			return r, err
		}
		if sha256.Sum256(got) != x.sum {
			return r, errors.New("hsmpool: bench: unprotected PPK differs")
		}
		clear(got)
	}
	r.UnprotectPerSec = float64(profiles) / time.Since(start).Seconds()
	r.UnprotectHSMOps = p.hsmOps() - ops0

	// Tampering: flip one byte of sampled records and of every blob.
	r.TamperChecks = min(1000, profiles)
	for k := range r.TamperChecks {
		x := recs[k*profiles/r.TamperChecks]
		prot := slices.Clone(x.prot)
		prot[k%len(prot)] ^= 0x04
		if _, err := p.UnprotectPPK(ctx, blobs[x.batch], x.iccid, prot); errors.Is(err, ErrIntegrity) {
			r.TamperedRecordsDetected++
		}
		blob := slices.Clone(blobs[x.batch])
		blob[k%len(blob)] ^= 0x04
		if _, err := p.UnprotectPPK(ctx, blob, x.iccid, x.prot); err != nil {
			r.TamperedBlobsDetected++
		}
	}
	return r, nil
}

// QoSBenchResult reports live-lane service while batch work saturates the
// batch sessions.
type QoSBenchResult struct {
	Sessions       int     `json:"sessions"`
	LiveReserved   int     `json:"live_reserved"`
	BatchWorkers   int     `json:"batch_workers"`
	LiveRequests   uint64  `json:"live_requests"`
	LiveWaitP50    float64 `json:"live_wait_p50_us"`
	LiveWaitP99    float64 `json:"live_wait_p99_us"`
	LiveWaitP999   float64 `json:"live_wait_p999_us"`
	LiveLatencyP50 float64 `json:"live_latency_p50_us"`
	LiveLatencyP99 float64 `json:"live_latency_p99_us"`
	BatchWaitP50   float64 `json:"batch_wait_p50_us"`
	BatchOpsPerSec float64 `json:"batch_ops_per_sec"`
	Saturated      float64 `json:"batch_saturated_fraction"` // of live requests that found batch requests queued
}

// BenchQoS saturates the batch lane of p (2 workers per session doing
// ECDH and data-key wraps) while one live caller signs back to back for d.
func BenchQoS(ctx context.Context, p *Pool, signLabel string, d time.Duration) (QoSBenchResult, error) {
	if signLabel == "" {
		signLabel = "dppb-nist"
	}
	in, err := newBenchInputs(ctx, p, BenchConfig{}, "ecdh")
	if err != nil {
		return QoSBenchResult{}, err
	}
	r := QoSBenchResult{Sessions: p.cfg.Sessions, LiveReserved: p.cfg.LiveReserved, BatchWorkers: 2 * p.cfg.Sessions}
	bctx, stop := context.WithCancel(WithLane(ctx, Batch))
	var wg sync.WaitGroup
	var batchOps atomic.Uint64
	for w := range r.BatchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bctx.Err() == nil {
				var err error
				if w%2 == 0 {
					_, _, err = p.EphemeralECDH(bctx, esim.CurveP256, in.peer[esim.CurveP256])
				} else {
					var bk *BatchKey
					if bk, err = p.NewBatchKey(bctx, "qos"); err == nil {
						bk.Close()
					}
				}
				if err == nil {
					batchOps.Add(1)
				}
			}
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if p.batchSaturated() {
			break
		}
		if time.Now().After(deadline) {
			stop()
			wg.Wait()
			return r, errors.New("hsmpool: bench qos: batch lane never saturated")
		}
	}
	var wait, lat Histogram
	saturated := 0
	start := time.Now()
	b0 := batchOps.Load()
	for time.Since(start) < d && ctx.Err() == nil {
		if p.batchSaturated() {
			saturated++
		}
		t0 := time.Now()
		var err error
		serr := p.sched.submit(ctx, Live, func(slot int) {
			wait.Record(time.Since(t0))
			_, err = p.be.sign(ctx, slot, signLabel, in.digest)
		})
		if serr != nil {
			break
		}
		if err != nil {
			stop()
			wg.Wait()
			return r, err
		}
		lat.Record(time.Since(t0))
	}
	el := time.Since(start)
	r.BatchOpsPerSec = float64(batchOps.Load()-b0) / el.Seconds()
	stop()
	wg.Wait()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	r.LiveRequests = wait.Count()
	r.LiveWaitP50, r.LiveWaitP99, r.LiveWaitP999 = us(wait.Quantile(0.5)), us(wait.Quantile(0.99)), us(wait.Quantile(0.999))
	r.LiveLatencyP50, r.LiveLatencyP99 = us(lat.Quantile(0.5)), us(lat.Quantile(0.99))
	r.BatchWaitP50 = us(p.m.wait[Batch].Quantile(0.5))
	if r.LiveRequests > 0 {
		r.Saturated = float64(saturated) / float64(r.LiveRequests)
	}
	return r, nil
}
