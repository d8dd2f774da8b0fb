package hsmpool

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/perso-esim/perso/esim"
)

// With the batch lane saturated (more batch requests than batch may have in
// flight, every batch session busy inside the token), live requests are
// still served: on the session reserved for live, and ahead of the queued
// batch requests when live, too, has to wait for a session.
//
// The batch operations are held inside the token by a gate, not by load, so
// the test needs no clock: a live request that had to wait for a batch
// operation would wait for the gate, which opens only at the end (the
// 30-second deadline only ends such a test, it measures nothing). How long
// live waits on a real token under load is measured by
// BenchmarkLiveUnderBatch.
//
// With the default BatchWhileLive (1), the throttle alone keeps a freed
// session from batch while live is in flight; with BatchWhileLive 3 (the
// whole batch share) only the queue order does, so both are tested.
func TestLiveLaneUnderSaturatedBatch(t *testing.T) {
	for _, batchWhileLive := range []int{0, 3} {
		t.Run(fmt.Sprintf("BatchWhileLive=%d", batchWhileLive), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.BatchWhileLive = batchWhileLive
			testLiveLaneUnderSaturatedBatch(t, cfg)
		})
	}
}

func testLiveLaneUnderSaturatedBatch(t *testing.T, cfg Config) {
	p, f := openFaultyPoolConfig(t, cfg) // 4 sessions: 3 for batch, 1 reserved for live
	if p.cfg.Sessions != 4 || p.cfg.LiveReserved != 1 {
		t.Fatalf("test set-up: %d sessions, %d reserved; want 4 and 1", p.cfg.Sessions, p.cfg.LiveReserved)
	}
	f.gate = make(chan struct{})
	f.trace = true
	ctx, stop := context.WithCancel(WithLane(context.Background(), Batch))
	var wg sync.WaitGroup
	gateOpen := false
	defer func() {
		stop()
		if !gateOpen {
			close(f.gate)
		}
		wg.Wait()
	}()
	const batchWorkers = 6
	for range batchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, peer := peerKey(t, esim.CurveBrainpoolP256r1)
			for ctx.Err() == nil {
				p.EphemeralECDH(ctx, esim.CurveBrainpoolP256r1, peer)
			}
		}()
	}
	// Every batch request is inside the token or queued: three inside (the
	// batch share), three queued.
	settled := func() bool {
		p.sched.mu.Lock()
		queued := len(p.sched.queues[Batch])
		p.sched.mu.Unlock()
		return int(f.gated.Load())+queued == batchWorkers
	}
	for deadline := time.Now().Add(10 * time.Second); !settled(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("batch requests never settled: %d inside the token, queued %v", f.gated.Load(), p.batchSaturated())
		}
	}
	if g := f.gated.Load(); g != 3 {
		t.Fatalf("%d batch operations inside the token at once, want 3: batch took the session reserved for live", g)
	}
	batchOps := func() uint64 { return opCount(p.Stats(), "ecdh-brp", Batch) }
	if n := batchOps(); n != 0 {
		t.Fatalf("%d batch operations completed through a closed gate", n)
	}

	d := sha256.Sum256([]byte("live"))
	liveCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("reserved session", func(t *testing.T) {
		const n = 50
		for i := range n {
			if _, err := p.Sign(liveCtx, "dppb-nist", d[:]); err != nil {
				t.Fatalf("live request %d with batch saturated: %v (it waited for a batch operation: batch took the reserved session)", i, err)
			}
		}
		if got := f.signsOK.Load(); got != n {
			t.Fatalf("%d signatures reached the token, want %d", got, n)
		}
		if g := f.gated.Load(); g != 3 {
			t.Fatalf("%d batch operations inside the token, want still 3", g)
		}
		if n := batchOps(); n != 0 {
			t.Fatalf("%d batch operations completed while the gate was closed", n)
		}
		if total, b := p.sched.inUseCount(); b > 3 {
			t.Fatalf("batch holds %d of %d sessions in use, more than its 3", b, total)
		}
	})

	t.Run("live ahead of queued batch", func(t *testing.T) {
		// Take the last free session, so that live must queue too, behind
		// the batch requests already queued.
		held, err := p.sched.acquire(liveCtx, Live)
		if err != nil {
			t.Fatal(err)
		}
		released := false
		defer func() {
			if !released {
				p.sched.release(held, Live)
			}
		}()
		done := make(chan error, 1)
		go func() {
			_, err := p.Sign(liveCtx, "dppb-nist", d[:])
			done <- err
		}()
		waitQueued(t, p.sched, Live, 1)
		mark := f.eventCount()
		f.gate <- struct{}{} // one batch operation finishes and frees its session
		if err := <-done; err != nil {
			t.Fatalf("queued live request: %v (a queued batch request took the freed session)", err)
		}
		p.sched.release(held, Live)
		released = true
		ev := f.eventsSince(mark)
		sign := slices.Index(ev, "SignInit")
		if next := slices.Index(ev, "GenerateKeyPair"); sign < 0 || next >= 0 && next < sign {
			t.Fatalf("token calls after a batch session was freed: %v; want the queued live request's SignInit before the next batch GenerateKeyPair", ev)
		}
	})

	close(f.gate)
	gateOpen = true
	stop()
	wg.Wait()
	if n := batchOps(); n < 3 {
		t.Fatalf("%d batch operations completed after the gate opened, want at least the 3 held", n)
	}
}

// opCount returns how many op requests of lane l the pool has finished
// (successfully or not).
func opCount(st Stats, op string, l Lane) uint64 {
	for _, o := range st.Ops {
		if o.Op == op && o.Lane == l.String() {
			return o.Latency.Count
		}
	}
	return 0
}
