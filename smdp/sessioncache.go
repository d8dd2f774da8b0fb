package smdp

import (
	"context"
	"errors"
	"sync"

	"github.com/perso-esim/perso/store"
)

// The sessions this process wrote, as it wrote them: the next call of a
// session served here starts from this copy instead of reading the store
// (one read transaction per call saved). The store stays the authority,
// as two replicas may serve one session's calls alternately:
//
//   - every write of a call that started from a copy is conditional on the
//     copy's version (UpdateSession, DeleteVersion), so a copy that another
//     replica made stale can never be written over, and its order change
//     rolls back with it;
//   - a write that is not (a confirmation code failure, a download attempt
//     counted on a refusal) first confirms the copy against the store;
//   - a call that started from a copy and fails for any reason asks the
//     store whether the session moved; if it did, the call runs again from
//     the stored session, so its answer is the one a fresh read gives.
type sessionCache struct {
	mu sync.Mutex
	m  map[string]cachedSession
	q  []string // insertion order, for eviction
}

type cachedSession struct {
	sess store.Session
	d    sessionData
}

// maxCachedSessions bounds the copies (≈ 2 KB each): more sessions in
// flight than this only cost a store read per call.
const maxCachedSessions = 4096

func (c *sessionCache) put(sess store.Session, d *sessionData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]cachedSession)
	}
	for len(c.q) >= maxCachedSessions {
		delete(c.m, c.q[0])
		c.q = c.q[1:]
	}
	if _, ok := c.m[sess.TransactionID]; !ok {
		c.q = append(c.q, sess.TransactionID)
	}
	c.m[sess.TransactionID] = cachedSession{sess: sess, d: *d}
}

func (c *sessionCache) get(tid string) (cachedSession, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, ok := c.m[tid]
	return cs, ok
}

// drop forgets tid (its key stays in q until evicted: harmless).
func (c *sessionCache) drop(tid string) {
	c.mu.Lock()
	delete(c.m, tid)
	c.mu.Unlock()
}

// sessionUse records, for one call, whether its session came from the
// cache (and at which version), and whether the call must read the store.
type sessionUse struct {
	fresh   bool // read the store, never the cache
	cached  bool // the session came from the cache, unconfirmed
	tid     string
	version int64
}

type sessionUseKey struct{}

func withSessionUse(ctx context.Context, fresh bool) (context.Context, *sessionUse) {
	u := &sessionUse{fresh: fresh}
	return context.WithValue(ctx, sessionUseKey{}, u), u
}

func useOf(ctx context.Context) *sessionUse {
	u, _ := ctx.Value(sessionUseKey{}).(*sessionUse)
	return u
}

// errSessionMoved: the cached copy a call started from is no longer the
// stored session; the call runs again from the store.
var errSessionMoved = errors.New("smdp: the session moved on in the store")

// moved reports whether the session the call started from a copy of has
// moved on in the store (another version, gone or expired); the copy is
// dropped then. A call that read the store has nothing to check.
func (s *Server) moved(ctx context.Context, u *sessionUse) bool {
	if u == nil || !u.cached {
		return false
	}
	stored, err := s.cfg.Store.GetSession(ctx, u.tid)
	if err == nil && stored.Version == u.version {
		u.cached = false // confirmed: as good as a fresh read from here on
		return false
	}
	s.sessions.drop(u.tid)
	return true
}

// confirmSession is called before a write that is not conditional on the
// session's version: errSessionMoved when the copy the call started from
// is stale.
func (s *Server) confirmSession(ctx context.Context) error {
	if s.moved(ctx, useOf(ctx)) {
		return errSessionMoved
	}
	return nil
}

// withSessionCache runs call from the cached session when there is one,
// and again from the store when it failed and the session had moved.
func withSessionCache[T any](ctx context.Context, s *Server, call func(context.Context) (T, error)) (T, error) {
	cctx, u := withSessionUse(ctx, false)
	r, err := call(cctx)
	if err != nil && (errors.Is(err, errSessionMoved) || s.moved(ctx, u)) {
		fctx, _ := withSessionUse(ctx, true)
		return call(fctx)
	}
	return r, err
}
