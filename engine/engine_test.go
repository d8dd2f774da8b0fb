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

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

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
	return writeInputSpoiled(t, dir, format, n, iccidStart, imsiStart, transport, nil)
}

// spoilage makes one generated record bad: its string column col (iccid,
// imsi) gets value(the generated value).
type spoilage struct {
	col   string
	value func(string) string
}

// writeInputSpoiled is writeInput with the records at the spoil keys (0-based
// record numbers) made bad before they are written, in every format alike.
func writeInputSpoiled(t *testing.T, dir string, format perso.Format, n int, iccidStart, imsiStart string, transport bool,
	spoil map[int]spoilage) string {
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
	for first := 0; ; {
		b, err := g.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := first; i < first+int(b.NumRows()); i++ {
			if sp, ok := spoil[i]; ok {
				b = spoilRecord(t, b, sp, i-first)
			}
		}
		first += int(b.NumRows())
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

// spoilRecord returns b with row i's column sp.col replaced (b is
// released).
func spoilRecord(t *testing.T, b arrow.Record, sp spoilage, row int) arrow.Record {
	t.Helper()
	defer b.Release()
	idx := b.Schema().FieldIndices(sp.col)
	if len(idx) != 1 {
		t.Fatalf("no column %s", sp.col)
	}
	old, ok := b.Column(idx[0]).(*array.String)
	if !ok {
		t.Fatalf("column %s is %s, not a string", sp.col, b.Column(idx[0]).DataType())
	}
	bld := array.NewStringBuilder(memory.DefaultAllocator)
	defer bld.Release()
	for i := 0; i < old.Len(); i++ {
		switch {
		case i == row:
			bld.Append(sp.value(old.Value(i)))
		case old.IsNull(i):
			bld.AppendNull()
		default:
			bld.Append(old.Value(i))
		}
	}
	col := bld.NewArray()
	defer col.Release()
	cols := append([]arrow.Array(nil), b.Columns()...)
	cols[idx[0]] = col
	return array.NewRecord(b.Schema(), cols, b.NumRows())
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
					// Two records made bad in every format (past the 50
					// the overlapping batch below takes over): a bad Luhn
					// digit, a 16-digit IMSI.
					spoil := map[int]spoilage{
						137: {"iccid", func(v string) string { return v[:len(v)-1] + string('0'+(v[len(v)-1]-'0'+1)%10) }},
						402: {"imsi", func(string) string { return "1234567890123456" }},
					}
					path := writeInputSpoiled(t, dir, f.format, n, iccid, fmt.Sprintf("0010109%d0000001", fi), f.transport, spoil)
					// Where each bad record is: its line in a text file
					// (found by its value), its 1-based row number in
					// Parquet and Arrow.
					want := map[int64]string{}
					for row, sp := range spoil {
						switch f.format {
						case perso.FormatCSV, perso.FormatOut:
							want[lineOf(t, path, sp.col, row)] = sp.col
						default:
							want[int64(row)+1] = sp.col
						}
					}
					if f.format == perso.FormatCSV {
						if line := lineOf(t, path, "iccid", 137); line != 139 {
							t.Fatalf("the bad ICCID is on line %d of the CSV, want 139 (the header, then a record a line)", line)
						}
						appendBadLines(t, path)
						want[n+2], want[n+3] = "iccid", "ki" // after the header and n records
					}
					bad := len(want)
					var rejects perso.RejectList
					rep, err := engine.Run(context.Background(), db, pool, engine.Spec{Input: path, Template: der,
						ProfileType: "ts48", Rejects: &rejects}, engine.Config{ChunkSize: 128, Exclusive: true})
					if err != nil {
						t.Fatal(err)
					}
					good := n - len(spoil)
					if !rep.Complete || rep.Stored != int64(good) || rep.Rejected != int64(bad) || rep.Conflicts != 0 ||
						rep.RecordsRead != int64(n+bad-len(spoil)) || rep.Chunks != (good+127)/128 {
						t.Fatalf("report %+v; want %d stored, %d rejected, %d chunks", rep, good, bad, (good+127)/128)
					}
					got := map[int64]string{}
					for _, r := range rejects.Items {
						got[r.Line] = r.Column
						if r.Reason == "" {
							t.Errorf("reject without a reason: %+v", r)
						}
					}
					if len(rejects.Items) != bad || fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("rejects (line: column) %v, want %v: %v", got, want, rejects.Items)
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

// lineOf returns the 1-based line of a text input that holds the record
// spoiled at row for col: the line with the spoiled value as a field.
func lineOf(t *testing.T, path, col string, row int) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []int64
	for i, line := range strings.Split(string(data), "\n") {
		for _, field := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if col == "imsi" && field == "1234567890123456" || col == "iccid" && len(field) == 19 && !luhnOK(field) {
				found = append(found, int64(i)+1)
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: the spoiled %s of record %d is on lines %v, want one line", path, col, row, found)
	}
	return found[0]
}

// luhnOK checks an all-digit string's Luhn check digit.
func luhnOK(s string) bool {
	sum := 0
	for i := 0; i < len(s); i++ {
		d := int(s[len(s)-1-i] - '0')
		if d < 0 || d > 9 {
			return true // not digits: not the spoiled ICCID
		}
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
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
	bad[0] = "8949449999999999991" // wrong Luhn digit (…990 would be right); its IMSI, the last line's, is found first
	bad[1] = "001019999999999"     // so that the ICCID is what the reader refuses, not a duplicate IMSI
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

// TestRunRefusesOtherInputUnderBatch: a batch ID already used with one
// input, template and profile type refuses a run with another input,
// another template or another profile type (ErrBatchMismatch, saying which
// differs and what to do), and the batch stays as it was: nothing of the
// other input is stored.
func TestRunRefusesOtherInputUnderBatch(t *testing.T) {
	pool := openHSM(t)
	der, err := os.ReadFile(testenv.Path(t, "ts48", ts48))
	if err != nil {
		t.Fatal(err)
	}
	der2, err := os.ReadFile(testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"))
	if err != nil {
		t.Fatal(err)
	}
	for si, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			driver, dsn := st.open(t)
			db := openStore(t, driver, dsn)
			dir := t.TempDir()
			iccid, _ := perso.ICCIDWithCheck(fmt.Sprintf("894944997%d%08d", si, 100))
			first := writeInput(t, dir, perso.FormatCSV, 60, iccid, fmt.Sprintf("0010107%d0000001", si), false)
			spec := engine.Spec{BatchID: "same", Input: first, Template: der, ProfileType: "ts48"}
			rep, err := engine.Run(context.Background(), db, pool, spec, engine.Config{ChunkSize: 25, Exclusive: true})
			if err != nil || !rep.Complete || rep.Stored != 60 {
				t.Fatalf("first run: %v, %+v", err, rep)
			}
			otherICCID, _ := perso.ICCIDWithCheck(fmt.Sprintf("894944996%d%08d", si, 100))
			other := writeInput(t, t.TempDir(), perso.FormatCSV, 40, otherICCID, fmt.Sprintf("0010106%d0000001", si), false)
			for _, tc := range []struct {
				name, says string
				change     func(*engine.Spec)
			}{
				{"other input", "input SHA-256", func(s *engine.Spec) { s.Input = other }},
				{"other template", "has template ", func(s *engine.Spec) { s.Template = der2 }},
				{"other profile type", `profile type "ts48", this run "other"`, func(s *engine.Spec) { s.ProfileType = "other" }},
			} {
				s := spec
				tc.change(&s)
				_, err := engine.Run(context.Background(), db, pool, s, engine.Config{ChunkSize: 25, Exclusive: true})
				if !errors.Is(err, engine.ErrBatchMismatch) || !strings.Contains(err.Error(), tc.says) ||
					!strings.Contains(err.Error(), "re-run with the same ones, or choose another batch ID") {
					t.Errorf("%s under batch same: %v, want ErrBatchMismatch naming the %s and what to do", tc.name, err, tc.says)
				}
			}
			b, err := db.GetBatch(context.Background(), "same")
			if err != nil || b.Profiles != 60 || b.Records != 60 || b.ChunksDone != 3 || b.ProfileType != "ts48" {
				t.Errorf("batch same after the refused runs: %+v (%v)", b, err)
			}
			if _, err := db.GetProfile(context.Background(), otherICCID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the other input's first ICCID: %v, want not stored", err)
			}
		})
	}
}
