package hsmpool

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/perso-esim/perso/esim"
)

// sessionCountingAPI counts sessions opened and closed through the pool.
type sessionCountingAPI struct {
	p11API
	opened, closed atomic.Int64
}

func (c *sessionCountingAPI) OpenSession(slot, flags uint) (pkcs11.SessionHandle, error) {
	sh, err := c.p11API.OpenSession(slot, flags)
	if err == nil {
		c.opened.Add(1)
	}
	return sh, err
}

func (c *sessionCountingAPI) CloseSession(sh pkcs11.SessionHandle) error {
	c.closed.Add(1)
	return c.p11API.CloseSession(sh)
}

// TestRecycleModule runs binds (ECDH, then a signature by a key whose
// handle was cached) one at a time and checks that the module is
// reinitialised every RecycleAfter operations, that no session is left open
// beyond the pool's, and that operations after a reinitialisation still
// succeed (sessions logged in again, stale key handles not used).
func TestRecycleModule(t *testing.T) {
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		sessions     int
		recycleAfter int
		binds        int
		wantReinits  uint64
	}{
		{"one session, every 4 ops", 1, 4, 10, 5}, // 20 ops
		{"one session, every op", 1, 1, 3, 6},
		{"two sessions, every 4 ops", 2, 4, 10, 5},
		{"one session, never", 1, -1, 10, 0},
		{"default on SoftHSM2: 20000, few ops", 1, 0, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Sessions, cfg.RecycleAfter = tc.sessions, tc.recycleAfter
			api := &sessionCountingAPI{}
			cfg.wrapAPI = func(a p11API) p11API { api.p11API = a; return api }
			p, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if tc.recycleAfter == 0 && p.cfg.RecycleAfter != 20000 {
				t.Errorf("RecycleAfter unset on SoftHSM2 became %d, want 20000", p.cfg.RecycleAfter)
			}
			ctx := context.Background()
			for i := range tc.binds {
				if _, _, err := p.EphemeralECDH(ctx, esim.CurveP256, peer.PublicKey().Bytes()); err != nil {
					t.Fatalf("bind %d: ECDH: %v", i, err)
				}
				d := sha256.Sum256([]byte{byte(i)})
				if _, err := p.Sign(ctx, "dppb-nist", d[:]); err != nil {
					t.Fatalf("bind %d: sign: %v", i, err)
				}
			}
			st := p.Stats()
			if st.ModuleReinits != tc.wantReinits {
				t.Errorf("ModuleReinits = %d, want %d", st.ModuleReinits, tc.wantReinits)
			}
			if st.SessionsReplaced != 0 {
				t.Errorf("SessionsReplaced = %d: a reinitialisation must not look like a broken session", st.SessionsReplaced)
			}
			if open := api.opened.Load() - api.closed.Load(); open != int64(tc.sessions) {
				t.Errorf("%d sessions open after the binds, want the pool's %d", open, tc.sessions)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if open := api.opened.Load() - api.closed.Load(); open != 0 {
				t.Errorf("%d sessions left open after Close", open)
			}
		})
	}
}

// TestRecycleModuleUnderLoad reinitialises the module while concurrent
// callers bind on every session: every operation must still succeed, with
// its own result, and no session may be left behind.
func TestRecycleModuleUnderLoad(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sessions, cfg.RecycleAfter = 3, 7
	api := &sessionCountingAPI{}
	cfg.wrapAPI = func(a p11API) p11API { api.p11API = a; return api }
	p := openPool(t, cfg)
	_, pt, err := p.PublicKey(context.Background(), "dppb-nist")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := esim.CurveP256.PublicKey(pt)
	peer, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const callers, binds = 6, 20
	errs := make(chan error, callers)
	for c := range callers {
		go func() {
			for i := range binds {
				if _, _, err := p.EphemeralECDH(context.Background(), esim.CurveP256, peer.PublicKey().Bytes()); err != nil {
					errs <- err
					return
				}
				d := sha256.Sum256([]byte{byte(c), byte(i)})
				sig, err := p.Sign(context.Background(), "dppb-nist", d[:])
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
					errs <- fmt.Errorf("caller %d bind %d: the signature does not verify", c, i)
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := p.Stats()
	if want := uint64((callers*binds*2 + 1) / 7); st.ModuleReinits == 0 || st.ModuleReinits > want {
		t.Errorf("ModuleReinits = %d, want 1..%d", st.ModuleReinits, want)
	}
	if open := api.opened.Load() - api.closed.Load(); open != int64(cfg.Sessions) {
		t.Errorf("%d sessions open, want %d", open, cfg.Sessions)
	}
}
