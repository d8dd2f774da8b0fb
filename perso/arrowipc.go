package perso

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// arrowSource reads Arrow IPC record batches (file or stream format), whose
// schema need not be perso's own: columns are mapped by name like CSV
// headers; string columns are text, binary columns raw secret bytes,
// integer columns decimal numbers.
type arrowSource struct {
	next    func() (arrow.Record, error)
	rec     arrow.Record
	row     int
	rowNum  int64
	get     []func(i int) ([]byte, bool, bool) // per input column: value, raw, ok
	colIdx  []int
	closeFn func() error
}

// NewArrowReader reads an Arrow IPC stream.
func NewArrowReader(r io.Reader, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	ir, err := guardIPC(func() (*ipc.Reader, error) { return ipc.NewReader(r, ipc.WithAllocator(ipcAllocator)) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s := &arrowSource{closeFn: func() error { ir.Release(); return closeIf(r) }}
	s.next = func() (arrow.Record, error) {
		if ir.Next() {
			return ir.Record(), nil
		}
		if err := ir.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return newArrowReader(s, ir.Schema(), o)
}

// NewArrowFileReader reads an Arrow IPC file (random-access format).
func NewArrowFileReader(r ipc.ReadAtSeeker, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	fr, err := guardIPC(func() (*ipc.FileReader, error) { return ipc.NewFileReader(r, ipc.WithAllocator(ipcAllocator)) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s := &arrowSource{closeFn: func() error { return fr.Close() }}
	i := 0
	s.next = func() (arrow.Record, error) {
		if i >= fr.NumRecords() {
			return nil, io.EOF
		}
		rec, err := fr.Record(i)
		i++
		return rec, err
	}
	return newArrowReader(s, fr.Schema(), o)
}

// maxIPCBuffer bounds one Arrow buffer read from an IPC input. Arrow's IPC
// reader trusts the lengths in the file; a corrupt length would otherwise
// make it allocate without limit and crash the process.
const maxIPCBuffer = 512 << 20

var errCorruptIPC = errors.New("corrupt Arrow IPC input")

// cappedAllocator refuses allocations above max by panicking with
// errCorruptIPC; the IPC source recovers that panic into an error.
type cappedAllocator struct {
	memory.Allocator
	max int
}

func (c cappedAllocator) Allocate(n int) []byte {
	if n > c.max || n < 0 {
		panic(errCorruptIPC)
	}
	return c.Allocator.Allocate(n)
}

func (c cappedAllocator) Reallocate(n int, b []byte) []byte {
	if n > c.max || n < 0 {
		panic(errCorruptIPC)
	}
	return c.Allocator.Reallocate(n, b)
}

var ipcAllocator = cappedAllocator{memory.DefaultAllocator, maxIPCBuffer}

// guardIPC turns a panic of Arrow's IPC reader on malformed input (or of
// cappedAllocator) into errCorruptIPC.
func guardIPC[T any](f func() (T, error)) (v T, err error) {
	defer func() {
		if recover() != nil {
			var zero T
			v, err = zero, errCorruptIPC
		}
	}()
	return f()
}

func closeIf(r any) error {
	if c, ok := r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func newArrowReader(s *arrowSource, schema *arrow.Schema, o Options) (*Reader, error) {
	names := make([]string, schema.NumFields())
	for i, f := range schema.Fields() {
		names[i] = f.Name
	}
	cm, err := mapColumns(names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s.colIdx = cm.idx
	s.get = make([]func(int) ([]byte, bool, bool), len(names))
	if err := transportFromMeta(&o, schema.Metadata().GetValue); err != nil {
		return nil, err
	}
	for i, f := range schema.Fields() {
		c := cm.idx[i]
		if c < 0 {
			continue
		}
		secret := c >= cKi && c <= cADM1 && c != cAlg || c >= nBase
		switch f.Type.ID() {
		case arrow.STRING, arrow.LARGE_STRING, arrow.BINARY, arrow.LARGE_BINARY, arrow.FIXED_SIZE_BINARY,
			arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		default:
			return nil, fmt.Errorf("%s: column %s has unsupported type %s", o.File, safeName(f.Name), f.Type)
		}
		raw := secret && (f.Type.ID() == arrow.BINARY || f.Type.ID() == arrow.LARGE_BINARY || f.Type.ID() == arrow.FIXED_SIZE_BINARY)
		s.get[i] = s.extractor(i, raw)
	}
	rd, err := newReader(s, o, cm.kvns, cm.present)
	if err != nil {
		return nil, err
	}
	rd.ignored = cm.ignored
	return rd, nil
}

// transportFromMeta takes the transport key from file metadata (written by
// perso's own writers) when the options name none.
func transportFromMeta(o *Options, get func(string) (string, bool)) error {
	label, ok := get(MetaTransportKey)
	if !ok || label == "" {
		return nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(label, "transport-"))
	if err != nil || n <= 0 {
		return fmt.Errorf("%s: metadata %s is not a transport key label", o.File, MetaTransportKey)
	}
	alg, _ := get(MetaTransportAlg)
	if o.Transport.Key != 0 && o.Transport.Key != n {
		return fmt.Errorf("%s: file metadata says transport key %d, configured %d", o.File, n, o.Transport.Key)
	}
	o.Transport.Key = n
	if o.Transport.Alg == "" {
		o.Transport.Alg = alg
	}
	return nil
}

// extractor returns a function reading column col of the current record.
func (s *arrowSource) extractor(col int, raw bool) func(int) ([]byte, bool, bool) {
	var buf []byte
	return func(i int) ([]byte, bool, bool) {
		a := s.rec.Column(col)
		if a.IsNull(i) {
			return nil, false, false
		}
		switch a := a.(type) {
		case *array.String:
			return a.ValueBytes()[a.ValueOffset(i):a.ValueOffset(i+1)], false, true
		case *array.LargeString:
			return []byte(a.Value(i)), false, true
		case *array.Binary:
			return a.Value(i), raw, true
		case *array.LargeBinary:
			return a.Value(i), raw, true
		case *array.FixedSizeBinary:
			return a.Value(i), raw, true
		case *array.Int8:
			buf = strconv.AppendInt(buf[:0], int64(a.Value(i)), 10)
		case *array.Int16:
			buf = strconv.AppendInt(buf[:0], int64(a.Value(i)), 10)
		case *array.Int32:
			buf = strconv.AppendInt(buf[:0], int64(a.Value(i)), 10)
		case *array.Int64:
			buf = strconv.AppendInt(buf[:0], a.Value(i), 10)
		case *array.Uint8:
			buf = strconv.AppendUint(buf[:0], uint64(a.Value(i)), 10)
		case *array.Uint16:
			buf = strconv.AppendUint(buf[:0], uint64(a.Value(i)), 10)
		case *array.Uint32:
			buf = strconv.AppendUint(buf[:0], uint64(a.Value(i)), 10)
		case *array.Uint64:
			buf = strconv.AppendUint(buf[:0], a.Value(i), 10)
		default:
			return nil, false, false
		}
		return buf, false, true
	}
}

func (s *arrowSource) read(row *rawRow) (err error) {
	defer func() {
		if recover() != nil {
			err = fmt.Errorf("record %d: %w", s.rowNum+1, errCorruptIPC)
		}
	}()
	for s.rec == nil || s.row >= int(s.rec.NumRows()) {
		if s.rec != nil {
			s.rec.Release()
			s.rec = nil
		}
		rec, err := s.next()
		if err != nil {
			return err
		}
		rec.Retain()
		s.rec, s.row = rec, 0
	}
	i := s.row
	s.row++
	s.rowNum++
	row.line = s.rowNum
	for j, get := range s.get {
		if get == nil {
			continue
		}
		if v, raw, ok := get(i); ok {
			c := s.colIdx[j]
			row.vals[c], row.raw[c] = v, raw
		}
	}
	return nil
}

func (s *arrowSource) finish() []Reject { return nil }

func (s *arrowSource) close() error {
	if s.rec != nil {
		s.rec.Release()
		s.rec = nil
	}
	return s.closeFn()
}

// ArrowWriter writes perso batches as an Arrow IPC stream (the schema's
// metadata, e.g. transport key labels, is kept).
type ArrowWriter struct{ w *ipc.Writer }

// NewArrowWriter returns a stream writer for schema.
func NewArrowWriter(w io.Writer, schema *arrow.Schema) *ArrowWriter {
	return &ArrowWriter{w: ipc.NewWriter(w, ipc.WithSchema(schema))}
}

// Write appends a batch.
func (a *ArrowWriter) Write(rec arrow.Record) error { return a.w.Write(rec) }

// Close writes the end-of-stream marker.
func (a *ArrowWriter) Close() error { return a.w.Close() }

// ArrowFileWriter writes perso batches as an Arrow IPC file.
type ArrowFileWriter struct{ w *ipc.FileWriter }

// NewArrowFileWriter returns a file writer for schema.
func NewArrowFileWriter(w io.WriteSeeker, schema *arrow.Schema) (*ArrowFileWriter, error) {
	fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema))
	if err != nil {
		return nil, err
	}
	return &ArrowFileWriter{w: fw}, nil
}

// Write appends a batch.
func (a *ArrowFileWriter) Write(rec arrow.Record) error { return a.w.Write(rec) }

// Close writes the footer.
func (a *ArrowFileWriter) Close() error { return a.w.Close() }
