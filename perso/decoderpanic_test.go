package perso

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/parquet-go/parquet-go/encoding"
)

// openArrow opens input as a stream or as a file.
func openArrow(input []byte, file bool, o Options) (*Reader, error) {
	if file {
		return NewArrowFileReader(bytes.NewReader(input), o)
	}
	return NewArrowReader(bytes.NewReader(input), o)
}

// A foreign Arrow schema with every accepted column type, nulls and a
// sliced second batch (array offsets into shared buffers) reads value for
// value, as a stream and as a file.
func TestArrowForeignSchemaTypes(t *testing.T) {
	stream, file := arrowSeedForeign(t)
	for _, tc := range []struct {
		name  string
		input []byte
		file  bool
	}{{"stream", stream, false}, {"file", file, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var rejects RejectList
			r, err := openArrow(tc.input, tc.file, Options{Rejects: &rejects})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var got []Record
			for {
				rec, err := r.Next(context.Background())
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, recordsOf(t, rec)...)
				rec.Release()
			}
			if len(got) != 3 {
				t.Fatalf("%d records, want 3", len(got))
			}
			// The sliced batch repeats rows 2 and 3: duplicates.
			if len(rejects.Items) != 2 {
				t.Fatalf("%d rejects, want the 2 repeated rows: %v", len(rejects.Items), rejects.Items)
			}
			for i, rec := range got {
				wantICCID := []string{"8944150000000000017", "8944150000000000025", "8944150000000000033"}[i]
				if rec.ICCID != wantICCID || rec.IMSI != fmt.Sprint(234150000000001+i) {
					t.Errorf("record %d: ICCID %s IMSI %s", i, rec.ICCID, rec.IMSI)
				}
				if !bytes.Equal(rec.Ki, bytes.Repeat([]byte{byte(i + 1)}, 16)) || !bytes.Equal(rec.OPc, bytes.Repeat([]byte{byte(0x80 + i)}, 16)) {
					t.Errorf("record %d: Ki or OPc differs from the binary columns", i)
				}
				null := i == 1
				if (rec.SPN == "") != null || !null && rec.SPN != "operator" {
					t.Errorf("record %d: SPN %q (null in the input: %v)", i, rec.SPN, null)
				}
				if (len(rec.PIN1) == 0) != null || (len(rec.PUK1) == 0) != null {
					t.Errorf("record %d: PIN1 %d bytes, PUK1 %d bytes (null in the input: %v)", i, len(rec.PIN1), len(rec.PUK1), null)
				}
			}
		})
	}
}

// A panic inside the decoding library becomes an error that keeps the
// panic value; the stack goes to the debug log without argument words.
func TestGuardDecoderKeepsPanicValue(t *testing.T) {
	var log bytes.Buffer
	lg := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tests := []struct {
		name      string
		panicWith func()
		want      string // in the error
		absent    string // from the error and the log
		is        error
	}{
		{"runtime error", func() { var s []int; _ = s[len(log.String())+3] }, "index out of range [", "", errCorruptParquet},
		{"library message quoting data", func() { panic("bad value 000102030405060708090a0b0c0d0e0f for pin 1234") }, "bad value … for pin …",
			"0001020304050607", errCorruptParquet},
		{"allocation limit", func() { panic(allocLimitError{1 << 30, 1 << 20}) }, "a buffer of 1073741824 bytes exceeds the limit", "", errCorruptIPC},
		{"non-printable", func() { panic("\x00\x01raw") }, "??raw", "\x00", errCorruptParquet},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log.Reset()
			_, err := guardDecoder(lg, parquetDecoder, "Pages.ReadPage", func() (int, error) {
				tc.panicWith()
				return 0, nil
			})
			if err == nil || !errors.Is(err, tc.is) || !errors.Is(err, errCorruptParquet) {
				t.Fatalf("err = %v, want a corrupt-Parquet error matching %v", err, tc.is)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "parquet-go panicked in Pages.ReadPage") {
				t.Fatalf("error %q does not keep the panic value %q", msg, tc.want)
			}
			logged := log.String()
			if !strings.Contains(logged, "level=DEBUG") || !strings.Contains(logged, "TestGuardDecoderKeepsPanicValue") {
				t.Fatalf("no debug stack logged:\n%s", logged)
			}
			if strings.Contains(logged, "(0x") {
				t.Fatalf("the logged stack shows argument words:\n%s", logged)
			}
			if tc.absent != "" && (strings.Contains(msg, tc.absent) || strings.Contains(logged, tc.absent)) {
				t.Fatalf("%q shown: error %q, log:\n%s", tc.absent, msg, logged)
			}
		})
	}
	t.Run("no panic", func(t *testing.T) {
		v, err := guardDecoder(lg, ipcDecoder, "x", func() (int, error) { return 7, io.EOF })
		if v != 7 || err != io.EOF {
			t.Fatalf("got %d, %v; want the call's own results", v, err)
		}
	})
}

