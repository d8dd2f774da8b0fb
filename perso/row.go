package perso

import (
	"fmt"
	"sync/atomic"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/perso-esim/perso/esim"
)

// Builder assembles Records into Arrow batches of a layout without
// validating them (use Validator for that). The generator and tests use it.
type Builder struct {
	l      Layout
	schema *arrow.Schema
	b      *batch
	pres   []bool
	strs   [][]byte
}

// NewBuilder returns a Builder for batches of up to capacity rows.
func NewBuilder(l Layout, mem memory.Allocator, capacity int) (*Builder, error) {
	l, err := l.normalized()
	if err != nil {
		return nil, err
	}
	if capacity <= 0 {
		capacity = DefaultBatchSize
	}
	return &Builder{l: l, schema: l.Schema(), b: newBatch(l, mem, capacity),
		pres: make([]bool, l.numCols()), strs: make([][]byte, l.numCols())}, nil
}

// Schema returns the schema of the built batches.
func (b *Builder) Schema() *arrow.Schema { return b.schema }

// Len returns the number of rows appended since the last NewRecord.
func (b *Builder) Len() int { return b.b.n }

// Cap returns the batch capacity.
func (b *Builder) Cap() int { return b.b.cap }

// Append adds one record. Secret lengths must match the layout; values
// that are empty become nulls. The record's secrets are copied.
func (b *Builder) Append(r *Record) error {
	if b.b.n == b.b.cap {
		return fmt.Errorf("builder full (%d rows)", b.b.cap)
	}
	clear(b.pres)
	put := func(col int, v []byte) error {
		if len(v) == 0 {
			return nil
		}
		if len(v) != b.l.width(col) {
			return fmt.Errorf("column %s: %d bytes, layout wants %d", b.l.colName(col), len(v), b.l.width(col))
		}
		copy(b.b.slot(col), v)
		b.pres[col] = true
		return nil
	}
	for _, f := range []struct {
		col int
		v   []byte
	}{{cKi, r.Ki}, {cOPc, r.OPc}, {cOP, r.OP}, {cPIN1, r.PIN1}, {cPUK1, r.PUK1}, {cPIN2, r.PIN2}, {cPUK2, r.PUK2}, {cADM1, r.ADM1}} {
		if err := put(f.col, f.v); err != nil {
			b.b.wipeRow()
			return err
		}
	}
	for _, k := range r.OTA {
		j := -1
		for i, kvn := range b.l.OTAKVNs {
			if kvn == k.KVN {
				j = i
			}
		}
		if j < 0 {
			b.b.wipeRow()
			return fmt.Errorf("OTA key version %d is not in the layout", k.KVN)
		}
		for m, v := range [][]byte{k.KIc, k.KID, k.KIK} {
			if err := put(nBase+3*j+m, v); err != nil {
				b.b.wipeRow()
				return err
			}
		}
	}
	for _, f := range [...]struct {
		col int
		s   string
	}{{cICCID, r.ICCID}, {cIMSI, r.IMSI}, {cMSISDN, r.MSISDN}, {cSMSC, r.SMSC}, {cSPN, r.SPN},
		{cProfileName, r.ProfileName}, {cServiceProvider, r.ServiceProvider}, {cProfileType, r.ProfileType}, {cProfileClass, r.ProfileClass}} {
		b.pres[f.col] = f.s != "" || f.col == cICCID || f.col == cIMSI
		b.strs[f.col] = []byte(f.s)
	}
	b.b.commit(b.pres, b.strs, r.Algorithm)
	return nil
}

// NewRecord returns the batch built so far and starts a new one.
func (b *Builder) NewRecord() arrow.Record { return b.b.build(b.schema) }

// Release wipes and frees an unfinished batch.
func (b *Builder) Release() { b.b.release() }

// schemaLayout is the layout of one Arrow schema, as LayoutOf found it.
type schemaLayout struct {
	schema *arrow.Schema
	layout Layout
}

// lastLayout caches the layout of the schema RecordAt saw last. Every batch
// of one reader (and every slice of a batch) shares its schema pointer, and
// Arrow schemas are immutable, so the pointer identifies the layout: RecordAt
// checks the schema once per reader instead of once per row (LayoutOf
// compares whole schemas, a tenth of a profile's CPU in the engine).
var lastLayout atomic.Pointer[schemaLayout]

// layoutOfRecord is LayoutOf(rec.Schema()), cached by schema pointer.
func layoutOfRecord(rec arrow.Record) (Layout, error) {
	s := rec.Schema()
	if c := lastLayout.Load(); c != nil && c.schema == s {
		return c.layout, nil
	}
	l, err := LayoutOf(s)
	if err != nil {
		return l, err
	}
	lastLayout.Store(&schemaLayout{schema: s, layout: l})
	return l, nil
}

// RecordAt copies row i of a batch with a perso schema into a Record.
func RecordAt(rec arrow.Record, i int) (Record, error) {
	l, err := layoutOfRecord(rec)
	if err != nil {
		return Record{}, err
	}
	var r Record
	str := func(col int) string {
		a := rec.Column(col).(*array.String)
		if a.IsNull(i) {
			return ""
		}
		return a.Value(i)
	}
	fix := func(col int) Secret {
		a := rec.Column(col).(*array.FixedSizeBinary)
		if a.IsNull(i) {
			return nil
		}
		return append(Secret(nil), a.Value(i)...)
	}
	r.ICCID, r.IMSI = str(cICCID), str(cIMSI)
	r.Ki, r.OPc, r.OP = fix(cKi), fix(cOPc), fix(cOP)
	r.Algorithm = esim.Algorithm(rec.Column(cAlg).(*array.Uint8).Value(i))
	r.PIN1, r.PUK1, r.PIN2, r.PUK2, r.ADM1 = fix(cPIN1), fix(cPUK1), fix(cPIN2), fix(cPUK2), fix(cADM1)
	r.MSISDN, r.SMSC, r.SPN = str(cMSISDN), str(cSMSC), str(cSPN)
	r.ProfileName, r.ServiceProvider, r.ProfileType, r.ProfileClass = str(cProfileName), str(cServiceProvider), str(cProfileType), str(cProfileClass)
	for j, kvn := range l.OTAKVNs {
		k := OTAKeySet{KVN: kvn, KIc: fix(nBase + 3*j), KID: fix(nBase + 3*j + 1), KIK: fix(nBase + 3*j + 2)}
		if k.KIc != nil || k.KID != nil || k.KIK != nil {
			r.OTA = append(r.OTA, k)
		}
	}
	return r, nil
}
