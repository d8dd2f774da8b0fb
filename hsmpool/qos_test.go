package hsmpool

import (
	"context"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/perso-esim/perso/esim"
)

// With the batch lane saturated (more batch workers than batch may have in
// flight, every batch session busy with brainpool ECDH and data-key wraps),
// a live request still obtains a session at once: live p99 wait < 5 ms.
func TestLiveLaneUnderSaturatedBatch(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sessions = 4 // 3 batch + 1 reserved
	p := openPool(t, cfg)
	ctx, stop := context.WithCancel(WithLane(context.Background(), Batch))
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, peer := peerKey(t, esim.CurveBrainpoolP256r1)
			for ctx.Err() == nil {
				if w%3 == 0 {
					if bk, err := p.NewBatchKey(ctx, "qos"); err == nil {
						bk.Close()
					}
					continue
				}
				p.EphemeralECDH(ctx, esim.CurveBrainpoolP256r1, peer)
			}
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if p.batchSaturated() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("batch load never saturated its sessions")
		}
	}
	var live Histogram
	saturated := 0
	const n = 200
	d := sha256.Sum256([]byte("live"))
	for range n {
		if p.batchSaturated() {
			saturated++
		}
		t0 := time.Now()
		if _, err := p.Sign(context.Background(), "dppb-nist", d[:]); err != nil {
			t.Fatal(err)
		}
		live.Record(time.Since(t0))
	}
	stop()
	wg.Wait()
	st := p.Stats()
	w := st.Wait["live"]
	for _, o := range st.Ops {
		t.Logf("%-12s %-5s n=%-6d errors=%d p50 %v p99 %v", o.Op, o.Lane, o.Latency.Count, o.Errors, o.Latency.P50, o.Latency.P99)
	}
	t.Logf("live wait for a session: p50 %v p99 %v p999 %v max %v", w.P50, w.P99, w.P999, w.Max)
	t.Logf("live sign latency (wait + HSM): p50 %v p99 %v; batch waits p50 %v; batch saturated at %d/%d live requests",
		live.Quantile(0.5), live.Quantile(0.99), st.Wait["batch"].P50, saturated, n)
	if saturated < n/2 {
		t.Fatalf("batch lane saturated for only %d of %d live requests: the test did not test QoS", saturated, n)
	}
	if w.P99 >= 5*time.Millisecond {
		t.Fatalf("live p99 wait %v, want < 5ms", w.P99)
	}
}
