package engine_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

const ts48 = "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"

// transportKey is the test transport key number 7 (AES-128-ECB),
// imported into the token; a software copy encrypts the generated input.
var transportKey, _ = hex.DecodeString("0c1d2e3f405162738495a6b7c8d9eafb")

// openHSM makes a SoftHSM2 token with a KEK and transport key 7.
func openHSM(t *testing.T) *hsmpool.Pool {
	t.Helper()
	tok := testenv.SoftHSM(t)
	ctx := context.Background()
	pool, err := hsmpool.Open(ctx, hsmpool.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 2})
	if err != nil {
		t.Fatalf("hsmpool.Open: %v", err)
	}
	t.Cleanup(func() { pool.Close() })
	// The token is shared by the tests of this process: the keys may exist.
	if err := pool.GenerateSecretKey(ctx, "kek-1", hsmpool.KindKEK); err != nil && !errors.Is(err, hsmpool.ErrKeyExists) {
		t.Fatal(err)
	}
	if err := pool.ImportSecretKey(ctx, perso.TransportKeyLabel(7), hsmpool.KindTransportAES, bytes.Clone(transportKey)); err != nil && !errors.Is(err, hsmpool.ErrKeyExists) {
		t.Fatal(err)
	}
	return pool
}

// stores opens an empty store of each backend.
var stores = []struct {
	name string
	open func(t *testing.T) (driver, dsn string)
}{
	{"sqlite", func(t *testing.T) (string, string) { return "sqlite", filepath.Join(t.TempDir(), "perso.db") }},
	{"postgres", func(t *testing.T) (string, string) { return "postgres", testenv.PostgresSchemaDSN(t) }},
}

func openStore(t *testing.T, driver, dsn string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// writeInput generates n records (ICCIDs from iccidStart) into a file of
// the format; transport encrypts ki/opc under transport key 7.
func writeInput(t *testing.T, dir string, format perso.Format, n int, iccidStart, imsiStart string, transport bool) string {
	t.Helper()
	o := perso.GenOptions{Count: int64(n), ICCIDStart: iccidStart, IMSIStart: imsiStart,
		Layout: perso.Layout{OTAKVNs: []uint8{1, 2}}, Algorithm: esim.AlgorithmTest, BatchSize: 300,
		ProfileName: "perso test", ServiceProvider: "perso"}
	if transport {
		// Milenage: OPc is encrypted too (and .out files carry an opc column).
		o.Algorithm = esim.AlgorithmMilenage
		o.Transport, o.TransportKey = perso.Transport{Key: 7, Alg: perso.TransportAES128ECB}, transportKey
	}
	g, err := perso.NewGenerator(o)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ext := string(format)
	if format == perso.FormatArrow {
		ext = "arrows"
	}
	path := filepath.Join(dir, fmt.Sprintf("in-%s-%v.%s", format, transport, ext))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := perso.OutFileHeader{Customer: "test", Quantity: int64(n), IMSI: imsiStart, SerNb: iccidStart[:len(iccidStart)-1]}
	if transport {
		h.Transport = o.Transport
	}
	w, err := perso.NewWriter(f, format, g.Schema(), h)
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
	return path
}

// readRecords reads every good record of an input, by ICCID.
func readRecords(t *testing.T, path string, pool *hsmpool.Pool) map[string]perso.Record {
	t.Helper()
	r, _, err := perso.Open(path, perso.Options{Decrypter: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string]perso.Record{}
	for {
		b, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < int(b.NumRows()); i++ {
			rec, err := perso.RecordAt(b, i)
			if err != nil {
				t.Fatal(err)
			}
			out[rec.ICCID] = rec
		}
		b.Release()
	}
}

// TestRunEveryFormatBothStores: generated records in the four input
// formats (the .out one transport-encrypted), a TS.48 template and both
// stores; a random sample of stored profiles, unsealed, bound and opened
// as an eUICC would (bpp.Open), equals personalising the same records
// directly; bad lines are rejected with their input line; a second batch
// overlapping the first reports conflicts and overwrites nothing.
func TestRunEveryFormatBothStores(t *testing.T) {
	pool := openHSM(t)
	der, err := os.ReadFile(testenv.Path(t, "ts48", ts48))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := template.Compile(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	formats := []struct {
		format    perso.Format
		transport bool
	}{{perso.FormatCSV, false}, {perso.FormatOut, true}, {perso.FormatParquet, false}, {perso.FormatArrow, false}}
	const n = 700
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			driver, dsn := st.open(t)
			db := openStore(t, driver, dsn)
			for fi, f := range formats {
				t.Run(string(f.format), func(t *testing.T) {
					iccid, err := perso.ICCIDWithCheck(fmt.Sprintf("894944999%d%08d", fi, 100))
					if err != nil {
						t.Fatal(err)
					}
					path := writeInput(t, dir, f.format, n, iccid, fmt.Sprintf("0010109%d0000001", fi), f.transport)
					badLines := 0
					if f.format == perso.FormatCSV {
						badLines = appendBadLines(t, path)
					}
					var rejects perso.RejectList
					rep, err := engine.Run(context.Background(), db, pool, engine.Spec{Input: path, Template: der,
						ProfileType: "ts48", Rejects: &rejects}, engine.Config{ChunkSize: 128, Exclusive: true})
					if err != nil {
						t.Fatal(err)
					}
					if !rep.Complete || rep.Stored != n || rep.Rejected != int64(badLines) || rep.Conflicts != 0 ||
						rep.RecordsRead != int64(n+badLines) || rep.Chunks != (n+127)/128 {
						t.Fatalf("report %+v; want %d stored, %d rejected, %d chunks", rep, n, badLines, (n+127)/128)
					}
					if len(rejects.Items) != badLines {
						t.Fatalf("%d rejects reported, want %d: %v", len(rejects.Items), badLines, rejects.Items)
					}
					for _, r := range rejects.Items {
						if r.Line < 2 || r.Reason == "" {
							t.Errorf("reject without its input line: %+v", r)
						}
					}
					if rep.HSMCallsPerProfile > 0.1 || rep.CPUMicrosPerProf <= 0 || rep.ICCIDFirst != iccid {
						t.Errorf("report figures: %+v", rep)
					}
					checkSample(t, db, pool, plan, readRecords(t, path, pool), 5)
				})
			}
			// A second batch over the CSV's ICCIDs (other input): conflicts.
			iccid, _ := perso.ICCIDWithCheck(fmt.Sprintf("894944999%d%08d", 0, 100))
			path := writeInput(t, t.TempDir(), perso.FormatCSV, 50, iccid, "001010990000001", false)
			var rejects perso.RejectList
			rep, err := engine.Run(context.Background(), db, pool, engine.Spec{Input: path, Template: der,
				ProfileType: "ts48", Rejects: &rejects}, engine.Config{Exclusive: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Conflicts != 50 || rep.Stored != 0 || len(rejects.Items) != 50 || !strings.Contains(rejects.Items[0].Reason, "held by batch") {
				t.Fatalf("overlapping batch: %+v, rejects %d", rep, len(rejects.Items))
			}
			p, err := db.GetProfile(context.Background(), iccid)
			if err != nil || p.BatchID == rep.BatchID {
				t.Fatalf("conflicting ICCID %s moved to the new batch (%v)", iccid, err)
			}
		})
	}
}

// appendBadLines appends lines the reader refuses and returns how many.
func appendBadLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	last := strings.Split(lines[len(lines)-1], ",")
	bad := append([]string(nil), last...)
	bad[0] = "8949449999999999990" // wrong Luhn digit (and unknown)
	short := append([]string(nil), last...)
	short[2] = "0011" // Ki too short
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, strings.Join(bad, ","))
	fmt.Fprintln(f, strings.Join(short, ","))
	return 2
}

