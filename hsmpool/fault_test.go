package hsmpool

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// faultAPI wraps the real PKCS#11 API and fails chosen calls.
type faultAPI struct {
	p11API
	mu      sync.Mutex
	calls   map[string]int
	rules   []faultRule
	down    atomic.Bool // token removed: everything fails
	signsOK atomic.Int64
	log     logBuffer // what the pool logged

	// With gate set, calls to gateFn (default GenerateKeyPair, the first
	// token call of an EphemeralECDH) wait for a value on gate (or its
	// close) before they reach the token, counted in gated while they wait:
	// every call, or with gateCall > 0 only the gateCall-th. A test holds
	// operations inside the token for as long as it needs, with no timing.
	gate     chan struct{}
	gateFn   string
	gateCall int
	gated    atomic.Int32
	// With trace set, check appends each call's name to events, in the
	// order the calls reached the token.
	trace  bool
	events []string
}

// waitGate holds a call to fn (already counted by check) at the gate, if
// the gate applies to it. With gateCall set, fn must have one caller at a
// time (the count is read after check released the lock).
func (f *faultAPI) waitGate(fn string) {
	if f.gate == nil || fn != cmp.Or(f.gateFn, "GenerateKeyPair") {
		return
	}
	if f.gateCall > 0 {
		f.mu.Lock()
		n := f.calls[fn]
		f.mu.Unlock()
		if n != f.gateCall {
			return
		}
	}
	f.gated.Add(1)
	<-f.gate
	f.gated.Add(-1)
}

// eventsSince returns the calls traced from index i on.
func (f *faultAPI) eventsSince(i int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events[i:]...)
}

func (f *faultAPI) eventCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

// logBuffer collects log output from concurrent goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// faultRule fails calls [from, from+times) to fn with code.
type faultRule struct {
	fn    string
	from  int
	times int
	code  uint
}

func (f *faultAPI) check(fn string) error {
	if f.down.Load() {
		if fn == "OpenSession" || fn == "GetSlotList" {
			return pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
		}
		return pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[fn]++
	n := f.calls[fn]
	if f.trace {
		f.events = append(f.events, fn)
	}
	for _, r := range f.rules {
		if r.fn == fn && n >= r.from && n < r.from+r.times {
			return pkcs11.Error(r.code)
		}
	}
	return nil
}

func (f *faultAPI) OpenSession(slot, flags uint) (pkcs11.SessionHandle, error) {
	if err := f.check("OpenSession"); err != nil {
		return 0, err
	}
	return f.p11API.OpenSession(slot, flags)
}

func (f *faultAPI) GetSlotList(present bool) ([]uint, error) {
	if err := f.check("GetSlotList"); err != nil {
		return nil, err
	}
	return f.p11API.GetSlotList(present)
}

func (f *faultAPI) SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := f.check("SignInit"); err != nil {
		return err
	}
	return f.p11API.SignInit(sh, m, o)
}

func (f *faultAPI) Sign(sh pkcs11.SessionHandle, msg []byte) ([]byte, error) {
	if err := f.check("Sign"); err != nil {
		return nil, err
	}
	sig, err := f.p11API.Sign(sh, msg)
	if err == nil {
		f.signsOK.Add(1)
	}
	return sig, err
}

func (f *faultAPI) GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, pub, priv []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	if err := f.check("GenerateKeyPair"); err != nil {
		return 0, 0, err
	}
	f.waitGate("GenerateKeyPair")
	return f.p11API.GenerateKeyPair(sh, m, pub, priv)
}

func (f *faultAPI) DeriveKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, k pkcs11.ObjectHandle, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	if err := f.check("DeriveKey"); err != nil {
		return 0, err
	}
	return f.p11API.DeriveKey(sh, m, k, a)
}

func (f *faultAPI) Decrypt(sh pkcs11.SessionHandle, ct []byte) ([]byte, error) {
	if err := f.check("Decrypt"); err != nil {
		return nil, err
	}
	f.waitGate("Decrypt")
	return f.p11API.Decrypt(sh, ct)
}

func (f *faultAPI) WrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, w, k pkcs11.ObjectHandle) ([]byte, error) {
	if err := f.check("WrapKey"); err != nil {
		return nil, err
	}
	return f.p11API.WrapKey(sh, m, w, k)
}

func openFaultyPool(t *testing.T, rules ...faultRule) (*Pool, *faultAPI) {
	t.Helper()
	return openFaultyPoolConfig(t, testConfig(t), rules...)
}

// openFaultyPoolConfig is openFaultyPool with the caller's configuration.
func openFaultyPoolConfig(t *testing.T, cfg Config, rules ...faultRule) (*Pool, *faultAPI) {
	t.Helper()
	f := &faultAPI{calls: map[string]int{}}
	// No timestamps: the PIN check below must not match digits of a time.
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	cfg.Logger = slog.New(slog.NewTextHandler(&f.log, &slog.HandlerOptions{ReplaceAttr: noTime}))
	cfg.wrapAPI = func(a p11API) p11API {
		f.p11API = a
		return f
	}
	p := openPool(t, cfg)
	f.mu.Lock()
	f.rules = rules
	clear(f.calls)
	f.mu.Unlock()
	return p, f
}

