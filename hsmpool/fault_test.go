package hsmpool

import (
	"bytes"
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
	return f.p11API.GenerateKeyPair(sh, m, pub, priv)
}

func (f *faultAPI) DeriveKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, k pkcs11.ObjectHandle, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	if err := f.check("DeriveKey"); err != nil {
		return 0, err
	}
	return f.p11API.DeriveKey(sh, m, k, a)
}

func (f *faultAPI) WrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, w, k pkcs11.ObjectHandle) ([]byte, error) {
	if err := f.check("WrapKey"); err != nil {
		return nil, err
	}
	return f.p11API.WrapKey(sh, m, w, k)
}

func openFaultyPool(t *testing.T, rules ...faultRule) (*Pool, *faultAPI) {
	t.Helper()
	cfg := testConfig(t)
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
// backed-off retries; the pool recovers when it comes back.
func TestTokenGoneIsBoundedAndRecovers(t *testing.T) {
	p, f := openFaultyPool(t)
	d := sha256.Sum256(nil)
	f.down.Store(true)
	start := time.Now()
	_, err := p.Sign(context.Background(), "dppb-nist", d[:])
	el := time.Since(start)
	if !errors.Is(err, ErrTokenUnavailable) {
		t.Fatalf("err = %v, want ErrTokenUnavailable", err)
	}
	budget := p.cfg.retryBudget()
	if el < budget || el > budget+2*time.Second {
		t.Fatalf("gave up after %v; the configured backoff totals %v", el, budget)
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
	cfg.RetryBackoff, cfg.MaxBackoff, cfg.MaxRetries = 200*time.Millisecond, time.Second, 8
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

	t.Run("while the token is gone", func(t *testing.T) {
		f.down.Store(true)
		defer f.down.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := p.Sign(ctx, "dppb-nist", d[:])
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 150*time.Millisecond {
			t.Fatalf("err = %v after %v, want DeadlineExceeded within ~30ms", err, time.Since(start))
		}
	})
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
