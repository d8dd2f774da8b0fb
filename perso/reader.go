package perso

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/perso-esim/perso/esim"
)

// DefaultBatchSize is the number of rows per Arrow record batch when
// Options.BatchSize is zero.
const DefaultBatchSize = 8192

// ErrRejectLimit is returned (wrapped) when rejects exceed Options.MaxRejects
// or Options.MaxRejectRate: the whole input is then aborted.
var ErrRejectLimit = errors.New("reject threshold exceeded")

// Options configure a Reader. The zero value reads plaintext input into
// batches of DefaultBatchSize rows, checks formats and duplicates, and
// never aborts on rejects.
type Options struct {
	// File names the input in rejects and logs.
	File string
	// BatchSize is the number of rows per record batch (default 8192).
	BatchSize int
	// Layout sets the widths of the secret columns (default 16 bytes). The
	// OTA key versions are taken from the input's columns, not from here.
	Layout Layout
	// Rules are the batch-level checks (MCC/MNC, ranges, duplicates).
	Rules Rules
	// DefaultAlgorithm applies to records without an algorithm value
	// (default Milenage).
	DefaultAlgorithm esim.Algorithm
	// Delimiter separates CSV fields (default ','). Ignored by other formats.
	Delimiter rune
	// Rejects receives every rejected record; nil discards them (they are
	// still counted in Stats).
	Rejects RejectSink
	// MaxRejects aborts the input with ErrRejectLimit when this many records
	// have been rejected (0: no limit; 1: abort on the first reject).
	MaxRejects int
	// MaxRejectRate aborts the input with ErrRejectLimit when the fraction
	// of rejected records exceeds it; checked after every batch once 1000
	// records were read, and at the end (0: no limit).
	MaxRejectRate float64
	// Transport says that the ki/opc/op columns are encrypted under a
	// transport key. A .out header's Transport_key/Transport_alg take its
	// place when present.
	Transport Transport
	// Decrypter decrypts transport-encrypted columns, one call per column
	// per batch (normally hsmpool.Pool).
	Decrypter TransportDecrypter
	// KeepEncrypted leaves transport ciphertext in the secret columns (for
	// checking files without an HSM); the schema metadata then names the
	// transport key and OPc is not derived from OP.
	KeepEncrypted bool
	// OP is a batch-wide operator variant (plaintext) for inputs without an
	// op column: records without OPc get it in op and OPc = AES_Ki(OP) xor OP.
	OP Secret
	// Allocator allocates the secret columns' buffers (default Go heap).
	Allocator memory.Allocator
	// Logger receives a summary per input (counts only, never values).
	Logger *slog.Logger
	// MaxLine bounds one line of a text input (CSV, .out) in bytes
	// (default DefaultMaxLine). A longer line is rejected, never buffered.
	MaxLine int
	// MaxLineSetting names how the caller's user raises MaxLine (e.g. a
	// flag); errors and reject reasons mention it.
	MaxLineSetting string
}

