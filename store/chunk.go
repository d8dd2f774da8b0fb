package store

import (
	"context"
	"time"
)

// Chunk claims: several batch workers share a batch's input by leasing
// chunks. They are kept apart from the rest of the store (their own backend
// interface, their own errors, this file) because a job queue will replace
// them; dropping them means deleting this file, the chunkBackend methods and
// the chunks table (and Batch.Chunks, ChunksDone).

// Errors of the chunk claims.
const (
	// ErrNoChunkAvailable: every chunk of the batch is done or leased.
	ErrNoChunkAvailable Kind = "no chunk available"
	// ErrLeaseLost: CompleteChunk by a worker whose lease was taken over.
	ErrLeaseLost Kind = "chunk lease lost"
)

// Chunk is one unit of batch input claimed by a worker until LeaseUntil.
type Chunk struct {
	BatchID    string
	Index      int
	Worker     string
	LeaseUntil time.Time
	Done       bool
	Claims     int // how many times the chunk was claimed (>1: a worker died or gave up)
}

// chunkBackend is what a database provides for chunk claims.
type chunkBackend interface {
	claimChunk(ctx context.Context, batchID, worker string, now, until time.Time) (Chunk, error)
	completeChunk(ctx context.Context, c Chunk, now time.Time) error
}

// ClaimChunk leases the lowest chunk of the batch that is not done and not
// leased (or whose lease expired) to worker; ErrNoChunkAvailable when none.
func (d *DB) ClaimChunk(ctx context.Context, batchID, worker string, lease time.Duration) (Chunk, error) {
	if worker == "" || lease <= 0 {
		return Chunk{}, &Error{Kind: ErrInvalid, Event: EventBatch, Key: KeyChunk, Detail: "worker and a positive lease are required"}
	}
	now := d.now()
	c, err := d.b.claimChunk(ctx, batchID, worker, now, now.Add(lease))
	return c, withEvent(err, EventBatch)
}

// CompleteChunk marks a claimed chunk done; ErrLeaseLost when another
// worker holds it now.
func (d *DB) CompleteChunk(ctx context.Context, c Chunk) error {
	return withEvent(d.b.completeChunk(ctx, c, d.now()), EventBatch)
}
