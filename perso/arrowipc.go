package perso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// arrowSource reads Arrow IPC record batches (file or stream format), whose
// schema need not be perso's own: columns are mapped by name like CSV
// headers; string columns are text, binary columns raw secret bytes,
// integer columns decimal numbers.
//
// Values are read straight from each batch's buffers, after checkColumn has
// checked the buffers against the batch's length: Arrow's IPC reader does
// not check lengths and offsets, and its accessors would panic (or read
// another row's bytes) on a corrupt file. Only the calls into the library
// are guarded against panics (guardDecoder); a panic in this file's own
// code is a bug and is not recovered.
type arrowSource struct {
	next    func() (arrow.Record, error) // the next batch, io.EOF at the end
	rec     arrow.Record
	batch   int // batches read
	row     int // next row of rec
	rowNum  int64
	cols    []*arrowCol
	closeFn func() error
	log     *slog.Logger
}

// arrowCol reads one used input column.
type arrowCol struct {
	field int        // index in the schema
	name  string     // for errors (safeName)
	canon int        // canonical column
	raw   bool       // binary column of a secret: raw bytes, not hex
	kind  arrow.Type // physical type
	size  int        // bytes per value: fixed-size binary width or integer size
	// the current batch's buffers, checked by checkColumn
	valid []byte // validity bitmap; nil when the column has no bitmap
	off   int    // the array's offset into its buffers
	offs  []byte // value offsets (int32 or int64) of string and binary columns
	data  []byte // value bytes
	num   []byte // the last integer value, formatted
}

