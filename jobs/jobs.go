// Package jobs is the job layer of perso: River (riverqueue/river) on the
// store's own database, so that a job and the data it produces commit in
// one transaction.
//
// The embedded store runs River on its SQLite inventory file (driver
// riversqlite, sharing the store's single write connection: SQLite has one
// writer); PostgreSQL runs it on the store's pgx pool (riverpgxv5). Both
// work the same jobs: a Client hides which driver is underneath, and
// CompleteTx completes a job inside a store transaction (store.Tx) of
// either kind.
//
// Kinds of work register as River workers on the Workers a Client is
// built with, each on its own queue: the batch engine's input chunks (one
// queue per batch, see engine), and later ES2+ progress callbacks and
// periodic maintenance (sweep, order expiry) as further workers and
// periodic jobs on queues of their own. A process works only the queues it
// names in Config.Queues; a Client without queues only inserts and lists.
package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/perso-esim/perso/store"
)

// Config configures a Client.
type Config struct {
	// ID identifies this worker (host, process): River records it on every
	// job the client attempts. At most 100 bytes; empty: River makes one.
	ID string
	// Queues maps each queue this process works to its concurrency (jobs
	// in flight). Empty: the client only inserts and lists jobs.
	Queues map[string]int
	// Workers are the job kinds this process can work.
	Workers *river.Workers
	// RescueAfter is how long a job may stay running before River, on
	// whichever client leads, takes it back from a worker presumed dead
	// (default DefaultRescueAfter). It must exceed the longest job.
	RescueAfter time.Duration
	// PollInterval is how often workers look for new jobs when no
	// notification arrives (default 50 ms).
	PollInterval time.Duration
	// PollOnlySQLite: on SQLite, no notification listener. River emulates
	// LISTEN/NOTIFY there with an outbox table that it queries every 50 ms
	// (its statement parsed every time: ≈ 8 ms of CPU per second of
	// uptime, as much again as the job fetch at a 50 ms PollInterval); new
	// jobs are then found by the fetch poll alone, within PollInterval.
	// PostgreSQL's LISTEN costs nothing while idle and is kept.
	PollOnlySQLite bool
	// Logger receives River's own logging (default: warnings and errors
	// to slog.Default()).
	Logger *slog.Logger
}

// DefaultRescueAfter is Config.RescueAfter's default: a chunk job takes
// seconds, so a job running for this long has lost its worker.
const DefaultRescueAfter = 5 * time.Minute

// Client is River on a store's database.
type Client struct {
	lite   *river.Client[*sql.Tx]
	pg     *river.Client[pgx.Tx]
	pool   *pgxpool.Pool // PostgreSQL only: the database clock
	liteDB *sql.DB       // SQLite only: the store's write handle River runs on
}

// Migrate brings River's tables in the store's database up to date. New
// calls it; it is exported for tools that only inspect jobs.
func Migrate(ctx context.Context, db *store.DB) error {
	lite, pool := db.JobDB()
	var err error
	switch {
	case lite != nil:
		var m *rivermigrate.Migrator[*sql.Tx]
		if m, err = rivermigrate.New(riversqlite.New(lite), nil); err == nil {
			_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
		}
		if err == nil {
			_, err = lite.ExecContext(ctx, pendingTagIndexSQLite)
		}
	case pool != nil:
		var m *rivermigrate.Migrator[pgx.Tx]
		if m, err = rivermigrate.New(riverpgxv5.New(pool), nil); err == nil {
			err = migrateLocked(ctx, pool, m)
		}
	default:
		err = errors.New("the store exposes no database handle")
	}
	if err != nil {
		return fmt.Errorf("jobs: migrating River's tables: %w", err)
	}
	return nil
}

