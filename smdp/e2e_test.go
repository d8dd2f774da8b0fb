package smdp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/smdp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

const e2eAddress = "testsmdpplus1.example.com"

// tokenPool opens a pool on the process's SoftHSM2 token (internal/testenv)
// holding a KEK and the SGP.26 DPauth/DPpb keys of both curves, as `perso
// hsm init --import-sgp26` leaves it; the keys are provisioned once per
// process.
func tokenPool(t *testing.T) *hsmpool.Pool {
	t.Helper()
	tok := testenv.SoftHSM(t)
	ctx := context.Background()
	pool, err := hsmpool.Open(ctx, hsmpool.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 2})
	if err != nil {
		t.Fatalf("hsmpool.Open: %v", err)
	}
	t.Cleanup(func() { pool.Close() })
	if _, _, err := pool.PublicKey(ctx, hsmpool.DPpbLabel(esim.CurveBrainpoolP256r1)); err == nil {
		return pool
	} else if !errors.Is(err, hsmpool.ErrKeyNotFound) {
		t.Fatal(err)
	}
	if err := pool.GenerateSecretKey(ctx, "kek-1", hsmpool.KindKEK); err != nil {
		t.Fatal(err)
	}
	sgp26 := testenv.Path(t, "sgp26")
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		n := c.SGP26Name()
		for label, file := range map[string]string{hsmpool.DPauthLabel(c): "DPauth/SK_S_SM_DPauth_ECDSA_" + n + ".pem",
			hsmpool.DPpbLabel(c): "DPpb/SK_S_SM_DPpb_ECDSA_" + n + ".pem"} {
			if _, _, err := pool.ImportECKeyPEM(ctx, label, read(t, sgp26, file)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return pool
}

// sgp26Credentials are the SM-DP+ certificates of both curves.
func sgp26Credentials(t *testing.T) []smdp.Credentials {
	t.Helper()
	sgp26 := testenv.Path(t, "sgp26")
	var creds []smdp.Credentials
	for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
		n := c.SGP26Name()
		var cc [3]*rsp.Certificate
		for i, f := range []string{"CertificateIssuer/CERT_CI_ECDSA_" + n + ".der", "DPauth/CERT_S_SM_DPauth_ECDSA_" + n + ".der", "DPpb/CERT_S_SM_DPpb_ECDSA_" + n + ".der"} {
			var err error
			if cc[i], err = rsp.ParseCertificate(read(t, sgp26, f)); err != nil {
				t.Fatal(err)
			}
		}
		creds = append(creds, smdp.Credentials{CI: cc[0], DPauth: cc[1], DPpb: cc[2]})
	}
	return creds
}

// serveTLS serves h over TLS with the SGP.26 DPtls certificate on a local
// port and returns the listener's address and the roots an LPA trusts.
func serveTLS(t *testing.T, h http.Handler) (string, *x509.CertPool) {
	t.Helper()
	sgp26 := testenv.Path(t, "sgp26")
	tlsCert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: read(t, sgp26, "DPtls/CERT_S_SM_DP_VARO_TLS_NIST.der")}),
		read(t, sgp26, "DPtls/SK_S_SM_DP_TLS_NIST.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{tlsCert}}}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	roots, err := euiccsim.LoadTLSRoots(filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"))
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), roots
}

// batchInput writes n generated records (CSV) and returns its path and
// the UPP each record personalises to, by ICCID, computed directly with
// the template (not through the engine).
func batchInput(t *testing.T, der []byte, n int) (string, map[string][]byte, map[string]string) {
	t.Helper()
	first, err := perso.ICCIDWithCheck("894944999700000010")
	if err != nil {
		t.Fatal(err)
	}
	g, err := perso.NewGenerator(perso.GenOptions{Count: int64(n), ICCIDStart: first, IMSIStart: "001010970000001",
		Layout: perso.Layout{OTAKVNs: []uint8{1, 2}}, Algorithm: esim.AlgorithmMilenage, BatchSize: 64,
		ProfileName: "perso e2e", ServiceProvider: "perso"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	path := filepath.Join(t.TempDir(), "in.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := perso.NewWriter(f, perso.FormatCSV, g.Schema(), perso.OutFileHeader{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := g.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		err = w.Write(b)
		b.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	plan, err := template.Compile(der)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := perso.Open(path, perso.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	upps, imsis := map[string][]byte{}, map[string]string{}
	for {
		b, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range int(b.NumRows()) {
			rec, err := perso.RecordAt(b, i)
			if err != nil {
				t.Fatal(err)
			}
			v, err := engine.Values(&rec, len(plan.Algorithms()) == 1)
			if err != nil {
				t.Fatal(err)
			}
			if upps[rec.ICCID], err = plan.Apply(&v, nil); err != nil {
				t.Fatal(err)
			}
			imsis[rec.ICCID] = rec.IMSI
		}
		b.Release()
	}
	if len(upps) != n {
		t.Fatalf("read back %d records of %d", len(upps), n)
	}
	return path, upps, imsis
}

// TestEndToEnd: records loaded by the batch engine (engine.Run, as `perso
// run`) into the store with PPKs sealed on a SoftHSM2 token → order
// through the store → download over HTTPS (SGP.26 DPtls certificate) by the
// virtual eUICC and LPA of euiccsim, the SM-DP+ signing and binding with
// the token's SGP.26 DPauth/DPpb keys → install notification → the store
// shows Installed and the UPP the eUICC recovered equals personalising the
// record directly. Both curves, both bindings.
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	pool := tokenPool(t)
	der := read(t, testenv.Path(t, "ts48"), "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der")
	const n = 8
	input, upps, imsis := batchInput(t, der, n)

	db, err := store.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "perso.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := engine.Run(ctx, db, pool, engine.Spec{Input: input, Template: der, ProfileType: "ts48"}, engine.Config{Exclusive: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Stored != n {
		t.Fatalf("engine report %+v, want %d stored", rep, n)
	}

	srv, err := smdp.NewServer(smdp.Config{Address: e2eAddress, Credentials: sgp26Credentials(t), Store: db, HSM: smdp.NewPoolHSM(pool),
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr, roots := serveTLS(t, srv.Handler(smdp.HTTPOptions{}))

	var iccids []string
	for id := range upps {
		iccids = append(iccids, id)
	}
	slices.Sort(iccids)
	sgp26 := testenv.Path(t, "sgp26")
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
				if p.IMSI != imsis[iccid] {
					t.Fatalf("stored IMSI %s, the record's %s", p.IMSI, imsis[iccid])
				}
				lpa := euiccsim.NewLPA(eu, euiccsim.LPAConfig{Binding: binding, RootCAs: roots,
					Resolve: map[string]string{e2eAddress: addr}})
				got, err := lpa.Download(ctx, "LPA:1$"+e2eAddress+"$"+p.MatchingID)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, upps[iccid]) {
					t.Fatal("the UPP the virtual eUICC installed differs from personalising the record directly")
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
	pool := tokenPool(t)
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
