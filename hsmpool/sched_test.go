package hsmpool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// modes runs a scheduler test once with callers and workers that sleep at
// once and once with callers and workers that poll (long enough to be
// polling whenever the test hands work over, whatever GOMAXPROCS is).
func modes(t *testing.T, n, reserved, batchWhileLive int, test func(t *testing.T, s *scheduler)) {
	t.Run("sleep", func(t *testing.T) { test(t, newTestScheduler(t, n, reserved, batchWhileLive, -1)) })
	t.Run("poll", func(t *testing.T) { test(t, newTestScheduler(t, n, reserved, batchWhileLive, 10*time.Second)) })
}

// newTestScheduler returns a scheduler whose callers and workers may poll
// for up to spinMax (on one spare CPU), closed when the test ends.
func newTestScheduler(t *testing.T, n, reserved, batchWhileLive int, spinMax time.Duration) *scheduler {
	s := newScheduler(n, reserved, batchWhileLive, spinMax, 1)
	t.Cleanup(func() {
		if !s.close(5 * time.Second) {
			t.Error("scheduler did not close within 5s")
		}
	})
	return s
}

// cancelled is a context under which acquire succeeds only if a slot can be
// taken at once: a deterministic probe of "would this lane have to wait?".
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestSchedulerReservesSessionsForLive(t *testing.T) {
	modes(t, 4, 1, 3, func(t *testing.T, s *scheduler) {
		var batch []int
		for range 3 {
			slot, err := s.acquire(cancelled(), Batch)
			if err != nil {
				t.Fatalf("batch acquire %d: %v", len(batch), err)
			}
			batch = append(batch, slot)
		}
		if _, err := s.acquire(cancelled(), Batch); !errors.Is(err, context.Canceled) {
			t.Fatalf("4th batch acquire did not wait (err %v): batch took the reserved session", err)
		}
		live, err := s.acquire(cancelled(), Live)
		if err != nil {
			t.Fatalf("live could not use its reserved session while batch is saturated: %v", err)
		}
		if _, err := s.acquire(cancelled(), Live); !errors.Is(err, context.Canceled) {
			t.Fatalf("5th acquire on 4 sessions did not wait: %v", err)
		}
		// Live may use batch's sessions when they are free.
		s.release(batch[0], Batch)
		live2, err := s.acquire(cancelled(), Live)
		if err != nil {
			t.Fatalf("live could not use a free batch session: %v", err)
		}
		s.release(live, Live)
		if total, b := s.inUseCount(); total != 3 || b != 2 {
			t.Fatalf("in use %d (batch %d), want 3 (2)", total, b)
		}
		s.release(live2, Live)
		s.release(batch[1], Batch)
		s.release(batch[2], Batch)
	})
}

// waitQueued waits until lane l has n waiters.
func waitQueued(t *testing.T, s *scheduler, l Lane, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		got := len(s.queues[l])
		s.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("lane %v never had %d waiters", l, n)
}

func TestSchedulerServesLiveBeforeBatch(t *testing.T) {
	modes(t, 1, 0, 1, func(t *testing.T, s *scheduler) {
		held, _ := s.acquire(context.Background(), Batch)
		order := make(chan Lane, 3)
		start := func(l Lane) {
			go func() {
				slot, err := s.acquire(context.Background(), l)
				if err != nil {
					t.Error(err)
					return
				}
				order <- l
				s.release(slot, l)
			}()
		}
		start(Batch)
		waitQueued(t, s, Batch, 1)
		start(Batch)
		waitQueued(t, s, Batch, 2)
		start(Live) // arrives last, is served first
		waitQueued(t, s, Live, 1)
		if _, err := s.acquire(cancelled(), Batch); !errors.Is(err, context.Canceled) {
			t.Fatalf("a new batch request jumped the queue: %v", err)
		}
		s.release(held, Batch)
		want := []Lane{Live, Batch, Batch}
		for i, w := range want {
			if got := <-order; got != w {
				t.Fatalf("grant %d went to %v, want %v", i, got, w)
			}
		}
	})
}

