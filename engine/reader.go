package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/apache/arrow/go/v15/arrow"

	"github.com/perso-esim/perso/perso"
)

// reader is the read stage. Chunk requests arrive in the order River's
// Work calls happen to run, roughly by chunk number; the input can only be
// read forward. The reader therefore streams the input once, cutting it
// into chunks: a requested chunk goes down the pipeline, one not (yet)
// requested waits in a bounded set (it is most likely requested a moment
// later, or belongs to another worker and is dropped). Only a request for
// a chunk already passed and dropped (a retry) makes it read the input
// again from the start.
type reader struct {
	p *pipeline

	r    *perso.Reader
	cur  arrow.Record // current batch of the input, and the next row in it
	row  int
	pos  int64 // good-record number of that row
	size int64 // chunk size of the batch, learned from the requests

	waiting map[int64][]arrow.Record // chunks read but not requested, by first record
	pending map[int64]*chunk         // requested, not read yet, by first record
}

func (s *reader) run(ctx context.Context, in <-chan *chunk, out chan<- *chunk) (err error) {
	s.waiting, s.pending = map[int64][]arrow.Record{}, map[int64]*chunk{}
	defer func() {
		s.close()
		for _, rows := range s.waiting {
			releaseAll(rows)
		}
		for _, c := range s.pending {
			c.fail(err)
		}
	}()
	for {
		if len(s.pending) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case c := <-in:
				if err := s.request(c); err != nil {
					return err
				}
			}
		}
		// Take every request already made before choosing what to read.
		for more := true; more; {
			select {
			case c := <-in:
				if err := s.request(c); err != nil {
					return err
				}
			default:
				more = false
			}
		}
		c, err := s.next(ctx)
		if err != nil {
			return err
		}
		if c == nil {
			continue
		}
		select {
		case out <- c:
		case <-ctx.Done():
			c.fail(ctx.Err())
			return ctx.Err()
		}
	}
}

// request records a chunk request.
func (s *reader) request(c *chunk) error {
	a := c.args
	if a.Count <= 0 || a.First < 0 {
		err := fmt.Errorf("engine: chunk job %d has no records", a.Chunk)
		c.fail(err)
		return err
	}
	if s.size == 0 {
		s.size = int64(a.Count)
		if a.Chunk > 0 {
			s.size = a.First / int64(a.Chunk)
		}
	}
	if old, ok := s.pending[a.First]; ok {
		// The same chunk again: its job was rescued (held past
		// engine.rescue_after while it waited here) and River gave the
		// new attempt to this worker. The older attempt's Work call
		// returns with the new one's outcome: overwritten unanswered, it
		// waited forever and kept the run from ending (its chunk counted
		// in flight); answered at once with an error, River would have
		// set the job retryable under the running new attempt (its state
		// update does not check the attempt), failing that one too.
		old.duplicate = true
		c.superseded = append(old.superseded, old)
		old.superseded = nil
	}
	s.pending[a.First] = c
	return nil
}

// next returns a requested chunk that has been read, or reads the chunk at
// the current position (returning it when requested, keeping it otherwise).
func (s *reader) next(ctx context.Context) (*chunk, error) {
	for first, c := range s.pending {
		if rows, ok := s.waiting[first]; ok {
			delete(s.waiting, first)
			delete(s.pending, first)
			c.rows = rows
			return c, nil
		}
	}
	if len(s.pending) == 0 {
		return nil, nil
	}
	lowest := slices.Min(mapsKeys(s.pending))
	if lowest < s.pos || s.r == nil {
		// Passed and dropped, or nothing read yet: from the start.
		if err := s.rewind(); err != nil {
			return nil, err
		}
	}
	first := s.pos
	want := s.size
	if c, ok := s.pending[first]; ok {
		want = int64(c.args.Count)
	}
	rows, err := s.take(ctx, want)
	if err != nil {
		return nil, err
	}
	if c, ok := s.pending[first]; ok {
		delete(s.pending, first)
		c.rows = rows
		return c, nil
	}
	// Not requested (yet): keep it while the set is small; beyond that the
	// oldest goes (another worker's, or requested again later).
	s.waiting[first] = rows
	if max := int64(4 * s.p.cfg.InFlight); int64(len(s.waiting)) > max {
		oldest := slices.Min(mapsKeys(s.waiting))
		releaseAll(s.waiting[oldest])
		delete(s.waiting, oldest)
	}
	return nil, nil
}

// take cuts the next n good records out of the input, as slices of its
// batches.
func (s *reader) take(ctx context.Context, n int64) ([]arrow.Record, error) {
	var rows []arrow.Record
	for n > 0 {
		if s.cur == nil || s.row >= int(s.cur.NumRows()) {
			if s.cur != nil {
				s.cur.Release()
				s.cur = nil
			}
			b, err := s.r.Next(ctx)
			if errors.Is(err, io.EOF) {
				releaseAll(rows)
				return nil, fmt.Errorf("engine: %s ended at good record %d, before the batch's chunks (did the input change?)", s.p.spec.Input, s.pos)
			}
			if err != nil {
				releaseAll(rows)
				return nil, fmt.Errorf("engine: reading %s: %w", s.p.spec.Input, err)
			}
			s.cur, s.row = b, 0
		}
		k := min(n, int64(s.cur.NumRows())-int64(s.row))
		rows = append(rows, s.cur.NewSlice(int64(s.row), int64(s.row)+k))
		s.row += int(k)
		s.pos += k
		n -= k
	}
	return rows, nil
}

// rewind reopens the input at its first record.
func (s *reader) rewind() error {
	s.close()
	opts := s.p.spec.Read
	opts.Rejects = nil // the survey reported them
	r, err := openInput(s.p.spec.Input, opts)
	if err != nil {
		return err
	}
	s.r, s.pos = r, 0
	return nil
}

func (s *reader) close() {
	if s.cur != nil {
		s.cur.Release()
		s.cur = nil
	}
	if s.r != nil {
		s.r.Close()
		s.r = nil
	}
}

func releaseAll(rows []arrow.Record) {
	for _, r := range rows {
		r.Release()
	}
}

func mapsKeys[V any](m map[int64]V) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
