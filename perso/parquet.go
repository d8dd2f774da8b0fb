package perso

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

// parquetSource reads flat Parquet files row group by row group through
// parquet-go, a chunk of rows at a time. Column names are mapped like CSV
// headers. Binary and fixed-length columns hold raw secret bytes; UTF-8
// columns hold text (hex for secrets); integer columns (IMSI or ICCID
// stored as numbers, algorithm IDs) are formatted as decimal.
type parquetSource struct {
	f       *parquet.File
	rd      *parquet.Reader
	leafCol []int  // parquet leaf index -> canonical column, or -1
	leafRaw []bool // binary (not UTF-8) leaf
	leafInt []bool // integer leaf
	rows    []parquet.Row
	n, next int
	rowNum  int64
	numBuf  [][]byte
	closer  io.Closer
	eof     bool
}

// parquetChunk is the number of rows fetched per ReadRows call.
const parquetChunk = 1024

// NewParquetReader reads a Parquet file of personalisation records. The
// reject "line" of a Parquet row is its 1-based row number.
func NewParquetReader(r io.ReaderAt, size int64, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	f, err := parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	cols := f.Schema().Columns()
	names := make([]string, len(cols))
	s := &parquetSource{f: f, leafRaw: make([]bool, len(cols)), leafInt: make([]bool, len(cols)), numBuf: make([][]byte, len(cols))}
	for i, path := range cols {
		if len(path) != 1 {
			return nil, fmt.Errorf("%s: nested column %v: only flat Parquet schemas are supported", o.File, path)
		}
		names[i] = path[0]
		leaf, _ := f.Schema().Lookup(path...)
		typ := leaf.Node.Type()
		switch typ.Kind() {
		case parquet.ByteArray:
			s.leafRaw[i] = !isUTF8(typ)
		case parquet.FixedLenByteArray:
			s.leafRaw[i] = true
		case parquet.Int32, parquet.Int64:
			s.leafInt[i] = true
		}
	}
	cm, err := mapColumns(names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	for i, c := range cm.idx {
		if c >= 0 && c < nBase && c != cKi && c != cOPc && c != cOP && (c < cPIN1 || c > cADM1) && s.leafRaw[i] {
			// identifiers and text stored as plain BYTE_ARRAY: read as text
			s.leafRaw[i] = false
		}
	}
	s.leafCol = cm.idx
	if err := transportFromMeta(&o, f.Lookup); err != nil {
		return nil, err
	}
	s.rd = parquet.NewReader(f)
	s.rows = make([]parquet.Row, parquetChunk)
	if c, ok := r.(io.Closer); ok {
		s.closer = c
	}
	rd, err := newReader(s, o, cm.kvns, cm.present)
	if err != nil {
		return nil, err
	}
	rd.ignored = cm.ignored
	return rd, nil
}

func isUTF8(t parquet.Type) bool {
	if lt := t.LogicalType(); lt != nil {
		switch lt.Value.(type) {
		case *format.StringType, *format.JsonType, *format.EnumType:
			return true
		}
	}
	if ct := t.ConvertedType(); ct != nil && *ct == deprecated.UTF8 {
		return true
	}
	return false
}

func (s *parquetSource) read(row *rawRow) error {
	if s.next >= s.n {
		if s.eof {
			return io.EOF
		}
		n, err := s.rd.ReadRows(s.rows)
		s.n, s.next = n, 0
		if errors.Is(err, io.EOF) {
			s.eof = true
		} else if err != nil {
			return err
		}
		if n == 0 {
			if s.eof {
				return io.EOF
			}
			return errors.New("parquet: no rows read")
		}
	}
	pr := s.rows[s.next]
	s.next++
	s.rowNum++
	row.line = s.rowNum
	for _, v := range pr {
		leaf := v.Column()
		if leaf < 0 || leaf >= len(s.leafCol) {
			continue
		}
		c := s.leafCol[leaf]
		if c < 0 || v.IsNull() {
			continue
		}
		switch {
		case s.leafInt[leaf]:
			s.numBuf[leaf] = strconv.AppendInt(s.numBuf[leaf][:0], v.Int64(), 10)
			row.vals[c] = s.numBuf[leaf]
		default:
			row.vals[c] = v.ByteArray()
			row.raw[c] = s.leafRaw[leaf]
		}
	}
	return nil
}

func (s *parquetSource) finish() []Reject { return nil }

func (s *parquetSource) close() error {
	err := s.rd.Close()
	if s.closer != nil {
		if e := s.closer.Close(); err == nil {
			err = e
		}
	}
	return err
}

// ParquetWriter writes perso batches to Parquet: text columns as UTF-8
// strings, secrets as FIXED_LEN_BYTE_ARRAY, algorithm as UINT_8; nullable
// columns optional. Transport metadata of the schema is kept as file
// key/value metadata.
type ParquetWriter struct {
	w      *parquet.Writer
	l      Layout
	leaf   []int // canonical column -> parquet leaf index
	opt    []bool
	row    parquet.Row
	buffer []parquet.Row
}

// NewParquetWriter returns a writer for batches of schema.
func NewParquetWriter(w io.Writer, schema *arrow.Schema) (*ParquetWriter, error) {
	l, err := LayoutOf(schema)
	if err != nil {
		return nil, err
	}
	g := parquet.Group{}
	for i := 0; i < l.numCols(); i++ {
		var n parquet.Node
		switch wd := l.width(i); {
		case wd > 0:
			n = parquet.Leaf(parquet.FixedLenByteArrayType(wd))
		case i == cAlg:
			n = parquet.Uint(8)
		default:
			n = parquet.String()
		}
		if schema.Field(i).Nullable {
			n = parquet.Optional(n)
		}
		g[l.colName(i)] = n
	}
	ps := parquet.NewSchema("perso", g)
	opts := []parquet.WriterOption{ps, parquet.MaxRowsPerRowGroup(1 << 20)}
	for _, k := range []string{MetaTransportKey, MetaTransportAlg} {
		if v, ok := schema.Metadata().GetValue(k); ok && v != "" {
			opts = append(opts, parquet.KeyValueMetadata(k, v))
		}
	}
	pw := &ParquetWriter{w: parquet.NewWriter(w, opts...), l: l, leaf: make([]int, l.numCols()), opt: make([]bool, l.numCols())}
	for i := 0; i < l.numCols(); i++ {
		lc, ok := ps.Lookup(l.colName(i))
		if !ok {
			return nil, fmt.Errorf("parquet schema lacks %s", l.colName(i))
		}
		pw.leaf[i] = lc.ColumnIndex
		pw.opt[i] = schema.Field(i).Nullable
	}
	return pw, nil
}

// Write appends the rows of rec.
func (p *ParquetWriter) Write(rec arrow.Record) error {
	nc := p.l.numCols()
	n := int(rec.NumRows())
	if cap(p.buffer) < n {
		p.buffer = make([]parquet.Row, n)
	}
	rows := p.buffer[:n]
	for i := 0; i < n; i++ {
		row := rows[i][:0]
		if cap(row) < nc {
			row = make(parquet.Row, 0, nc)
		}
		row = row[:nc]
		for col := 0; col < nc; col++ {
			a := rec.Column(col)
			def := 0
			if p.opt[col] {
				def = 1
			}
			var v parquet.Value
			switch {
			case a.IsNull(i):
				v, def = parquet.NullValue(), 0
			default:
				switch a := a.(type) {
				case *array.String:
					v = parquet.ByteArrayValue(a.ValueBytes()[a.ValueOffset(i):a.ValueOffset(i+1)])
				case *array.FixedSizeBinary:
					v = parquet.FixedLenByteArrayValue(a.Value(i))
				case *array.Uint8:
					v = parquet.Int32Value(int32(a.Value(i)))
				}
			}
			row[p.leaf[col]] = v.Level(0, def, p.leaf[col])
		}
		rows[i] = row
	}
	_, err := p.w.WriteRows(rows)
	return err
}

// Close flushes the file footer.
func (p *ParquetWriter) Close() error { return p.w.Close() }
