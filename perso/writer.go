package perso

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"

	"github.com/perso-esim/perso/esim"
)

// Writer writes batches of the perso schema to a file format.
type Writer interface {
	Write(rec arrow.Record) error
	Close() error // flushes; does not close the underlying io.Writer
}

// textRow renders the columns of a perso batch as text: secrets as hex,
// PIN/PUK (and ADM1 when it is digits) as their digits, nulls as empty.
type textRow struct {
	l     Layout
	upper bool
	buf   []byte
	ends  []int
}

func (t *textRow) render(rec arrow.Record, i int) {
	t.buf, t.ends = t.buf[:0], t.ends[:0]
	const hexLower, hexUpper = "0123456789abcdef", "0123456789ABCDEF"
	digits := hexLower
	if t.upper {
		digits = hexUpper
	}
	for col := 0; col < t.l.numCols(); col++ {
		a := rec.Column(col)
		if !a.IsNull(i) {
			switch a := a.(type) {
			case *array.String:
				t.buf = append(t.buf, a.Value(i)...)
			case *array.Uint8:
				t.buf = append(t.buf, esim.Algorithm(a.Value(i)).String()...)
			case *array.FixedSizeBinary:
				v := a.Value(i)
				if col >= cPIN1 && col <= cADM1 && esim.CodeIsDigits(v) {
					for _, c := range v {
						if c != 0xFF {
							t.buf = append(t.buf, c)
						}
					}
				} else {
					for _, c := range v {
						t.buf = append(t.buf, digits[c>>4], digits[c&15])
					}
				}
			}
		}
		t.ends = append(t.ends, len(t.buf))
	}
}

func (t *textRow) field(j int) []byte {
	start := 0
	if j > 0 {
		start = t.ends[j-1]
	}
	return t.buf[start:t.ends[j]]
}

// CSVWriter writes perso batches as CSV with a header row of the column
// names; secrets as lower-case hex. The output reads back with NewCSVReader.
type CSVWriter struct {
	w     *bufio.Writer
	delim byte
	t     textRow
	line  []byte
}

// NewCSVWriter writes the header for schema (a perso layout) to w.
func NewCSVWriter(w io.Writer, schema *arrow.Schema, delim rune) (*CSVWriter, error) {
	l, err := LayoutOf(schema)
	if err != nil {
		return nil, err
	}
	if delim == 0 {
		delim = ','
	}
	if delim >= 0x80 || delim == '"' || delim == '\n' || delim == '\r' {
		return nil, fmt.Errorf("CSV delimiter must be a single ASCII character other than quote or newline")
	}
	cw := &CSVWriter{w: bufio.NewWriterSize(w, 256<<10), delim: byte(delim), t: textRow{l: l}}
	for i := 0; i < l.numCols(); i++ {
		if i > 0 {
			cw.w.WriteByte(cw.delim)
		}
		cw.w.WriteString(l.colName(i))
	}
	_, err = cw.w.WriteString("\n")
	return cw, err
}

// Write appends the rows of rec.
func (c *CSVWriter) Write(rec arrow.Record) error {
	for i := 0; i < int(rec.NumRows()); i++ {
		c.t.render(rec, i)
		c.line = c.line[:0]
		for j := range c.t.ends {
			if j > 0 {
				c.line = append(c.line, c.delim)
			}
			f := c.t.field(j)
			// only free-text columns can hold a delimiter, quote or blank;
			// identifiers, hex and digits never need quoting
			if j >= cMSISDN && j < nBase && needsQuote(f, c.delim) {
				c.line = append(c.line, '"')
				c.line = append(c.line, bytes.ReplaceAll(f, []byte{'"'}, []byte{'"', '"'})...)
				c.line = append(c.line, '"')
			} else {
				c.line = append(c.line, f...)
			}
		}
		c.line = append(c.line, '\n')
		if _, err := c.w.Write(c.line); err != nil {
			return err
		}
	}
	wipe(c.t.buf, c.line)
	return nil
}

// Close flushes the output.
func (c *CSVWriter) Close() error { return c.w.Flush() }

func needsQuote(f []byte, delim byte) bool {
	if len(f) > 0 && (f[0] == ' ' || f[0] == '\t' || f[len(f)-1] == ' ' || f[len(f)-1] == '\t') {
		return true
	}
	for _, c := range f {
		if c == delim || c == '"' || c == '\n' || c == '\r' {
			return true
		}
	}
	return false
}

// OutFileHeader is what NewOutWriter puts in the header of a .out file.
type OutFileHeader struct {
	Customer, Type, Profile, Batch string
	Quantity                       int64 // must equal the number of rows written
	Transport                      Transport
	IMSI, SerNb                    string // INPUT VARIABLES (first IMSI, first ICCID without check digit)
	Extra                          [][2]string
}

