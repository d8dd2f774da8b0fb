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
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"
)

// parquetSource reads flat Parquet files column by column, page by page,
// straight from parquet-go's decoded page buffers (no per-value copies):
// each used column keeps a cursor into its current page, and a row takes
// the next value of every cursor. Column names are mapped like CSV
// headers. Binary and fixed-length columns hold raw secret bytes; UTF-8
// columns hold text (hex for secrets); integer columns (IMSI or ICCID
// stored as numbers, algorithm IDs) are formatted as decimal. Plain and
// dictionary-encoded pages are supported.
type parquetSource struct {
	f       *parquet.File
	groups  []parquet.RowGroup
	group   int
	left    int64 // rows left in the current row group
	cols    []*pqCol
	rowNum  int64
	closer  io.Closer
	started bool
}

// pqCol is a cursor over one column's pages.
type pqCol struct {
	leaf  int
	canon int
	raw   bool
	pages parquet.Pages
	page  parquet.Page
	defs  []byte
	max   byte // max definition level (0: required)
	rows  int  // rows in the page
	r     int  // next row in the page
	v     int  // next (non-null) value in the page
	// values of the page, or of its dictionary when idx != nil
	kind  encoding.Kind
	data  []byte
	offs  []uint32
	size  int
	i32   []int32
	i64   []int64
	idx   []int32
	num   []byte
	nvals int
}

