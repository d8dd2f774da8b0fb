package hsmpool

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// hiddenTokenAPI hides every token from the first hide module instances
// (C_Initialize calls), the way SoftHSM2 2.6.1 does when another process's
// C_Login rewrote token.object while this process's C_Initialize read it:
// looking again without initialising the module again never finds it.
type hiddenTokenAPI struct {
	p11API
	hide  int32
	inits atomic.Int32
	looks atomic.Int32
}

func (h *hiddenTokenAPI) Initialize(opts ...pkcs11.InitializeOption) error {
	h.inits.Add(1)
	return h.p11API.Initialize(opts...)
}

func (h *hiddenTokenAPI) GetSlotList(present bool) ([]uint, error) {
	h.looks.Add(1)
	if h.inits.Load() <= h.hide {
		return nil, nil
	}
	return h.p11API.GetSlotList(present)
}

func hiddenTokenConfig(t *testing.T, hide int32, wait time.Duration) (Config, *hiddenTokenAPI) {
	cfg := testConfig(t)
	h := &hiddenTokenAPI{hide: hide}
	cfg.TokenWait = wait
	cfg.wrapAPI = func(a p11API) p11API {
		h.p11API = a
		return h
	}
	return cfg, h
}

// Open finds a token its first C_Initialize calls did not show by
// initialising the module again, and the pool then works.
func TestOpenWaitsForATokenHiddenFromItsFirstInitialize(t *testing.T) {
	cfg, h := hiddenTokenConfig(t, 3, 10*time.Second)
	p := openPool(t, cfg)
	if got := h.inits.Load(); got != 4 {
		t.Errorf("C_Initialize called %d times, want 4 (3 hid the token)", got)
	}
	d := sha256.Sum256([]byte("after the wait"))
	if _, err := p.Sign(context.Background(), "dppb-nist", d[:]); err != nil {
		t.Fatalf("Sign after Open waited for the token: %v", err)
	}
}

// A token that never appears fails Open once TokenWait is over, saying
// how long it looked, as ErrTokenUnavailable wrapping the PKCS#11 code
// (which Diagnose still turns into the list of tokens present); with a
// negative TokenWait at the first look. A wrong PIN fails at once.
func TestOpenGivesUpOnAnAbsentTokenAfterTokenWait(t *testing.T) {
	const wait = 300 * time.Millisecond
	cfg, h := hiddenTokenConfig(t, 1<<30, wait)
	t0 := time.Now()
	p, err := Open(context.Background(), cfg)
	el := time.Since(t0)
	if err == nil {
		p.Close()
		t.Fatal("Open succeeded without a token")
	}
	if !errors.Is(err, ErrTokenUnavailable) || p11Code(err) != pkcs11.CKR_TOKEN_NOT_PRESENT {
		t.Errorf("err = %v: want ErrTokenUnavailable wrapping CKR_TOKEN_NOT_PRESENT", err)
	}
	for _, want := range []string{`token "` + cfg.TokenLabel + `" still unavailable`, "attempts over", "CKR_TOKEN_NOT_PRESENT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q lacks %q", err, want)
		}
	}
	if n := h.inits.Load(); n < 4 || el > wait+2*time.Second {
		t.Errorf("gave up after %v and %d C_Initialize calls (TokenWait %v)", el, n, wait)
	}
	if d := Diagnose(cfg, err); !strings.Contains(d.Error(), "tokens present: ") || !strings.Contains(d.Error(), `"`+cfg.TokenLabel+`"`) {
		t.Errorf("Diagnose: %v", d)
	}
	t.Logf("gave up after %v, %d C_Initialize calls: %v", el.Round(time.Millisecond), h.inits.Load(), err)

	// A wrong PIN is never retried: each try would spend a login attempt.
	cfg, h = hiddenTokenConfig(t, 0, 10*time.Second)
	cfg.PIN = "98765"
	if p, err := Open(context.Background(), cfg); err == nil {
		p.Close()
		t.Fatal("Open succeeded with a wrong PIN")
	} else if n := h.inits.Load(); n != 1 || !strings.Contains(err.Error(), "wrong PIN") {
		t.Errorf("wrong PIN: %d C_Initialize calls, err %v; want 1 and a wrong PIN", n, err)
	}

	cfg, h = hiddenTokenConfig(t, 1<<30, -1)
	if p, err := Open(context.Background(), cfg); err == nil {
		p.Close()
		t.Fatal("Open succeeded without a token")
	} else if n := h.inits.Load(); n != 1 || p11Code(err) != pkcs11.CKR_TOKEN_NOT_PRESENT {
		t.Errorf("TokenWait -1: %d C_Initialize calls, err %v; want 1 and CKR_TOKEN_NOT_PRESENT", n, err)
	}
}