func TestSchedulerCancelAndClose(t *testing.T) {
	modes(t, 1, 0, 1, func(t *testing.T, s *scheduler) {
		held, _ := s.acquire(context.Background(), Live)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		if _, err := s.acquire(ctx, Live); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiting past the deadline: %v, want DeadlineExceeded", err)
		}
		if s.liveWaiting() {
			t.Fatal("a timed-out waiter stayed queued")
		}
		errc := make(chan error, 1)
		go func() {
			slot, err := s.acquire(context.Background(), Batch)
			if err == nil { // granted before the close: give it back
				s.release(slot, Batch)
			}
			errc <- err
		}()
		waitQueued(t, s, Batch, 1)
		go s.release(held, Live)
		if !s.close(5 * time.Second) {
			t.Fatal("close did not see the held session returned")
		}
		if err := <-errc; err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter on a closing pool: %v", err)
		}
		if _, err := s.acquire(context.Background(), Live); !errors.Is(err, ErrClosed) {
			t.Fatalf("acquire after close: %v, want ErrClosed", err)
		}
	})
}

// While a live request is in flight, batch may start new operations only up
// to BatchWhileLive in flight; the full batch share returns when live is idle.
func TestSchedulerThrottlesBatchWhileLiveInFlight(t *testing.T) {
	modes(t, 4, 1, 1, func(t *testing.T, s *scheduler) {
		live, err := s.acquire(cancelled(), Live)
		if err != nil {
			t.Fatal(err)
		}
		b1, err := s.acquire(cancelled(), Batch)
		if err != nil {
			t.Fatalf("first batch operation while live is in flight: %v", err)
		}
		if _, err := s.acquire(cancelled(), Batch); !errors.Is(err, context.Canceled) {
			t.Fatalf("second batch operation started while live is in flight (err %v)", err)
		}
		got := make(chan int, 1)
		go func() {
			slot, err := s.acquire(context.Background(), Batch)
			if err != nil {
				t.Error(err)
			}
			got <- slot
		}()
		waitQueued(t, s, Batch, 1)
		s.release(live, Live) // live idle: batch may use its whole share again
		b2 := <-got
		b3, err := s.acquire(cancelled(), Batch)
		if err != nil {
			t.Fatalf("third batch operation with live idle: %v", err)
		}
		if total, b := s.inUseCount(); total != 3 || b != 3 {
			t.Fatalf("in use %d (batch %d), want 3 (3)", total, b)
		}
		for _, slot := range []int{b1, b2, b3} {
			s.release(slot, Batch)
		}
	})
}

// Queued requests run in FIFO order (live first) once a session frees up,
// each exactly once; a request whose context ends while queued never runs.
func TestSchedulerSubmitRunsQueuedRequestsOnce(t *testing.T) {
	modes(t, 1, 0, 1, func(t *testing.T, s *scheduler) {
		held, _ := s.acquire(context.Background(), Batch)
		var mu sync.Mutex
		var ran []string
		errs := make(chan error, 4)
		submit := func(ctx context.Context, name string, l Lane) {
			go func() {
				errs <- s.submit(ctx, l, func(int) {
					mu.Lock()
					ran = append(ran, name)
					mu.Unlock()
				})
			}()
		}
		submit(context.Background(), "batch-1", Batch)
		waitQueued(t, s, Batch, 1)
		ctx, cancel := context.WithCancel(context.Background())
		submit(ctx, "batch-cancelled", Batch)
		waitQueued(t, s, Batch, 2)
		submit(context.Background(), "batch-2", Batch)
		waitQueued(t, s, Batch, 3)
		submit(context.Background(), "live-1", Live)
		waitQueued(t, s, Live, 1)
		cancel()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled queued request: %v, want Canceled", err)
		}
		s.release(held, Batch)
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		want := []string{"live-1", "batch-1", "batch-2"}
		if fmt.Sprint(ran) != fmt.Sprint(want) {
			t.Fatalf("ran %v, want %v", ran, want)
		}
		if total, _ := s.inUseCount(); total != 0 {
			t.Fatalf("%d sessions still in use", total)
		}
	})
}

