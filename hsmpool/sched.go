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
//
// Requests (submit) run on the caller's goroutine when a slot is free. When
// they have to wait, the goroutine that frees a slot hands it to a drain
// goroutine that runs the queued requests back to back on that session and
// wakes each caller with its result: the token is kept busy without waiting
// for the OS to schedule the next caller's thread (which on a loaded machine
// costs more than a fast PKCS#11 call).
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

// waiter is a queued request (run != nil: executed by a drain goroutine) or
// a queued slot acquisition (ch receives the slot, or -1 on close).
type waiter struct {
	lane   Lane
	run    func(slot int)
	done   chan struct{} // closed after run, or on close (closed == true)
	closed bool
	ch     chan int
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
	s.account(l)
	return slot
}

func (s *scheduler) account(l Lane) {
	s.inUse++
	if l == Batch {
		s.batchInUse++
	}
}

func (s *scheduler) unaccount(l Lane) {
	s.inUse--
	if l == Batch {
		s.batchInUse--
	}
}

func (s *scheduler) enqueue(w *waiter) {
	s.queues[w.lane] = append(s.queues[w.lane], w)
	if w.lane == Live {
		s.liveWait.Add(1)
	}
}

// submit runs fn on a slot of lane l: at once on this goroutine if a slot
// is free, else queued and run by a drain goroutine. If ctx ends while the
// request is still queued, it is dropped and ctx.Err() returned; once
// started, it completes.
func (s *scheduler) submit(ctx context.Context, l Lane, fn func(slot int)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if len(s.queues[l]) == 0 && s.may(l) {
		slot := s.take(l)
		s.mu.Unlock()
		fn(slot)
		s.release(slot, l)
		return nil
	}
	w := &waiter{lane: l, run: fn, done: make(chan struct{})}
	s.enqueue(w)
	s.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		s.mu.Lock()
		if s.remove(l, w) {
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Unlock()
		<-w.done // already running: it completes
	}
	if w.closed {
		return ErrClosed
	}
	return nil
}

// acquire returns a slot for lane l, honouring ctx while it waits. The
// caller must release it.
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
	w := &waiter{lane: l, ch: make(chan int, 1)}
	s.enqueue(w)
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

// next pops the waiter that may run now, live first. Caller holds mu.
func (s *scheduler) next() *waiter {
	if s.closed {
		return nil
	}
	var l Lane
	switch {
	case len(s.queues[Live]) > 0:
		l = Live
		s.liveWait.Add(-1)
	case len(s.queues[Batch]) > 0 && s.batchInUse < s.batchLimit():
		l = Batch
	default:
		return nil
	}
	w := s.queues[l][0]
	s.queues[l] = s.queues[l][1:]
	return w
}

type grant struct {
	slot int
	w    *waiter
}

// dispatchLocked pairs free slots with waiters that may run. Caller holds
// mu and starts the grants after unlocking.
func (s *scheduler) dispatchLocked(gs []grant) []grant {
	for len(s.free) > 0 {
		w := s.next()
		if w == nil {
			break
		}
		gs = append(gs, grant{s.take(w.lane), w})
	}
	return gs
}

func (s *scheduler) start(gs []grant) {
	for _, g := range gs {
		if g.w.run == nil {
			g.w.ch <- g.slot
		} else {
			go s.drain(g.slot, g.w)
		}
	}
}

// release returns slot to the pool, and hands free slots to the next
// waiters: live first, then batch if the batch share allows.
func (s *scheduler) release(slot int, l Lane) {
	s.mu.Lock()
	s.unaccount(l)
	s.free = append(s.free, slot)
	gs := s.dispatchLocked(nil)
	if s.inUse == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
	s.start(gs)
}

// drain runs queued requests back to back on slot, starting with w.
func (s *scheduler) drain(slot int, w *waiter) {
	for {
		w.run(slot)
		close(w.done)
		s.mu.Lock()
		s.unaccount(w.lane)
		w = s.next()
		if w == nil {
			s.free = append(s.free, slot)
			gs := s.dispatchLocked(nil)
			if s.inUse == 0 {
				s.idle.Broadcast()
			}
			s.mu.Unlock()
			s.start(gs)
			return
		}
		s.account(w.lane)
		if w.run == nil {
			s.mu.Unlock()
			w.ch <- slot
			return
		}
		s.mu.Unlock()
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

// batchBacklog reports whether batch requests are queued (the batch lane is
// saturated: more batch demand than it may have in flight).
func (s *scheduler) batchBacklog() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queues[Batch]) > 0
}

// close fails every waiter and waits up to timeout for held slots to return.
func (s *scheduler) close(timeout time.Duration) bool {
	s.mu.Lock()
	s.closed = true
	for l := range s.queues {
		for _, w := range s.queues[l] {
			if w.run != nil {
				w.closed = true
				close(w.done)
			} else {
				w.ch <- -1
			}
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
