package hsmpool

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/perso-esim/perso/esim"
)

// Stats reports per-operation, per-lane counts, errors and latency, the
// session-wait distribution per lane, and session usage.
func TestStatsAndHealth(t *testing.T) {
	p := openPool(t, testConfig(t))
	ctx := context.Background()
	d := sha256.Sum256(nil)
	for range 5 {
		if _, err := p.Sign(ctx, "dppb-nist", d[:]); err != nil {
			t.Fatal(err)
		}
	}
	p.Sign(WithLane(ctx, Batch), "no-such-key", d[:])
	if err := p.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	st := p.Stats()
	find := func(op, lane string) OpStats {
		for _, o := range st.Ops {
			if o.Op == op && o.Lane == lane {
				return o
			}
		}
		t.Fatalf("no stats for %s/%s in %+v", op, lane, st.Ops)
		return OpStats{}
	}
	if s := find("sign", "live"); s.Latency.Count != 5 || s.Errors != 0 || s.OpsPerSec <= 0 || s.Latency.P50 <= 0 || s.Latency.P99 < s.Latency.P50 {
		t.Fatalf("sign/live: %+v", s)
	}
	if s := find("sign", "batch"); s.Latency.Count != 1 || s.Errors != 1 {
		t.Fatalf("sign/batch: %+v", s)
	}
	if st.Wait["live"].Count < 5 || st.SessionsInUse != 0 || st.Sessions != 4 || st.LiveReserved != 1 || st.HSMCalls == 0 {
		t.Fatalf("stats: %+v", st)
	}
	// Sequential calls (the signs and Health's) on an idle pool find a free
	// session and a sleeping worker: they run on the caller's goroutine.
	var calls uint64
	for _, o := range st.Ops {
		calls += o.Latency.Count
	}
	if h := st.Handover; calls < 6 || h.Inline != calls || h.Posted+h.Queued+h.Polled+h.Woken+h.WorkerWakeups != 0 {
		t.Fatalf("handover %+v, want all %d sequential calls inline", h, calls)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(timeUS(i))
	}
	tests := []struct {
		q    float64
		want int // µs
	}{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}}
	for _, tc := range tests {
		got := h.Quantile(tc.q)
		lo, hi := timeUS(tc.want), timeUS(tc.want)*107/100 // bucket width ~6%
		if got < lo || got > hi {
			t.Errorf("q%.3f = %v, want within [%v, %v]", tc.q, got, lo, hi)
		}
	}
	if h.Count() != 1000 || h.Max() != timeUS(1000) {
		t.Fatalf("count %d max %v", h.Count(), h.Max())
	}
}

func timeUS(n int) time.Duration { return time.Duration(n) * time.Microsecond }

func TestLabels(t *testing.T) {
	tests := []struct{ got, want string }{
		{DPauthLabel(esim.CurveP256), LabelDPauthNIST},
		{DPauthLabel(esim.CurveBrainpoolP256r1), LabelDPauthBRP},
		{DPpbLabel(esim.CurveP256), LabelDPpbNIST},
		{DPpbLabel(esim.CurveBrainpoolP256r1), LabelDPpbBRP},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("label %q, want %q", tc.got, tc.want)
		}
	}
	for _, k := range sgp26Keys {
		if k.label != DPauthLabel(k.curve) && k.label != DPpbLabel(k.curve) {
			t.Errorf("test key label %q does not follow the convention", k.label)
		}
	}
}