// goid returns the current goroutine's id (for tests that check where a
// request ran).
func goid() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// waitPolling waits until n callers poll for their result.
func waitPolling(t *testing.T, s *scheduler, n int32) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.callersPolling.Load() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d callers poll, want %d", s.callersPolling.Load(), n)
		}
	}
}

// A request runs on its slot's worker (one goroutine per
// session), or on its caller's goroutine when it found the slot free and the
// worker asleep; never on a third goroutine. Queued requests run on the
// worker of the slot that frees up.
func TestSchedulerRunsRequestsOnTheSlotsWorker(t *testing.T) {
	modes(t, 2, 0, 1, func(t *testing.T, s *scheduler) {
		var mu sync.Mutex
		workers := map[int]map[string]bool{} // slot → goroutines other than the caller
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				caller := goid()
				for range 50 {
					err := s.submit(context.Background(), Live, func(slot int) {
						if g := goid(); g != caller {
							mu.Lock()
							if workers[slot] == nil {
								workers[slot] = map[string]bool{}
							}
							workers[slot][g] = true
							mu.Unlock()
						}
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for slot, gs := range workers {
			if len(gs) > 1 {
				t.Errorf("slot %d ran requests on %d goroutines besides their callers, want only its worker", slot, len(gs))
			}
		}
		if total, _ := s.inUseCount(); total != 0 {
			t.Fatalf("%d sessions still in use", total)
		}

		c0 := s.counts.snapshot()
		if c0.Inline+c0.Posted+c0.Queued != 8*50 {
			t.Errorf("handover counts %+v do not add up to the 400 requests", c0)
		}
		held, _ := s.acquire(context.Background(), Live)
		other, _ := s.acquire(context.Background(), Live)
		ran := make(chan string, 3)
		var returned sync.WaitGroup
		for i := range 3 {
			returned.Add(1)
			go func() {
				defer returned.Done()
				caller := goid()
				_ = s.submit(context.Background(), Live, func(slot int) {
					if slot != held {
						t.Errorf("queued request %d ran on slot %d, want the one released (%d)", i, slot, held)
					}
					if g := goid(); g == caller {
						t.Errorf("queued request %d ran on its caller", i)
					} else {
						ran <- g
					}
				})
			}()
			waitQueued(t, s, Live, i+1)
		}
		s.release(held, Live)
		g0, g1, g2 := <-ran, <-ran, <-ran
		if g0 != g1 || g1 != g2 {
			t.Errorf("queued requests ran on goroutines %s, %s, %s; want the slot's worker for all", g0, g1, g2)
		}
		s.release(other, Live)
		returned.Wait()
		c := s.counts.snapshot()
		if q := c.Queued - c0.Queued; q != 3 {
			t.Errorf("%d requests counted as queued, want 3", q)
		}
		if r := (c.Polled - c0.Polled) + (c.Woken - c0.Woken); r != 3 {
			t.Errorf("%d results counted as polled or woken, want the 3 queued ones", r)
		}
	})
}

// A panic in a request reaches its caller; the worker survives it.
func TestSchedulerReraisesPanicOnCaller(t *testing.T) {
	s := newTestScheduler(t, 1, 0, 1, -1)
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "boom") {
				t.Fatalf("recovered %v, want the request's panic", r)
			}
		}()
		_ = s.submit(context.Background(), Live, func(int) { panic("boom") })
	}()
	ran := false
	if err := s.submit(context.Background(), Live, func(int) { ran = true }); err != nil || !ran {
		t.Fatalf("after a panic: err %v, ran %v; the worker must survive", err, ran)
	}
}

// A caller polling for its result honours its context and the pool's close
// at once, not after its polling budget.
func TestSchedulerPollingCallerCancelAndClose(t *testing.T) {
	s := newTestScheduler(t, 1, 0, 1, time.Minute)
	held, _ := s.acquire(context.Background(), Live)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- s.submit(ctx, Live, func(int) { t.Error("a cancelled request ran") })
	}()
	waitPolling(t, s, 1)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled polling caller: %v, want Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled caller kept polling")
	}
	if s.liveWaiting() {
		t.Fatal("a cancelled caller stayed queued")
	}
	go func() {
		errc <- s.submit(context.Background(), Live, func(int) { t.Error("a request ran after close") })
	}()
	waitPolling(t, s, 1)
	go func() { time.Sleep(10 * time.Millisecond); s.release(held, Live) }()
	if !s.close(5 * time.Second) {
		t.Fatal("close did not see the held session returned and the workers stop")
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("polling caller on a closed pool: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a caller kept polling on a closed pool")
	}
}