// NewParquetReader reads a Parquet file of personalisation records. The
// reject "line" of a Parquet row is its 1-based row number.
func NewParquetReader(r io.ReaderAt, size int64, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	f, err := openParquet(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	schema := f.Schema()
	paths := schema.Columns()
	names := make([]string, len(paths))
	leaves := make([]parquet.LeafColumn, len(paths))
	for i, path := range paths {
		if len(path) != 1 {
			return nil, fmt.Errorf("%s: nested column %v: only flat Parquet schemas are supported", o.File, path)
		}
		names[i] = path[0]
		leaves[i], _ = schema.Lookup(path...)
		if leaves[i].MaxRepetitionLevel > 0 {
			return nil, fmt.Errorf("%s: repeated column %s is not supported", o.File, safeName(path[0]))
		}
	}
	cm, err := mapColumns(names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s := &parquetSource{f: f, groups: f.RowGroups()}
	for i, c := range cm.idx {
		if c < 0 {
			continue
		}
		typ := leaves[i].Node.Type()
		col := &pqCol{leaf: i, canon: c, max: byte(leaves[i].MaxDefinitionLevel)}
		secret := (c >= cKi && c <= cADM1 && c != cAlg) || c >= nBase
		switch typ.Kind() {
		case parquet.ByteArray:
			col.raw = secret && !isUTF8(typ)
		case parquet.FixedLenByteArray:
			col.raw = secret
		case parquet.Int32, parquet.Int64:
		default:
			return nil, fmt.Errorf("%s: column %s has unsupported Parquet type %s", o.File, safeName(names[i]), typ)
		}
		s.cols = append(s.cols, col)
	}
	if err := transportFromMeta(&o, f.Lookup); err != nil {
		return nil, err
	}
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

// errCorruptParquet replaces panics of parquet-go on malformed input.
var errCorruptParquet = errors.New("corrupt Parquet file")

// openParquet opens the file, turning a parquet-go panic on malformed
// metadata into an error.
func openParquet(r io.ReaderAt, size int64) (f *parquet.File, err error) {
	defer func() {
		if recover() != nil {
			f, err = nil, errCorruptParquet
		}
	}()
	return parquet.OpenFile(r, size)
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

// nextGroup opens the page readers of the next row group.
func (s *parquetSource) nextGroup() error {
	s.closePages()
	for s.group < len(s.groups) {
		rg := s.groups[s.group]
		s.group++
		if rg.NumRows() == 0 {
			continue
		}
		s.left = rg.NumRows()
		chunks := rg.ColumnChunks()
		for _, c := range s.cols {
			c.pages = chunks[c.leaf].Pages()
			c.rows, c.r = 0, 0
		}
		return nil
	}
	return io.EOF
}

func (s *parquetSource) closePages() {
	for _, c := range s.cols {
		c.release()
		if c.pages != nil {
			c.pages.Close()
			c.pages = nil
		}
	}
}

func (c *pqCol) release() {
	if c.page != nil {
		parquet.Release(c.page)
		c.page = nil
	}
}

// load reads the column's next page.
func (c *pqCol) load() error {
	c.release()
	for {
		p, err := c.pages.ReadPage()
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("parquet column %d ends before its row group", c.leaf)
			}
			return err
		}
		if p.NumRows() == 0 {
			parquet.Release(p)
			continue
		}
		c.page, c.rows, c.r, c.v = p, int(p.NumRows()), 0, 0
		c.defs = p.DefinitionLevels()
		if c.max > 0 && len(c.defs) != c.rows {
			return fmt.Errorf("parquet column %d: %d definition levels for %d rows", c.leaf, len(c.defs), c.rows)
		}
		vals := p.Data()
		c.idx = nil
		if d := p.Dictionary(); d != nil {
			c.idx = vals.Int32()
			vals = d.Page().Data()
		}
		c.kind = vals.Kind()
		switch c.kind {
		case encoding.ByteArray:
			c.data, c.offs = vals.ByteArray()
			c.nvals = len(c.offs) - 1
		case encoding.FixedLenByteArray:
			c.data, c.size = vals.FixedLenByteArray()
			c.nvals = 0
			if c.size > 0 {
				c.nvals = len(c.data) / c.size
			}
		case encoding.Int32:
			c.i32 = vals.Int32()
			c.nvals = len(c.i32)
		case encoding.Int64:
			c.i64 = vals.Int64()
			c.nvals = len(c.i64)
		default:
			return fmt.Errorf("parquet column %d: unsupported page kind %d", c.leaf, c.kind)
		}
		return nil
	}
}

// next returns the column's value in the next row (nil for null).
func (c *pqCol) next() ([]byte, error) {
	if c.r >= c.rows {
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	r := c.r
	c.r++
	if c.max > 0 && c.defs[r] < c.max {
		return nil, nil
	}
	j := c.v
	c.v++
	if c.idx != nil {
		if j >= len(c.idx) {
			return nil, fmt.Errorf("parquet column %d: fewer values than rows", c.leaf)
		}
		j = int(c.idx[j])
	}
	if j < 0 || j >= c.nvals {
		return nil, fmt.Errorf("parquet column %d: value index out of range", c.leaf)
	}
	switch c.kind {
	case encoding.ByteArray:
		return c.data[c.offs[j]:c.offs[j+1]], nil
	case encoding.FixedLenByteArray:
		return c.data[j*c.size : (j+1)*c.size], nil
	case encoding.Int32:
		c.num = strconv.AppendInt(c.num[:0], int64(c.i32[j]), 10)
	default:
		c.num = strconv.AppendInt(c.num[:0], c.i64[j], 10)
	}
	return c.num, nil
}

func (s *parquetSource) read(row *rawRow) (err error) {
	defer func() { // parquet-go panics on some malformed pages
		if recover() != nil {
			err = fmt.Errorf("row %d: %w", s.rowNum, errCorruptParquet)
		}
	}()
	if s.left == 0 {
		if err := s.nextGroup(); err != nil {
			return err
		}
	}
	s.left--
	s.rowNum++
	row.line = s.rowNum
	for _, c := range s.cols {
		v, err := c.next()
		if err != nil {
			return err
		}
		if v != nil {
			row.vals[c.canon], row.raw[c.canon] = v, c.raw
		}
	}
	return nil
}

func (s *parquetSource) finish() []Reject { return nil }

func (s *parquetSource) close() error {
	s.closePages()
	if s.closer != nil {
		return s.closer.Close()
	}
	return nil
}

// parquetRowsPerGroup bounds the rows buffered per row group (memory).
var parquetRowsPerGroup = 1 << 17

// ParquetWriter writes perso batches to Parquet: text columns as UTF-8
// strings, secrets as FIXED_LEN_BYTE_ARRAY, algorithm as UINT_8; nullable
// columns optional. Transport metadata of the schema is kept as file
// key/value metadata.
type ParquetWriter struct {
	w            *parquet.Writer
	l            Layout
	leaf         []int // canonical column -> parquet leaf index
	opt          []bool
	vals         []parquet.Value
	rowsPerGroup int
	inGroup      int
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
	opts := []parquet.WriterOption{ps}
	for _, k := range []string{MetaTransportKey, MetaTransportAlg} {
		if v, ok := schema.Metadata().GetValue(k); ok && v != "" {
			opts = append(opts, parquet.KeyValueMetadata(k, v))
		}
	}
	pw := &ParquetWriter{w: parquet.NewWriter(w, opts...), l: l, leaf: make([]int, l.numCols()), opt: make([]bool, l.numCols()),
		rowsPerGroup: parquetRowsPerGroup}
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

// Write appends the rows of rec, column by column.
func (p *ParquetWriter) Write(rec arrow.Record) error {
	n := int(rec.NumRows())
	for off := 0; off < n; {
		m := min(n-off, p.rowsPerGroup-p.inGroup)
		if err := p.writeRange(rec, off, off+m); err != nil {
			return err
		}
		off += m
		p.inGroup += m
		if p.inGroup == p.rowsPerGroup {
			if err := p.w.Flush(); err != nil {
				return err
			}
			p.inGroup = 0
		}
	}
	return nil
}

func (p *ParquetWriter) writeRange(rec arrow.Record, from, to int) error {
	cws := p.w.ColumnWriters()
	if cap(p.vals) < to-from {
		p.vals = make([]parquet.Value, to-from)
	}
	vals := p.vals[:to-from]
	for col := 0; col < p.l.numCols(); col++ {
		leaf := p.leaf[col]
		def := 0
		if p.opt[col] {
			def = 1
		}
		a := rec.Column(col)
		for i := from; i < to; i++ {
			var v parquet.Value
			if a.IsNull(i) {
				vals[i-from] = parquet.NullValue().Level(0, 0, leaf)
				continue
			}
			switch a := a.(type) {
			case *array.String:
				v = parquet.ByteArrayValue(a.ValueBytes()[a.ValueOffset(i):a.ValueOffset(i+1)])
			case *array.FixedSizeBinary:
				v = parquet.FixedLenByteArrayValue(a.Value(i))
			case *array.Uint8:
				v = parquet.Int32Value(int32(a.Value(i)))
			}
			vals[i-from] = v.Level(0, def, leaf)
		}
		if _, err := cws[leaf].WriteRowValues(vals); err != nil {
			return err
		}
	}
	clear(vals)
	return nil
}

// Close flushes the file footer.
func (p *ParquetWriter) Close() error { return p.w.Close() }