// TestHelperLoginLoop logs in to the parent's token over and over (each
// Open logs in once, which makes SoftHSM2 rewrite token.object) until its
// standard input closes: it stops between logins, never inside one (a
// process killed between SoftHSM2's truncation of token.object and the
// write of its new contents leaves the file empty, and the token unusable
// for good). It does nothing in a normal test run.
func TestHelperLoginLoop(t *testing.T) {
	if os.Getenv("PERSO_TEST_LOGIN_LOOP") != "1" {
		return
	}
	var stop atomic.Bool
	go func() { io.Copy(io.Discard, os.Stdin); stop.Store(true) }()
	cfg := Config{Module: os.Getenv("PERSO_TEST_MODULE"), TokenLabel: os.Getenv("PERSO_TEST_TOKEN"),
		PIN: os.Getenv("PERSO_TEST_PIN"), Sessions: 1, RecycleAfter: -1, TokenWait: 10 * time.Second}
	for !stop.Load() {
		p, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
}

var loginLoopRuns int // -count=N: a token per run

// Two processes on one SoftHSM2 token directory: while another process
// logs in over and over, every Open here succeeds (it initialises the
// module again when the token was hidden), given the time to. The same
// loop with TokenWait -1 shows how often the token was hidden from a
// C_Initialize (logged, not asserted: it depends on the SoftHSM2 build and
// the scheduler). The token is one of its own in the test token
// directory, so that nothing this does can harm the other tests' token.
func TestOpenBesideAnotherProcessLoggingIn(t *testing.T) {
	cfg := testConfig(t)
	loginLoopRuns++
	cfg.TokenLabel, cfg.PIN = fmt.Sprintf("perso-login-loop-%d", loginLoopRuns), "2468"
	if err := InitToken(cfg.Module, cfg.TokenLabel, "86428642", cfg.PIN); err != nil {
		t.Fatal(err)
	}
	cfg.Sessions, cfg.RecycleAfter = 1, -1
	child := exec.Command(os.Args[0], "-test.run=^TestHelperLoginLoop$")
	child.Env = append(os.Environ(), "PERSO_TEST_LOGIN_LOOP=1", "PERSO_TEST_MODULE="+cfg.Module,
		"PERSO_TEST_TOKEN="+cfg.TokenLabel, "PERSO_TEST_PIN="+cfg.PIN)
	var childOut strings.Builder
	child.Stderr, child.Stdout = &childOut, &childOut
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { child.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close() // the child stops after its current login
		select {
		case <-exited:
		case <-time.After(time.Minute):
			child.Process.Kill()
			<-exited
			t.Errorf("the login loop did not stop within a minute of its stdin closing")
		}
	})

	opens := func(cfg Config, d time.Duration) (n, failed int, firstErr error) {
		for end := time.Now().Add(d); time.Now().Before(end); n++ {
			select {
			case <-exited:
				t.Fatalf("the login loop exited: %s", childOut.String())
			default:
			}
			p, err := Open(context.Background(), cfg)
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			p.Close()
		}
		return n, failed, firstErr
	}
	noWait := cfg
	noWait.TokenWait = -1
	n, failed, err := opens(noWait, time.Second)
	t.Logf("without TokenWait: %d of %d opens failed (first: %v)", failed, n, err)
	// The loop above logs in far more often than processes start in real
	// use, and a loaded machine widens SoftHSM2's window (the writer can
	// be descheduled inside it): a wait well above the default keeps this
	// a test of the mechanism, not of the machine's load.
	cfg.TokenWait = 10 * time.Second
	n, failed, err = opens(cfg, 2*time.Second)
	if failed > 0 {
		t.Fatalf("with TokenWait %v: %d of %d opens failed; first: %v", cfg.TokenWait, failed, n, err)
	}
	t.Logf("with TokenWait %v: %d opens, none failed", cfg.TokenWait, n)
}
