package store

import (
	"context"
	"database/sql"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Batch writes that commit together with a caller's own statements.
//
// A batch's input is cut into chunks, each a River job (package jobs). A
// chunk's profiles and the completion of its job must commit in one
// transaction, or a crash between the two would store a chunk twice or
// lose it. The store therefore lets the caller run its statements inside
// the transaction that writes the profiles (BatchWrite.InTx), and hands a
// job queue the database handle it shares with the store (JobDB).

// Tx is the transaction of a write, open for a caller's own statements:
// the database/sql transaction of the SQLite inventory or the pgx
// transaction of PostgreSQL (exactly one is non-nil). It is valid only
// during the callback it is passed to.
type Tx struct {
	sql *sql.Tx
	pg  pgx.Tx
}

// SQL returns the SQLite transaction, nil on PostgreSQL.
func (t Tx) SQL() *sql.Tx { return t.sql }

// Pgx returns the PostgreSQL transaction, nil on SQLite.
func (t Tx) Pgx() pgx.Tx { return t.pg }

// BatchWrite is one atomic write into a batch: the profiles of one input
// chunk and what the batch's counters learn from it.
type BatchWrite struct {
	Profiles []Profile
	// Rejected counts records of the chunk refused before storage (added
	// to Batch.Rejected).
	Rejected int
	// ChunkDone adds one to Batch.ChunksDone.
	ChunkDone bool
	// Chunk numbers the input chunk the profiles come from, from 1 (0: the
	// write is not a chunk's). It is recorded with each row. On SQLite a
	// group of chunk writes of more than 100 rows commits its rows in
	// pieces of at most 100, each its own transaction, so that live ES9+ calls wait for
	// at most one piece, and commits the counters and InTx last: the counts
	// and InTx stay all or nothing, the rows do not. An InTx error or a
	// crash can leave a chunk's rows stored and uncounted; writing the
	// chunk again (same Chunk) counts them once, as inserted. PostgreSQL
	// writes everything in one transaction whatever Chunk is.
	Chunk int
	// Worker names who wrote it; its tally (BatchWorkers) grows by one
	// chunk and the profiles inserted. Empty: no tally.
	Worker string
	// InTx runs inside the write's transaction after the profiles and
	// counters are written and before the commit (e.g. completing the job
	// that produced the chunk). Its error rolls the whole write back and is
	// returned as is. nil: nothing to add.
	InTx func(ctx context.Context, tx Tx) error

	// material: WriteMaterial wrote the protected material of Profiles
	// already (SQLite); the write's transaction adds only the rows.
	material bool
}

// CreateBatchTx is CreateBatch with inTx run in the transaction that
// creates the batch (e.g. inserting its chunk jobs), so that a crash leaves
// the batch with its jobs or neither. When the batch exists already inTx
// does not run: the stored record is returned, or ErrConflict.
func (d *DB) CreateBatchTx(ctx context.Context, b Batch, inTx func(ctx context.Context, tx Tx) error) (Batch, error) {
	if b.ID == "" {
		return Batch{}, newErr(ErrInvalid, EventBatch, KeyBatch, "")
	}
	if b.Chunks < 0 || b.Records < 0 || b.Rejected < 0 {
		return Batch{}, &Error{Kind: ErrInvalid, Event: EventBatch, Key: KeyBatch, Value: b.ID, Detail: "negative chunk, record or reject count"}
	}
	got, err := d.b.createBatch(ctx, b, d.now(), inTx)
	return got, withEvent(err, EventBatch)
}

// WorkerTally is what one worker contributed to a batch.
type WorkerTally struct {
	Worker   string
	Chunks   int
	Profiles int64
}

// WriteBatch inserts profiles into an existing batch (state Available)
// and updates its counters, with w.InTx in the same transaction: all or
// nothing (but for the rows of a large chunk write on SQLite, which
// commit ahead in pieces: see BatchWrite.Chunk). Profiles are treated as by PutBatch: an ICCID the batch already
// holds is a duplicate, one held by another batch a conflict, never
// overwritten.
//
// On SQLite the protected material goes to the blobs file first, in its
// own commit (insert-if-absent); a write that rolls back, or a crash,
// leaves material without a row, which a later write of the same ICCID and
// batch adopts and the sweep otherwise collects (SweepPolicy.OrphanAfter).
func (d *DB) WriteBatch(ctx context.Context, batchID string, w BatchWrite) (PutResult, error) {
	if err := checkProfiles(batchID, w.Profiles); err != nil {
		return PutResult{}, err
	}
	if w.Rejected < 0 {
		return PutResult{}, &Error{Kind: ErrInvalid, Event: EventBatch, Key: KeyBatch, Value: batchID, Detail: "negative reject count"}
	}
	if len(w.Profiles) == 0 && w.Rejected == 0 && !w.ChunkDone && w.InTx == nil {
		_, err := d.b.getBatch(ctx, batchID)
		return PutResult{}, withEvent(err, EventBatch)
	}
	r, err := d.b.putProfiles(ctx, batchID, []BatchWrite{w}, d.now())
	if err != nil {
		return PutResult{}, withEvent(err, EventBatch)
	}
	return r[0], nil
}

// WriteBatches is WriteBatch for several writes into one batch, in one
// transaction: all or nothing (an InTx error rolls every write back and is
// returned as is; the rows of chunk writes on SQLite excepted, see
// BatchWrite.Chunk). A bulk load commits its chunks in groups this way
// because each commit pays a flush to disk (SQLite: fsync of the material
// file; PostgreSQL: the server's WAL flush) whose fixed cost dominates a
// chunk's write: one flush per group instead of one per chunk. Results are
// in the order of ws.
func (d *DB) WriteBatches(ctx context.Context, batchID string, ws []BatchWrite) ([]PutResult, error) {
	if err := checkWrites(batchID, ws); err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, nil
	}
	r, err := d.b.putProfiles(ctx, batchID, ws, d.now())
	return r, withEvent(err, EventBatch)
}

