package perso

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/perso-esim/perso/esim"
)

// seeded returns a deterministic randomness source, so that the same
// records can be generated in plaintext and under a transport key.
func seeded(seed byte) io.Reader { return rand.NewChaCha8([32]byte{seed}) }

// writeFile writes the generator's batches in format to a temp file.
func writeFile(t *testing.T, g *Generator, format Format, h OutFileHeader) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "records."+string(format))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, format, g.Schema(), h)
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := g.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRoundTripEveryFormat(t *testing.T) {
	tkey := mustHex(t, "000102030405060708090a0b0c0d0e0f1011121314151617")
	op := mustHex(t, "cdc202d5123e20f62b6d676ac72cb318")
	base := GenOptions{Count: 1000, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001", OP: op, BatchSize: 300,
		Layout: Layout{OTAKVNs: []uint8{1, 3}}, MSISDNStart: "447700900000", SMSC: "+447785016005"}
	variants := []struct {
		name   string
		mutate func(*GenOptions)
	}{
		{"plaintext", func(*GenOptions) {}},
		{"AES-128-ECB transport", func(o *GenOptions) {
			o.Transport = Transport{Key: 7, Alg: TransportAES128ECB}
			o.TransportKey = tkey[:16]
		}},
		{"AES-128-CBC transport, 32-byte TUAK keys", func(o *GenOptions) {
			o.Transport = Transport{Key: 7, Alg: TransportAES128CBC}
			o.TransportKey = tkey[:16]
			o.Algorithm, o.Layout.KiBytes, o.Layout.OPcBytes, o.OP = esim.AlgorithmTUAK, 32, 32, nil
		}},
		{"3DES-CBC transport, OP only", func(o *GenOptions) {
			o.Transport = Transport{Key: 7, Alg: Transport3DESCBC}
			o.TransportKey = tkey
			o.OmitOPc = true
		}},
		{"3DES-ECB transport", func(o *GenOptions) { o.Transport = Transport{Key: 7, Alg: Transport3DESECB}; o.TransportKey = tkey }},
	}
	for _, format := range []Format{FormatCSV, FormatOut, FormatParquet, FormatArrow, FormatArrowFile} {
		for _, v := range variants {
			t.Run(string(format)+"/"+v.name, func(t *testing.T) {
				o := base
				v.mutate(&o)
				// what the reader must give back: the same records in plaintext, with OPc
				plain := o
				plain.Transport, plain.TransportKey, plain.OmitOPc, plain.Rand = Transport{}, nil, false, seeded(1)
				want := generate(t, plain)

				o.Rand = seeded(1)
				g, err := NewGenerator(o)
				if err != nil {
					t.Fatal(err)
				}
				h := OutFileHeader{Customer: "Acme", Quantity: o.Count, Type: "eSIM", Profile: "P", Batch: "B",
					Transport: g.tk, IMSI: o.IMSIStart, SerNb: o.ICCIDStart[:len(o.ICCIDStart)-1]}
				path := writeFile(t, g, format, h)
				g.Close()

				st := NewSoftwareTransport()
				if err := st.Add(TransportKeyLabel(7), o.TransportKey); o.TransportKey != nil && err != nil {
					t.Fatal(err)
				}
				var rejects RejectList
				ro := Options{Layout: Layout{KiBytes: o.Layout.KiBytes, OPcBytes: o.Layout.OPcBytes}, BatchSize: 128,
					Rejects: &rejects, Decrypter: st, DefaultAlgorithm: o.Algorithm, Rules: Rules{MCC: "234", MNC: "15"}}
				if format == FormatCSV && o.Transport.Key != 0 {
					ro.Transport = o.Transport // CSV carries no metadata
				}
				r, got, err := Open(path, ro)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				if got != format {
					t.Fatalf("detected %s, want %s", got, format)
				}
				recs := readAll(t, r)
				if len(rejects.Items) != 0 {
					t.Fatalf("rejects: %v", rejects.Items[:min(3, len(rejects.Items))])
				}
				if o.OmitOPc {
					for i := range want {
						want[i].OP = op
					}
				}
				sameRecords(t, recs, want)
			})
		}
	}
}

// TestTransportKeepEncrypted: an encrypted file is refused without a
// decrypter; with KeepEncrypted the secrets stay the transport ciphertext
// and the schema says under which key.
func TestTransportKeepEncrypted(t *testing.T) {
	tkey := mustHex(t, "000102030405060708090a0b0c0d0e0f")
	o := GenOptions{Count: 10, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001", Rand: seeded(2),
		Transport: Transport{Key: 2, Alg: "aes"}, TransportKey: tkey}
	g, err := NewGenerator(o)
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, g, FormatParquet, OutFileHeader{})
	if _, _, err := Open(path, Options{}); err == nil {
		t.Fatal("an encrypted file without a decrypter must be refused")
	}
	r, _, err := Open(path, Options{KeepEncrypted: true})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.Schema().Metadata().GetValue(MetaTransportKey); v != "transport-2" {
		t.Fatalf("schema metadata %s = %q, want transport-2", MetaTransportKey, v)
	}
	enc := readAll(t, r)
	o.Rand, o.Transport, o.TransportKey = seeded(2), Transport{}, nil
	plain := generate(t, o)
	for i := range plain {
		ct, err := TransportEncrypt("AES-128-ECB", tkey, plain[i].Ki, 16)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc[i].Ki, ct) || bytes.Equal(enc[i].Ki, plain[i].Ki) {
			t.Fatalf("record %d: kept ki is not the transport ciphertext", i)
		}
	}
}

