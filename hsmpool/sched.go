package hsmpool

import (
	"context"
	"fmt"
	"math"
	"runtime"
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
// Every slot has a worker goroutine that runs the requests queued for that
// session: when it finishes one it takes the next itself, so a busy session
// is driven back to back from one goroutine (which the runtime keeps on one
// thread), instead of being handed from caller to caller. Waking a sleeping
// caller costs about as much as a fast PKCS#11 call (on a virtual machine,
// an inter-processor interrupt), so while traffic is steady, callers and
// idle workers poll briefly (see spinMax) instead of sleeping. A request
// that finds a free slot whose worker sleeps runs on the caller's own,
// running, goroutine: a live request never waits for a thread to be
// scheduled. Measured on 2 vCPUs with SoftHSM2 (README, Performance), this
// took one session shared by two callers from 74 % to 89–100 % of a bare
// single-caller loop for ECDSA signing.
//
// A slot can also be leased (acquire/release) to drive its session from the
// caller's goroutine; its worker stays idle meanwhile.
type scheduler struct {
	mu         sync.Mutex
	idle       sync.Cond // signalled when inUse drops to 0 (for close)
	free       []int
	n          int
	batchMax   int
	batchLive  int // batch's limit while live requests are in flight
	batchInUse int
	inUse      int
	queues     [laneCount][]*request
	closed     bool
	liveWait   atomic.Int32 // number of queued live requests (read lock-free by batch runners)

	workers []*worker
	stop    chan struct{}
	exited  sync.WaitGroup

	// Polling instead of sleeping: at most maxCallers callers and
	// maxWorkers idle workers poll at a time, workers for at most spinMax
	// and callers for at most twice that (see wait), and only while
	// requests hold a session for less than spinMax on average (holdNS, an
	// estimate), so that a slow, networked HSM never makes anyone poll.
	// Callers yield their P between polls; a polling worker holds its P,
	// so at most one per spare CPU polls.
	spinMax        time.Duration
	maxCallers     int32
	maxWorkers     int32
	callersPolling atomic.Int32
	workersPolling atomic.Int32
	holdNS         atomic.Int64

	counts handoverCounts
}

// handoverCounts counts how requests reached a session and how their
// results reached their callers (Stats.Handover).
type handoverCounts struct {
	inline, posted, queued, polled, woken, workerWakeups atomic.Uint64
}

// Handover reports how requests reached a session and how their results
// reached their callers: what Config.SpinWait is tuned by. Many Woken and
// WorkerWakeups against Polled and Posted, with fast operations, mean the
// callers or workers gave up polling too early.
type Handover struct {
	Inline        uint64 `json:"inline"`         // ran on the caller's goroutine (session free, its worker asleep)
	Posted        uint64 `json:"posted"`         // handed to a free session's polling worker
	Queued        uint64 `json:"queued"`         // waited for a session, then run by its worker
	Polled        uint64 `json:"polled"`         // results their waiting caller found by polling
	Woken         uint64 `json:"woken"`          // results whose waiting caller slept and was woken
	WorkerWakeups uint64 `json:"worker_wakeups"` // requests that had to wake a sleeping worker
}

// since returns the counts from h0 to h.
func (h Handover) since(h0 Handover) Handover {
	return Handover{Inline: h.Inline - h0.Inline, Posted: h.Posted - h0.Posted, Queued: h.Queued - h0.Queued,
		Polled: h.Polled - h0.Polled, Woken: h.Woken - h0.Woken, WorkerWakeups: h.WorkerWakeups - h0.WorkerWakeups}
}

func (c *handoverCounts) snapshot() Handover {
	return Handover{Inline: c.inline.Load(), Posted: c.posted.Load(), Queued: c.queued.Load(),
		Polled: c.polled.Load(), Woken: c.woken.Load(), WorkerWakeups: c.workerWakeups.Load()}
}

// request is a queued or running unit of work (fn != nil), or a queued
// lease (lease != nil receives the slot, or -1 when the pool closes).
type request struct {
	lane  Lane
	fn    func(slot int)
	lease chan int

	polling atomic.Bool   // its caller polls done (else it sleeps on ch)
	done    atomic.Bool   // set when fn has run
	ch      chan struct{} // closed after done is set, or on close while queued
	closed  bool          // the pool closed while the request was queued
	panic   any           // recovered from fn, re-raised on the caller
	goexit  bool          // fn called runtime.Goexit (t.FailNow in a test): repeated on the caller
}

func newRequest(l Lane, fn func(slot int)) *request {
	return &request{lane: l, fn: fn, ch: make(chan struct{})}
}

// complete marks r done and wakes its caller, if it sleeps.
func (r *request) complete() {
	r.done.Store(true)
	close(r.ch)
}

// worker runs the requests queued for one slot.
type worker struct {
	slot    int
	mail    atomic.Pointer[request] // the request posted to it, if any
	polling atomic.Bool             // idle and polling mail
	parked  atomic.Bool             // sleeping on wake
	wake    chan struct{}           // capacity 1
}

// newScheduler returns a scheduler of n slots and starts their workers.
// spinMax bounds how long callers and idle workers poll before sleeping
// (≤ 0: never poll); spare is the number of CPUs they may poll on (see
// spareCPUs). A caller yields its CPU between polls, so with a spare CPU
// any number of callers may poll; each idle worker needs a CPU of its own.
func newScheduler(n, reserved, batchWhileLive int, spinMax time.Duration, spare int) *scheduler {
	s := &scheduler{n: n, batchMax: n - reserved, batchLive: min(max(batchWhileLive, 1), n-reserved),
		spinMax: spinMax, stop: make(chan struct{})}
	if spinMax > 0 && spare > 0 {
		s.maxCallers, s.maxWorkers = math.MaxInt32, int32(spare)
	}
	s.idle.L = &s.mu
	for i := n - 1; i >= 0; i-- {
		s.free = append(s.free, i)
	}
	s.workers = make([]*worker, n)
	for i := range s.workers {
		w := &worker{slot: i, wake: make(chan struct{}, 1)}
		s.workers[i] = w
		s.exited.Add(1)
		go s.work(w, nil)
	}
	return s
}

// spareCPUs is the number of CPUs pollers may use: one is left for the
// token's own work. With GOMAXPROCS=1 nobody polls: a poller would hold the
// only P that a worker returning from a PKCS#11 call needs.
func spareCPUs() int { return max(runtime.GOMAXPROCS(0)-1, 0) }

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

func (s *scheduler) enqueue(r *request) {
	s.queues[r.lane] = append(s.queues[r.lane], r)
	if r.lane == Live {
		s.liveWait.Add(1)
	}
}

func (s *scheduler) remove(r *request) bool {
	q := s.queues[r.lane]
	for i, x := range q {
		if x == r {
			s.queues[r.lane] = append(q[:i], q[i+1:]...)
			if r.lane == Live {
				s.liveWait.Add(-1)
			}
			return true
		}
	}
	return false
}

// next pops the queued request that may run now, live first. Caller holds mu.
func (s *scheduler) next() *request {
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
	r := s.queues[l][0]
	s.queues[l] = s.queues[l][1:]
	return r
}

// submit runs fn on a slot of lane l and returns when it has run: on the
// slot's worker if that is awake, else on the caller's goroutine. If ctx
// ends while the request is still queued, it is dropped and ctx.Err()
// returned; once started, it completes. A panic in fn is re-raised here.
func (s *scheduler) submit(ctx context.Context, l Lane, fn func(slot int)) error {
	r := newRequest(l, fn)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if len(s.queues[l]) == 0 && s.may(l) {
		slot := s.take(l)
		s.mu.Unlock()
		if w := s.workers[slot]; w.polling.Load() {
			s.counts.posted.Add(1)
			w.post(r)
		} else {
			// The worker sleeps: waking it would cost more than
			// running the request here, on a thread that is running
			// already. The worker leaves the session alone meanwhile
			// (it runs only what is posted to it or queued behind
			// its own requests).
			s.counts.inline.Add(1)
			func() {
				defer s.release(slot, l) // even if fn calls runtime.Goexit
				s.run(slot, r)
			}()
			return r.reraise()
		}
	} else {
		s.counts.queued.Add(1)
		s.enqueue(r)
		s.mu.Unlock()
	}
	if err := s.wait(ctx, r); err != nil {
		return err
	}
	return r.reraise()
}

// reraise re-raises on the caller a panic recovered from r.fn.
func (r *request) reraise() error {
	if r.goexit {
		runtime.Goexit() // as if fn had run on this goroutine
	}
	if r.panic != nil {
		panic(fmt.Sprintf("hsmpool: panic in a PKCS#11 request: %v", r.panic))
	}
	return nil
}

// wait returns once r has run, or ctx.Err() if ctx ends while r is queued.
// It polls first (see pollWorth), yielding its P to other goroutines
// between polls: a caller that sleeps has to be woken, and the worker that
// wakes it then yields its own P so that the caller does not wait out the
// worker's next PKCS#11 call (see finish); both cost a rescheduling.
func (s *scheduler) wait(ctx context.Context, r *request) error {
	if s.pollWorth(&s.callersPolling, s.maxCallers) {
		// A queued caller waits for the operation in flight and then its
		// own, each shorter than spinMax when polling is worth it.
		r.polling.Store(true)
		polled := s.poll(ctx, r.done.Load, r.ch, 2*s.spinMax, true)
		r.polling.Store(false)
		s.callersPolling.Add(-1)
		if polled {
			s.counts.polled.Add(1)
			return nil
		}
	}
	select {
	case <-r.ch:
		if !r.closed {
			s.counts.woken.Add(1)
		}
	case <-ctx.Done():
		s.mu.Lock()
		removed := s.remove(r)
		s.mu.Unlock()
		if removed {
			return ctx.Err()
		}
		<-r.ch // already running: it completes
	}
	if r.closed {
		return ErrClosed
	}
	return nil
}

// pollWorth reports whether a caller or worker may poll now, given that
// n of them already do and at most max may; if so it counts itself in n
// (and decrements n when done).
func (s *scheduler) pollWorth(n *atomic.Int32, max int32) bool {
	if max <= 0 || time.Duration(s.holdNS.Load()) > s.spinMax {
		return false
	}
	if n.Add(1) > max {
		n.Add(-1)
		return false
	}
	return true
}

// poll calls ready until it returns true, for at most budget, or until
// ctx ends or stop is closed. With yield, it lets the other goroutines of
// its P run between calls.
func (s *scheduler) poll(ctx context.Context, ready func() bool, stop chan struct{}, budget time.Duration, yield bool) bool {
	deadline := nanotime() + int64(budget)
	for i := 1; ; i++ {
		if ready() {
			return true
		}
		if i%64 == 0 && (nanotime() > deadline || ctx.Err() != nil || isClosed(stop)) {
			return false
		}
		if yield {
			runtime.Gosched()
		}
	}
}

var clockBase = time.Now()

func nanotime() int64 { return int64(time.Since(clockBase)) }

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// post hands r to the idle worker w, waking it if it sleeps.
func (w *worker) post(r *request) {
	w.mail.Store(r)
	if w.parked.Load() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// receive returns the next request posted to w, or nil when the scheduler
// stops. With busy set (w has just run requests: traffic is flowing) it
// polls briefly before it sleeps.
func (s *scheduler) receive(w *worker, busy bool) *request {
	if busy && s.pollWorth(&s.workersPolling, s.maxWorkers) {
		w.polling.Store(true)
		s.poll(context.Background(), func() bool { return w.mail.Load() != nil }, s.stop, s.spinMax, false)
		w.polling.Store(false)
		s.workersPolling.Add(-1)
	}
	for {
		// parked is set before mail is checked, and post stores mail before
		// it checks parked: one of the two always sees the other.
		w.parked.Store(true)
		if r := w.mail.Swap(nil); r != nil {
			w.parked.Store(false)
			return r
		}
		select {
		case <-w.wake:
		case <-s.stop:
			w.parked.Store(false)
			return w.mail.Swap(nil)
		}
		w.parked.Store(false)
		if r := w.mail.Swap(nil); r != nil {
			s.counts.workerWakeups.Add(1)
			return r
		}
	}
}

// work is a slot's worker: it runs r (if any), then each request posted to
// it and the queued requests that may run next, until the scheduler stops.
func (s *scheduler) work(w *worker, r *request) {
	busy := r != nil
	defer func() {
		if r != nil {
			// r's fn called runtime.Goexit (t.FailNow in a test), which
			// cannot be stopped: complete r (its caller repeats the
			// Goexit) and carry on in a new goroutine, so nothing hangs.
			r.goexit = true
			next := s.finish(w.slot, r)
			s.exited.Add(1)
			go s.work(w, next)
		}
		s.exited.Done()
	}()
	for {
		for r != nil {
			s.run(w.slot, r)
			r = s.finish(w.slot, r)
		}
		if r = s.receive(w, busy); r == nil {
			return
		}
		busy = true
	}
}

// run runs r.fn on slot, timing it for the polling decision, and recovers
// a panic so that it reaches the caller instead of killing the worker.
func (s *scheduler) run(slot int, r *request) {
	t0 := nanotime()
	defer func() {
		r.panic = recover()
		d := nanotime() - t0
		old := s.holdNS.Load()
		s.holdNS.Store(old + (d-old)/8) // an estimate: a lost update does not matter
	}()
	r.fn(slot)
}

// finish completes r, which ran on slot, and returns the queued request the
// same worker should run next, if any; otherwise the slot is handed to a
// waiting lease or returned to the free list.
func (s *scheduler) finish(slot int, r *request) *request {
	s.mu.Lock()
	s.unaccount(r.lane)
	next := s.next()
	if next != nil {
		s.account(next.lane)
	}
	var gs []grant
	if next == nil || next.lease != nil {
		if next == nil {
			s.free = append(s.free, slot)
		}
		gs = s.dispatchLocked(nil)
		if s.inUse == 0 {
			s.idle.Broadcast()
		}
	}
	s.mu.Unlock()
	r.complete()
	if !r.polling.Load() {
		// The caller is not polling (any more): it slept and was just
		// readied onto this goroutine's P, or it already has its result
		// and its next request may be waiting for this P. Either way it
		// would wait out our next PKCS#11 call (or longer, until the
		// runtime takes the P from the call): let it run first.
		// Measured at 1 session with 2 callers: yielding also while the
		// caller still polls cost 5–10 % of throughput; reading polling
		// before complete() (yielding only for sleepers) cost as much and
		// took p99.9 from ~3 ms to 11–17 ms.
		runtime.Gosched()
	}
	if next != nil && next.lease != nil {
		next.lease <- slot
		next = nil
	}
	s.start(gs)
	return next
}

// acquire leases a slot for lane l, honouring ctx while it waits: the
// caller drives the session itself, then must release it.
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
	r := &request{lane: l, lease: make(chan int, 1)}
	s.enqueue(r)
	s.mu.Unlock()

	select {
	case slot := <-r.lease:
		if slot < 0 {
			return -1, ErrClosed
		}
		return slot, nil
	case <-ctx.Done():
		s.mu.Lock()
		if s.remove(r) {
			s.mu.Unlock()
			return -1, ctx.Err()
		}
		s.mu.Unlock()
		// Granted concurrently with the cancellation: hand the slot back.
		if slot := <-r.lease; slot >= 0 {
			s.release(slot, l)
		}
		return -1, ctx.Err()
	}
}

type grant struct {
	slot int
	r    *request
}

// dispatchLocked pairs free slots with queued requests that may run.
// Caller holds mu and starts the grants after unlocking.
func (s *scheduler) dispatchLocked(gs []grant) []grant {
	for len(s.free) > 0 {
		r := s.next()
		if r == nil {
			break
		}
		gs = append(gs, grant{s.take(r.lane), r})
	}
	return gs
}

func (s *scheduler) start(gs []grant) {
	for _, g := range gs {
		if g.r.lease != nil {
			g.r.lease <- g.slot
		} else {
			s.workers[g.slot].post(g.r)
		}
	}
}

// release returns a leased slot and hands free slots to the next queued
// requests: live first, then batch if the batch share allows.
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

// liveWaiting reports whether a live request is queued (batch runners
// holding a slot across several items yield when it is).
func (s *scheduler) liveWaiting() bool { return s.liveWait.Load() > 0 }

// inUseCount returns the number of slots held, per lane.
func (s *scheduler) inUseCount() (total, batch int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse, s.batchInUse
}

// queued returns the number of requests waiting for a slot, per lane.
func (s *scheduler) queued() (live, batch int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queues[Live]), len(s.queues[Batch])
}

// batchBacklog reports whether batch requests are queued (the batch lane is
// saturated: more batch demand than it may have in flight).
func (s *scheduler) batchBacklog() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queues[Batch]) > 0
}

// close fails every queued request, waits up to timeout for the slots in
// use to return, and stops the workers. It reports whether everything
// returned in time.
func (s *scheduler) close(timeout time.Duration) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return true
	}
	s.closed = true
	for l := range s.queues {
		for _, r := range s.queues[l] {
			if r.lease != nil {
				r.lease <- -1
			} else {
				r.closed = true
				close(r.ch)
			}
		}
		s.queues[l] = nil
	}
	s.liveWait.Store(0)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		for s.inUse > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
		close(s.stop)
		s.exited.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}