// Nobody polls while requests hold a session longer than the polling
// budget on average (a slow, networked HSM): callers sleep at once. The
// decision (pollWorth) is checked directly, since a caller that polled and
// then slept leaves no trace a test could wait for; the hold time is a lower
// bound (the request sleeps 5ms), which load cannot shorten.
func TestSchedulerDoesNotPollForSlowSessions(t *testing.T) {
	s := newTestScheduler(t, 1, 0, 1, 200*time.Microsecond)
	mayPoll := func(n *atomic.Int32, max int32) bool {
		ok := s.pollWorth(n, max)
		if ok {
			n.Add(-1)
		}
		return ok
	}
	if !mayPoll(&s.callersPolling, s.maxCallers) || !mayPoll(&s.workersPolling, s.maxWorkers) {
		t.Fatal("callers or workers may not poll before any request was slow")
	}
	if err := s.submit(context.Background(), Live, func(int) { time.Sleep(5 * time.Millisecond) }); err != nil {
		t.Fatal(err)
	}
	if hold := time.Duration(s.holdNS.Load()); hold < 200*time.Microsecond {
		t.Fatalf("hold-time estimate %v after a 5ms request, want more than the 200µs budget", hold)
	}
	if mayPoll(&s.callersPolling, s.maxCallers) {
		t.Fatal("a caller may poll for a session held 5ms on average")
	}
	if mayPoll(&s.workersPolling, s.maxWorkers) {
		t.Fatal("an idle worker may poll while requests hold a session 5ms on average")
	}
	held, _ := s.acquire(context.Background(), Live)
	c0 := s.counts.snapshot()
	done := make(chan error, 1)
	go func() { done <- s.submit(context.Background(), Live, func(int) {}) }()
	waitQueued(t, s, Live, 1)
	s.release(held, Live)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := s.counts.snapshot().since(c0); c.Polled != 0 || c.Woken != 1 {
		t.Fatalf("handover %+v, want the queued caller asleep and woken (Woken 1, Polled 0)", c)
	}
}

// A request whose fn calls runtime.Goexit (t.FailNow in a test callback)
// ends its caller's goroutine as if fn had run there, whether it ran inline
// or on the worker; the session is not lost and the requests queued behind
// it still run.
func TestSchedulerSurvivesGoexitInRequest(t *testing.T) {
	modes(t, 1, 0, 1, func(t *testing.T, s *scheduler) {
		submitGoexit := func() <-chan bool {
			returned := make(chan bool, 1)
			go func() {
				normal := false
				defer func() { returned <- normal }()
				_ = s.submit(context.Background(), Live, func(int) { runtime.Goexit() })
				normal = true
			}()
			return returned
		}
		if <-submitGoexit() {
			t.Fatal("submit returned normally after an inline request called Goexit")
		}

		held, _ := s.acquire(context.Background(), Live)
		exited := submitGoexit()
		waitQueued(t, s, Live, 1)
		after := make(chan error, 1)
		go func() { after <- s.submit(context.Background(), Live, func(int) {}) }()
		waitQueued(t, s, Live, 2)
		s.release(held, Live)
		select {
		case normal := <-exited:
			if normal {
				t.Fatal("submit returned normally after a queued request called Goexit on the worker")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the caller of a request that called Goexit on the worker hangs")
		}
		select {
		case err := <-after:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the request queued behind a Goexit never ran")
		}
		if err := s.submit(context.Background(), Live, func(int) {}); err != nil {
			t.Fatal(err)
		}
		if total, _ := s.inUseCount(); total != 0 {
			t.Fatalf("%d sessions still in use", total)
		}
	})
}