// TestTransportOTAColumns: OTA key columns named in Transport.Columns are
// decrypted too; naming a non-key column is an error.
func TestTransportOTAColumns(t *testing.T) {
	tkey := mustHex(t, "2b7e151628aed2a6abf7158809cf4f3c")
	want := generate(t, GenOptions{Count: 40, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
		Rand: seeded(6), Layout: Layout{OTAKVNs: []uint8{1}}})
	b, err := NewBuilder(Layout{OTAKVNs: []uint8{1}}, nil, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		enc := want[i]
		for _, p := range []*Secret{&enc.Ki, &enc.OPc} {
			ct, _ := TransportEncrypt(TransportAES128CBC, tkey, *p, 16)
			*p = ct
		}
		kic, _ := TransportEncrypt(TransportAES128CBC, tkey, enc.OTA[0].KIc, 16)
		enc.OTA = []OTAKeySet{{KVN: 1, KIc: kic, KID: enc.OTA[0].KID, KIK: enc.OTA[0].KIK}}
		if err := b.Append(&enc); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecord()
	var buf bytes.Buffer
	w, _ := NewCSVWriter(&buf, rec.Schema(), ',')
	w.Write(rec)
	w.Close()
	rec.Release()
	st := NewSoftwareTransport()
	st.Add(TransportKeyLabel(4), tkey)
	tr := Transport{Key: 4, Alg: TransportAES128CBC, Columns: []string{"ki", "OPC", "kic1"}}
	r, err := NewCSVReader(bytes.NewReader(buf.Bytes()), Options{Transport: tr, Decrypter: st, BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, readAll(t, r), want)

	tr.Columns = []string{"ki", "pin1"}
	if _, err := NewCSVReader(bytes.NewReader(buf.Bytes()), Options{Transport: tr, Decrypter: st}); err == nil {
		t.Fatal("pin1 accepted as a transport column")
	}
}

// TestBatchOP: a batch-wide OP fills op and derives OPc for records
// without OPc (3GPP TS 35.208 test set 1), and leaves given OPc alone.
func TestBatchOP(t *testing.T) {
	in := "iccid,imsi,ki,opc\n" +
		"8944150000000000017,234150000000001,465b5ce8b199b49faa5f0a2ee238a6bc,\n" +
		"8944150000000000025,234150000000002,465b5ce8b199b49faa5f0a2ee238a6bc,00112233445566778899aabbccddeeff\n"
	r, err := NewCSVReader(bytes.NewReader([]byte(in)), Options{OP: mustHex(t, "cdc202d5123e20f62b6d676ac72cb318")})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r)
	if len(got) != 2 || !bytes.Equal(got[0].OPc, mustHex(t, "cd63cb71954a9f4e48a5994e37a02baf")) ||
		!bytes.Equal(got[1].OPc, mustHex(t, "00112233445566778899aabbccddeeff")) {
		t.Fatalf("batch OP: OPc not derived for the first record or overwritten for the second")
	}
}

// TestRecordReaderAdapter: the array.RecordReader view yields the same
// batches and reports a reject-threshold abort through Err.
func TestRecordReaderAdapter(t *testing.T) {
	want := generate(t, GenOptions{Count: 50, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001", Rand: seeded(8)})
	g, _ := NewGenerator(GenOptions{Count: 50, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001", Rand: seeded(8)})
	path := writeFile(t, g, FormatArrow, OutFileHeader{})
	r, _, err := Open(path, Options{BatchSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	rr := r.RecordReader(context.Background())
	var got []Record
	batches := 0
	for rr.Next() {
		batches++
		got = append(got, recordsOf(t, rr.Record())...)
	}
	if rr.Err() != nil || batches != 4 {
		t.Fatalf("err %v, %d batches, want nil and 4", rr.Err(), batches)
	}
	rr.Release()
	sameRecords(t, got, want)

	bad, err := os.ReadFile(filepath.Join("testdata", "bad_lines.csv"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := NewCSVReader(bytes.NewReader(bad), Options{MaxRejects: 1})
	if err != nil {
		t.Fatal(err)
	}
	rr2 := r2.RecordReader(context.Background())
	defer rr2.Release()
	for rr2.Next() {
	}
	if !errors.Is(rr2.Err(), ErrRejectLimit) {
		t.Fatalf("Err() = %v, want ErrRejectLimit", rr2.Err())
	}
}

// TestIPCAllocationCap: an oversized buffer length in an IPC input ends in
// errCorruptIPC instead of an unbounded allocation.
func TestIPCAllocationCap(t *testing.T) {
	small := cappedAllocator{ipcAllocator.Allocator, 1 << 10}
	_, err := guardIPC(func() ([]byte, error) { return small.Allocate(1 << 20), nil })
	if !errors.Is(err, errCorruptIPC) {
		t.Fatalf("oversized allocation: %v, want errCorruptIPC", err)
	}
	b, err := guardIPC(func() ([]byte, error) { return small.Allocate(512), nil })
	if err != nil || len(b) != 512 {
		t.Fatalf("allocation within the cap: %v", err)
	}
	// a truncated stream is an error, not a panic
	g, _ := NewGenerator(GenOptions{Count: 10, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001"})
	var buf bytes.Buffer
	w := NewArrowWriter(&buf, g.Schema())
	rec, _ := g.Next()
	w.Write(rec)
	rec.Release()
	w.Close()
	in := buf.Bytes()[:buf.Len()-200]
	r, err := NewArrowReader(bytes.NewReader(in), Options{})
	if err == nil {
		_, err = r.Next(context.Background())
	}
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("truncated IPC stream: %v, want an error", err)
	}
}