// checkSample opens k random stored profiles of recs as an eUICC and
// compares them with personalising the record directly.
func checkSample(t *testing.T, db *store.DB, pool *hsmpool.Pool, plan *template.Plan, recs map[string]perso.Record, k int) {
	t.Helper()
	ctx := context.Background()
	var iccids []string
	for id := range recs {
		iccids = append(iccids, id)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := bpp.NewSoftwareSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := bpp.NewSoftwareKeyAgreement(esim.CurveP256)
	if err != nil {
		t.Fatal(err)
	}
	eid, _ := hex.DecodeString("89049032123451234512345678901235")
	for range k {
		id := iccids[mrand.IntN(len(iccids))]
		rec := recs[id]
		vals, err := engine.Values(&rec, len(plan.Algorithms()) == 1)
		if err != nil {
			t.Fatal(err)
		}
		want, err := plan.Apply(&vals, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := db.GetProfile(ctx, id)
		if err != nil {
			t.Fatalf("stored profile %s: %v", id, err)
		}
		b, err := db.GetBatch(ctx, p.BatchID)
		if err != nil {
			t.Fatal(err)
		}
		flat, err := pool.UnprotectPPK(ctx, b.KeyBlob, id, p.ProtectedPPK)
		if err != nil {
			t.Fatalf("unsealing the PPK of %s: %v", id, err)
		}
		ppk, err := bpp.PPKFromBytes(flat)
		clear(flat)
		if err != nil {
			t.Fatal(err)
		}
		otk, err := bpp.GenerateOneTimeKey(esim.CurveP256, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ic, err := esim.ParseICCID(id)
		if err != nil {
			t.Fatal(err)
		}
		pkg, err := bpp.Bind(ctx, signer, ka, &bpp.BindParams{TransactionID: []byte{1, 2, 3, 4}, HostID: []byte("perso-test"),
			EID: eid, EUICCOtpk: otk.PublicKey(), Metadata: &bpp.StoreMetadata{ICCID: ic, ServiceProviderName: "perso",
				ProfileName: "perso test"}}, &bpp.PPP{Segments: p.Segments, PPK: ppk})
		ppk.Zero()
		if err != nil {
			t.Fatalf("binding %s: %v", id, err)
		}
		opened, err := bpp.Open(pkg, otk, eid, signer.Public())
		if err != nil {
			t.Fatalf("opening %s: %v", id, err)
		}
		if !bytes.Equal(opened.UPP, want) {
			t.Fatalf("%s: the opened UPP differs from personalising the record directly", id)
		}
	}
}
