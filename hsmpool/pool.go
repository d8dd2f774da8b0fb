package hsmpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/perso-esim/perso/esim"
)

// Backend names.
const (
	BackendPKCS11   = "pkcs11"
	BackendSoftware = "software"
)

// Config configures Open. Zero values take the documented defaults.
type Config struct {
	// Backend is "pkcs11" (default) or "software". The software backend is
	// for development only; Open refuses it when Module is also set, and
	// never falls back to it.
	Backend string

	// PKCS#11 backend.
	Module     string // path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so
	TokenLabel string // label of the token to use
	PIN        string // user PIN (never logged)

	// Software backend.
	SoftwareFile       string // key file (see CreateSoftwareKeyFile)
	SoftwarePassphrase string // passphrase protecting it (never logged)

	// Sessions is the number of PKCS#11 sessions (default 4).
	Sessions int
	// LiveReserved is the number of sessions batch work may not use
	// (default max(1, Sessions/4); 0 when Sessions is 1).
	LiveReserved int
	// BatchWhileLive caps batch operations in flight while any live request
	// is in flight (default 1): the token serialises private-key operations,
	// so each batch operation in flight is queueing delay for live traffic.
	BatchWhileLive int

	// SpinWait bounds how long an idle session worker waiting for work (one
	// SpinWait) and a caller waiting for its result (two: the operation in
	// flight and its own) poll, on a spare CPU, before they sleep (default
	// 200µs; negative: never poll). Waking a sleeping thread costs as much
	// as a fast PKCS#11 call; they poll only while requests hold a session
	// for less than SpinWait on average, so a slow (network) HSM never makes
	// them poll. Stats.Handover shows how often they had to sleep.
	SpinWait time.Duration

	// KEK is the label of the key-encryption key new batch keys are wrapped
	// under (default "kek-1"). Blobs name their KEK, so older KEKs keep
	// opening their blobs after rotation.
	KEK string

	// MaxRetries bounds the repairs of broken sessions and the retries while
	// the token is unavailable (default 4). RetryBackoff is the first pause
	// (default 50ms), doubling up to MaxBackoff (default 1s).
	MaxRetries   int
	RetryBackoff time.Duration
	MaxBackoff   time.Duration

	// TokenWait bounds how long Open, and the module re-initialisation of
	// RecycleAfter, keep looking for a token that is not present,
	// initialising the module again before each look (default 2s; negative:
	// not at all). A token label that is simply wrong is reported after
	// this wait. Why wait: SoftHSM2 2.6.1 rewrites the token's file on every
	// C_Login and drops its lock before the new contents are written, so a
	// process whose C_Initialize reads the file in that window does not see
	// the token (CKR_TOKEN_NOT_PRESENT) until it initialises the module
	// again; two perso processes starting on one token directory (workers,
	// perso serve beside perso run) hit it. See openSessions.
	TokenWait time.Duration

	// BatchKeyCache is the number of unwrapped batch data keys OpenBatchKey
	// keeps (default 64); BatchKeyTTL how long (default 2m). Evicted keys are
	// zeroed. A negative BatchKeyCache disables the cache.
	BatchKeyCache int
	BatchKeyTTL   time.Duration

	// RecycleAfter reinitialises the PKCS#11 module (closes every session,
	// C_Finalize, C_Initialize, reopens and logs in the sessions) after
	// this many operations through the pool (default: 20000 when the
	// module is SoftHSM2, never for other modules; negative: never). SoftHSM 2.6.1 keeps every destroyed session object (about
	// 850 B per ECDH) until the module is finalized, even after its session
	// closes, so a long-running server grows without bound otherwise. The
	// operation that crosses the threshold waits for every session to come
	// back and pays the pause (tens of ms on SoftHSM: see perso bench soak);
	// live requests queue meanwhile, nothing fails.
	RecycleAfter int

	// Logger receives warnings about replaced sessions and token outages
	// (never key material or PINs); nil means slog.Default().
	Logger *slog.Logger

	// wrapAPI lets tests interpose on the PKCS#11 API (fault injection).
	wrapAPI func(p11API) p11API
}