func (o *Options) setDefaults() error {
	if o.File == "" {
		o.File = "input"
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.DefaultAlgorithm == esim.AlgorithmUnset {
		o.DefaultAlgorithm = esim.AlgorithmMilenage
	}
	if o.Delimiter == 0 {
		o.Delimiter = ','
	}
	if o.Delimiter >= utf8.RuneSelf || o.Delimiter == '"' || o.Delimiter == '\n' || o.Delimiter == '\r' {
		return fmt.Errorf("CSV delimiter must be a single ASCII character other than quote or newline")
	}
	if o.MaxRejectRate < 0 || o.MaxRejectRate > 1 {
		return fmt.Errorf("MaxRejectRate must be between 0 and 1")
	}
	return o.Rules.check()
}

// Stats counts what a Reader has seen so far.
type Stats struct {
	Rows     int64 // data rows read (accepted + rejected)
	Records  int64 // rows accepted into batches
	Rejected int64 // rows rejected
	Batches  int64 // record batches returned
	Notes    int64 // file-level findings reported as rejects (e.g. .out Quantity mismatch)
}

// Reader streams an input file into Arrow record batches of validated
// records. Rejected rows go to Options.Rejects and never reach a batch.
// A Reader is not safe for concurrent use.
type Reader struct {
	o       Options
	layout  Layout
	schema  *arrow.Schema
	src     source
	p       rowParser
	b       *batch
	row     rawRow
	stats   Stats
	tr      transportState
	eof     bool
	closed  bool
	err     error
	ignored []string
	header  *OutHeader
}

// source is one input format: it fills row with the next data row's fields,
// indexed by canonical column, and returns io.EOF after the last row.
type source interface {
	read(row *rawRow) error
	// finish reports file-level findings after the last row.
	finish() []Reject
	close() error
}

// contextSource is a source whose reads can be cancelled.
type contextSource interface {
	setContext(ctx context.Context)
}

// ctxCheckRows is how often (in rows) Next checks its context.
const ctxCheckRows = 1024

// rawRow is one data row before validation.
type rawRow struct {
	line         int64
	vals         [][]byte // by canonical column; nil or empty = absent
	raw          []bool   // vals[i] is binary (not text): fixed-size columns from Parquet/Arrow
	bad          *Problem // whole-row problem (column count, over-long line, ...)
	unterminated bool     // the input ended inside this row, without a line end
}

func (r *rawRow) reset() {
	clear(r.vals)
	clear(r.raw)
	r.bad = nil
	r.unterminated = false
}

// newReader wires a source whose columns are known. cols are the canonical
// columns present in the input (used for the missing-column checks).
func newReader(src source, o Options, kvns []uint8, cols []bool) (*Reader, error) {
	o.Layout.OTAKVNs = kvns
	l, err := o.Layout.normalized()
	if err != nil {
		return nil, err
	}
	r := &Reader{o: o, layout: l, src: src}
	for _, c := range []int{cICCID, cIMSI, cKi} {
		if !cols[c] {
			return nil, fmt.Errorf("%s: no %s column", o.File, baseNames[c])
		}
	}
	if o.OP != nil && len(o.OP) != l.OPcBytes {
		return nil, fmt.Errorf("%s: batch OP must be %d bytes", o.File, l.OPcBytes)
	}
	if !cols[cOPc] && !cols[cOP] && o.OP == nil && !cols[cAlg] && o.DefaultAlgorithm != esim.AlgorithmTest {
		return nil, fmt.Errorf("%s: no opc or op column", o.File)
	}
	if err := r.tr.setup(&o, cols, l); err != nil {
		return nil, fmt.Errorf("%s: %w", o.File, err)
	}
	md := map[string]string{MetaSource: o.File}
	if r.tr.active && o.KeepEncrypted {
		md[MetaTransportKey] = r.tr.label
		md[MetaTransportAlg] = r.tr.alg
	}
	meta := arrow.MetadataFrom(md)
	r.schema = l.schema(&meta)
	v, err := NewValidator(o.Rules)
	if err != nil {
		return nil, err
	}
	r.b = newBatch(l, o.Allocator, o.BatchSize)
	r.p = rowParser{l: l, b: r.b, v: v, defAlg: o.DefaultAlgorithm,
		present: make([]bool, l.numCols()), strs: make([][]byte, l.numCols())}
	if o.OP != nil && !cols[cOP] { // an op column of the input takes precedence
		r.p.batchOP = append(Secret(nil), o.OP...)
	}
	r.row.vals = make([][]byte, l.numCols())
	r.row.raw = make([]bool, l.numCols())
	return r, nil
}

// Schema returns the schema of every batch (see Layout.Schema).
func (r *Reader) Schema() *arrow.Schema { return r.schema }

// Layout returns the layout of the batches.
func (r *Reader) Layout() Layout { return r.layout }

// Stats returns the counts so far.
func (r *Reader) Stats() Stats { return r.stats }

// IgnoredColumns lists input columns that map to no perso column.
func (r *Reader) IgnoredColumns() []string { return r.ignored }

// OutHeader returns the parsed header of a .out input (nil for other formats).
func (r *Reader) OutHeader() *OutHeader { return r.header }

// Next returns the next batch of valid records, or io.EOF after the last.
// The caller owns the record and must Release it: releasing wipes its
// secret buffers. Transport decryption happens here, once per column per
// batch. An error other than io.EOF is final (e.g. ErrRejectLimit).
func (r *Reader) Next(ctx context.Context) (arrow.Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	if err := ctx.Err(); err != nil {
		return nil, r.fail(context.Cause(ctx))
	}
	// Text sources check ctx while they read (skipping an overlong line,
	// blank lines); the row loop checks it every ctxCheckRows rows so that
	// a large batch of rejects does not delay a cancellation either.
	if cs, ok := r.src.(contextSource); ok {
		cs.setContext(ctx)
	}
	for rows := 0; r.b.n < r.o.BatchSize && !r.eof; rows++ {
		if rows%ctxCheckRows == ctxCheckRows-1 {
			if err := ctx.Err(); err != nil {
				return nil, r.fail(context.Cause(ctx))
			}
		}
		r.row.reset()
		err := r.src.read(&r.row)
		if err == io.EOF {
			r.eof = true
			for _, rj := range r.src.finish() {
				r.stats.Notes++
				if err := r.emit(rj); err != nil {
					return nil, r.fail(err)
				}
			}
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, r.fail(context.Cause(ctx))
			}
			return nil, r.fail(fmt.Errorf("%s: %w", r.o.File, err))
		}
		r.stats.Rows++
		if r.row.bad == nil && r.p.parse(&r.row) {
			r.stats.Records++
			continue
		}
		if err := r.rejectRow(); err != nil {
			return nil, r.fail(err)
		}
	}
	if err := r.checkRate(); err != nil {
		return nil, r.fail(err)
	}
	if r.b.n == 0 {
		r.finishLog()
		r.err = io.EOF // later calls return io.EOF again without logging
		return nil, io.EOF
	}
	if err := r.flush(ctx); err != nil {
		return nil, r.fail(err)
	}
	r.stats.Batches++
	return r.b.build(r.schema), nil
}