// migrateLocked runs River's migrations under a session advisory lock.
// Several workers may start at once on a fresh database, and River's
// migrator takes no lock: one migrates, the others wait for it. (Not one
// transaction: a migration adding an enum value must commit before the
// next uses it.)
func migrateLocked(ctx context.Context, pool *pgxpool.Pool, m *rivermigrate.Migrator[pgx.Tx]) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	const key = `hashtext(current_schema() || '.perso_river_migrate')`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+key+`)`); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`)
	if _, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, pendingTagIndexPG)
	return err
}

// New migrates River's tables and returns a client on the store's
// database. Start it to work Config.Queues.
func New(ctx context.Context, db *store.DB, cfg Config) (*Client, error) {
	if err := Migrate(ctx, db); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(warnOnly{slog.Default().Handler()})
	}
	rc := &river.Config{
		ID:                   cfg.ID,
		Workers:              cfg.Workers,
		Logger:               logger,
		FetchCooldown:        5 * time.Millisecond,
		FetchPollInterval:    cmpOr(cfg.PollInterval, 50*time.Millisecond),
		JobTimeout:           -1, // a job ends when its work is stored; RescueAfter is the backstop
		RescueStuckJobsAfter: cmpOr(cfg.RescueAfter, DefaultRescueAfter),
		// Completed jobs record which worker stored which chunk
		// (attempted_by): keep them as long as the batch.
		CompletedJobRetentionPeriod: -1,
	}
	if len(cfg.Queues) > 0 {
		rc.Queues = map[string]river.QueueConfig{}
		for q, n := range cfg.Queues {
			rc.Queues[q] = river.QueueConfig{MaxWorkers: max(n, 1)}
		}
	}
	c := &Client{}
	var err error
	lite, pool := db.JobDB()
	if lite != nil {
		rc.PollOnly = cfg.PollOnlySQLite
		c.lite, err = river.NewClient(riversqlite.New(lite), rc)
		c.liteDB = lite
	} else {
		c.pg, err = river.NewClient(riverpgxv5.New(pool), rc)
		c.pool = pool
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return c, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Start starts working the configured queues.
func (c *Client) Start(ctx context.Context) error {
	if c.lite != nil {
		return c.lite.Start(ctx)
	}
	return c.pg.Start(ctx)
}

// Stop stops fetching new jobs and waits for the running ones to return
// (or ctx to end).
func (c *Client) Stop(ctx context.Context) error {
	if c.lite != nil {
		return c.lite.Stop(ctx)
	}
	return c.pg.Stop(ctx)
}

// ID is the worker identity River records on the jobs this client works.
func (c *Client) ID() string {
	if c.lite != nil {
		return c.lite.ID()
	}
	return c.pg.ID()
}

// InsertManyTx inserts jobs in a store transaction: they exist if and
// only if it commits.
func (c *Client) InsertManyTx(ctx context.Context, tx store.Tx, params []river.InsertManyParams) error {
	var err error
	switch {
	case c.lite != nil && tx.SQL() != nil:
		_, err = c.lite.InsertManyFastTx(ctx, tx.SQL(), params)
	case c.pg != nil && tx.Pgx() != nil:
		_, err = c.pg.InsertManyFastTx(ctx, tx.Pgx(), params)
	default:
		err = errors.New("transaction of another database")
	}
	if err != nil {
		return fmt.Errorf("jobs: inserting %d jobs: %w", len(params), err)
	}
	return nil
}

// InsertMany inserts jobs in their own transaction.
func (c *Client) InsertMany(ctx context.Context, params []river.InsertManyParams) error {
	var err error
	if c.lite != nil {
		_, err = c.lite.InsertManyFast(ctx, params)
	} else {
		_, err = c.pg.InsertManyFast(ctx, params)
	}
	if err != nil {
		return fmt.Errorf("jobs: inserting %d jobs: %w", len(params), err)
	}
	return nil
}

// List returns every job of a queue in the given states (all states when
// none), by id.
func (c *Client) List(ctx context.Context, queue string, states ...rivertype.JobState) ([]*rivertype.JobRow, error) {
	p := river.NewJobListParams().Queues(queue).First(10000).OrderBy(river.JobListOrderByID, river.SortOrderAsc)
	if len(states) > 0 {
		p = p.States(states...)
	}
	var out []*rivertype.JobRow
	for {
		var (
			res *river.JobListResult
			err error
		)
		if c.lite != nil {
			res, err = c.lite.JobList(ctx, p)
		} else {
			res, err = c.pg.JobList(ctx, p)
		}
		if err != nil {
			return nil, fmt.Errorf("jobs: listing queue %s: %w", queue, err)
		}
		out = append(out, res.Jobs...)
		if len(res.Jobs) < 10000 {
			return out, nil
		}
		p = p.After(res.LastCursor)
	}
}

// Reclaim makes every unfinished job of a queue available at once: jobs
// left running by a worker that died (kill -9, a crash), and jobs waiting
// for a retry after an error or given up on. Call it only when no other
// worker can be working the queue (a batch run by one process): River
// alone gives a dead worker's jobs back only after RescueAfter. It
// returns the number of jobs reclaimed.
func (c *Client) Reclaim(ctx context.Context, queue string) (int, error) {
	return c.reclaim(ctx, queue, func(*rivertype.JobRow) bool { return true },
		"reclaimed: the worker running it is gone (the batch was re-run)", true)
}

// RescueStuck is Reclaim for a queue that several live workers share: it
// makes available at once the running jobs attempted more than after ago
// (by the database's clock, so that workers on other machines agree) and
// the jobs waiting for a retry. Every worker calls it periodically, which
// bounds how long a dead worker's jobs wait to about after plus the
// period. River's own rescuer does the same only on its leader, every 30
// s, and then waits for the retry backoff and its scheduler: minutes.
//
// after must exceed the longest a live worker holds a job (a chunk's
// time in the pipeline): a job taken from a slow but live worker is
// worked twice, and CompleteTx lets exactly one of the attempts commit.
func (c *Client) RescueStuck(ctx context.Context, queue string, after time.Duration) (int, error) {
	now, err := c.dbNow(ctx)
	if err != nil {
		return 0, err
	}
	horizon := now.Add(-after)
	return c.reclaim(ctx, queue, func(j *rivertype.JobRow) bool {
		return j.AttemptedAt != nil && j.AttemptedAt.Before(horizon)
	}, fmt.Sprintf("rescued: running for more than %s, its worker is presumed dead", after), false)
}

// ReclaimWorker makes available at once the running jobs last attempted by
// worker id: at start-up, those are its own jobs from a previous life (a
// restarted container with the same worker ID), which no live process can
// be working, provided worker IDs are unique among live processes. It
// leaves other workers' jobs alone.
func (c *Client) ReclaimWorker(ctx context.Context, queue, id string) (int, error) {
	return c.reclaim(ctx, queue, func(j *rivertype.JobRow) bool {
		return len(j.AttemptedBy) > 0 && j.AttemptedBy[len(j.AttemptedBy)-1] == id
	}, "reclaimed: its worker "+id+" restarted", false)
}

// rescuePG makes the listed jobs available, each only if it is still
// running as the attempt listed: River's JobRescueMany updates by ID
// alone, so a job that a live worker completed (or that another worker
// rescued and took) between the listing and the update would run once
// more. Other workers share a PostgreSQL queue; SQLite's is one process's.
// scheduled_at is the database's clock, as the fetch compares.
func (c *Client) rescuePG(ctx context.Context, jobs []*rivertype.JobRow, errs [][]byte) (int, error) {
	n := 0
	for i, j := range jobs {
		tag, err := c.pool.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now(),
			errors = array_append(errors, $2::jsonb)
			WHERE id = $1 AND state = 'running' AND attempt = $3`, j.ID, errs[i], j.Attempt)
		if err != nil {
			return n, err
		}
		n += int(tag.RowsAffected())
	}
	return n, nil
}

