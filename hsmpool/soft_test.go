package hsmpool

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
)

func openSoftPool(t *testing.T) (*Pool, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.json")
	defer func(n int) { softScryptN = n }(softScryptN)
	softScryptN = 1 << 10 // fast tests; the file records its own cost
	if err := CreateSoftwareKeyFile(path, "dev passphrase"); err != nil {
		t.Fatal(err)
	}
	p := openPool(t, Config{Backend: BackendSoftware, SoftwareFile: path, SoftwarePassphrase: "dev passphrase"})
	ctx := context.Background()
	for _, k := range sgp26Keys {
		pemData, err := os.ReadFile(testenv.Path(t, "sgp26", k.dir, k.file))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.ImportECKeyPEM(ctx, k.label, pemData); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.GenerateSecretKey(ctx, "kek-1", KindKEK); err != nil {
		t.Fatal(err)
	}
	if err := p.ImportSecretKey(ctx, "transport-1", KindTransportAES, testTransportAES); err != nil {
		t.Fatal(err)
	}
	if err := p.ImportSecretKey(ctx, "transport-2", KindTransport3DES, testTransport3DES); err != nil {
		t.Fatal(err)
	}
	return p, path
}

// The software backend offers the same operations with the same results as
// the PKCS#11 pool (it is the same Pool type over another backend).
func TestSoftwareBackendBehavesLikeTheToken(t *testing.T) {
	p, _ := openSoftPool(t)
	ctx := context.Background()
	if p.Backend() != BackendSoftware {
		t.Fatalf("backend %q", p.Backend())
	}
	for _, k := range sgp26Keys {
		t.Run("sign/"+k.label, func(t *testing.T) {
			d := sha256.Sum256([]byte(k.label))
			sig, err := p.Signer(k.label).SignDigest(ctx, d[:])
			if err != nil || len(sig) != 64 {
				t.Fatalf("SignDigest: %d bytes, %v", len(sig), err)
			}
			c, pt, err := p.PublicKey(ctx, k.label)
			if err != nil || c != k.curve {
				t.Fatal(err)
			}
			pub, _ := c.PublicKey(pt)
			if !ecdsa.Verify(pub, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				t.Fatal("signature does not verify")
			}
		})
	}
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		t.Run("ecdh/"+c.String(), func(t *testing.T) {
			d, peer := peerKey(t, c)
			otpk, z, err := p.KeyAgreement(c).EphemeralECDH(ctx, peer)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(z, goECDH(t, c, d, otpk)) {
				t.Fatal("Z differs from Go's ECDH")
			}
		})
	}
	t.Run("transport", func(t *testing.T) {
		for _, alg := range []string{AlgAES128ECB, AlgAES128CBC} {
			pt := mustHex("465b5ce8b199b49faa5f0a2ee238a6bccd63cb71954a9f4e48a5994e37a02baf")
			got, err := p.DecryptTransport(ctx, "transport-1", alg, encryptGo(t, alg, testTransportAES, pt))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%s: %v", alg, err)
			}
		}
		for _, alg := range []string{Alg3DESECB, Alg3DESCBC} {
			pt := mustHex("465b5ce8b199b49faa5f0a2ee238a6bc")
			got, err := p.DecryptTransport(ctx, "transport-2", alg, encryptGo(t, alg, testTransport3DES, pt))
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%s: %v", alg, err)
			}
		}
	})
	t.Run("batch key", func(t *testing.T) {
		bk, err := p.NewBatchKey(ctx, "soft")
		if err != nil {
			t.Fatal(err)
		}
		ppk := randomPPK(t)
		rec, _ := bk.Protect("8901", ppk)
		blob := bk.Blob()
		bk.Close()
		p.cache.purge()
		got, err := p.UnprotectPPK(ctx, blob, "8901", rec)
		if err != nil || !bytes.Equal(got, ppk) {
			t.Fatalf("UnprotectPPK: %v", err)
		}
		blob[len(blob)-1] ^= 1
		if _, err := p.UnprotectPPK(ctx, blob, "8901", rec); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("tampered blob: %v, want ErrIntegrity", err)
		}
	})
}

// The key file holds no key in the clear, needs its passphrase, and the
// software backend is never chosen where a PKCS#11 module is configured.
func TestSoftwareBackendSafety(t *testing.T) {
	_, path := openSoftPool(t)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []string{string(testTransportAES), hex.EncodeToString(testTransportAES),
		base64.StdEncoding.EncodeToString(testTransportAES), "transport-1", "dppb"} {
		if strings.Contains(string(raw), enc) {
			t.Fatalf("key file contains %q in the clear", enc)
		}
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"wrong passphrase", Config{Backend: BackendSoftware, SoftwareFile: path, SoftwarePassphrase: "guess"}},
		{"no passphrase", Config{Backend: BackendSoftware, SoftwareFile: path}},
		{"module configured too", Config{Backend: BackendSoftware, SoftwareFile: path, SoftwarePassphrase: "dev passphrase",
			Module: "/usr/lib/softhsm/libsofthsm2.so"}},
		{"unknown backend", Config{Backend: "soft", SoftwareFile: path, SoftwarePassphrase: "dev passphrase"}},
		{"pkcs11 without a module never falls back", Config{SoftwareFile: path, SoftwarePassphrase: "dev passphrase"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Open(context.Background(), tc.cfg)
			if err == nil {
				p.Close()
				t.Fatalf("Open succeeded with backend %q", p.Backend())
			}
			if strings.Contains(err.Error(), "dev passphrase") || strings.Contains(err.Error(), "guess") {
				t.Fatalf("error reveals the passphrase: %v", err)
			}
		})
	}
}
