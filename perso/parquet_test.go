package perso

import (
	"bytes"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// platformRow is how a data platform might lay out personalisation data:
// other column names and cases, IMSI as a number, Ki as hex text, OPc as raw
// bytes, dictionary-encoded and optional columns, an unrelated column.
type platformRow struct {
	ICCID   string  `parquet:"ICCID"`
	IMSI    int64   `parquet:"Imsi"`
	Ki      string  `parquet:"KI"`
	OPc     []byte  `parquet:"opc"`
	Alg     string  `parquet:"algorithm,dict"`
	PIN1    *string `parquet:"PIN1,optional,dict"`
	SPN     *string `parquet:"spn,optional"`
	BatchID string  `parquet:"batch_id,dict"`
}

func TestParquetForeignLayout(t *testing.T) {
	recs := generate(t, GenOptions{Count: 1000, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001", Rand: seeded(4)})
	var buf bytes.Buffer
	// small pages and row groups: values of one row sit in different pages
	w := parquet.NewGenericWriter[platformRow](&buf, parquet.PageBufferSize(700), parquet.MaxRowsPerRowGroup(333))
	spn := "Acme"
	const badRow = 500 // 1-based row with a bad Luhn digit
	for i, r := range recs {
		imsi, _ := strconv.ParseInt(r.IMSI, 10, 64)
		row := platformRow{ICCID: r.ICCID, IMSI: imsi, Ki: hex.EncodeToString(r.Ki), OPc: r.OPc, Alg: "Milenage", BatchID: "B1"}
		if i%3 != 0 {
			pin := strings.TrimRight(string(r.PIN1), "\xff")
			row.PIN1 = &pin
		}
		if i%2 == 0 {
			row.SPN = &spn
		}
		if i+1 == badRow {
			row.ICCID = r.ICCID[:18] + string('0'+(r.ICCID[18]-'0'+1)%10)
		}
		if _, err := w.Write([]platformRow{row}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var rejects RejectList
	rd, err := NewParquetReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()), Options{Rejects: &rejects, BatchSize: 100, File: "platform.parquet"})
	if err != nil {
		t.Fatal(err)
	}
	if ig := rd.IgnoredColumns(); len(ig) != 1 || ig[0] != "batch_id" {
		t.Fatalf("ignored columns %v, want [batch_id]", ig)
	}
	got := readAll(t, rd)
	if len(rejects.Items) != 1 || rejects.Items[0].Line != badRow || rejects.Items[0].Column != ColICCID {
		t.Fatalf("rejects %v, want one iccid reject on row %d", rejects.Items, badRow)
	}
	var want []Record
	for i, r := range recs {
		if i+1 == badRow {
			continue
		}
		r.PUK1, r.PIN2, r.PUK2, r.ADM1 = nil, nil, nil, nil
		if i%3 == 0 {
			r.PIN1 = nil
		}
		if i%2 == 0 {
			r.SPN = spn
		}
		want = append(want, r)
	}
	sameRecords(t, got, want)
}

// TestParquetWriterRowGroups: the writer cuts row groups at the configured
// size, also inside a batch, and the file reads back whole.
func TestParquetWriterRowGroups(t *testing.T) {
	old := parquetRowsPerGroup
	parquetRowsPerGroup = 300
	defer func() { parquetRowsPerGroup = old }()
	g, err := NewGenerator(GenOptions{Count: 1000, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
		Rand: seeded(5), BatchSize: 256, Layout: Layout{OTAKVNs: []uint8{2}}, SPN: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, g, FormatParquet, OutFileHeader{})
	want := generate(t, GenOptions{Count: 1000, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
		Rand: seeded(5), Layout: Layout{OTAKVNs: []uint8{2}}, SPN: "Acme"})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, rg := range pf.RowGroups() {
		sizes = append(sizes, rg.NumRows())
	}
	if len(sizes) != 4 || sizes[0] != 300 || sizes[3] != 100 {
		t.Fatalf("row groups %v, want [300 300 300 100]", sizes)
	}
	r, err := NewParquetReader(f, st.Size(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, readAll(t, r), want)
}