// dbNow is the database's clock (PostgreSQL), or this machine's (SQLite:
// one machine).
func (c *Client) dbNow(ctx context.Context) (time.Time, error) {
	if c.pool == nil {
		return time.Now().UTC(), nil
	}
	var now time.Time
	if err := c.pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return now, fmt.Errorf("jobs: reading the database clock: %w", err)
	}
	return now.UTC(), nil
}

// reclaim makes the running jobs of queue that stuck selects available,
// and the jobs waiting for a retry (retryable; with all, also scheduled,
// discarded and cancelled ones).
func (c *Client) reclaim(ctx context.Context, queue string, stuck func(*rivertype.JobRow) bool, reason string, all bool) (int, error) {
	listed, err := c.List(ctx, queue, rivertype.JobStateRunning)
	if err != nil {
		return 0, err
	}
	var running []*rivertype.JobRow
	for _, j := range listed {
		if stuck(j) {
			running = append(running, j)
		}
	}
	n := 0
	if len(running) > 0 {
		now := time.Now().UTC()
		p := &riverdriver.JobRescueManyParams{StuckHorizon: now.Add(time.Second)}
		for _, j := range running {
			e, _ := json.Marshal(rivertype.AttemptError{At: now, Attempt: j.Attempt, Error: reason})
			p.ID = append(p.ID, j.ID)
			p.Error = append(p.Error, e)
			p.FinalizedAt = append(p.FinalizedAt, nil)
			p.ScheduledAt = append(p.ScheduledAt, now)
			p.State = append(p.State, string(rivertype.JobStateAvailable))
		}
		if c.lite != nil {
			p.Schema = c.lite.Schema()
			_, err = c.lite.Driver().GetExecutor().JobRescueMany(ctx, p)
			n += len(running)
		} else {
			var moved int
			moved, err = c.rescuePG(ctx, running, p.Error)
			n += moved
		}
		if err != nil {
			return 0, fmt.Errorf("jobs: reclaiming %d running jobs of %s: %w", len(running), queue, err)
		}
	}
	states := []rivertype.JobState{rivertype.JobStateRetryable}
	if all {
		states = append(states, rivertype.JobStateScheduled, rivertype.JobStateDiscarded, rivertype.JobStateCancelled)
	}
	waiting, err := c.List(ctx, queue, states...)
	if err != nil {
		return n, err
	}
	for _, j := range waiting {
		if c.lite != nil {
			_, err = c.lite.JobRetry(ctx, j.ID)
		} else {
			_, err = c.pg.JobRetry(ctx, j.ID)
		}
		if err != nil {
			return n, fmt.Errorf("jobs: retrying job %d of %s: %w", j.ID, queue, err)
		}
		n++
	}
	return n, nil
}

