package smdp

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

func TestWarmPoolReusesItsGoroutines(t *testing.T) {
	p := newWarmPool(8)
	for i := 0; i < 100; i++ {
		ran := false
		p.do(func() { ran = true })
		if !ran {
			t.Fatalf("call %d did not run before do returned", i)
		}
	}
	if n := p.n.Load(); n != 1 {
		t.Errorf("100 calls one after another started %d goroutines, want 1 (the warm one again)", n)
	}
}

func TestWarmPoolRunsEveryCallWhenFull(t *testing.T) {
	const max, calls = 4, 64
	p := newWarmPool(max)
	var ran atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.do(func() { <-release; ran.Add(1) })
		}()
	}
	close(release)
	wg.Wait()
	if got := ran.Load(); got != calls {
		t.Errorf("%d of %d calls ran", got, calls)
	}
	if n := p.n.Load(); n > max {
		t.Errorf("%d goroutines started, the pool allows %d", n, max)
	}
}

func TestWarmPoolRaisesAPanicOnTheCaller(t *testing.T) {
	p := newWarmPool(2)
	got := func() (v any) {
		defer func() { v = recover() }()
		p.do(func() { panic("boom") })
		return nil
	}()
	if got != "boom" {
		t.Fatalf("caller recovered %v, want the call's panic \"boom\"", got)
	}
	ran := false
	p.do(func() { ran = true })
	if !ran || p.n.Load() != 1 {
		t.Errorf("after a panic: ran=%v with %d goroutines, want the same goroutine to serve again", ran, p.n.Load())
	}
}

// Only HTTP/2 requests are handed over: HTTP/1.x serves a connection on one
// goroutine whose stack stays grown.
func TestWarmHandlerHandsOverHTTP2Only(t *testing.T) {
	for _, tc := range []struct {
		major, wantStarted int
	}{{1, 0}, {2, 1}} {
		p := newWarmPool(4)
		served := false
		h := warmHandler{next: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served = true }), pool: p}
		r := httptest.NewRequest("POST", "/gsma/rsp2/es9plus/initiateAuthentication", nil)
		r.ProtoMajor = tc.major
		h.ServeHTTP(httptest.NewRecorder(), r)
		if !served || int(p.n.Load()) != tc.wantStarted {
			t.Errorf("HTTP/%d: served=%v, pool goroutines %d, want %d", tc.major, served, p.n.Load(), tc.wantStarted)
		}
	}
}
