package perso

import (
	"unsafe"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/bitutil"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/perso-esim/perso/esim"
)

// zeroingAllocator zeroes memory when Arrow frees or reallocates it. The
// secret columns of a batch live in buffers from this allocator, so a
// record's Release wipes its Ki/OPc/PIN bytes.
type zeroingAllocator struct{ memory.Allocator }

func (z zeroingAllocator) Free(b []byte) {
	clear(b)
	z.Allocator.Free(b)
}

func (z zeroingAllocator) Reallocate(size int, b []byte) []byte {
	nb := z.Allocator.Allocate(size)
	copy(nb, b)
	clear(b)
	z.Allocator.Free(b)
	return nb
}

// batch accumulates the rows of one Arrow record batch column by column.
// Fixed-size (secret) values are written straight into their slot by the
// row parser; a rejected row's slots are wiped before the next row reuses
// them.
type batch struct {
	l    Layout
	mem  memory.Allocator // zeroing
	cap  int
	n    int
	cols []bcol
}

type bcol struct {
	width int // >0: fixed-size binary
	// fixed-size binary
	buf  *memory.Buffer
	data []byte
	// utf8
	offs []int32
	str  []byte
	// uint8
	u8 []uint8

	valid []bool
	nulls int
}

func newBatch(l Layout, mem memory.Allocator, capacity int) *batch {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	b := &batch{l: l, mem: zeroingAllocator{mem}, cap: capacity, cols: make([]bcol, l.numCols())}
	for i := range b.cols {
		b.cols[i].width = l.width(i)
		b.cols[i].valid = make([]bool, capacity) // every commit sets its row: reused across batches
	}
	b.reset()
	return b
}

// reset starts a new batch with fresh buffers (the previous ones now
// belong to the emitted record).
func (b *batch) reset() {
	b.n = 0
	for i := range b.cols {
		c := &b.cols[i]
		c.nulls = 0
		switch {
		case c.width > 0:
			c.buf = memory.NewResizableBuffer(b.mem)
			c.buf.Resize(b.cap * c.width)
			// No clear needed: Go's allocator returns zeroed memory, and
			// memory recycled through zeroingAllocator was wiped on Free.
			c.data = c.buf.Bytes()
		case i == cAlg:
			c.u8 = make([]uint8, b.cap)
		default:
			c.offs = make([]int32, 1, b.cap+1)
			c.str = make([]byte, 0, max(len(c.str)+len(c.str)/8, 64)) // sized from the previous batch
		}
	}
}

// slot returns the bytes of fixed-size column col in the current row.
func (b *batch) slot(col int) []byte {
	c := &b.cols[col]
	return c.data[b.n*c.width : (b.n+1)*c.width]
}

// wipeRow clears the current row's fixed-size slots (after a reject).
func (b *batch) wipeRow() {
	for i := range b.cols {
		if b.cols[i].width > 0 {
			clear(b.slot(i))
		}
	}
}

// commit finishes the current row. present tells which columns hold a value;
// strs holds the text of string columns.
func (b *batch) commit(present []bool, strs [][]byte, alg esim.Algorithm) {
	n := b.n
	for i := range b.cols {
		c := &b.cols[i]
		c.valid[n] = present[i]
		if !present[i] {
			c.nulls++
		}
		switch {
		case c.width > 0:
		case i == cAlg:
			c.u8[n] = uint8(alg)
			c.valid[n] = true
			if !present[i] {
				c.nulls--
			}
		default:
			if present[i] {
				c.str = append(c.str, strs[i]...)
			}
			c.offs = append(c.offs, int32(len(c.str)))
		}
	}
	b.n++
}

// valid reports whether column col of row i holds a value.
func (b *batch) isValid(col, i int) bool { return b.cols[col].valid[i] }

// fixedAt returns the bytes of fixed-size column col in row i.
func (b *batch) fixedAt(col, i int) []byte {
	c := &b.cols[col]
	return c.data[i*c.width : (i+1)*c.width]
}

// setValid marks a fixed-size value as present (after OPc derivation).
func (b *batch) setValid(col, i int) {
	c := &b.cols[col]
	if !c.valid[i] {
		c.valid[i] = true
		c.nulls--
	}
}

// build turns the accumulated rows into an Arrow record and resets the batch.
func (b *batch) build(schema *arrow.Schema) arrow.Record {
	n := b.n
	arrs := make([]arrow.Array, len(b.cols))
	for i := range b.cols {
		c := &b.cols[i]
		var bitmap *memory.Buffer
		if c.nulls > 0 {
			bm := make([]byte, bitutil.BytesForBits(int64(n)))
			for j := 0; j < n; j++ {
				if c.valid[j] {
					bitutil.SetBit(bm, j)
				}
			}
			bitmap = memory.NewBufferBytes(bm)
		}
		typ := schema.Field(i).Type
		var d *array.Data
		switch {
		case c.width > 0:
			d = array.NewData(typ, n, []*memory.Buffer{bitmap, c.buf}, nil, c.nulls, 0)
			c.buf.Release() // the array data holds it now
		case i == cAlg:
			d = array.NewData(typ, n, []*memory.Buffer{bitmap, memory.NewBufferBytes(u8bytes(c.u8[:n]))}, nil, c.nulls, 0)
		default:
			d = array.NewData(typ, n, []*memory.Buffer{bitmap, memory.NewBufferBytes(i32bytes(c.offs)), memory.NewBufferBytes(c.str)}, nil, c.nulls, 0)
		}
		arrs[i] = array.MakeFromData(d)
		d.Release()
	}
	rec := array.NewRecord(schema, arrs, int64(n))
	for _, a := range arrs {
		a.Release()
	}
	b.reset()
	return rec
}

// release frees the buffers of an unfinished batch (wiping secrets).
func (b *batch) release() {
	for i := range b.cols {
		c := &b.cols[i]
		if c.buf != nil {
			c.buf.Release()
			c.buf, c.data = nil, nil
		}
	}
}

func u8bytes(s []uint8) []byte { return s }

func i32bytes(s []int32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)
}
