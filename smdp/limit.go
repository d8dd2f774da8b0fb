package smdp

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ClientLimiter is a token bucket per client IP address: each address may
// make Rate calls per second sustained and Burst at once. The address is
// the TCP peer's (RemoteAddr): forwarding headers are not trusted, so
// behind a TLS terminator every device shares the terminator's bucket and
// the limit belongs on the terminator instead.
type ClientLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewClientLimiter returns a limiter of rate calls per second and burst
// calls at once per client address; nil when rate is not positive (no
// limit).
func NewClientLimiter(rate float64, burst int) *ClientLimiter {
	if rate <= 0 {
		return nil
	}
	return &ClientLimiter{rate: rate, burst: float64(max(burst, 1)), now: time.Now, buckets: map[string]*bucket{}}
}

// Allow takes a token from r's client bucket. When it is empty it reports
// false and how long until a token is back (for Retry-After).
func (l *ClientLimiter) Allow(r *http.Request) (bool, time.Duration) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return l.allow(host)
}

func (l *ClientLimiter) allow(client string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[client]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep forgets, at most once a minute, the buckets that have been full
// again for a while: a full bucket is the same as no bucket, and without
// this every address ever seen would stay in memory. Caller holds mu.
func (l *ClientLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) > full {
			delete(l.buckets, k)
		}
	}
}

// Clients returns the number of addresses with a bucket (metrics, tests).
func (l *ClientLimiter) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