// NewArrowReader reads an Arrow IPC stream.
func NewArrowReader(r io.Reader, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	msgs := newIPCMessages(r)
	defer msgs.Release() // the reader holds its own reference
	ir, err := guardDecoder(o.Logger, ipcDecoder, "NewReader", func() (*ipc.Reader, error) {
		return ipc.NewReaderFromMessageReader(msgs, ipc.WithAllocator(ipcAllocator))
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s := &arrowSource{log: o.Logger}
	s.closeFn = func() error {
		_, err := guardDecoder(s.log, ipcDecoder, "Reader.Release", func() (struct{}, error) { ir.Release(); return struct{}{}, nil })
		return errors.Join(err, closeIf(r))
	}
	s.next = func() (arrow.Record, error) {
		return guardDecoder(s.log, ipcDecoder, "Reader.Next", func() (arrow.Record, error) {
			if ir.Next() {
				return ir.Record(), nil
			}
			if err := ir.Err(); err != nil {
				return nil, err
			}
			return nil, io.EOF
		})
	}
	return newArrowReader(s, ir.Schema(), o)
}

// NewArrowFileReader reads an Arrow IPC file (random-access format).
func NewArrowFileReader(r ipc.ReadAtSeeker, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	blocks, err := checkIPCFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	fr, err := guardDecoder(o.Logger, ipcDecoder, "NewFileReader", func() (*ipc.FileReader, error) {
		return ipc.NewFileReader(r, ipc.WithAllocator(ipcAllocator))
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s := &arrowSource{log: o.Logger}
	s.closeFn = func() error {
		_, err := guardDecoder(s.log, ipcDecoder, "FileReader.Close", func() (struct{}, error) { return struct{}{}, fr.Close() })
		return err
	}
	i := 0
	s.next = func() (arrow.Record, error) {
		return guardDecoder(s.log, ipcDecoder, "FileReader.Record", func() (arrow.Record, error) {
			if i >= fr.NumRecords() {
				return nil, io.EOF
			}
			if i >= len(blocks) {
				return nil, fmt.Errorf("%w: record batch %d is not in the footer", errCorruptIPC, i+1)
			}
			if err := checkIPCBlock(r, blocks[i]); err != nil {
				return nil, err
			}
			i++
			return fr.Record(i - 1)
		})
	}
	return newArrowReader(s, fr.Schema(), o)
}

// maxIPCBuffer bounds one Arrow buffer read from an IPC input. Arrow's IPC
// reader trusts the lengths in the file; a corrupt length would otherwise
// make it allocate without limit and crash the process.
const maxIPCBuffer = 512 << 20

var errCorruptIPC = errors.New("corrupt Arrow IPC input")

// allocLimitError is the panic value of cappedAllocator; it is an
// errCorruptIPC.
type allocLimitError struct{ n, max int }

func (e allocLimitError) Error() string {
	return fmt.Sprintf("a buffer of %d bytes exceeds the limit of %d bytes", e.n, e.max)
}

func (e allocLimitError) Is(target error) bool { return target == errCorruptIPC }

// cappedAllocator refuses allocations above max by panicking with an
// allocLimitError, which the guard around the IPC call recovers (or the IPC
// reader itself turns into its error).
type cappedAllocator struct {
	memory.Allocator
	max int
}

func (c cappedAllocator) Allocate(n int) []byte {
	if n > c.max || n < 0 {
		panic(allocLimitError{n, c.max})
	}
	return c.Allocator.Allocate(n)
}

func (c cappedAllocator) Reallocate(n int, b []byte) []byte {
	if n > c.max || n < 0 {
		panic(allocLimitError{n, c.max})
	}
	return c.Allocator.Reallocate(n, b)
}

var ipcAllocator = cappedAllocator{memory.DefaultAllocator, maxIPCBuffer}

// ipcMessages splits an Arrow IPC stream into messages, like the library's
// own message reader, except that the metadata and body lengths a message
// declares are bounded by maxIPCBuffer and memory grows only as the bytes
// arrive: the library's reader allocates whatever metadata length (up to
// 2 GiB) and body length the stream declares before reading it, so eight
// bytes of a corrupt file could exhaust the machine's memory.
type ipcMessages struct {
	r    io.Reader
	msg  *ipc.Message // the last message, released when the next is read
	refs atomic.Int64
}

func newIPCMessages(r io.Reader) *ipcMessages {
	m := &ipcMessages{r: r}
	m.refs.Store(1)
	return m
}

// ipcContinuation marks an IPC message with a length (Arrow format ≥ 0.15).
const ipcContinuation = 0xFFFFFFFF

// Message returns the next message, or io.EOF at the end-of-stream marker.
// It runs inside the library's ipc.Reader (which recovers panics).
func (m *ipcMessages) Message() (*ipc.Message, error) {
	var word [4]byte
	if _, err := io.ReadFull(m.r, word[:]); err != nil {
		return nil, fmt.Errorf("reading a message length: %w", err)
	}
	n := binary.LittleEndian.Uint32(word[:])
	if n == ipcContinuation {
		if _, err := io.ReadFull(m.r, word[:]); err != nil {
			return nil, fmt.Errorf("reading a message length: %w", err)
		}
		n = binary.LittleEndian.Uint32(word[:])
	} // else a stream written before Arrow 0.15: the word is the length
	if n == 0 {
		return nil, io.EOF
	}
	if n > maxIPCBuffer {
		return nil, fmt.Errorf("%w: message metadata of %d bytes", errCorruptIPC, n)
	}
	meta, err := readUpTo(m.r, int64(n))
	if err != nil {
		return nil, fmt.Errorf("reading message metadata: %w", err)
	}
	if err := checkMessageMeta(meta); err != nil {
		return nil, err
	}
	metaBuf := memory.NewBufferBytes(meta)
	probe := ipc.NewMessage(metaBuf, memory.NewBufferBytes(nil))
	bodyLen := probe.BodyLen()
	probe.Release()
	if bodyLen < 0 || bodyLen > maxIPCBuffer {
		return nil, fmt.Errorf("%w: message body of %d bytes", errCorruptIPC, bodyLen)
	}
	body, err := readUpTo(m.r, bodyLen)
	if err != nil {
		return nil, fmt.Errorf("reading a message body: %w", err)
	}
	if m.msg != nil {
		m.msg.Release()
	}
	m.msg = ipc.NewMessage(metaBuf, memory.NewBufferBytes(body))
	return m.msg, nil
}

// ipcBlock locates a message in an Arrow IPC file (File.fbs Block).
type ipcBlock struct {
	offset, metaLen, bodyLen int64
	fileSize                 int64
}

// ipcFileMagic opens and ends an Arrow IPC file.
const ipcFileMagic = "ARROW1"

// checkIPCFile checks the footer of an Arrow IPC file and the metadata of
// its dictionary batches (see checkMessageMeta) before the library reads
// them, and returns the record batches' blocks for checkIPCBlock. A file
// too short or without the magic is left to the library to refuse.
func checkIPCFile(r ipc.ReadAtSeeker) ([]ipcBlock, error) {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tail := make([]byte, 4+len(ipcFileMagic))
	if size < int64(2*len(ipcFileMagic)+4) {
		return nil, nil
	}
	if _, err := r.ReadAt(tail, size-int64(len(tail))); err != nil {
		return nil, fmt.Errorf("reading the file footer: %w", err)
	}
	if string(tail[4:]) != ipcFileMagic {
		return nil, nil
	}
	n := int64(binary.LittleEndian.Uint32(tail))
	if n <= 0 || n+int64(len(tail)) > size {
		return nil, nil
	}
	footer := make([]byte, n)
	if _, err := r.ReadAt(footer, size-int64(len(tail))-n); err != nil {
		return nil, fmt.Errorf("reading the file footer: %w", err)
	}
	if err := checkFooterMeta(footer); err != nil {
		return nil, fmt.Errorf("file footer: %w", err)
	}
	m := &fbMeta{b: footer}
	f, _ := m.root()
	blocks := func(slot int) []ipcBlock {
		start, cnt, _ := f.vector(slot, 24)
		out := make([]ipcBlock, cnt)
		for i := range out {
			b := footer[start+24*int64(i):]
			out[i] = ipcBlock{offset: int64(binary.LittleEndian.Uint64(b)), metaLen: int64(int32(binary.LittleEndian.Uint32(b[8:]))),
				bodyLen: int64(binary.LittleEndian.Uint64(b[16:])), fileSize: size}
		}
		return out
	}
	for _, b := range blocks(2) {
		if err := checkIPCBlock(r, b); err != nil {
			return nil, fmt.Errorf("dictionary batch: %w", err)
		}
	}
	return blocks(3), nil
}

// checkIPCBlock checks the metadata of the message at b (see
// checkMessageMeta) before the library reads it.
func checkIPCBlock(r io.ReaderAt, b ipcBlock) error {
	if b.offset < 0 || b.metaLen < 8 || b.metaLen > b.fileSize-b.offset {
		return nil // the library refuses it: too short, or beyond the file
	}
	meta := make([]byte, b.metaLen)
	if _, err := r.ReadAt(meta, b.offset); err != nil {
		return nil // the library reports the short file
	}
	// As the library: a continuation marker and a length, a length alone
	// (before Arrow 0.15), or neither.
	switch binary.LittleEndian.Uint32(meta) {
	case 0:
	case ipcContinuation:
		meta = meta[8:]
	default:
		meta = meta[4:]
	}
	return checkMessageMeta(meta)
}

// readUpTo reads exactly n bytes, growing its buffer only as they arrive.
func readUpTo(r io.Reader, n int64) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(min(n, 64<<10)))
	got, err := io.CopyN(&buf, r, n)
	if err == io.EOF {
		err = fmt.Errorf("%w: %d of %d bytes before the end of the input", io.ErrUnexpectedEOF, got, n)
	}
	return buf.Bytes(), err
}

func (m *ipcMessages) Retain() { m.refs.Add(1) }

func (m *ipcMessages) Release() {
	if m.refs.Add(-1) == 0 && m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
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
	if err := transportFromMeta(&o, schema.Metadata().GetValue); err != nil {
		return nil, err
	}
	for i, f := range schema.Fields() {
		c := cm.idx[i]
		if c < 0 {
			continue
		}
		if f.Type == nil {
			return nil, fmt.Errorf("%s: column %s has no type", o.File, safeName(f.Name))
		}
		col := &arrowCol{field: i, name: safeName(f.Name), canon: c, kind: f.Type.ID()}
		secret := c >= cKi && c <= cADM1 && c != cAlg || c >= nBase
		switch t := f.Type.(type) {
		case *arrow.StringType, *arrow.LargeStringType:
		case *arrow.BinaryType, *arrow.LargeBinaryType:
			col.raw = secret
		case *arrow.FixedSizeBinaryType:
			col.raw, col.size = secret, t.ByteWidth
			if col.size < 0 {
				return nil, fmt.Errorf("%s: column %s has a negative width", o.File, col.name)
			}
		case *arrow.Int8Type, *arrow.Uint8Type:
			col.size = 1
		case *arrow.Int16Type, *arrow.Uint16Type:
			col.size = 2
		case *arrow.Int32Type, *arrow.Uint32Type:
			col.size = 4
		case *arrow.Int64Type, *arrow.Uint64Type:
			col.size = 8
		default:
			return nil, fmt.Errorf("%s: column %s has unsupported type %s", o.File, col.name, f.Type)
		}
		s.cols = append(s.cols, col)
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

// arrayData is what arrowCol reads of one column of a batch.
type arrayData struct {
	n, off  int
	buffers [][]byte
}

// batchData fetches the buffers of the used columns of rec from the library.
func (s *arrowSource) batchData(rec arrow.Record) ([]arrayData, error) {
	return guardDecoder(s.log, ipcDecoder, "Record.Column", func() ([]arrayData, error) {
		out := make([]arrayData, len(s.cols))
		for j, c := range s.cols {
			d := rec.Column(c.field).Data()
			ad := arrayData{n: d.Len(), off: d.Offset()}
			for _, b := range d.Buffers() {
				if b == nil {
					ad.buffers = append(ad.buffers, nil)
				} else {
					ad.buffers = append(ad.buffers, b.Bytes())
				}
			}
			out[j] = ad
		}
		return out, nil
	})
}

// load points the columns at a new batch of rows rows, checking every
// length and offset the rows will use.
func (s *arrowSource) load(rec arrow.Record, rows int) error {
	ads, err := s.batchData(rec)
	if err != nil {
		return err
	}
	for j, c := range s.cols {
		if err := c.load(ads[j], rows); err != nil {
			return fmt.Errorf("column %s: %w: %w", c.name, errCorruptIPC, err)
		}
	}
	return nil
}

func (c *arrowCol) load(d arrayData, rows int) error {
	if d.n != rows {
		return fmt.Errorf("%d values in a batch of %d rows", d.n, rows)
	}
	if d.off < 0 || d.off > math.MaxInt32 || d.n > math.MaxInt32 {
		return fmt.Errorf("array offset %d, length %d out of range", d.off, d.n)
	}
	end := d.off + d.n // rows are read at off … end-1
	buf := func(i int) []byte {
		if i < len(d.buffers) {
			return d.buffers[i]
		}
		return nil
	}
	c.off, c.valid, c.offs, c.data = d.off, nil, nil, nil
	if v := buf(0); len(v) > 0 {
		if len(v) < (end+7)/8 {
			return fmt.Errorf("validity bitmap of %d bytes for %d rows", len(v), end)
		}
		c.valid = v
	}
	switch c.kind {
	case arrow.STRING, arrow.BINARY, arrow.LARGE_STRING, arrow.LARGE_BINARY:
		w := 4
		if c.kind == arrow.LARGE_STRING || c.kind == arrow.LARGE_BINARY {
			w = 8
		}
		c.offs, c.data = buf(1), buf(2)
		if len(c.offs)/w <= end {
			return fmt.Errorf("%d bytes of value offsets for %d rows", len(c.offs), end)
		}
		prev := c.offset(d.off)
		if prev < 0 {
			return fmt.Errorf("negative value offset %d", prev)
		}
		for k := d.off + 1; k <= end; k++ {
			o := c.offset(k)
			if o < prev {
				return fmt.Errorf("value offsets decrease at row %d", k-d.off+1)
			}
			prev = o
		}
		if prev > int64(len(c.data)) {
			return fmt.Errorf("value offsets reach byte %d of %d", prev, len(c.data))
		}
	default: // fixed-size binary and integers: size bytes per value
		c.data = buf(1)
		if c.size > 0 && len(c.data)/c.size < end {
			return fmt.Errorf("%d bytes of values for %d rows of %d bytes", len(c.data), end, c.size)
		}
	}
	return nil
}

// offset returns value offset k of a string or binary column.
func (c *arrowCol) offset(k int) int64 {
	if c.kind == arrow.LARGE_STRING || c.kind == arrow.LARGE_BINARY {
		return int64(binary.NativeEndian.Uint64(c.offs[8*k:]))
	}
	return int64(int32(binary.NativeEndian.Uint32(c.offs[4*k:])))
}

// value returns row i of the current batch; ok is false for null.
func (c *arrowCol) value(i int) (v []byte, ok bool) {
	k := c.off + i
	if c.valid != nil && c.valid[k>>3]&(1<<(k&7)) == 0 {
		return nil, false
	}
	ne := binary.NativeEndian
	switch c.kind {
	case arrow.STRING, arrow.BINARY, arrow.LARGE_STRING, arrow.LARGE_BINARY:
		return c.data[c.offset(k):c.offset(k+1)], true
	case arrow.FIXED_SIZE_BINARY:
		return c.data[k*c.size : (k+1)*c.size], true
	case arrow.INT8:
		c.num = strconv.AppendInt(c.num[:0], int64(int8(c.data[k])), 10)
	case arrow.INT16:
		c.num = strconv.AppendInt(c.num[:0], int64(int16(ne.Uint16(c.data[2*k:]))), 10)
	case arrow.INT32:
		c.num = strconv.AppendInt(c.num[:0], int64(int32(ne.Uint32(c.data[4*k:]))), 10)
	case arrow.INT64:
		c.num = strconv.AppendInt(c.num[:0], int64(ne.Uint64(c.data[8*k:])), 10)
	case arrow.UINT8:
		c.num = strconv.AppendUint(c.num[:0], uint64(c.data[k]), 10)
	case arrow.UINT16:
		c.num = strconv.AppendUint(c.num[:0], uint64(ne.Uint16(c.data[2*k:])), 10)
	case arrow.UINT32:
		c.num = strconv.AppendUint(c.num[:0], uint64(ne.Uint32(c.data[4*k:])), 10)
	case arrow.UINT64:
		c.num = strconv.AppendUint(c.num[:0], ne.Uint64(c.data[8*k:]), 10)
	default:
		panic(fmt.Sprintf("perso: Arrow column of type %s accepted but not read", c.kind))
	}
	return c.num, true
}

func (s *arrowSource) read(row *rawRow) error {
	for s.rec == nil || s.row >= int(s.rec.NumRows()) {
		if s.rec != nil {
			s.rec.Release()
			s.rec = nil
		}
		rec, err := s.next()
		if err != nil {
			if err == io.EOF {
				return err
			}
			return fmt.Errorf("record batch %d: %w", s.batch+1, err)
		}
		rec.Retain()
		s.rec, s.row = rec, 0
		s.batch++
		if rec.NumRows() < 0 || rec.NumRows() > math.MaxInt32 {
			return fmt.Errorf("record batch %d: %w: %d rows", s.batch, errCorruptIPC, rec.NumRows())
		}
		if err := s.load(rec, int(rec.NumRows())); err != nil {
			return fmt.Errorf("record batch %d: %w", s.batch, err)
		}
	}
	i := s.row
	s.row++
	s.rowNum++
	row.line = s.rowNum
	for _, c := range s.cols {
		if v, ok := c.value(i); ok {
			row.vals[c.canon], row.raw[c.canon] = v, c.raw
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
