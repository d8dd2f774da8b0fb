package perso

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// fuzzRead reads input with newReader and checks the reader's invariants:
// no panic, every row accepted or rejected, reject lines within the
// input, accepted records valid, no 12+ hex-digit run of the input in any
// reject, and accepted records survive a CSV write/read round trip.
func fuzzRead(t *testing.T, input []byte, open func(io.Reader, Options) (*Reader, error)) {
	var rejects RejectList
	r, err := open(bytes.NewReader(input), Options{BatchSize: 4, Rejects: &rejects})
	if err != nil {
		if hexRunIn(input, err.Error()) {
			t.Fatalf("header error leaks input: %v", err)
		}
		return
	}
	var recs []Record
	var schemaLayout *Layout
	var final error
	for {
		rec, err := r.Next(context.Background())
		if err != nil {
			final = err
			break
		}
		if schemaLayout == nil {
			l, err := LayoutOf(rec.Schema())
			if err != nil {
				t.Fatal(err)
			}
			schemaLayout = &l
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			pr, err := RecordAt(rec, i)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, pr)
		}
		rec.Release()
	}
	if !errors.Is(final, io.EOF) {
		// only I/O-level failures end a read early; none happen on a bytes.Reader
		t.Fatalf("read ended with %v", final)
	}
	st := r.Stats()
	if st.Rows != st.Records+st.Rejected || st.Records != int64(len(recs)) {
		t.Fatalf("stats %+v for %d records", st, len(recs))
	}
	lines := int64(bytes.Count(input, []byte{'\n'})) + 1
	for _, rj := range rejects.Items {
		if rj.Line < 1 || rj.Line > lines {
			t.Fatalf("reject line %d outside 1..%d: %s", rj.Line, lines, rj)
		}
		if hexRunIn(input, rj.String()) {
			t.Fatalf("reject shows part of the input: %s", rj)
		}
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		if !esim.LuhnValid([]byte(rec.ICCID)) || len(rec.IMSI) < 6 || len(rec.IMSI) > 15 || !allDigits([]byte(rec.IMSI)) || len(rec.Ki) != 16 {
			t.Fatalf("accepted an invalid record (ICCID %q IMSI %q Ki %d bytes)", rec.ICCID, rec.IMSI, len(rec.Ki))
		}
		if seen[rec.ICCID] || seen["imsi"+rec.IMSI] {
			t.Fatalf("accepted a duplicate ICCID or IMSI")
		}
		seen[rec.ICCID], seen["imsi"+rec.IMSI] = true, true
	}
	if len(recs) == 0 {
		return
	}
	// round trip through the CSV writer
	b, err := NewBuilder(*schemaLayout, nil, len(recs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := b.Append(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := NewCSVWriter(&buf, rec.Schema(), ',')
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var again RejectList
	r2, err := NewCSVReader(&buf, Options{Rejects: &again, BatchSize: 16})
	if err != nil {
		t.Fatalf("re-reading the written CSV: %v", err)
	}
	var got []Record
	for {
		rec, err := r2.Next(context.Background())
		if err != nil {
			break
		}
		got = append(got, recordsOf(t, rec)...)
		rec.Release()
	}
	if len(again.Items) > 0 {
		t.Fatalf("written CSV rejected on re-read: %v", again.Items[0])
	}
	sameRecords(t, got, recs)
}

var fuzzHex = regexp.MustCompile(`[0-9A-Fa-f]{12,}`)

// hexRunIn reports whether out contains a 12-character window of a hex run
// (with at least one letter) of the input.
func hexRunIn(input []byte, out string) bool {
	lo := strings.ToLower(out)
	for _, m := range fuzzHex.FindAll(input, -1) {
		if bytes.Trim(m, "0123456789") == nil || len(bytes.Trim(m, "0123456789")) == 0 {
			continue
		}
		for i := 0; i+12 <= len(m); i++ {
			if strings.Contains(lo, strings.ToLower(string(m[i:i+12]))) {
				return true
			}
		}
	}
	return false
}

func addSeeds(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzCSVReader(f *testing.F) {
	addSeeds(f, "*.csv")
	f.Add([]byte("iccid,imsi,ki,opc\n8944150000000000017,234150000000001,000102030405060708090a0b0c0d0e0f,000102030405060708090a0b0c0d0e0f\n"))
	f.Add([]byte("ICCID;IMSI;KI;OP\n\"8944150000000000017\";\"23415\n0000000001\";00;\"\"\"\"\n"))
	f.Add([]byte("iccid,imsi,ki,opc,kic1,pin1,spn\r\n8944150000000000017,234150000000001,000102030405060708090a0b0c0d0e0f,000102030405060708090a0b0c0d0e0f,,1234,\"a,\"\"b\"\r\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzRead(t, input, NewCSVReader)
	})
}

func FuzzOutReader(f *testing.F) {
	addSeeds(f, "*.out")
	f.Add([]byte("*\n* HEADER DESCRIPTION\n*\nQuantity: 1\n*\n* OUTPUT VARIABLES\n*\nvar_out: ICCID/IMSI/KI/OPC\n" +
		"8944150000000000017 234150000000001 000102030405060708090A0B0C0D0E0F 000102030405060708090A0B0C0D0E0F\n"))
	f.Add([]byte("var_out:ICCID/IMSI/KI/OPC/KIC2\n1 2 3 4 5\n\n*\n"))
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzRead(t, input, NewOutReader)
	})
}

// FuzzParquetReader: corrupt Parquet input ends in an error, never a panic,
// and whatever is accepted is valid.
func FuzzParquetReader(f *testing.F) {
	for _, seed := range []byte{1, 2} {
		g, err := NewGenerator(GenOptions{Count: 20, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
			Rand: seeded(seed), BatchSize: 8, Layout: Layout{OTAKVNs: []uint8{1}}})
		if err != nil {
			f.Fatal(err)
		}
		var buf bytes.Buffer
		w, _ := NewParquetWriter(&buf, g.Schema())
		for {
			rec, err := g.Next()
			if err != nil {
				break
			}
			w.Write(rec)
			rec.Release()
		}
		w.Close()
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		r, err := NewParquetReader(bytes.NewReader(input), int64(len(input)), Options{BatchSize: 7})
		if err != nil {
			return
		}
		defer r.Close()
		for {
			rec, err := r.Next(context.Background())
			if err != nil {
				return
			}
			for _, pr := range recordsOf(t, rec) {
				if !esim.LuhnValid([]byte(pr.ICCID)) || len(pr.Ki) != 16 {
					t.Fatalf("accepted an invalid record")
				}
			}
			rec.Release()
		}
	})
}