// ErrLost is returned by CompleteTx when the job is no longer this
// attempt's: River gave it to another worker (RescueAfter passed, or a
// Reclaim) or it was completed already. The caller must roll back what it
// wrote for the job.
var ErrLost = errors.New("jobs: the job was taken over or completed by another attempt")

// CompleteTx completes a job inside a store transaction, so that the job
// is done if and only if what it wrote commits. ctx must be (derived from)
// the context River passed to the worker's Work. It refuses (ErrLost) when
// the job is no longer running as this attempt, so that a chunk taken over
// by another worker is stored by one of them only.
func CompleteTx[T river.JobArgs](ctx context.Context, tx store.Tx, job *river.Job[T]) error {
	var (
		row *rivertype.JobRow
		err error
	)
	switch {
	case tx.SQL() != nil:
		row, err = completeTx[*riversqlite.Driver](ctx, tx.SQL(), job)
	case tx.Pgx() != nil:
		// Lock the job row first: two attempts of one job (a slow worker
		// and the one it was rescued for) then check and complete it one
		// after the other, never both on the same snapshot. (SQLite has
		// one writer: its transactions never interleave.)
		if _, err = tx.Pgx().Exec(ctx, "SELECT 1 FROM river_job WHERE id = $1 FOR UPDATE", job.ID); err != nil {
			return fmt.Errorf("jobs: locking job %d: %w", job.ID, err)
		}
		row, err = completeTx[*riverpgxv5.Driver](ctx, tx.Pgx(), job)
	default:
		err = errors.New("no transaction")
	}
	if err != nil {
		return err
	}
	if row.State != rivertype.JobStateCompleted {
		return fmt.Errorf("%w (job %d is %s)", ErrLost, job.ID, row.State)
	}
	return nil
}

func completeTx[D riverdriver.Driver[TTx], TTx any, T river.JobArgs](ctx context.Context, tx TTx, job *river.Job[T]) (*rivertype.JobRow, error) {
	client := river.ClientFromContext[TTx](ctx)
	// The attempt check first: River completes any running job, even
	// when the run is another worker's later attempt.
	cur, err := client.JobGetTx(ctx, tx, job.ID)
	if err != nil {
		return nil, fmt.Errorf("jobs: reading job %d: %w", job.ID, err)
	}
	if cur.State != rivertype.JobStateRunning || cur.Attempt != job.Attempt {
		return nil, fmt.Errorf("%w (job %d is %s, attempt %d; this is attempt %d)", ErrLost, job.ID, cur.State, cur.Attempt, job.Attempt)
	}
	done, err := river.JobCompleteTx[D](ctx, tx, job)
	if err != nil {
		return nil, fmt.Errorf("jobs: completing job %d: %w", job.ID, err)
	}
	return done.JobRow, nil
}

// warnOnly passes on warnings and errors only: River logs every
// maintenance pass at info level.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) WithAttrs(a []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(a)} }
func (w warnOnly) WithGroup(n string) slog.Handler      { return warnOnly{w.Handler.WithGroup(n)} }
