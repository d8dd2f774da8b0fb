package hsmpool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Lane is a priority class of HSM work.
type Lane int

const (
	// Live is ES9+ download traffic: served before Batch, with reserved sessions.
	Live Lane = iota
	// Batch is data preparation: uses at most Sessions-LiveReserved sessions
	// and yields to waiting Live requests.
	Batch
	laneCount
)

func (l Lane) String() string {
	switch l {
	case Live:
		return "live"
	case Batch:
		return "batch"
	}
	return "lane?"
}

type laneKey struct{}

// WithLane returns a context whose pool operations run in lane l. Without
// it, each operation uses its documented default lane (see package doc).
func WithLane(ctx context.Context, l Lane) context.Context {
	return context.WithValue(ctx, laneKey{}, l)
}

// LaneOf returns the lane set on ctx by WithLane, or def.
func LaneOf(ctx context.Context, def Lane) Lane {
	if l, ok := ctx.Value(laneKey{}).(Lane); ok && l >= 0 && l < laneCount {
		return l
	}
	return def
}

// scheduler hands out session slots. Live waiters are always served before
// batch waiters; batch work never holds more than batchMax slots, so
// n-batchMax slots are reserved for live traffic, and no more than batchLive
// while a live request is in flight. Within a lane, FIFO.
type scheduler struct {
	mu         sync.Mutex
	idle       sync.Cond // signalled when inUse drops to 0 (for Close)
	free       []int
	n          int
	batchMax   int
	batchLive  int // batch's limit while live requests are in flight
	batchInUse int
	inUse      int
	queues     [laneCount][]*waiter
	closed     bool
	liveWait   atomic.Int32 // number of queued live waiters (read lock-free by batch runners)
}

type waiter struct {
	ch chan int // receives a slot, or -1 when the pool closes
}

func newScheduler(n, reserved, batchWhileLive int) *scheduler {
	s := &scheduler{n: n, batchMax: n - reserved, batchLive: min(max(batchWhileLive, 1), n-reserved)}
	s.idle.L = &s.mu
	for i := n - 1; i >= 0; i-- {
		s.free = append(s.free, i)
	}
	return s
}

// batchLimit is the number of slots batch may hold now: batchMax, or
// batchLive while a live request is in flight (the token serialises
// operations, so every batch operation in flight is queueing delay for the
// live one). Caller holds mu.
func (s *scheduler) batchLimit() int {
	if s.inUse-s.batchInUse > 0 {
		return s.batchLive
	}
	return s.batchMax
}

// may reports whether lane l may take a free slot now. Caller holds mu.
func (s *scheduler) may(l Lane) bool {
	if len(s.free) == 0 {
		return false
	}
	if l == Batch {
		return s.batchInUse < s.batchLimit() && len(s.queues[Live]) == 0
	}
	return true
}

func (s *scheduler) take(l Lane) int {
	slot := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	s.inUse++
	if l == Batch {
		s.batchInUse++
	}
	return slot
}

// acquire returns a slot for lane l, honouring ctx while it waits.
func (s *scheduler) acquire(ctx context.Context, l Lane) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return -1, ErrClosed
	}
	if len(s.queues[l]) == 0 && s.may(l) {
		slot := s.take(l)
		s.mu.Unlock()
		return slot, nil
	}
	w := &waiter{ch: make(chan int, 1)}
	s.queues[l] = append(s.queues[l], w)
	if l == Live {
		s.liveWait.Add(1)
	}
	s.mu.Unlock()

	select {
	case slot := <-w.ch:
		if slot < 0 {
			return -1, ErrClosed
		}
		return slot, nil
	case <-ctx.Done():
		s.mu.Lock()
		if s.remove(l, w) {
			s.mu.Unlock()
			return -1, ctx.Err()
		}
		s.mu.Unlock()
		// Granted concurrently with the cancellation: hand the slot back.
		if slot := <-w.ch; slot >= 0 {
			s.release(slot, l)
		}
		return -1, ctx.Err()
	}
}

func (s *scheduler) remove(l Lane, w *waiter) bool {
	q := s.queues[l]
	for i, x := range q {
		if x == w {
			s.queues[l] = append(q[:i], q[i+1:]...)
			if l == Live {
				s.liveWait.Add(-1)
			}
			return true
		}
	}
	return false
}

// release returns slot to the pool and grants it to the next waiter: live
// first, then batch if the batch share allows.
func (s *scheduler) release(slot int, l Lane) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse--
	if l == Batch {
		s.batchInUse--
	}
	s.free = append(s.free, slot)
	s.dispatch()
	if s.inUse == 0 {
		s.idle.Broadcast()
	}
}

func (s *scheduler) dispatch() {
	for len(s.free) > 0 && !s.closed {
		var l Lane
		switch {
		case len(s.queues[Live]) > 0:
			l = Live
			s.liveWait.Add(-1)
		case len(s.queues[Batch]) > 0 && s.batchInUse < s.batchLimit():
			l = Batch
		default:
			return
		}
		w := s.queues[l][0]
		s.queues[l] = s.queues[l][1:]
		w.ch <- s.take(l)
	}
}

// liveWaiting reports whether a live request is queued (batch runners
// holding a slot across several items yield when it is).
func (s *scheduler) liveWaiting() bool { return s.liveWait.Load() > 0 }

// inUseCount returns the number of slots held, per lane.
func (s *scheduler) inUseCount() (total, batch int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse, s.batchInUse
}

// close fails every waiter and waits up to timeout for held slots to return.
func (s *scheduler) close(timeout time.Duration) bool {
	s.mu.Lock()
	s.closed = true
	for l := range s.queues {
		for _, w := range s.queues[l] {
			w.ch <- -1
		}
		s.queues[l] = nil
	}
	s.liveWait.Store(0)
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		for s.inUse > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// batchBacklog reports whether batch requests are queued (the batch lane is
// saturated: more batch demand than it may have in flight).
func (s *scheduler) batchBacklog() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queues[Batch]) > 0
}