// OutWriter writes a SIM-vendor .out file: the boxed header, input and
// output variables, then one space-separated line per record with secrets
// in upper-case hex. Columns that are null in every row of the first batch
// are still listed in var_out only when the layout has them and at least
// one row of the first batch holds a value; a column written in var_out
// must hold a value in every row.
type OutWriter struct {
	w       *bufio.Writer
	l       Layout
	h       OutFileHeader
	t       textRow
	cols    []int
	started bool
	rows    int64
	line    []byte
}

// NewOutWriter returns a .out writer for schema; the header is written with the first batch.
func NewOutWriter(w io.Writer, schema *arrow.Schema, h OutFileHeader) (*OutWriter, error) {
	l, err := LayoutOf(schema)
	if err != nil {
		return nil, err
	}
	return &OutWriter{w: bufio.NewWriterSize(w, 256<<10), l: l, h: h, t: textRow{l: l, upper: true}}, nil
}

var outNames = map[int]string{cICCID: "ICCID", cIMSI: "IMSI", cKi: "KI", cOPc: "OPC", cOP: "OP", cAlg: "ALGORITHM",
	cPIN1: "PIN1", cPUK1: "PUK1", cPIN2: "PIN2", cPUK2: "PUK2", cADM1: "ADM1", cMSISDN: "MSISDN", cSMSC: "SMSC"}

func (o *OutWriter) start(rec arrow.Record) error {
	o.started = true
	for col := 0; col < o.l.numCols(); col++ {
		if col > cSMSC && col < nBase { // free text does not fit a space-separated line
			continue
		}
		if col == cAlg || rec.Column(col).NullN() == int(rec.NumRows()) {
			continue
		}
		o.cols = append(o.cols, col)
	}
	return o.writeHeader()
}

func (o *OutWriter) writeHeader() error {
	star := strings.Repeat("*", 32) + "\n"
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%-16s: %s\n", k, v) }
	b.WriteString(star + "* HEADER DESCRIPTION\n" + star)
	kv("Customer", o.h.Customer)
	kv("Quantity", strconv.FormatInt(o.h.Quantity, 10))
	kv("Type", o.h.Type)
	kv("Profile", o.h.Profile)
	kv("Batch", o.h.Batch)
	if o.h.Transport.Key != 0 {
		kv("Transport_key", strconv.Itoa(o.h.Transport.Key))
		kv("Transport_alg", o.h.Transport.Alg)
	}
	for _, e := range o.h.Extra {
		kv(e[0], e[1])
	}
	b.WriteString(star + "* INPUT VARIABLES\n" + star + "Var_In_List:\n")
	if o.h.IMSI != "" {
		b.WriteString("IMSI: " + o.h.IMSI + "\n")
	}
	if o.h.SerNb != "" {
		b.WriteString("Ser_nb: " + o.h.SerNb + "\n")
	}
	b.WriteString(star + "* OUTPUT VARIABLES\n" + star + "var_out: ")
	for i, col := range o.cols {
		if i > 0 {
			b.WriteByte('/')
		}
		if n, ok := outNames[col]; ok {
			b.WriteString(n)
		} else {
			b.WriteString(strings.ToUpper(o.l.colName(col)))
		}
	}
	b.WriteByte('\n')
	_, err := o.w.WriteString(b.String())
	return err
}

// Write appends the rows of rec.
func (o *OutWriter) Write(rec arrow.Record) error {
	if !o.started {
		if err := o.start(rec); err != nil {
			return err
		}
	}
	for i := 0; i < int(rec.NumRows()); i++ {
		o.t.render(rec, i)
		o.line = o.line[:0]
		for j, col := range o.cols {
			f := o.t.field(col)
			if len(f) == 0 {
				return fmt.Errorf(".out row %d: column %s is empty", o.rows+1, o.l.colName(col))
			}
			if j > 0 {
				o.line = append(o.line, ' ')
			}
			o.line = append(o.line, f...)
		}
		o.line = append(o.line, '\n')
		if _, err := o.w.Write(o.line); err != nil {
			return err
		}
		o.rows++
	}
	wipe(o.t.buf, o.line)
	return nil
}

// Close flushes the output and checks Quantity against the rows written.
func (o *OutWriter) Close() error {
	if !o.started { // no rows: still a well-formed file with the mandatory columns
		o.started = true
		o.cols = []int{cICCID, cIMSI, cKi, cOPc}
		if err := o.writeHeader(); err != nil {
			return err
		}
	}
	if err := o.w.Flush(); err != nil {
		return err
	}
	if o.rows != o.h.Quantity {
		return fmt.Errorf(".out: wrote %d rows but Quantity is %d", o.rows, o.h.Quantity)
	}
	return nil
}