// WriteMaterial writes ahead the part of ws that does not belong in the
// transaction of WriteBatches, so that a bulk loader can write one group's
// material while the previous group's transaction runs: on SQLite the
// protected material (segments appended to the segment file and flushed,
// wrapped PPKs and extents committed to the blobs file with
// synchronous=FULL: durable when this returns, the same write WriteBatch
// starts with); on PostgreSQL nothing (material and rows go in one COPY).
// The writes are marked: a WriteBatch or WriteBatches of these same
// BatchWrite values afterwards writes only the rows, and must not change
// their Profiles. Material without its row (the rows never written, or
// refused as conflicts) is what a crash between the two commits leaves
// already: a re-run adopts it, the sweep collects it (SweepPolicy.OrphanAfter).
func (d *DB) WriteMaterial(ctx context.Context, batchID string, ws []BatchWrite) error {
	for i := range ws {
		if err := checkProfiles(batchID, ws[i].Profiles); err != nil {
			return err
		}
	}
	b, ok := d.b.(*sqliteBackend)
	if !ok || len(ws) == 0 {
		return nil
	}
	if err := b.writeMaterial(ctx, batchID, ws, d.now()); err != nil {
		return withEvent(err, EventBatch)
	}
	for i := range ws {
		ws[i].material = true
	}
	return nil
}

// WriteBatchesUnsynced is WriteBatches without its last step on SQLite,
// the flush of the inventory's WAL to disk: the writes are committed (they
// survive kill -9, and a re-run sees them) but the machine's crash or a
// power loss may still undo them, together with everything InTx did, until
// Sync returns. A bulk loader overlaps that flush with its next group's
// transaction and reports a group stored only after Sync. On PostgreSQL a
// commit is durable already: this is WriteBatches.
func (d *DB) WriteBatchesUnsynced(ctx context.Context, batchID string, ws []BatchWrite) ([]PutResult, error) {
	b, ok := d.b.(*sqliteBackend)
	if !ok {
		return d.WriteBatches(ctx, batchID, ws)
	}
	if err := checkWrites(batchID, ws); err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, nil
	}
	r, err := b.putProfilesSync(ctx, batchID, ws, d.now(), false)
	return r, withEvent(err, EventBatch)
}