// ParseText validates one record given as text fields — column name to
// value, with the names and forms of a CSV input (iccid, imsi, ki, opc,
// pin1, adm1, spn, ...) — by exactly the rules a Reader applies to a row
// (o.Rules, o.Layout, o.DefaultAlgorithm), and returns it as a Record (wipe
// it after use). Empty values are absent. With keysOptional, a record
// without Ki and OPc passes (a caller that keeps a template's keys); the
// caller must then say so itself. Problems name the column, never the value.
func ParseText(fields map[string]string, o Options, keysOptional bool) (Record, []Problem, error) {
	if err := o.setDefaults(); err != nil {
		return Record{}, nil, err
	}
	names := make([]string, 0, len(fields))
	for n, v := range fields {
		if v != "" {
			names = append(names, n)
		}
	}
	cm, err := mapColumns(names)
	if err != nil {
		return Record{}, nil, err
	}
	if len(cm.ignored) > 0 {
		return Record{}, nil, fmt.Errorf("unknown field %s", safeName(cm.ignored[0]))
	}
	o.Layout.OTAKVNs = cm.kvns
	l, err := o.Layout.normalized()
	if err != nil {
		return Record{}, nil, err
	}
	v, err := NewValidator(o.Rules)
	if err != nil {
		return Record{}, nil, err
	}
	b := newBatch(l, o.Allocator, 1)
	defer b.release()
	p := rowParser{l: l, b: b, v: v, defAlg: o.DefaultAlgorithm, keysOptional: keysOptional,
		present: make([]bool, l.numCols()), strs: make([][]byte, l.numCols())}
	row := rawRow{line: 1, vals: make([][]byte, l.numCols()), raw: make([]bool, l.numCols())}
	texts := make([][]byte, len(names))
	defer func() {
		for _, t := range texts {
			clear(t)
		}
	}()
	for i, c := range cm.idx {
		texts[i] = []byte(fields[names[i]])
		if c >= 0 {
			row.vals[c] = texts[i]
		}
	}
	if !p.parse(&row) {
		return Record{}, p.probs, nil
	}
	if p.sawOPOnly {
		if err := deriveOPcColumn(b); err != nil {
			return Record{}, nil, err
		}
	}
	meta := arrow.MetadataFrom(map[string]string{MetaSource: o.File})
	rec := b.build(l.schema(&meta))
	defer rec.Release()
	r, err := RecordAt(rec, 0)
	return r, nil, err
}

// rejectRow reports the current row's problems and applies MaxRejects.
func (r *Reader) rejectRow() error {
	r.stats.Rejected++
	row := &r.row
	probs := r.p.probs
	if row.bad != nil {
		probs = []Problem{*row.bad}
	}
	if row.unterminated {
		probs = []Problem{{Reason: "truncated last line (input ends without a line end): " + probs[0].Error()}}
	}
	for _, p := range probs {
		if err := r.emit(Reject{File: r.o.File, Line: row.line, Column: p.Column, Class: p.Class, Reason: p.Reason}); err != nil {
			return err
		}
	}
	if r.o.MaxRejects > 0 && r.stats.Rejected >= int64(r.o.MaxRejects) {
		return fmt.Errorf("%s: %w: %d records rejected (limit %d)", r.o.File, ErrRejectLimit, r.stats.Rejected, r.o.MaxRejects)
	}
	return nil
}

