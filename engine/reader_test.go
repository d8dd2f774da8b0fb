package engine

import (
	"errors"
	"sync/atomic"
	"testing"
)

// A chunk requested again while its first request still waits in the
// reader (its job was rescued after engine.rescue_after and River gave the
// new attempt to the same worker) replaces the first request, which is
// answered with the later one's outcome: its Work call returns, and the
// run's count of chunks in flight comes back to zero. The first request
// used to be overwritten unanswered, and the worker never finished the
// batch (TestRunWorkersShareBatch hung at load 12 with rescue_after 3s).
func TestReaderAnswersASupersededRequestWithTheLaterOne(t *testing.T) {
	for _, outcome := range []error{nil, errors.New("store failed")} {
		var inFlight atomic.Int64
		mk := func() *chunk {
			inFlight.Add(1)
			return &chunk{args: ChunkArgs{Batch: "b", Chunk: 3, First: 600, Count: 200}, done: make(chan error, 1), inFlight: &inFlight}
		}
		s := &reader{pending: map[int64]*chunk{}}
		first, second, third := mk(), mk(), mk()
		for _, c := range []*chunk{first, second, third} {
			if err := s.request(c); err != nil {
				t.Fatal(err)
			}
		}
		if len(s.pending) != 1 || s.pending[600] != third {
			t.Fatalf("pending %v: want the latest request only", s.pending)
		}
		if len(first.done)+len(second.done) != 0 {
			t.Fatal("a superseded request was answered before the chunk was stored or failed")
		}
		if outcome == nil {
			third.answer(nil)
		} else {
			third.fail(outcome)
		}
		for i, c := range []*chunk{first, second, third} {
			select {
			case err := <-c.done:
				if err != outcome {
					t.Errorf("request %d answered %v, want %v", i+1, err, outcome)
				}
			default:
				t.Errorf("request %d was not answered: its Work call would wait forever", i+1)
			}
		}
		if !first.duplicate || !second.duplicate || third.duplicate {
			t.Error("only the superseded requests are marked duplicate (not counted as rolled back)")
		}
		if n := inFlight.Load(); n != 0 {
			t.Errorf("%d chunks still counted in flight after every request was answered", n)
		}
	}
}