// runWorkload sends n concurrent requests (signatures over distinct digests,
// ECDH on both curves, batch keys) and checks that every request got exactly
// its own correct answer.
func runWorkload(t *testing.T, p *Pool, n int) (signs int) {
	t.Helper()
	_, pt, err := p.PublicKey(context.Background(), "dppb-nist")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := esim.CurveP256.PublicKey(pt)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := WithLane(context.Background(), Lane(i%2))
			switch i % 4 {
			case 0, 1:
				var msg [8]byte
				binary.BigEndian.PutUint64(msg[:], uint64(i))
				d := sha256.Sum256(msg[:])
				sig, err := p.Sign(ctx, "dppb-nist", d[:])
				if err == nil && !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
					err = fmt.Errorf("request %d got a signature that is not over its own digest", i)
				}
				errs <- err
			case 2:
				c := []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1}[i/4%2]
				d, peer := peerKey(t, c)
				otpk, z, err := p.EphemeralECDH(ctx, c, peer)
				if err == nil && string(goECDH(t, c, d, otpk)) != string(z) {
					err = fmt.Errorf("request %d: wrong Z", i)
				}
				errs <- err
			case 3:
				bk, err := p.NewBatchKey(ctx, fmt.Sprint(i))
				if err == nil {
					bk.Close()
				}
				errs <- err
			}
		}()
		if i%4 < 2 {
			signs++
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	return signs
}

// Broken sessions are replaced and the request retried, so that every
// request gets exactly one correct answer: none lost, none executed twice.
func TestFaultsRecoverWithoutLossOrDuplication(t *testing.T) {
	tests := []struct {
		name          string
		rules         []faultRule
		closeSessions int // sessions closed underneath the pool before the run
	}{
		{name: "C_Sign returns CKR_SESSION_HANDLE_INVALID", rules: []faultRule{{"Sign", 3, 2, pkcs11.CKR_SESSION_HANDLE_INVALID}}},
		{name: "C_SignInit returns CKR_DEVICE_ERROR", rules: []faultRule{{"SignInit", 2, 3, pkcs11.CKR_DEVICE_ERROR}}},
		{name: "C_GenerateKeyPair returns CKR_SESSION_CLOSED", rules: []faultRule{{"GenerateKeyPair", 1, 2, pkcs11.CKR_SESSION_CLOSED}}},
		{name: "C_DeriveKey returns CKR_DEVICE_ERROR", rules: []faultRule{{"DeriveKey", 2, 1, pkcs11.CKR_DEVICE_ERROR}}},
		{name: "C_WrapKey returns CKR_SESSION_HANDLE_INVALID", rules: []faultRule{{"WrapKey", 1, 1, pkcs11.CKR_SESSION_HANDLE_INVALID}}},
		{name: "C_Sign and C_OpenSession fail together", rules: []faultRule{
			{"Sign", 1, 1, pkcs11.CKR_DEVICE_ERROR}, {"OpenSession", 1, 1, pkcs11.CKR_DEVICE_ERROR}}},
		{name: "sessions closed underneath the pool", closeSessions: 3},
		{name: "token removed for two calls", rules: []faultRule{
			{"Sign", 2, 1, pkcs11.CKR_DEVICE_REMOVED}, {"OpenSession", 1, 1, pkcs11.CKR_TOKEN_NOT_PRESENT}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, f := openFaultyPool(t, tc.rules...)
			b := p.be.(*p11Backend)
			for i := range tc.closeSessions {
				if err := f.p11API.CloseSession(b.sess[i]); err != nil {
					t.Fatal(err)
				}
			}
			before := f.signsOK.Load()
			signs := runWorkload(t, p, 24)
			if got := f.signsOK.Load() - before; got != int64(signs) {
				t.Fatalf("%d signatures produced for %d sign requests (lost or duplicated)", got, signs)
			}
			st := p.Stats()
			if st.SessionsReplaced == 0 && st.TokenFailures == 0 {
				t.Fatal("no fault was observed: the test injected nothing")
			}
			if err := p.Health(context.Background()); err != nil {
				t.Fatalf("unhealthy after recovery: %v", err)
			}
			if logged := f.log.String(); !strings.Contains(logged, `level=WARN msg="hsmpool:`) {
				t.Errorf("the recovery was not logged:\n%s", logged)
			} else if strings.Contains(logged, testenv.SoftHSM(t).PIN) {
				t.Errorf("the log shows the PIN:\n%s", logged)
			}
			t.Logf("sessions replaced %d, token failures %d", st.SessionsReplaced, st.TokenFailures)
		})
	}
}

