package smdp

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// warmHandler runs each call of next on a long-lived goroutine of its own
// pool instead of the goroutine net/http gave it.
//
// Why: HTTP/2 starts every request on a new goroutine with a small stack,
// and an ES9+ call is deep (DER parsing, ECDSA, SQLite's VM), so each call
// grew its stack two or three times; copying the frames and adjusting
// their pointers cost 0.12–0.22 ms of server CPU per download
// (docs/performance.md, ES9+ fifth round). A pool goroutine keeps the
// stack it grew. The hand-over costs two goroutine switches, a few µs.
//
// Nothing else changes: the caller waits for the call to end, a panic is
// raised again on the caller's goroutine (net/http's recovery and
// http.ErrAbortHandler behave as before), and when every pool goroutine is
// busy and the pool is full the call runs where it arrived.
type warmHandler struct {
	next http.Handler
	pool *warmPool
}

func (h warmHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 2 {
		// HTTP/1.x serves a connection's requests on one goroutine,
		// whose stack stays grown: the hand-over would only cost.
		h.next.ServeHTTP(w, r)
		return
	}
	h.pool.do(func() { h.next.ServeHTTP(w, r) })
}

// warmPool is a set of at most max goroutines that wait for calls.
type warmPool struct {
	calls chan *warmCall // unbuffered: a send succeeds only to an idle goroutine
	n     atomic.Int32   // goroutines started
	max   int32
	free  sync.Pool // *warmCall, with its done channel
}

type warmCall struct {
	f      func()
	done   chan struct{}
	panicV any
}

// maxWarm bounds the pool: one goroutine per concurrent call up to it
// (idle ones cost their stack, ≈ 32 KiB each, which the collector shrinks
// while they idle), beyond it calls run on their own goroutines as
// net/http started them. The goroutines live as long as the process: a
// server makes its handlers once.
const maxWarm = 512

func newWarmPool(max int32) *warmPool {
	return &warmPool{calls: make(chan *warmCall), max: max}
}

func (p *warmPool) do(f func()) {
	c, _ := p.free.Get().(*warmCall)
	if c == nil {
		c = &warmCall{done: make(chan struct{}, 1)}
	}
	c.f = f
	select {
	case p.calls <- c:
	default:
		if p.n.Add(1) > p.max {
			p.n.Add(-1)
			c.f = nil
			p.free.Put(c)
			f()
			return
		}
		go p.serve(c)
	}
	<-c.done
	pv := c.panicV
	c.f, c.panicV = nil, nil
	p.free.Put(c)
	if pv != nil {
		panic(pv)
	}
}

func (p *warmPool) serve(c *warmCall) {
	for {
		p.run(c)
		c = <-p.calls
	}
}

func (p *warmPool) run(c *warmCall) {
	defer func() {
		c.panicV = recover()
		c.done <- struct{}{}
	}()
	c.f()
}