func (c Config) withDefaults() (Config, error) {
	if c.Backend == "" {
		c.Backend = BackendPKCS11
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Sessions <= 0 {
		c.Sessions = 4
	}
	if c.LiveReserved == 0 && c.Sessions > 1 {
		c.LiveReserved = max(1, c.Sessions/4)
	}
	if c.LiveReserved < 0 || c.LiveReserved >= c.Sessions && c.Sessions > 1 {
		return c, fmt.Errorf("hsmpool: LiveReserved %d must leave batch at least one of %d sessions", c.LiveReserved, c.Sessions)
	}
	if c.Sessions == 1 {
		c.LiveReserved = 0
	}
	if c.BatchWhileLive <= 0 {
		c.BatchWhileLive = 1
	}
	if c.SpinWait == 0 {
		c.SpinWait = 200 * time.Microsecond
	}
	if c.KEK == "" {
		c.KEK = DefaultKEK
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 4
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 50 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Second
	}
	if c.TokenWait == 0 {
		c.TokenWait = 2 * time.Second
	}
	if c.BatchKeyCache == 0 {
		c.BatchKeyCache = 64
	}
	if c.BatchKeyTTL <= 0 {
		c.BatchKeyTTL = 2 * time.Minute
	}
	return c, nil
}

func (c Config) retryBudget() time.Duration {
	var d, b time.Duration = 0, c.RetryBackoff
	for range c.MaxRetries {
		d += b
		b = min(2*b, c.MaxBackoff)
	}
	return d
}

// backend is what the pool schedules work onto: one implementation over
// PKCS#11, one in software. Slot i is used by one goroutine at a time.
type backend interface {
	name() string
	sign(ctx context.Context, slot int, label string, digest []byte) ([]byte, error)
	ecdh(ctx context.Context, slot int, c esim.Curve, peer []byte) (otpk, z []byte, err error)
	decrypt(ctx context.Context, slot int, label string, alg transportAlg, ct []byte) ([]byte, error)
	newDataKey(ctx context.Context, slot int, kek string) (key, wrapped []byte, err error)
	unwrapDataKey(ctx context.Context, slot int, kek string, wrapped []byte) ([]byte, error)
	random(ctx context.Context, slot int, n int) ([]byte, error)
	publicKey(ctx context.Context, slot int, label string) (esim.Curve, []byte, error)
	ping(ctx context.Context, slot int) error
	createSecret(ctx context.Context, slot int, label, kind string, value []byte) error
	createEC(ctx context.Context, slot int, label string, c esim.Curve, k *ecPrivate) ([]byte, error)
	list(ctx context.Context, slot int) ([]KeyInfo, error)
	calls() uint64
	faults() (replaced, tokenFails uint64)
	close() error
}

// Pool is the HSM: a fixed set of sessions on one token (or the software
// backend), two priority lanes, cached key handles, fault recovery and
// metrics. It is safe for concurrent use. It never exposes a PKCS#11 handle.
type Pool struct {
	cfg   Config
	be    backend
	sched *scheduler
	m     *metrics
	cache *keyCache

	sinceReinit atomic.Int64 // operations since the module was (re)initialised
	reiniting   atomic.Bool
}

// Open connects to the configured backend, opens and logs in every session
// and returns the pool. Close releases it.
func Open(ctx context.Context, cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var be backend
	switch cfg.Backend {
	case BackendPKCS11:
		if cfg.Module == "" || cfg.TokenLabel == "" {
			return nil, errors.New("hsmpool: the pkcs11 backend needs a module path and a token label")
		}
		be, err = openP11(ctx, cfg)
	case BackendSoftware:
		if cfg.Module != "" {
			return nil, fmt.Errorf("hsmpool: a PKCS#11 module (%s) is configured together with the software backend; refusing to choose the software backend", cfg.Module)
		}
		be, err = openSoftware(cfg)
	default:
		return nil, fmt.Errorf("hsmpool: unknown backend %q (want %q or %q)", cfg.Backend, BackendPKCS11, BackendSoftware)
	}
	if err != nil {
		return nil, err
	}
	if cfg.RecycleAfter == 0 {
		cfg.RecycleAfter = -1
		if d, ok := be.(interface{ defaultRecycleAfter() int }); ok {
			cfg.RecycleAfter = d.defaultRecycleAfter()
		}
	}
	return &Pool{cfg: cfg, be: be, sched: newScheduler(cfg.Sessions, cfg.LiveReserved, cfg.BatchWhileLive, cfg.SpinWait, spareCPUs()), m: newMetrics(),
		cache: newKeyCache(cfg.BatchKeyCache, cfg.BatchKeyTTL)}, nil
}

// Backend returns "pkcs11" or "software".
func (p *Pool) Backend() string { return p.be.name() }

// Close waits (up to 10s) for operations in flight, zeroes cached keys, closes
// every session and finalizes the module.
func (p *Pool) Close() error {
	p.sched.close(10 * time.Second)
	p.cache.purge()
	return p.be.close()
}

// do runs fn on a session slot of the given lane, recording metrics.
func (p *Pool) do(ctx context.Context, op string, lane Lane, key string, fn func(slot int) error) error {
	om := p.m.get(op, lane)
	t0 := time.Now()
	err := ctx.Err()
	if err == nil {
		var opErr error
		err = p.sched.submit(ctx, lane, func(slot int) {
			p.m.wait[lane].Record(time.Since(t0))
			opErr = fn(slot)
		})
		if err == nil {
			err = opErr
		} else {
			p.m.wait[lane].Record(time.Since(t0))
		}
	}
	om.lat.Record(time.Since(t0))
	if n := p.cfg.RecycleAfter; n > 0 && p.sinceReinit.Add(1) >= int64(n) && p.reiniting.CompareAndSwap(false, true) {
		p.reinitialize()
	}
	if err != nil {
		om.errors.Add(1)
		return &OpError{Op: op, Lane: lane, Key: key, Err: err}
	}
	return nil
}

// reinitialize takes every slot (live lane: ahead of batch work, behind
// live requests already queued), reinitialises the module and hands the
// slots back. See Config.RecycleAfter.
func (p *Pool) reinitialize() {
	defer p.reiniting.Store(false)
	r, ok := p.be.(interface{ reinitialize() error })
	if !ok {
		p.sinceReinit.Store(0)
		return
	}
	held := make([]int, 0, p.cfg.Sessions)
	defer func() {
		for _, s := range held {
			p.sched.release(s, Live)
		}
	}()
	for range p.cfg.Sessions {
		s, err := p.sched.acquire(context.Background(), Live)
		if err != nil {
			return // closing
		}
		held = append(held, s)
	}
	t0 := time.Now()
	err := r.reinitialize()
	p.sinceReinit.Store(0)
	if err != nil {
		p.cfg.Logger.Warn("hsmpool: reinitialising the module to free its session objects failed; the next operations repair the sessions", "error", err)
		return
	}
	p.cfg.Logger.Debug("hsmpool: module reinitialised to free its session objects", "pause", time.Since(t0))
}

// Sign signs a SHA-256 digest with the EC private key labelled keyLabel and
// returns the raw 64-byte r||s signature. Default lane: Live.
func (p *Pool) Sign(ctx context.Context, keyLabel string, digest []byte) ([]byte, error) {
	if len(digest) != 32 {
		return nil, fmt.Errorf("%w: digest must be 32 bytes (SHA-256), got %d", ErrBadInput, len(digest))
	}
	var sig []byte
	err := p.do(ctx, "sign", LaneOf(ctx, Live), keyLabel, func(slot int) (e error) {
		sig, e = p.be.sign(ctx, slot, keyLabel, digest)
		return
	})
	return sig, err
}

// EphemeralECDH generates a one-time key pair on curve inside the HSM,
// agrees a secret with peer (uncompressed point 04||X||Y, checked to be on
// the curve) and returns the one-time public key (uncompressed) and Z, the
// 32-byte x-coordinate of the shared point. The one-time private key never
// leaves the HSM and is destroyed before EphemeralECDH returns. The caller
// should clear Z after use. Default lane: Live.
func (p *Pool) EphemeralECDH(ctx context.Context, curve esim.Curve, peer []byte) (otpk, z []byte, err error) {
	if err := checkPoint(curve, peer); err != nil {
		return nil, nil, err
	}
	err = p.do(ctx, "ecdh-"+labelSuffix(curve), LaneOf(ctx, Live), "", func(slot int) (e error) {
		otpk, z, e = p.be.ecdh(ctx, slot, curve, peer)
		return
	})
	return otpk, z, err
}

// Random returns n random bytes from the HSM's generator. Default lane: Batch.
func (p *Pool) Random(ctx context.Context, n int) ([]byte, error) {
	if n <= 0 || n > 1<<16 {
		return nil, fmt.Errorf("%w: random length %d", ErrBadInput, n)
	}
	var r []byte
	err := p.do(ctx, "random", LaneOf(ctx, Batch), "", func(slot int) (e error) {
		r, e = p.be.random(ctx, slot, n)
		return
	})
	return r, err
}

// PublicKey returns the curve and uncompressed public point of the key pair
// labelled label. Default lane: Live.
func (p *Pool) PublicKey(ctx context.Context, label string) (esim.Curve, []byte, error) {
	var c esim.Curve
	var pt []byte
	err := p.do(ctx, "public-key", LaneOf(ctx, Live), label, func(slot int) (e error) {
		c, pt, e = p.be.publicKey(ctx, slot, label)
		return
	})
	return c, pt, err
}

// Health checks the token through the pool in the live lane: one cheap call
// (C_GetSessionInfo) per configured session, on whichever sessions are free,
// replacing broken sessions it meets. It returns nil when the token answers.
func (p *Pool) Health(ctx context.Context) error {
	for range p.cfg.Sessions {
		if err := p.do(WithLane(ctx, Live), "health", Live, "", func(slot int) error {
			return p.be.ping(ctx, slot)
		}); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns a snapshot of the metrics.
func (p *Pool) Stats() Stats {
	ops, wait := p.m.snapshot()
	inUse, batch := p.sched.inUseCount()
	liveQ, batchQ := p.sched.queued()
	rep, tok := p.be.faults()
	var recycled uint64
	if r, ok := p.be.(interface{ recycled() uint64 }); ok {
		recycled = r.recycled()
	}
	return Stats{Backend: p.be.name(), Uptime: time.Since(p.m.start), Sessions: p.cfg.Sessions,
		LiveReserved: p.cfg.LiveReserved, SessionsInUse: inUse, BatchInUse: batch, SessionsReplaced: rep,
		ModuleReinits: recycled, LiveQueued: liveQ, BatchQueued: batchQ,
		TokenFailures: tok, HSMCalls: p.be.calls(), Ops: ops, Wait: wait, Handover: p.sched.counts.snapshot()}
}

// HSMCalls returns the number of PKCS#11 calls (software backend: primitive
// key operations) that reached the token since Open.
func (p *Pool) HSMCalls() uint64 { return p.be.calls() }

func (p *Pool) batchSaturated() bool { return p.sched.batchBacklog() }

// hsmOps counts the pool operations that reached the backend (one session
// acquisition each), across all operations and lanes.
func (p *Pool) hsmOps() uint64 {
	var n uint64
	p.m.mu.RLock()
	defer p.m.mu.RUnlock()
	for _, om := range p.m.ops {
		n += om.lat.Count()
	}
	return n
}

// Signer returns a signer bound to keyLabel; it satisfies
// bpp.Signer (SignDigest(ctx, digest) -> raw r||s).
func (p *Pool) Signer(keyLabel string) *Signer { return &Signer{p: p, label: keyLabel} }

// Signer signs with one HSM key.
type Signer struct {
	p     *Pool
	label string
}

// SignDigest signs a 32-byte SHA-256 digest, returning raw r||s (64 bytes).
func (s *Signer) SignDigest(ctx context.Context, digest []byte) ([]byte, error) {
	return s.p.Sign(ctx, s.label, digest)
}

// Label returns the key label.
func (s *Signer) Label() string { return s.label }

// KeyAgreement returns an ECDH deriver on curve; it satisfies
// bpp.KeyAgreement (EphemeralECDH(ctx, peer) -> otpk, Z).
func (p *Pool) KeyAgreement(curve esim.Curve) *KeyAgreement { return &KeyAgreement{p: p, curve: curve} }

// KeyAgreement performs one-time-key ECDH on one curve.
type KeyAgreement struct {
	p     *Pool
	curve esim.Curve
}

// EphemeralECDH: see Pool.EphemeralECDH.
func (k *KeyAgreement) EphemeralECDH(ctx context.Context, peerPublic []byte) (otpk, z []byte, err error) {
	return k.p.EphemeralECDH(ctx, k.curve, peerPublic)
}

// esim.Curve returns the curve.
func (k *KeyAgreement) Curve() esim.Curve { return k.curve }

// HSM is the pool's operation set, for consumers that want to accept an
// interface (and tests that want to fake it). *Pool implements it for both
// the PKCS#11 and the software backend.
type HSM interface {
	Sign(ctx context.Context, keyLabel string, digest []byte) ([]byte, error)
	EphemeralECDH(ctx context.Context, curve esim.Curve, peer []byte) (otpk, z []byte, err error)
	DecryptTransport(ctx context.Context, keyLabel string, alg string, ciphertext []byte) ([]byte, error)
	NewBatchKey(ctx context.Context, batchID string) (*BatchKey, error)
	OpenBatchKey(ctx context.Context, blob []byte) (*BatchKey, error)
	UnprotectPPK(ctx context.Context, blob []byte, iccid string, protected []byte) ([]byte, error)
	Random(ctx context.Context, n int) ([]byte, error)
	PublicKey(ctx context.Context, label string) (esim.Curve, []byte, error)
	Signer(keyLabel string) *Signer
	KeyAgreement(curve esim.Curve) *KeyAgreement
	Health(ctx context.Context) error
	Stats() Stats
	Close() error
}

var _ HSM = (*Pool)(nil)
