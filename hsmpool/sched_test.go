package hsmpool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// cancelled is a context under which acquire succeeds only if a slot can be
// taken at once: a deterministic probe of "would this lane have to wait?".
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestSchedulerReservesSessionsForLive(t *testing.T) {
	s := newScheduler(4, 1, 3) // 3 batch sessions at most, 1 reserved for live
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
	if _, err := s.acquire(cancelled(), Live); err != nil {
		t.Fatalf("live could not use a free batch session: %v", err)
	}
	s.release(live, Live)
	if total, b := s.inUseCount(); total != 3 || b != 2 {
		t.Fatalf("in use %d (batch %d), want 3 (2)", total, b)
	}
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
	s := newScheduler(1, 0, 1)
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
}

func TestSchedulerCancelAndClose(t *testing.T) {
	s := newScheduler(1, 0, 1)
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
	if !s.close(time.Second) {
		t.Fatal("close did not see the held session returned")
	}
	if err := <-errc; err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("waiter on a closing pool: %v", err)
	}
	if _, err := s.acquire(context.Background(), Live); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire after close: %v, want ErrClosed", err)
	}
}

// While a live request is in flight, batch may start new operations only up
// to BatchWhileLive in flight; the full batch share returns when live is idle.
func TestSchedulerThrottlesBatchWhileLiveInFlight(t *testing.T) {
	s := newScheduler(4, 1, 1)
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
	if _, err := s.acquire(cancelled(), Batch); err != nil {
		t.Fatalf("third batch operation with live idle: %v", err)
	}
	if total, b := s.inUseCount(); total != 3 || b != 3 {
		t.Fatalf("in use %d (batch %d), want 3 (3)", total, b)
	}
	s.release(b1, Batch)
	s.release(b2, Batch)
}

// Queued requests run in FIFO order (live first) once a session frees up,
// each exactly once; a request whose context ends while queued never runs.
func TestSchedulerSubmitRunsQueuedRequestsOnce(t *testing.T) {
	s := newScheduler(1, 0, 1)
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
}
