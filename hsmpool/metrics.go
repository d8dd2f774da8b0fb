package hsmpool

import (
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Histogram is a lock-free log-linear latency histogram: 16 sub-buckets per
// power of two (about 6% resolution) from 1 ns to about 18 minutes.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
}

const (
	histSub     = 16
	histBuckets = histSub + 36*histSub
)

func histIndex(ns int64) int {
	if ns < histSub {
		if ns < 0 {
			return 0
		}
		return int(ns)
	}
	k := bits.Len64(uint64(ns)) - 1 // >= 4
	sub := int(ns>>(k-4)) - histSub
	i := histSub + (k-4)*histSub + sub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper is the upper bound (exclusive) of bucket i, in ns.
func histUpper(i int) int64 {
	if i < histSub {
		return int64(i + 1)
	}
	k := (i-histSub)/histSub + 4
	sub := (i - histSub) % histSub
	return int64(histSub+sub+1) << (k - 4)
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	ns := int64(d)
	h.counts[histIndex(ns)].Add(1)
	h.n.Add(1)
	h.sum.Add(ns)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			break
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Quantile returns the q-quantile (0 < q <= 1) as the upper bound of its
// bucket (never below the true value by more than the bucket width), capped
// at the maximum observed.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(histUpper(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Mean returns the mean observation.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / int64(n))
}

// Max returns the largest observation.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Merge adds o's observations into h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for {
		m, om := h.max.Load(), o.max.Load()
		if om <= m || h.max.CompareAndSwap(m, om) {
			break
		}
	}
}

// Latency summarises a histogram.
type Latency struct {
	Count uint64        `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summary returns count, mean, p50, p99, p99.9 and max.
func (h *Histogram) Summary() Latency {
	return Latency{Count: h.Count(), Mean: h.Mean(), P50: h.Quantile(0.50), P99: h.Quantile(0.99),
		P999: h.Quantile(0.999), Max: h.Max()}
}

type opLane struct {
	op   string
	lane Lane
}

type opMetrics struct {
	lat    Histogram
	errors atomic.Uint64
}

type metrics struct {
	start time.Time
	mu    sync.RWMutex
	ops   map[opLane]*opMetrics
	wait  [laneCount]Histogram
}

func newMetrics() *metrics { return &metrics{start: time.Now(), ops: map[opLane]*opMetrics{}} }

func (m *metrics) get(op string, l Lane) *opMetrics {
	k := opLane{op, l}
	m.mu.RLock()
	om := m.ops[k]
	m.mu.RUnlock()
	if om != nil {
		return om
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if om = m.ops[k]; om == nil {
		om = &opMetrics{}
		m.ops[k] = om
	}
	return om
}

// OpStats are the figures of one operation in one lane.
type OpStats struct {
	Op        string  `json:"op"`
	Lane      string  `json:"lane"`
	OpsPerSec float64 `json:"ops_per_sec"` // successful and failed, since Open
	Errors    uint64  `json:"errors"`
	Latency   Latency `json:"latency"` // queue wait + HSM time
}

// Stats is a snapshot of the pool's metrics.
type Stats struct {
	Backend          string             `json:"backend"`
	Uptime           time.Duration      `json:"uptime_ns"`
	Sessions         int                `json:"sessions"`
	LiveReserved     int                `json:"live_reserved"`
	SessionsInUse    int                `json:"sessions_in_use"`
	BatchInUse       int                `json:"batch_sessions_in_use"`
	SessionsReplaced uint64             `json:"sessions_replaced"`
	ModuleReinits    uint64             `json:"module_reinits"` // after Config.RecycleAfter operations each
	LiveQueued       int                `json:"live_queued"`    // live requests waiting for a session now
	BatchQueued      int                `json:"batch_queued"`   // batch requests waiting for a session now
	TokenFailures    uint64             `json:"token_failures"`
	HSMCalls         uint64             `json:"hsm_calls"` // PKCS#11 calls reaching the token
	Ops              []OpStats          `json:"ops"`
	Wait             map[string]Latency `json:"wait"` // time to obtain a session, per lane
	Handover         Handover           `json:"handover"`
}

func (m *metrics) snapshot() (ops []OpStats, wait map[string]Latency) {
	el := time.Since(m.start).Seconds()
	m.mu.RLock()
	for k, om := range m.ops {
		s := om.lat.Summary()
		ops = append(ops, OpStats{Op: k.op, Lane: k.lane.String(), OpsPerSec: float64(s.Count) / el,
			Errors: om.errors.Load(), Latency: s})
	}
	m.mu.RUnlock()
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Op != ops[j].Op {
			return ops[i].Op < ops[j].Op
		}
		return ops[i].Lane < ops[j].Lane
	})
	wait = map[string]Latency{}
	for l := Lane(0); l < laneCount; l++ {
		wait[l.String()] = m.wait[l].Summary()
	}
	return ops, wait
}