// A panic of the Arrow library while it decodes a batch (here: the capped
// allocator refusing a buffer) ends the read with an error naming it, for
// the stream and the file reader. The stream is LZ4-compressed: perso reads
// stream messages into buffers of its own, so only decompression allocates
// through the library's allocator there.
func TestArrowLibraryPanicIsAnError(t *testing.T) {
	_, file := arrowSeedGenerated(t, 1, 7)
	g, err := NewGenerator(GenOptions{Count: 7, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001", Rand: seeded(1)})
	if err != nil {
		t.Fatal(err)
	}
	var sb bytes.Buffer
	w := ipc.NewWriter(&sb, ipc.WithSchema(g.Schema()), ipc.WithLZ4())
	for {
		rec, err := g.Next()
		if err != nil {
			break
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	stream := sb.Bytes()
	if r, err := openArrow(stream, false, Options{}); err != nil {
		t.Fatalf("compressed stream: %v", err)
	} else if _, err := r.Next(context.Background()); err != nil {
		t.Fatalf("compressed stream without a cap: %v", err)
	}
	saved := ipcAllocator
	t.Cleanup(func() { ipcAllocator = saved })
	for _, tc := range []struct {
		name  string
		input []byte
		file  bool
	}{{"stream", stream, false}, {"file", file, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ipcAllocator = cappedAllocator{memory.DefaultAllocator, 64}
			defer func() { ipcAllocator = saved }()
			r, err := openArrow(tc.input, tc.file, Options{})
			if err == nil {
				defer r.Close()
				for err == nil {
					var rec arrow.Record
					if rec, err = r.Next(context.Background()); err == nil {
						rec.Release()
					}
				}
			}
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("read with a 64-byte buffer cap: %v, want an error", err)
			}
			if !strings.Contains(err.Error(), "exceeds the limit of 64 bytes") {
				t.Fatalf("error %q does not say what the library panicked with", err)
			}
		})
	}
}

// A panic in perso's own column code is a bug: it reaches the caller as a
// panic, not as a "corrupt file" error. The test breaks a column's state
// after opening (as a bug would) and expects the panic.
func TestReaderOwnPanicsPropagate(t *testing.T) {
	stream, _ := arrowSeedGenerated(t, 1, 7)
	pq := parquetSeed(t)
	tests := []struct {
		name     string
		open     func() (*Reader, error)
		sabotage func(src source)
	}{
		{"arrow", func() (*Reader, error) { return NewArrowReader(bytes.NewReader(stream), Options{}) },
			func(src source) { src.(*arrowSource).cols[0].canon = 1 << 20 }},
		{"parquet", func() (*Reader, error) { return NewParquetReader(bytes.NewReader(pq), int64(len(pq)), Options{}) },
			func(src source) { src.(*parquetSource).cols[0].canon = 1 << 20 }},
		{"parquet page kind", func() (*Reader, error) {
			return NewParquetReader(bytes.NewReader(pq), int64(len(pq)), Options{BatchSize: 1})
		},
			nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.open()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if tc.sabotage != nil {
				tc.sabotage(r.src)
			} else {
				// Read one row, then corrupt the loaded page's kind in a
				// way load() never produces.
				rec, err := r.Next(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				rec.Release()
				c := r.src.(*parquetSource).cols[0]
				c.kind, c.i64 = encoding.Int64, nil
			}
			defer func() {
				if p := recover(); p == nil {
					t.Fatal("no panic: a bug in perso's own code was reported as an error")
				} else if !strings.Contains(fmt.Sprint(p), "index out of range") {
					t.Fatalf("panic %v, want the index error of the broken state", p)
				}
			}()
			rec, err := r.Next(context.Background())
			t.Fatalf("Next returned (%v, %v) after the state was broken", rec, err)
		})
	}
}

// parquetSeed returns a small Parquet file of generated records.
func parquetSeed(t testing.TB) []byte {
	g, err := NewGenerator(GenOptions{Count: 5, ICCIDStart: "8944150000000000017", IMSIStart: "234150000000001",
		Rand: seeded(3), BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := NewParquetWriter(&buf, g.Schema())
	if err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := g.Next()
		if err != nil {
			break
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A stream message declaring a huge metadata or body length is refused
// without allocating that length: memory grows only with the bytes read.
func TestArrowStreamDeclaredLengthsAreBounded(t *testing.T) {
	le := func(words ...uint32) []byte {
		var b []byte
		for _, w := range words {
			b = binary.LittleEndian.AppendUint32(b, w)
		}
		return b
	}
	tests := []struct {
		name  string
		input []byte
		is    error
	}{
		{"metadata over the cap", le(ipcContinuation, 0x7FFFFFFF), errCorruptIPC},
		{"metadata under the cap, input short", append(le(ipcContinuation, 400<<20), "short"...), io.ErrUnexpectedEOF},
		{"legacy length word", le(0x3FFFFFFF), errCorruptIPC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := NewArrowReader(bytes.NewReader(tc.input), Options{})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Fatalf("allocated %d bytes for a %d-byte input", grew, len(tc.input))
			}
		})
	}
}