// A token that stays away yields ErrTokenUnavailable after bounded,
// backed-off retries; the pool recovers when it comes back. The bound and
// the backoff are checked by count and by the pauses the pool announces,
// not by the clock: only a lower bound on the elapsed time is asserted
// (the pauses must really be taken), which load cannot break.
func TestTokenGoneIsBoundedAndRecovers(t *testing.T) {
	p, f := openFaultyPool(t)
	d := sha256.Sum256(nil)
	f.down.Store(true)
	failures0 := p.Stats().TokenFailures
	start := time.Now()
	_, err := p.Sign(context.Background(), "dppb-nist", d[:])
	el := time.Since(start)
	if !errors.Is(err, ErrTokenUnavailable) {
		t.Fatalf("err = %v, want ErrTokenUnavailable", err)
	}
	maxRetries := p.cfg.MaxRetries
	if n := p.Stats().TokenFailures - failures0; n != uint64(maxRetries+1) {
		t.Fatalf("%d attempts reached the absent token, want %d (1 + MaxRetries)", n, maxRetries+1)
	}
	// The pauses double from RetryBackoff up to MaxBackoff; the last
	// attempt gives up instead of pausing.
	var want []string
	for i, b := 0, p.cfg.RetryBackoff; i < maxRetries+1; i, b = i+1, min(2*b, p.cfg.MaxBackoff) {
		want = append(want, fmt.Sprintf("attempt=%d backoff=%v", i+1, b))
	}
	var got []string
	for line := range strings.Lines(f.log.String()) {
		if _, rest, ok := strings.Cut(line, `msg="hsmpool: token unavailable, retrying" `); ok {
			attempt, _, _ := strings.Cut(rest, " error=")
			got = append(got, attempt)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("retries logged %q, want %q", got, want)
	}
	if budget := p.cfg.retryBudget(); el < budget {
		t.Fatalf("gave up after %v, before the configured pauses (%v) were over", el, budget)
	}
	if err := p.Health(context.Background()); err == nil {
		t.Fatal("health check passes without a token")
	}
	f.down.Store(false)
	if _, err := p.Sign(context.Background(), "dppb-nist", d[:]); err != nil {
		t.Fatalf("no recovery after the token came back: %v", err)
	}
	if err := p.Health(context.Background()); err != nil {
		t.Fatalf("health after recovery: %v", err)
	}
}

// Context deadlines bound both the wait for a session and the retries.
func TestContextDeadlinesAreHonoured(t *testing.T) {
	cfg := testConfig(t)
	// Pauses far longer than any deadline below: a pool that sleeps through
	// a deadline hangs instead of finishing a little late, which no load
	// can cause or hide.
	cfg.RetryBackoff, cfg.MaxBackoff, cfg.MaxRetries = time.Hour, time.Hour, 8
	f := &faultAPI{calls: map[string]int{}}
	// No timestamps: the PIN check below must not match digits of a time.
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	cfg.Logger = slog.New(slog.NewTextHandler(&f.log, &slog.HandlerOptions{ReplaceAttr: noTime}))
	cfg.wrapAPI = func(a p11API) p11API { f.p11API = a; return f }
	cfg.Sessions = 2
	p := openPool(t, cfg)
	d := sha256.Sum256(nil)

	stuck := false // a request sleeps in the pool, holding a session
	t.Run("while the token is gone", func(t *testing.T) {
		f.down.Store(true)
		defer f.down.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		failures0 := p.Stats().TokenFailures
		errc := make(chan error, 1)
		go func() {
			_, err := p.Sign(ctx, "dppb-nist", d[:])
			errc <- err
		}()
		var err error
		select {
		case err = <-errc:
		case <-time.After(time.Minute):
			stuck = true
			t.Fatal("the request slept through its 100ms deadline in a one-hour retry pause")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		switch n := p.Stats().TokenFailures - failures0; n {
		case 1: // the deadline ended the first pause
			if !errors.Is(err, ErrTokenUnavailable) {
				t.Fatalf("err = %v, want it to say the token is unavailable", err)
			}
		case 0: // a loaded machine: the deadline passed before the first attempt
			t.Logf("the deadline passed before the first attempt; the pause was not exercised")
		default:
			t.Fatalf("%d attempts reached the absent token, want 1: a retry skipped its one-hour pause", n)
		}
	})
	if stuck {
		t.Fatal("the remaining cases need every session; one is held by the stuck request")
	}
	t.Run("while waiting for a session", func(t *testing.T) {
		var held []int
		for range 2 {
			s, err := p.sched.acquire(context.Background(), Live)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, s)
		}
		defer func() {
			for _, s := range held {
				p.sched.release(s, Live)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := p.Sign(ctx, "dppb-nist", d[:]); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("already expired", func(t *testing.T) {
		calls := p.HSMCalls()
		if _, _, err := p.EphemeralECDH(cancelled(), esim.CurveP256, mustPeer(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want Canceled", err)
		}
		if p.HSMCalls() != calls {
			t.Fatal("a cancelled request reached the HSM")
		}
	})
}

func mustPeer(t *testing.T) []byte {
	_, pub := peerKey(t, esim.CurveP256)
	return pub
}
