package perso

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
)

// RecordReader adapts a Reader to Arrow's array.RecordReader, e.g. to feed
// an ipc.Writer or any Arrow consumer. As with Arrow readers, the current
// record is valid until the next call to Next (Retain it to keep it), and
// it is released (and its secrets wiped) then. Err is nil after a clean end.
// Releasing the adapter for the last time closes the Reader.
func (r *Reader) RecordReader(ctx context.Context) array.RecordReader {
	return &recordReader{r: r, ctx: ctx, refs: 1}
}

type recordReader struct {
	r    *Reader
	ctx  context.Context
	rec  arrow.Record
	err  error
	refs int64
}

func (a *recordReader) Retain() { atomic.AddInt64(&a.refs, 1) }

func (a *recordReader) Release() {
	if atomic.AddInt64(&a.refs, -1) == 0 {
		if a.rec != nil {
			a.rec.Release()
			a.rec = nil
		}
		a.r.Close()
	}
}

func (a *recordReader) Schema() *arrow.Schema { return a.r.Schema() }

func (a *recordReader) Next() bool {
	if a.rec != nil {
		a.rec.Release()
		a.rec = nil
	}
	if a.err != nil {
		return false
	}
	rec, err := a.r.Next(a.ctx)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			a.err = err
		}
		return false
	}
	a.rec = rec
	return true
}

func (a *recordReader) Record() arrow.Record { return a.rec }

func (a *recordReader) Err() error { return a.err }

var _ array.RecordReader = (*recordReader)(nil)
