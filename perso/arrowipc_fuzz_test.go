package perso

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/perso-esim/perso/esim"
)

// arrowSeedGenerated returns a stream and a file of n generated records in
// perso's own schema.
func arrowSeedGenerated(t testing.TB, seed byte, n int64) (stream, file []byte) {
	g, err := NewGenerator(GenOptions{Count: n, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
		Rand: seeded(seed), BatchSize: 3, Layout: Layout{OTAKVNs: []uint8{1}}})
	if err != nil {
		t.Fatal(err)
	}
	var recs []arrow.Record
	for {
		rec, err := g.Next()
		if err != nil {
			break
		}
		recs = append(recs, rec)
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	return writeArrowBoth(t, g.Schema(), recs)
}

// arrowSeedForeign returns a stream and a file in a foreign schema using
// every column type the reader accepts, with nulls: numeric ICCID and IMSI,
// binary and fixed-size secrets, large strings, small integers.
func arrowSeedForeign(t testing.TB) (stream, file []byte) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "ICCID", Type: arrow.PrimitiveTypes.Uint64},
		{Name: "imsi", Type: arrow.PrimitiveTypes.Int64},
		{Name: "ki", Type: &arrow.FixedSizeBinaryType{ByteWidth: 16}},
		{Name: "opc", Type: arrow.BinaryTypes.Binary},
		{Name: "pin1", Type: arrow.BinaryTypes.LargeString, Nullable: true},
		{Name: "puk1", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "spn", Type: arrow.BinaryTypes.LargeBinary, Nullable: true},
		{Name: "alg", Type: arrow.PrimitiveTypes.Uint8, Nullable: true},
		{Name: "unused", Type: arrow.PrimitiveTypes.Int16},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	iccids := []uint64{8944150000000000017, 8944150000000000025, 8944150000000000033}
	for i, iccid := range iccids {
		b.Field(0).(*array.Uint64Builder).Append(iccid)
		b.Field(1).(*array.Int64Builder).Append(234150000000001 + int64(i))
		ki := bytes.Repeat([]byte{byte(i + 1)}, 16)
		b.Field(2).(*array.FixedSizeBinaryBuilder).Append(ki)
		b.Field(3).(*array.BinaryBuilder).Append(bytes.Repeat([]byte{byte(0x80 + i)}, 16))
		if i == 1 {
			b.Field(4).AppendNull()
			b.Field(5).AppendNull()
			b.Field(6).AppendNull()
			b.Field(7).AppendNull()
		} else {
			b.Field(4).(*array.LargeStringBuilder).Append("1234")
			b.Field(5).(*array.StringBuilder).Append("12345678")
			b.Field(6).(*array.BinaryBuilder).Append([]byte("operator"))
			b.Field(7).(*array.Uint8Builder).Append(1)
		}
		b.Field(8).(*array.Int16Builder).Append(int16(-i))
	}
	rec := b.NewRecord()
	defer rec.Release()
	return writeArrowBoth(t, schema, []arrow.Record{rec, rec.NewSlice(1, 3)})
}

func writeArrowBoth(t testing.TB, schema *arrow.Schema, recs []arrow.Record) (stream, file []byte) {
	var sb bytes.Buffer
	sw := NewArrowWriter(&sb, schema)
	for _, r := range recs {
		if err := sw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	fb := &seekBuffer{}
	fw, err := NewArrowFileWriter(fb, schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := fw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	return sb.Bytes(), fb.buf
}

// seekBuffer is an in-memory io.WriteSeeker.
type seekBuffer struct {
	buf []byte
	pos int
}

func (s *seekBuffer) Write(p []byte) (int, error) {
	if end := s.pos + len(p); end > len(s.buf) {
		s.buf = append(s.buf, make([]byte, end-len(s.buf))...)
	}
	copy(s.buf[s.pos:], p)
	s.pos += len(p)
	return len(p), nil
}

func (s *seekBuffer) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += int64(s.pos)
	case io.SeekEnd:
		off += int64(len(s.buf))
	}
	if off < 0 {
		return 0, errors.New("negative position")
	}
	s.pos = int(off)
	return off, nil
}

// FuzzArrowIPC: an Arrow IPC input, read as a stream and as a file, ends in
// records or an error, never a panic: the library's panics on corrupt
// input become errors, and our own column code must not panic at all.
// Errors show no part of the input; accepted records are valid.
func FuzzArrowIPC(f *testing.F) {
	for _, seed := range []byte{1, 2} {
		s, fl := arrowSeedGenerated(f, seed, 7)
		f.Add(s)
		f.Add(fl)
	}
	s, fl := arrowSeedForeign(f)
	f.Add(s)
	f.Add(fl)
	// A small buffer cap keeps each run fast: corrupt lengths up to the
	// production cap (512 MiB) would make every such input allocate that
	// much. The cap itself is tested by TestIPCAllocationCap.
	saved := ipcAllocator
	ipcAllocator = cappedAllocator{memory.DefaultAllocator, 1 << 20}
	defer func() { ipcAllocator = saved }()
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzArrow(t, input, func(o Options) (*Reader, error) { return NewArrowReader(bytes.NewReader(input), o) })
		fuzzArrow(t, input, func(o Options) (*Reader, error) { return NewArrowFileReader(bytes.NewReader(input), o) })
	})
}

func fuzzArrow(t *testing.T, input []byte, open func(Options) (*Reader, error)) {
	var rejects RejectList
	r, err := open(Options{BatchSize: 4, Rejects: &rejects})
	if err != nil {
		if hexRunIn(input, err.Error()) {
			t.Fatalf("open error shows part of the input: %v", err)
		}
		return
	}
	defer r.Close()
	seen := map[string]bool{}
	for {
		rec, err := r.Next(context.Background())
		if err != nil {
			if !errors.Is(err, io.EOF) && hexRunIn(input, err.Error()) {
				t.Fatalf("read error shows part of the input: %v", err)
			}
			break
		}
		for _, pr := range recordsOf(t, rec) {
			if !esim.LuhnValid([]byte(pr.ICCID)) || len(pr.IMSI) < 6 || len(pr.IMSI) > 15 || len(pr.Ki) != 16 {
				t.Fatalf("accepted an invalid record (ICCID %q IMSI %q Ki %d bytes)", pr.ICCID, pr.IMSI, len(pr.Ki))
			}
			if seen[pr.ICCID] || seen["imsi"+pr.IMSI] {
				t.Fatalf("accepted a duplicate ICCID or IMSI")
			}
			seen[pr.ICCID], seen["imsi"+pr.IMSI] = true, true
		}
		rec.Release()
	}
	for _, rj := range rejects.Items {
		if hexRunIn(input, rj.String()) {
			t.Fatalf("reject shows part of the input: %s", rj)
		}
	}
}
