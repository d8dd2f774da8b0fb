package engine

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/perso-esim/perso/jobs"
)

// A chunk requested again while its first request still waits in the
// reader (its job was rescued after engine.rescue_after and River gave the
// new attempt to the same worker) answers the first request as lost: its
// Work call returns and the run's chunks in flight go back to what is
// really in flight. The first request used to be overwritten unanswered,
// and the worker never finished the batch (TestRunWorkersShareBatch hung
// at load 12 with rescue_after 3s).
func TestReaderAnswersASupersededRequest(t *testing.T) {
	var inFlight atomic.Int64
	mk := func() *chunk {
		inFlight.Add(1)
		return &chunk{args: ChunkArgs{Batch: "b", Chunk: 3, First: 600, Count: 200}, done: make(chan error, 1), inFlight: &inFlight}
	}
	s := &reader{pending: map[int64]*chunk{}}
	first, again := mk(), mk()
	if err := s.request(first); err != nil {
		t.Fatal(err)
	}
	if err := s.request(again); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-first.done:
		if !errors.Is(err, jobs.ErrLost) {
			t.Errorf("the superseded request was answered %v, want jobs.ErrLost", err)
		}
	default:
		t.Fatal("the superseded request was not answered: its Work call would wait forever")
	}
	if len(again.done) != 0 || s.pending[600] != again || len(s.pending) != 1 {
		t.Errorf("the later request is not the one pending: %v", s.pending)
	}
	if n := inFlight.Load(); n != 1 {
		t.Errorf("%d chunks counted in flight, want 1 (the later request)", n)
	}
}