// Sync makes every write committed so far durable against a power loss
// (SQLite: flushes the inventory's WAL; PostgreSQL: nothing to do). See
// WriteBatchesUnsynced.
func (d *DB) Sync(ctx context.Context) error {
	b, ok := d.b.(*sqliteBackend)
	if !ok {
		return nil
	}
	return withEvent(b.syncWAL(), EventBatch)
}

// MaterialWritten reports whether WriteMaterial wrote w's material
// already: the caller may then reuse the memory of its segments (the
// write of the rows does not read them). False on PostgreSQL, whose rows
// carry the material.
func (w BatchWrite) MaterialWritten() bool { return w.material }

// checkProfiles refuses profiles without an ICCID or of another batch.
func checkProfiles(batchID string, ps []Profile) error {
	for i := range ps {
		p := &ps[i]
		if p.ICCID == "" {
			return &Error{Kind: ErrInvalid, Event: EventBatch, Key: KeyICCID, Detail: "profile without ICCID"}
		}
		if p.BatchID != "" && p.BatchID != batchID {
			return &Error{Kind: ErrInvalid, Event: EventBatch, Key: KeyICCID, Value: p.ICCID,
				Detail: "profile of batch " + p.BatchID + " put into batch " + batchID}
		}
	}
	return nil
}

// ListBatches returns every batch record, newest first.
func (d *DB) ListBatches(ctx context.Context) ([]Batch, error) {
	bs, err := d.b.listBatches(ctx)
	return bs, withEvent(err, EventBatch)
}

// BatchWorkers returns the per-worker tallies of a batch, by worker name.
func (d *DB) BatchWorkers(ctx context.Context, batchID string) ([]WorkerTally, error) {
	ws, err := d.b.batchWorkers(ctx, batchID)
	return ws, withEvent(err, EventBatch)
}

// Driver names the backend: "sqlite" or "postgres".
func (d *DB) Driver() string {
	if _, ok := d.b.(*pgBackend); ok {
		return "postgres"
	}
	return "sqlite"
}

// JobDB returns the database handle a job queue shares with the store, so
// that its jobs live in the same database and complete in the store's
// transactions (BatchWrite.InTx): on SQLite the inventory's write handle
// (one connection: SQLite has one writer; River's riversqlite driver wants
// exactly that), on PostgreSQL the pgx pool. Exactly one is non-nil. The
// handle belongs to the store: do not close it.
func (d *DB) JobDB() (*sql.DB, *pgxpool.Pool) {
	switch b := d.b.(type) {
	case *sqliteBackend:
		return b.w, nil
	case *pgBackend:
		return nil, b.pool
	}
	return nil, nil
}

// Footprint returns the bytes the store occupies (SQLite: the pages of
// both files, WAL not counted; PostgreSQL: the profiles table with its indexes and
// out-of-line storage) and the number of profiles it holds, for a figure of
// bytes per stored profile.
func (d *DB) Footprint(ctx context.Context) (bytes, profiles int64, err error) {
	return d.b.footprint(ctx)
}

// checkWrites refuses a group of writes with a bad profile or a negative
// reject count before anything is written.
func checkWrites(batchID string, ws []BatchWrite) error {
	for i := range ws {
		if err := checkProfiles(batchID, ws[i].Profiles); err != nil {
			return err
		}
		if ws[i].Rejected < 0 {
			return &Error{Kind: ErrInvalid, Event: EventBatch, Key: KeyBatch, Value: batchID, Detail: "negative reject count"}
		}
	}
	return nil
}
