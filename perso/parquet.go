package perso

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
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
	log     *slog.Logger
}

// pqCol is a cursor over one column's pages.
type pqCol struct {
	log   *slog.Logger
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
	f, err := guardDecoder(o.Logger, parquetDecoder, "OpenFile", func() (*parquet.File, error) {
		return parquet.OpenFile(r, size)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	leaves, err := guardDecoder(o.Logger, parquetDecoder, "File.Schema", func() ([]pqLeaf, error) {
		return schemaLeaves(f), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	names := make([]string, len(leaves))
	for i, l := range leaves {
		if len(l.path) != 1 {
			return nil, fmt.Errorf("%s: nested column %v: only flat Parquet schemas are supported", o.File, l.path)
		}
		names[i] = l.path[0]
		if l.maxRep > 0 {
			return nil, fmt.Errorf("%s: repeated column %s is not supported", o.File, safeName(l.path[0]))
		}
		if l.maxDef < 0 || l.maxDef > 1 {
			return nil, fmt.Errorf("%s: column %s has %d definition levels; only flat Parquet schemas are supported", o.File, safeName(l.path[0]), l.maxDef)
		}
	}
	cm, err := mapColumns(names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	groups, err := guardDecoder(o.Logger, parquetDecoder, "File.RowGroups", func() ([]parquet.RowGroup, error) {
		return f.RowGroups(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	s := &parquetSource{f: f, groups: groups, log: o.Logger}
	for i, c := range cm.idx {
		if c < 0 {
			continue
		}
		l := leaves[i]
		col := &pqCol{log: o.Logger, leaf: i, canon: c, max: byte(l.maxDef)}
		secret := (c >= cKi && c <= cADM1 && c != cAlg) || c >= nBase
		switch l.kind {
		case parquet.ByteArray:
			col.raw = secret && !l.utf8
		case parquet.FixedLenByteArray:
			col.raw = secret
		case parquet.Int32, parquet.Int64:
		default:
			return nil, fmt.Errorf("%s: column %s has unsupported Parquet type %s", o.File, safeName(names[i]), l.typ)
		}
		s.cols = append(s.cols, col)
	}
	meta, err := guardDecoder(o.Logger, parquetDecoder, "File.Lookup", func() (map[string]string, error) {
		m := map[string]string{}
		for _, k := range []string{MetaTransportKey, MetaTransportAlg} {
			if v, ok := f.Lookup(k); ok {
				m[k] = v
			}
		}
		return m, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	lookup := func(k string) (string, bool) { v, ok := meta[k]; return v, ok }
	if err := transportFromMeta(&o, lookup); err != nil {
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

// errCorruptParquet is the error of malformed Parquet input, including
// panics of parquet-go on it (see guardDecoder).
var errCorruptParquet = errors.New("corrupt Parquet file")

// pqLeaf describes a leaf column of a Parquet schema.
type pqLeaf struct {
	path           []string
	maxDef, maxRep int
	kind           parquet.Kind
	typ            string // for errors
	utf8           bool
}

// schemaLeaves reads the leaf columns of f's schema. It calls only
// parquet-go (run it under guardDecoder).
func schemaLeaves(f *parquet.File) []pqLeaf {
	schema := f.Schema()
	paths := schema.Columns()
	leaves := make([]pqLeaf, len(paths))
	for i, path := range paths {
		lc, _ := schema.Lookup(path...)
		l := pqLeaf{path: path, maxDef: lc.MaxDefinitionLevel, maxRep: lc.MaxRepetitionLevel}
		if lc.Node != nil {
			typ := lc.Node.Type()
			l.kind, l.typ, l.utf8 = typ.Kind(), typ.String(), isUTF8(typ)
		}
		leaves[i] = l
	}
	return leaves
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
	if err := s.closePages(); err != nil {
		return err
	}
	for s.group < len(s.groups) {
		rg := s.groups[s.group]
		s.group++
		type groupData struct {
			rows  int64
			pages []parquet.Pages
		}
		g, err := guardDecoder(s.log, parquetDecoder, "RowGroup.ColumnChunks", func() (groupData, error) {
			g := groupData{rows: rg.NumRows()}
			if g.rows == 0 {
				return g, nil
			}
			chunks := rg.ColumnChunks()
			for _, c := range s.cols {
				if c.leaf >= len(chunks) {
					break // reported below
				}
				g.pages = append(g.pages, chunks[c.leaf].Pages())
			}
			return g, nil
		})
		if err != nil {
			return fmt.Errorf("row group %d: %w", s.group, err)
		}
		if g.rows == 0 {
			continue
		}
		if g.rows < 0 {
			return fmt.Errorf("row group %d: %w: %d rows", s.group, errCorruptParquet, g.rows)
		}
		for i, c := range s.cols {
			if i < len(g.pages) {
				c.pages = g.pages[i]
			}
		}
		if len(g.pages) < len(s.cols) {
			return fmt.Errorf("row group %d: %w: column %d missing", s.group, errCorruptParquet, s.cols[len(g.pages)].leaf)
		}
		s.left = g.rows
		for _, c := range s.cols {
			c.rows, c.r = 0, 0
		}
		return nil
	}
	return io.EOF
}

func (s *parquetSource) closePages() error {
	var errs []error
	for _, c := range s.cols {
		errs = append(errs, c.release())
		if c.pages != nil {
			pages := c.pages
			c.pages = nil
			_, err := guardDecoder(s.log, parquetDecoder, "Pages.Close", func() (struct{}, error) { return struct{}{}, pages.Close() })
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *pqCol) release() error {
	if c.page == nil {
		return nil
	}
	p := c.page
	c.page = nil
	_, err := guardDecoder(c.log, parquetDecoder, "Release", func() (struct{}, error) { parquet.Release(p); return struct{}{}, nil })
	return err
}

// pqPage is what pqCol reads of one page.
type pqPage struct {
	page  parquet.Page
	rows  int64
	defs  []byte
	idx   []int32 // dictionary indexes, when the page has a dictionary
	kind  encoding.Kind
	data  []byte
	offs  []uint32
	size  int
	i32   []int32
	i64   []int64
	empty bool // a page without rows, released already
}

// readPage reads the column's next page through parquet-go.
func (c *pqCol) readPage() (pqPage, error) {
	return guardDecoder(c.log, parquetDecoder, "Pages.ReadPage", func() (pqPage, error) {
		p, err := c.pages.ReadPage()
		if err != nil {
			return pqPage{}, err
		}
		pp := pqPage{page: p, rows: p.NumRows()}
		if pp.rows == 0 {
			parquet.Release(p)
			return pqPage{empty: true}, nil
		}
		pp.defs = p.DefinitionLevels()
		vals := p.Data()
		if d := p.Dictionary(); d != nil {
			pp.idx = vals.Int32()
			vals = d.Page().Data()
		}
		pp.kind = vals.Kind()
		switch pp.kind {
		case encoding.ByteArray:
			pp.data, pp.offs = vals.ByteArray()
		case encoding.FixedLenByteArray:
			pp.data, pp.size = vals.FixedLenByteArray()
		case encoding.Int32:
			pp.i32 = vals.Int32()
		case encoding.Int64:
			pp.i64 = vals.Int64()
		}
		return pp, nil
	})
}

// load reads the column's next page and checks what its rows will read.
func (c *pqCol) load() error {
	if err := c.release(); err != nil {
		return err
	}
	for {
		p, err := c.readPage()
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("parquet column %d ends before its row group: %w", c.leaf, errCorruptParquet)
			}
			return err
		}
		if p.empty {
			continue
		}
		c.page = p.page
		if p.rows < 0 || p.rows > math.MaxInt32 {
			return fmt.Errorf("parquet column %d: %w: page of %d rows", c.leaf, errCorruptParquet, p.rows)
		}
		c.rows, c.r, c.v = int(p.rows), 0, 0
		c.defs = p.defs
		if c.max > 0 && len(c.defs) != c.rows {
			return fmt.Errorf("parquet column %d: %w: %d definition levels for %d rows", c.leaf, errCorruptParquet, len(c.defs), c.rows)
		}
		c.idx, c.kind = p.idx, p.kind
		switch c.kind {
		case encoding.ByteArray:
			c.data, c.offs = p.data, p.offs
			c.nvals = max(len(c.offs)-1, 0)
			for k := 1; k < len(c.offs); k++ {
				if c.offs[k] < c.offs[k-1] {
					return fmt.Errorf("parquet column %d: %w: value offsets decrease", c.leaf, errCorruptParquet)
				}
			}
			if len(c.offs) > 0 && int64(c.offs[len(c.offs)-1]) > int64(len(c.data)) {
				return fmt.Errorf("parquet column %d: %w: value offsets beyond the page", c.leaf, errCorruptParquet)
			}
		case encoding.FixedLenByteArray:
			c.data, c.size = p.data, p.size
			c.nvals = 0
			if c.size > 0 {
				c.nvals = len(c.data) / c.size
			}
		case encoding.Int32:
			c.i32 = p.i32
			c.nvals = len(c.i32)
		case encoding.Int64:
			c.i64 = p.i64
			c.nvals = len(c.i64)
		default:
			return fmt.Errorf("parquet column %d: %w: unsupported page kind %d", c.leaf, errCorruptParquet, c.kind)
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
			return nil, fmt.Errorf("parquet column %d: %w: fewer values than rows", c.leaf, errCorruptParquet)
		}
		j = int(c.idx[j])
	}
	if j < 0 || j >= c.nvals {
		return nil, fmt.Errorf("parquet column %d: %w: value index out of range", c.leaf, errCorruptParquet)
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

func (s *parquetSource) read(row *rawRow) error {
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
			return fmt.Errorf("row %d: %w", s.rowNum, err)
		}
		if v != nil {
			row.vals[c.canon], row.raw[c.canon] = v, c.raw
		}
	}
	return nil
}

func (s *parquetSource) finish() []Reject { return nil }

func (s *parquetSource) close() error {
	err := s.closePages()
	if s.closer != nil {
		err = errors.Join(err, s.closer.Close())
	}
	return err
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
