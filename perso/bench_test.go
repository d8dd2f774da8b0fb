package perso

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/perso-esim/perso/internal/cputime"
)

const benchRecords = 100_000

// benchInput generates benchRecords realistic records (PINs, PUKs, ADM1,
// one OTA key set) in format, with the generator's batches.
func benchInput(b *testing.B, format Format, gen GenOptions) []byte {
	b.Helper()
	gen.Count, gen.ICCIDStart, gen.IMSIStart, gen.Rand = benchRecords, "8944150000000000017", "234150000000001", seeded(3)
	g, err := NewGenerator(gen)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, format, g.Schema(), OutFileHeader{Quantity: benchRecords, Transport: g.tk})
	if err != nil {
		b.Fatal(err)
	}
	for {
		rec, err := g.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			b.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// benchRead reads (parses, validates, builds Arrow batches) the whole input
// per iteration and reports MB/s and records/s.
func benchRead(b *testing.B, input []byte, open func(*bytes.Reader) (*Reader, error)) {
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cputime.Process()
	for i := 0; i < b.N; i++ {
		r, err := open(bytes.NewReader(input))
		if err != nil {
			b.Fatal(err)
		}
		n := int64(0)
		for {
			rec, err := r.Next(context.Background())
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += rec.NumRows()
			rec.Release()
		}
		if n != benchRecords || r.Stats().Rejected != 0 {
			b.Fatalf("read %d records, %d rejected", n, r.Stats().Rejected)
		}
		r.Close()
	}
	cpu := cputime.Process() - cpu0
	total := float64(benchRecords) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "records/s")
	// CPU time per record, and the throughput one fully used core gives:
	// robust against a shared, busy machine where wall time is not.
	b.ReportMetric(float64(cpu.Nanoseconds())/total, "cpu-ns/record")
	b.ReportMetric(total/cpu.Seconds(), "records/cpu-s")
}

var benchGen = GenOptions{Layout: Layout{OTAKVNs: []uint8{1}}}

var benchOpts = Options{Rules: Rules{MCC: "234", MNC: "15"}}

func BenchmarkReadCSV(b *testing.B) {
	in := benchInput(b, FormatCSV, benchGen)
	benchRead(b, in, func(r *bytes.Reader) (*Reader, error) { return NewCSVReader(r, benchOpts) })
}

func BenchmarkReadOut(b *testing.B) {
	in := benchInput(b, FormatOut, benchGen)
	benchRead(b, in, func(r *bytes.Reader) (*Reader, error) { return NewOutReader(r, benchOpts) })
}

func BenchmarkReadParquet(b *testing.B) {
	in := benchInput(b, FormatParquet, benchGen)
	benchRead(b, in, func(r *bytes.Reader) (*Reader, error) { return NewParquetReader(r, int64(len(in)), benchOpts) })
}

func BenchmarkReadArrow(b *testing.B) {
	in := benchInput(b, FormatArrow, benchGen)
	benchRead(b, in, func(r *bytes.Reader) (*Reader, error) { return NewArrowReader(r, benchOpts) })
}

// BenchmarkReadCSVTransport adds software transport decryption (AES-128-ECB)
// of ki and opc: one DecryptTransport call per column per batch.
func BenchmarkReadCSVTransport(b *testing.B) {
	key := make([]byte, 16)
	g := benchGen
	g.Transport, g.TransportKey = Transport{Key: 1, Alg: TransportAES128ECB}, key
	in := benchInput(b, FormatCSV, g)
	st := NewSoftwareTransport()
	if err := st.Add(TransportKeyLabel(1), key); err != nil {
		b.Fatal(err)
	}
	o := benchOpts
	o.Transport, o.Decrypter = g.Transport, st
	benchRead(b, in, func(r *bytes.Reader) (*Reader, error) { return NewCSVReader(r, o) })
}

// BenchmarkGenerate measures the test-data generator alone (Arrow batches).
func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		g, err := NewGenerator(GenOptions{Count: benchRecords, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001"})
		if err != nil {
			b.Fatal(err)
		}
		for {
			rec, err := g.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			rec.Release()
		}
		g.Close()
	}
	b.ReportMetric(float64(benchRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkGenerateCSV measures `perso testdata perso --format csv`:
// generation plus CSV formatting.
func BenchmarkGenerateCSV(b *testing.B) {
	b.ReportAllocs()
	cpu0 := cputime.Process()
	for i := 0; i < b.N; i++ {
		g, err := NewGenerator(GenOptions{Count: benchRecords, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001"})
		if err != nil {
			b.Fatal(err)
		}
		w, err := NewCSVWriter(io.Discard, g.Schema(), ',')
		if err != nil {
			b.Fatal(err)
		}
		for {
			rec, err := g.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Write(rec); err != nil {
				b.Fatal(err)
			}
			rec.Release()
		}
		w.Close()
		g.Close()
	}
	total := float64(benchRecords) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(total/(cputime.Process()-cpu0).Seconds(), "records/cpu-s")
}
