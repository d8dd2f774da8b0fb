package hsmpool

import (
	"context"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// Keys every test token holds (provisioned once per test process).
var (
	testTransportAES  = mustHex("000102030405060708090a0b0c0d0e0f")
	testTransport3DES = mustHex("0123456789abcdeffedcba9876543210")
	testKEK           = mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
)

// sgp26Keys maps our labels to the SGP.26 test keys imported under them.
var sgp26Keys = []struct {
	label, dir, file string
	curve            esim.Curve
}{
	{"dpauth-nist", "DPauth", "SK_S_SM_DPauth_ECDSA_NIST.pem", esim.CurveP256},
	{"dpauth-brp", "DPauth", "SK_S_SM_DPauth_ECDSA_BRP.pem", esim.CurveBrainpoolP256r1},
	{"dppb-nist", "DPpb", "SK_S_SM_DPpb_ECDSA_NIST.pem", esim.CurveP256},
	{"dppb-brp", "DPpb", "SK_S_SM_DPpb_ECDSA_BRP.pem", esim.CurveBrainpoolP256r1},
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	provisionOnce sync.Once
	provisionErr  error
)

// testConfig returns a pool configuration for the process's SoftHSM2 token,
// provisioning it on first use: kek-1 (generated), kek-test (known value,
// for interoperability checks), transport-1 (AES-128, known value),
// transport-2 (3DES, known value) and the four SGP.26 DPauth/DPpb keys.
func testConfig(t testing.TB) Config {
	t.Helper()
	tok := testenv.SoftHSM(t)
	cfg := Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 4,
		RetryBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	provisionOnce.Do(func() {
		ctx := context.Background()
		p, err := Open(ctx, cfg)
		if err != nil {
			provisionErr = err
			return
		}
		defer p.Close()
		steps := []func() error{
			func() error { return p.GenerateSecretKey(ctx, "kek-1", KindKEK) },
			func() error { return p.ImportSecretKey(ctx, "kek-test", KindKEK, testKEK) },
			func() error { return p.ImportSecretKey(ctx, "transport-1", KindTransportAES, testTransportAES) },
			func() error { return p.ImportSecretKey(ctx, "transport-2", KindTransport3DES, testTransport3DES) },
		}
		for _, k := range sgp26Keys {
			k := k
			steps = append(steps, func() error {
				pemData, err := os.ReadFile(testenv.Path(t, "sgp26", k.dir, k.file))
				if err != nil {
					return err
				}
				_, _, err = p.ImportECKeyPEM(ctx, k.label, pemData)
				return err
			})
		}
		for _, s := range steps {
			if provisionErr = s(); provisionErr != nil {
				return
			}
		}
	})
	if provisionErr != nil {
		t.Fatalf("provisioning the test token: %v", provisionErr)
	}
	return cfg
}

// openPool opens a pool on the test token, closed when the test ends.
func openPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}
