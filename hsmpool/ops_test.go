package hsmpool

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

// Sign returns raw r||s signatures that crypto/ecdsa verifies against the
// SGP.26 public keys, on both curves and both lanes.
func TestSignVerifiesWithSGP26PublicKeys(t *testing.T) {
	p := openPool(t, testConfig(t))
	for _, k := range sgp26Keys {
		for _, lane := range []Lane{Live, Batch} {
			t.Run(k.label+"/"+lane.String(), func(t *testing.T) {
				pkFile := strings.Replace(k.file, "SK_", "PK_", 1)
				pemData, err := os.ReadFile(testenv.Path(t, "sgp26", k.dir, pkFile))
				if err != nil {
					t.Fatal(err)
				}
				curve, point, err := PublicKeyFromPEM(pemData)
				if err != nil || curve != k.curve {
					t.Fatalf("SGP.26 public key: curve %v, err %v", curve, err)
				}
				pub, err := curve.PublicKey(point)
				if err != nil {
					t.Fatal(err)
				}
				ctx := WithLane(context.Background(), lane)
				for i := range 3 {
					digest := sha256.Sum256([]byte{byte(i), byte(lane)})
					sig, err := p.Signer(k.label).SignDigest(ctx, digest[:])
					if err != nil {
						t.Fatalf("SignDigest: %v", err)
					}
					if len(sig) != 64 {
						t.Fatalf("signature is %d bytes, want raw r||s of 64", len(sig))
					}
					r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
					if !ecdsa.Verify(pub, digest[:], r, s) {
						t.Fatalf("signature does not verify with crypto/ecdsa")
					}
					digest[0] ^= 1
					if ecdsa.Verify(pub, digest[:], r, s) {
						t.Fatalf("signature verifies for a different digest")
					}
				}
				_, tokPoint, err := p.PublicKey(ctx, k.label)
				if err != nil || !bytes.Equal(tokPoint, point) {
					t.Fatalf("token public key differs from the SGP.26 file (err %v)", err)
				}
			})
		}
	}
}

func TestSignRejects(t *testing.T) {
	p := openPool(t, testConfig(t))
	ctx := context.Background()
	digest := sha256.Sum256(nil)
	tests := []struct {
		name   string
		label  string
		digest []byte
		want   error
	}{
		{"digest too short", "dppb-nist", digest[:31], ErrBadInput},
		{"digest too long", "dppb-nist", append(digest[:], 0), ErrBadInput},
		{"unknown key", "no-such-key", digest[:], ErrKeyNotFound},
		{"secret key is not a signing key", "kek-1", digest[:], ErrKeyNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Sign(ctx, tc.label, tc.digest); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// goECDH computes the expected Z for a peer private key d and the HSM's
// one-time public key: crypto/ecdh for P-256, ScalarMult on the ProtonMail
// brainpool curve for brainpoolP256r1.
func goECDH(t *testing.T, c esim.Curve, peerPriv []byte, otpk []byte) []byte {
	t.Helper()
	switch c {
	case esim.CurveP256:
		k, err := ecdh.P256().NewPrivateKey(peerPriv)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ecdh.P256().NewPublicKey(otpk)
		if err != nil {
			t.Fatalf("one-time public key is not a valid P-256 point: %v", err)
		}
		z, err := k.ECDH(pub)
		if err != nil {
			t.Fatal(err)
		}
		return z
	default:
		cv := c.Elliptic()
		x, y := new(big.Int).SetBytes(otpk[1:33]), new(big.Int).SetBytes(otpk[33:])
		if !cv.IsOnCurve(x, y) {
			t.Fatal("one-time public key is not on brainpoolP256r1")
		}
		zx, _ := cv.ScalarMult(x, y, peerPriv)
		return zx.FillBytes(make([]byte, 32))
	}
}

func peerKey(t *testing.T, c esim.Curve) (priv, pub []byte) {
	t.Helper()
	d, x, y, err := elliptic.GenerateKey(c.Elliptic(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return d, elliptic.Marshal(c.Elliptic(), x, y)
}

// countSessionObjects counts the objects visible in slot 0's session that
// are not token objects (i.e. leftovers of ECDH or batch-key operations).
func countSessionObjects(t *testing.T, p *Pool) int {
	t.Helper()
	b := p.be.(*p11Backend)
	var n int
	slot, err := p.sched.acquire(context.Background(), Live)
	if err != nil {
		t.Fatal(err)
	}
	defer p.sched.release(slot, Live)
	err = b.with(context.Background(), slot, func(sh pkcs11.SessionHandle) error {
		hs, err := b.find(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)}, 1000)
		n = len(hs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// EphemeralECDH returns a fresh one-time key and the same Z as Go computes
// from the peer's side; no session object (one-time private key, public
// key, derived secret) survives the call.
func TestEphemeralECDHMatchesGo(t *testing.T) {
	p := openPool(t, testConfig(t))
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		t.Run(c.String(), func(t *testing.T) {
			ka := p.KeyAgreement(c)
			seen := map[string]bool{}
			for range 4 {
				d, peer := peerKey(t, c)
				otpk, z, err := ka.EphemeralECDH(context.Background(), peer)
				if err != nil {
					t.Fatalf("EphemeralECDH: %v", err)
				}
				if len(otpk) != 65 || otpk[0] != 4 || len(z) != 32 {
					t.Fatalf("otpk %d bytes, Z %d bytes; want 65 (uncompressed) and 32", len(otpk), len(z))
				}
				if want := goECDH(t, c, d, otpk); !bytes.Equal(z, want) {
					t.Fatalf("Z differs from Go's ECDH:\n got %x\nwant %x", z, want)
				}
				if seen[string(otpk)] {
					t.Fatal("one-time key reused")
				}
				seen[string(otpk)] = true
			}
			if n := countSessionObjects(t, p); n != 0 {
				t.Fatalf("%d session objects left behind after ECDH", n)
			}
		})
	}
}

func TestEphemeralECDHRejectsBadPeerKeys(t *testing.T) {
	p := openPool(t, testConfig(t))
	_, nist := peerKey(t, esim.CurveP256)
	_, brp := peerKey(t, esim.CurveBrainpoolP256r1)
	offCurve := append([]byte(nil), nist...)
	offCurve[64] ^= 1
	compressed := append([]byte{2 | nist[64]&1}, nist[1:33]...)
	tests := []struct {
		name  string
		curve esim.Curve
		peer  []byte
	}{
		{"empty", esim.CurveP256, nil},
		{"compressed point", esim.CurveP256, compressed},
		{"point off the curve", esim.CurveP256, offCurve},
		{"brainpool point on P-256", esim.CurveP256, brp},
		{"P-256 point on brainpool", esim.CurveBrainpoolP256r1, nist},
		{"x only", esim.CurveBrainpoolP256r1, brp[:33]},
		{"unknown curve", esim.Curve(9), nist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := p.HSMCalls()
			_, _, err := p.EphemeralECDH(context.Background(), tc.curve, tc.peer)
			if !errors.Is(err, ErrBadPoint) && !errors.Is(err, ErrUnknownCurve) {
				t.Fatalf("err = %v, want ErrBadPoint", err)
			}
			if p.HSMCalls() != calls {
				t.Fatal("a bad point reached the HSM")
			}
		})
	}
}