func (r *Reader) checkRate() error {
	if r.o.MaxRejectRate <= 0 || r.stats.Rows == 0 || (r.stats.Rows < 1000 && !r.eof) {
		return nil
	}
	if rate := float64(r.stats.Rejected) / float64(r.stats.Rows); rate > r.o.MaxRejectRate {
		return fmt.Errorf("%s: %w: %d of %d records rejected (limit %.4g%%)", r.o.File, ErrRejectLimit,
			r.stats.Rejected, r.stats.Rows, 100*r.o.MaxRejectRate)
	}
	return nil
}

func (r *Reader) emit(rj Reject) error {
	if r.o.Rejects == nil {
		return nil
	}
	if err := r.o.Rejects.Reject(rj); err != nil {
		return fmt.Errorf("writing reject report: %w", err)
	}
	return nil
}

// fail makes err final and wipes the unfinished batch.
func (r *Reader) fail(err error) error {
	r.err = err
	r.b.release()
	if r.o.Logger != nil {
		r.o.Logger.Error("perso input aborted", "file", r.o.File, "rows", r.stats.Rows,
			"records", r.stats.Records, "rejected", r.stats.Rejected, "err", err)
	}
	return err
}

func (r *Reader) finishLog() {
	if r.o.Logger != nil {
		r.o.Logger.Info("perso input read", "file", r.o.File, "rows", r.stats.Rows,
			"records", r.stats.Records, "rejected", r.stats.Rejected, "batches", r.stats.Batches)
	}
}

// flush decrypts transport-encrypted columns and derives missing OPc
// values for the rows of the current batch.
func (r *Reader) flush(ctx context.Context) error {
	if r.tr.active && !r.o.KeepEncrypted {
		for _, col := range r.tr.cols {
			if err := r.tr.decryptColumn(ctx, r.b, col); err != nil {
				return err
			}
		}
	}
	if r.p.sawOPOnly && !(r.tr.active && r.o.KeepEncrypted) {
		if err := deriveOPcColumn(r.b); err != nil {
			return err
		}
	}
	r.p.sawOPOnly = false
	return nil
}

// Close wipes any unfinished batch and the reader's buffered input, and
// closes the input when it is an io.Closer (Open's files always are).
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.b.release()
	r.p.batchOP.Wipe()
	if r.err == nil || r.err == io.EOF {
		r.err = errors.New("reader closed")
	}
	return r.src.close()
}

// rowParser validates one row and writes it into the batch.
type rowParser struct {
	l         Layout
	b         *batch
	v         *Validator
	defAlg    esim.Algorithm
	probs     []Problem
	present   []bool
	strs      [][]byte
	sawOPOnly bool // some row of this batch has OP but no OPc
	batchOP   Secret
	// keysOptional accepts a record without Ki and OPc (ParseText for a
	// caller that keeps a template's keys on purpose).
	keysOptional bool
}

func (p *rowParser) problem(col int, v []byte, raw bool, reason string) {
	cls := classify(v)
	if raw {
		cls = classifyRaw(v)
	}
	p.probs = append(p.probs, Problem{Column: p.l.colName(col), Class: cls, Reason: reason})
}

