package smdp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/smdp"
	"github.com/perso-esim/perso/store"
)

const e2eAddress = "testsmdpplus1.example.com"

// TestEndToEnd: profiles protected under an HSM batch key and stored → order
// through the store → download over HTTPS (SGP.26 DPtls certificate) by the
// virtual eUICC and LPA of euiccsim → install notification → the store shows
// Installed and the UPP the eUICC recovered equals the stored one. Both
// curves, both bindings; the HSM is hsmpool's software backend holding the
// SGP.26 DPauth/DPpb keys (the same pool API as a PKCS#11 token).
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sgp26 := testenv.Path(t, "sgp26")

	// HSM: KEK and the SGP.26 SM-DP+ keys.
	keyFile := filepath.Join(dir, "keys.json")
	if err := hsmpool.CreateSoftwareKeyFile(keyFile, "e2e-pass"); err != nil {
		t.Fatal(err)
	}
	pool, err := hsmpool.Open(ctx, hsmpool.Config{Backend: hsmpool.BackendSoftware, SoftwareFile: keyFile, SoftwarePassphrase: "e2e-pass"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.GenerateSecretKey(ctx, "kek-1", hsmpool.KindKEK); err != nil {
		t.Fatal(err)
	}
	var creds []smdp.Credentials
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		n := c.SGP26Name()
		for label, file := range map[string]string{hsmpool.DPauthLabel(c): "DPauth/SK_S_SM_DPauth_ECDSA_" + n + ".pem",
			hsmpool.DPpbLabel(c): "DPpb/SK_S_SM_DPpb_ECDSA_" + n + ".pem"} {
			if _, _, err := pool.ImportECKeyPEM(ctx, label, read(t, sgp26, file)); err != nil {
				t.Fatal(err)
			}
		}
		var cc [3]*rsp.Certificate
		for i, f := range []string{"CertificateIssuer/CERT_CI_ECDSA_" + n + ".der", "DPauth/CERT_S_SM_DPauth_ECDSA_" + n + ".der", "DPpb/CERT_S_SM_DPpb_ECDSA_" + n + ".der"} {
			if cc[i], err = rsp.ParseCertificate(read(t, sgp26, f)); err != nil {
				t.Fatal(err)
			}
		}
		creds = append(creds, smdp.Credentials{CI: cc[0], DPauth: cc[1], DPpb: cc[2]})
	}

	// Store: one batch, its PPKs sealed under the batch key.
	db, err := store.Open(ctx, "sqlite", filepath.Join(dir, "perso.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	upp := read(t, testenv.Path(t, "ts48"), "TS48v5_SAIP2.3_NoBERTLV.der")
	bk, err := pool.NewBatchKey(ctx, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	if _, err := db.CreateBatch(ctx, store.Batch{ID: "e2e", ProfileType: "ts48", KeyBlob: bk.Blob(), KEKLabel: bk.KeyRef()}); err != nil {
		t.Fatal(err)
	}
	var iccids []string
	for i := range 4 {
		payload := "89494499999990000" + string(rune('0'+i)) + "0"
		d, _ := esim.LuhnDigit(payload)
		iccid := payload + string(rune(d))
		ppp, err := bpp.Protect(upp, nil)
		if err != nil {
			t.Fatal(err)
		}
		var flat [bpp.PPKSize]byte
		ppp.PPK.Put(&flat)
		sealed, err := bk.Protect(iccid, flat[:])
		clear(flat[:])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutBatch(ctx, "e2e", []store.Profile{{ICCID: iccid, IMSI: "001010000000001", ProfileType: "ts48", BatchID: "e2e",
			Segments: ppp.Segments, ProtectedPPK: sealed, PPKKeyRef: bk.KeyRef(),
			Metadata: store.Metadata{ServiceProviderName: "perso", ProfileName: "TS.48 v5", ProfileClass: 0}}}); err != nil {
			t.Fatal(err)
		}
		iccids = append(iccids, iccid)
	}

	// Server over TLS with the SGP.26 DPtls certificate.
	srv, err := smdp.NewServer(smdp.Config{Address: e2eAddress, Credentials: creds, Store: db, HSM: smdp.NewPoolHSM(pool),
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	tlsCert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: read(t, sgp26, "DPtls/CERT_S_SM_DP_VARO_TLS_NIST.der")}),
		read(t, sgp26, "DPtls/SK_S_SM_DP_TLS_NIST.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(smdp.HTTPOptions{}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{tlsCert}}}
	go hs.ServeTLS(ln, "", "")
	defer hs.Close()
	roots, err := euiccsim.LoadTLSRoots(filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"))
	if err != nil {
		t.Fatal(err)
	}

	i := 0
	for _, curve := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		for _, binding := range []euiccsim.Binding{euiccsim.BindingJSON, euiccsim.BindingASN1} {
			iccid := iccids[i]
			i++
			t.Run(curve.String()+"/"+binding.String(), func(t *testing.T) {
				cred, err := euiccsim.LoadSGP26(sgp26, curve)
				if err != nil {
					t.Fatal(err)
				}
				eu, err := euiccsim.New(cred)
				if err != nil {
					t.Fatal(err)
				}
				eid := eu.EID()
				if _, err := db.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: iccid}); err != nil {
					t.Fatal(err)
				}
				p, err := db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: iccid, ReleaseFlag: true})
				if err != nil {
					t.Fatal(err)
				}
				lpa := euiccsim.NewLPA(eu, euiccsim.LPAConfig{Binding: binding, RootCAs: roots,
					Resolve: map[string]string{e2eAddress: ln.Addr().String()}})
				got, err := lpa.Download(ctx, "LPA:1$"+e2eAddress+"$"+p.MatchingID)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, upp) {
					t.Fatal("the UPP the virtual eUICC installed differs from the stored one")
				}
				after, err := db.GetProfile(ctx, iccid)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := esim.EIDFromBCD(eid[:])
				if after.State != store.StateInstalled || after.EID != want.String() {
					t.Fatalf("store: %s bound to %q, want Installed bound to %s", after.State, after.EID, want)
				}
			})
		}
	}
}

func read(t *testing.T, dir, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// PoolHSM seals a one-time secret so that another adapter on the same token
// (another server) opens it, for its label only.
func TestPoolHSMSealsSecrets(t *testing.T) {
	ctx := context.Background()
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	if err := hsmpool.CreateSoftwareKeyFile(keyFile, "seal-pass"); err != nil {
		t.Fatal(err)
	}
	pool, err := hsmpool.Open(ctx, hsmpool.Config{Backend: hsmpool.BackendSoftware, SoftwareFile: keyFile, SoftwarePassphrase: "seal-pass"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.GenerateSecretKey(ctx, "kek-1", hsmpool.KindKEK); err != nil {
		t.Fatal(err)
	}
	a, b := smdp.NewPoolHSM(pool), smdp.NewPoolHSM(pool)
	defer a.Close()
	defer b.Close()
	z := bytes.Repeat([]byte{0x5A}, 32)
	ref, err := a.SealSecret(ctx, "otk:1", z)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains([]byte(ref), z) {
		t.Fatal("the reference holds the secret")
	}
	got, err := b.OpenSecret(ctx, "otk:1", ref)
	if err != nil || !bytes.Equal(got, z) {
		t.Fatalf("opened %x, %v", got, err)
	}
	if _, err := b.OpenSecret(ctx, "otk:2", ref); err == nil {
		t.Fatal("opened under another label")
	}
	if _, err := b.OpenSecret(ctx, "otk:1", ref[:len(ref)-2]+"AA"); err == nil {
		t.Fatal("opened a tampered reference")
	}
}