// parse validates the row; on success it is committed to the batch.
func (p *rowParser) parse(row *rawRow) bool {
	p.probs = p.probs[:0]
	clear(p.present)
	v := row.vals
	p.v.checkIdentity(v[cICCID], v[cIMSI], &p.probs)
	p.present[cICCID], p.present[cIMSI] = true, true
	p.strs[cICCID], p.strs[cIMSI] = v[cICCID], v[cIMSI]

	alg := p.defAlg
	if a := v[cAlg]; len(a) > 0 {
		var err error
		if alg, err = esim.ParseAlgorithm(string(a)); err != nil {
			p.problem(cAlg, a, false, "unknown algorithm, want milenage, tuak or test")
		}
	}
	p.present[cAlg] = true
	if len(v[cOP]) == 0 && p.batchOP != nil {
		v[cOP], row.raw[cOP] = p.batchOP, true
	}

	for col := cKi; col < len(v); col++ {
		w := p.l.width(col)
		if w == 0 || len(v[col]) == 0 {
			continue
		}
		p.fixed(col, w, v[col], row.raw[col])
	}
	for _, col := range [...]int{cMSISDN, cSMSC, cSPN, cProfileName, cServiceProvider, cProfileType, cProfileClass} {
		if len(v[col]) > 0 {
			p.text(col, v[col])
		}
	}

	if !p.present[cKi] && len(v[cKi]) == 0 && !p.keysOptional {
		p.probs = append(p.probs, Problem{Column: ColKi, Class: "empty", Reason: "missing"})
	}
	opOnly := false
	switch alg {
	case esim.AlgorithmMilenage, esim.AlgorithmTUAK:
		if len(v[cOPc]) == 0 && len(v[cOP]) == 0 && !p.keysOptional {
			p.probs = append(p.probs, Problem{Column: ColOPc, Class: "empty", Reason: "missing: " + alg.String() + " needs OPc or OP"})
		}
		opOnly = len(v[cOPc]) == 0 && len(v[cOP]) > 0
		if alg == esim.AlgorithmMilenage && (p.l.KiBytes != 16 || p.l.OPcBytes != 16) {
			p.probs = append(p.probs, Problem{Column: ColAlgorithm, Class: "milenage", Reason: "Milenage needs 16-byte Ki and OPc but the batch layout is wider"})
		}
		if alg == esim.AlgorithmTUAK && opOnly {
			p.probs = append(p.probs, Problem{Column: ColOP, Class: classify(v[cOP]), Reason: "TUAK TOPc cannot be derived here; supply opc"})
		}
	}
	if len(p.probs) == 0 && !p.v.rules.NoDuplicateCheck {
		if col := p.v.duplicate(v[cICCID], v[cIMSI]); col != "" {
			p.probs = append(p.probs, Problem{Column: col, Class: classify(v[colIndex(col)]), Reason: "duplicate " + col + " (an earlier record of this input has it)"})
		}
	}
	if len(p.probs) > 0 {
		p.b.wipeRow()
		return false
	}
	if !p.v.rules.NoDuplicateCheck {
		p.v.remember(v[cICCID], v[cIMSI])
	}
	if opOnly {
		p.sawOPOnly = true
	}
	p.b.commit(p.present, p.strs, alg)
	return true
}

func colIndex(name string) int {
	for i, n := range baseNames {
		if n == name {
			return i
		}
	}
	return -1
}

// fixed parses a fixed-size column into its slot in the batch.
func (p *rowParser) fixed(col, w int, val []byte, raw bool) {
	dst := p.b.slot(col)
	switch {
	case col >= cPIN1 && col <= cADM1:
		if p.pin(col, dst, val, raw) {
			p.present[col] = true
		}
		return
	case raw:
		if len(val) != w {
			p.problem(col, val, true, fmt.Sprintf("wrong length, want %d bytes", w))
			return
		}
		copy(dst, val)
	default:
		if !decodeHex(dst, val) {
			clear(dst)
			if !allHex(val) {
				p.problem(col, val, false, "not hexadecimal")
			} else {
				p.problem(col, val, false, fmt.Sprintf("wrong length, want %d hex digits", 2*w))
			}
			return
		}
	}
	p.present[col] = true
}

// pin parses PIN1/PIN2 (4-8 digits), PUK1/PUK2 (8 digits) and ADM1 (4-8
// digits or 16 hex digits) into the 8-byte card value, by esim's rules.
func (p *rowParser) pin(col int, dst, val []byte, raw bool) bool {
	kind := esim.PIN
	switch col {
	case cPUK1, cPUK2:
		kind = esim.PUK
	case cADM1:
		kind = esim.ADM
	}
	if raw {
		if err := kind.Check(val); err != nil {
			p.problem(col, val, true, esim.Reason(err))
			return false
		}
		copy(dst, val)
		return true
	}
	if err := kind.Encode(dst, val); err != nil {
		p.problem(col, val, false, esim.Reason(err))
		return false
	}
	return true
}

// text checks a free-text or number column.
func (p *rowParser) text(col int, v []byte) {
	if !utf8.Valid(v) {
		p.problem(col, v, false, "invalid UTF-8")
		return
	}
	switch col {
	case cMSISDN, cSMSC:
		d := v
		if d[0] == '+' {
			d = d[1:]
		}
		max := 20 // EF.MSISDN and SMSP hold up to 20 digits
		if len(d) == 0 || len(d) > max || !allDigits(d) {
			p.problem(col, v, false, fmt.Sprintf("want an optional + and 1-%d digits", max))
			return
		}
	case cSPN:
		if utf8.RuneCount(v) > 16 || strings.ContainsFunc(string(v), isControl) {
			p.problem(col, v, false, "want at most 16 printable characters")
			return
		}
	default:
		if len(v) > 256 || strings.ContainsFunc(string(v), isControl) {
			p.problem(col, v, false, "want at most 256 bytes of printable text")
			return
		}
	}
	p.present[col] = true
	p.strs[col] = v
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7F }
