package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The embedded backend: SQLite (modernc.org/sqlite, pure Go) in WAL mode.
// Writes go through one connection whose transactions start with BEGIN
// IMMEDIATE, so writers are serialised in the process without busy loops and
// across processes by SQLite's lock with a busy timeout; reads use a pool of
// read-only connections that WAL lets run beside the writer.
type sqliteBackend struct {
	// Two files: the inventory (4 KiB pages: small rows, cheap order
	// transactions) and, beside it, the protected material (64 KiB pages:
	// a 12 KiB profile costs a fifth of a WAL frame instead of four 4 KiB
	// frames). Each has one write connection (BEGIN IMMEDIATE) and a pool
	// of readers.
	w, r   *sql.DB // inventory
	bw, br *sql.DB // protected material ("<path>.blobs"): wrapped PPKs and segment extents
	// seg holds the segments themselves ("<path>.segments", append-only);
	// material written before it existed is still inline in blobs.segments.
	seg *segmentFile
	// walPath is the inventory's WAL, flushed after a bulk commit.
	walPath string
	// turn shares the write lock among processes ("<path>.turn"): every
	// use of the inventory's write connection takes it (turnConnector).
	turn writerTurn
	// group commits concurrent order transactions together (sqlite_group.go).
	group txGroup
	// rowsPerTx bounds the rows of one transaction of a chunk write
	// (sqliteRowsPerTx; tests set it lower).
	rowsPerTx int

	stmts sync.Map // stmtKey → *sql.Stmt: SQLite parses each statement once

	txOwner atomic.Pointer[sqliteTxOwner] // sqlite_es9.go

	// Checkpoints run in the background on their own connections (PASSIVE:
	// they block neither readers nor the writer), so that copying the WAL
	// into the database file overlaps with the next transactions instead
	// of stalling the commit that crosses the threshold.
	ckpt      []*sql.DB
	closeOnce sync.Once
	closeErr  error
	kick      chan struct{}
	stop      chan struct{}
	ckptDone  chan struct{}
	walFrames atomic.Int64 // the most frames left in a WAL after the last checkpoints
}

// sqliteMaxWALFrames bounds a WAL when the background checkpoints fall
// behind: a bulk load then checkpoints itself (RESTART) after its commit.
const sqliteMaxWALFrames = 16 * 1024 // × 4 or 64 KiB pages

// sqliteRestartWALFrames: a WAL longer than this, once fully copied into
// the database, is restarted (wal_checkpoint RESTART: the next commit
// writes at its beginning again). A PASSIVE checkpoint copies frames but
// never restarts the WAL; SQLite restarts it by itself only when a writer
// finds no reader using it, which never happens while downloads read
// continuously. Without the restart a perso serve soak grew its WAL by
// about 35 KiB per download (730 MB after 20 000 downloads, without end)
// and its resident memory with it: the WAL index (-shm, 32 KiB per 4 096
// frames) is mapped into every connection and was touched to its end
// (0.5 to 2.2 MiB of RssFile over 30 000 downloads). RESTART waits for the
// readers that still use the WAL, at most the checkpoint connection's busy
// timeout (sqliteRestartBusyMS), holding back commits meanwhile.
const (
	sqliteRestartWALFrames = 4096 // × 4 KiB pages: 16 MiB
	sqliteRestartBusyMS    = 100
)

func (b *sqliteBackend) checkpointer() {
	defer close(b.ckptDone)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.kick:
		}
		var most int64
		for _, db := range b.ckpt {
			var busy, log, done int64
			if err := db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err == nil {
				most = max(most, log-done)
				if busy == 0 && log == done && log > sqliteRestartWALFrames {
					// Restart the WAL: see sqliteRestartWALFrames. A
					// failure (busy) is retried at the next tick. A
					// restart holds the write lock: in the turn, so that
					// writers wait for it on the turn, not in SQLite's
					// busy handler.
					if b.turn.acquire(context.Background()) == nil {
						db.QueryRow(`PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &log, &done)
						b.turn.release()
					}
				}
			}
		}
		b.walFrames.Store(most)
	}
}

// afterBulkCommit wakes the checkpointer and, when it is far behind,
// checkpoints on the writers' connections. It also empties the two write
// connections' page caches: over a bulk load they grew past their
// cache_size by about 21 bytes per stored record each (measured with
// sqlite3_db_status CACHE_USED: 12.7 and 10.6 MiB after 400 000 records
// against limits of 8 and 4 MiB, still rising), which made the process's
// resident memory grow with the input. A bulk write touches only the right
// edge of each B-tree, a few pages that the next commit reads back from
// the OS page cache, so emptying costs no measurable CPU.
// Each file's cache is emptied after its own commit: the material of the
// next group may be in flight on the blobs connection (WriteMaterial)
// while the rows commit, and must not wait for it.
func (b *sqliteBackend) afterBulkCommit(ctx context.Context) {
	// The commit has succeeded; a failure here only leaves the cache as it
	// was, like the checkpoints below.
	b.w.ExecContext(ctx, `PRAGMA shrink_memory`)
	select {
	case b.kick <- struct{}{}:
	default:
	}
	if b.walFrames.Load() > sqliteMaxWALFrames {
		for _, db := range []*sql.DB{b.w} {
			var busy, log, done int64
			db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &log, &done)
		}
		b.walFrames.Store(0)
	}
}

type stmtKey struct {
	db *sql.DB
	q  string
}

// stmt returns the prepared statement for q on db.
func (b *sqliteBackend) stmt(ctx context.Context, db *sql.DB, q string) (*sql.Stmt, error) {
	k := stmtKey{db, q}
	if st, ok := b.stmts.Load(k); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := b.stmts.LoadOrStore(k, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// txStmt returns the write statement q bound to tx: the one prepared at
// open (sqliteTxStmts), or, for others, one prepared for this transaction
// (the single write connection is busy with tx, it cannot prepare for the
// cache now).
func (b *sqliteBackend) txStmt(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	return b.txStmtOn(ctx, b.w, tx, q)
}

func (b *sqliteBackend) txStmtOn(ctx context.Context, db *sql.DB, tx *sql.Tx, q string) (*sql.Stmt, error) {
	if st, ok := b.stmts.Load(stmtKey{db, q}); ok {
		return tx.StmtContext(ctx, st.(*sql.Stmt)), nil
	}
	return tx.PrepareContext(ctx, q)
}

// The statements used inside write transactions, prepared at open.
const (
	sqlMutateSelect = `SELECT ` + orderCols + ` FROM profiles WHERE iccid = ?`
	sqlMutateUpdate = `UPDATE profiles SET state = ?, eid = ?, matching_id = ?, cc_hash = ?,
		download_attempts = ?, cc_attempts = ?, order_expires_at = ?, updated_at = ? WHERE iccid = ?`
	sqlInsertProfile = `INSERT INTO profiles (iccid, imsi, profile_type, template_id, batch_id,
		ppk_key_ref, state, created_at, updated_at, sp_name, profile_name, profile_class, icon_type, icon,
		metadata_der, chunk)
		VALUES (?, ?, ?, ?, ?, ?, 'Available', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (iccid) DO NOTHING`
	sqlProfileOwner = `SELECT batch_id, chunk FROM profiles WHERE iccid = ?`
	sqlInsertBlob   = `INSERT INTO blobs (iccid, batch_id, protected_ppk, seg_off, seg_len, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (iccid, batch_id) DO NOTHING`
)

// sqliteRowsPerInsert is how many rows one bulk INSERT statement carries:
// a statement per row paid database/sql's and the driver's per-call
// overhead (argument conversion, a context watcher, bind, reset) a
// hundred thousand times per 100k profiles.
const sqliteRowsPerInsert = 50

// multiRow repeats the VALUES tuple of an INSERT … VALUES (…) statement n
// times.
func multiRow(q string, n int) string {
	i := strings.Index(q, "VALUES (")
	j := strings.Index(q[i:], ")") + i + 1
	tuple := q[i+len("VALUES ") : j]
	return q[:j] + strings.Repeat(", "+tuple, n-1) + q[j:]
}

var (
	sqlInsertProfiles = multiRow(sqlInsertProfile, sqliteRowsPerInsert)
	sqlInsertBlobs    = multiRow(sqlInsertBlob, sqliteRowsPerInsert)

	sqliteTxStmts     = []string{sqlMutateSelect, sqlMutateUpdate, sqlInsertProfile, sqlInsertProfiles, sqlProfileOwner, sqlAllocate}
	sqliteBlobTxStmts = []string{sqlInsertBlob, sqlInsertBlobs}
)

// rowErr is a row whose query could not be prepared.
type rowErr struct{ err error }

func (r rowErr) Scan(...any) error { return r.err }

func (b *sqliteBackend) queryRow(ctx context.Context, db *sql.DB, q string, args ...any) interface{ Scan(...any) error } {
	st, err := b.stmt(ctx, db, q)
	if err != nil {
		return rowErr{err}
	}
	return st.QueryRowContext(ctx, args...)
}

func (b *sqliteBackend) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := b.stmt(ctx, b.w, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

var sqliteMigrations = []string{
	// 1: the initial schema. The protected material lives in the blobs
	// file (sqliteBlobMigrations); purged records that Sweep removed it
	// there too.
	`CREATE TABLE batches (
		id           TEXT PRIMARY KEY,
		profile_type TEXT NOT NULL DEFAULT '',
		template_id  TEXT NOT NULL DEFAULT '',
		key_blob     BLOB,
		kek_label    TEXT NOT NULL DEFAULT '',
		chunks       INTEGER NOT NULL DEFAULT 0,
		profiles     INTEGER NOT NULL DEFAULT 0,
		duplicates   INTEGER NOT NULL DEFAULT 0,
		conflicts    INTEGER NOT NULL DEFAULT 0,
		chunks_done  INTEGER NOT NULL DEFAULT 0,
		created_at   INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL
	);
	CREATE TABLE chunks (
		batch_id    TEXT NOT NULL REFERENCES batches(id),
		idx         INTEGER NOT NULL,
		worker      TEXT NOT NULL DEFAULT '',
		lease_until INTEGER NOT NULL DEFAULT 0,
		done        INTEGER NOT NULL DEFAULT 0,
		claims      INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (batch_id, idx)
	);
	CREATE TABLE profiles (
		iccid             TEXT PRIMARY KEY,
		imsi              TEXT NOT NULL DEFAULT '',
		profile_type      TEXT NOT NULL DEFAULT '',
		template_id       TEXT NOT NULL DEFAULT '',
		batch_id          TEXT NOT NULL REFERENCES batches(id),
		ppk_key_ref       TEXT NOT NULL DEFAULT '',
		state             TEXT NOT NULL,
		eid               TEXT,
		matching_id       TEXT,
		cc_hash           BLOB,
		download_attempts INTEGER NOT NULL DEFAULT 0,
		cc_attempts       INTEGER NOT NULL DEFAULT 0,
		created_at        INTEGER NOT NULL,
		updated_at        INTEGER NOT NULL,
		order_expires_at  INTEGER NOT NULL DEFAULT 0,
		swept_at          INTEGER NOT NULL DEFAULT 0,
		sp_name           TEXT NOT NULL DEFAULT '',
		profile_name      TEXT NOT NULL DEFAULT '',
		profile_class     INTEGER NOT NULL DEFAULT 0,
		icon_type         INTEGER NOT NULL DEFAULT 0,
		icon              BLOB,
		metadata_der      BLOB,
		purged            INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX profiles_unpurged ON profiles(iccid) WHERE swept_at != 0 AND purged = 0;
	CREATE UNIQUE INDEX profiles_matching_id ON profiles(matching_id) WHERE matching_id IS NOT NULL;
	CREATE INDEX profiles_available ON profiles(profile_type) WHERE state = 'Available';
	CREATE INDEX profiles_eid ON profiles(eid) WHERE eid IS NOT NULL;
	CREATE INDEX profiles_installed ON profiles(updated_at) WHERE state = 'Installed' AND swept_at = 0;
	CREATE TABLE sessions (
		transaction_id   TEXT PRIMARY KEY,
		eid              TEXT NOT NULL DEFAULT '',
		iccid            TEXT NOT NULL DEFAULT '',
		matching_id      TEXT NOT NULL DEFAULT '',
		phase            TEXT NOT NULL DEFAULT '',
		euicc_challenge  BLOB,
		server_challenge BLOB,
		euicc_otpk       BLOB,
		smdp_otpk        BLOB,
		ot_key_ref       TEXT NOT NULL DEFAULT '',
		data             BLOB,
		version          INTEGER NOT NULL,
		created_at       INTEGER NOT NULL,
		updated_at       INTEGER NOT NULL,
		expires_at       INTEGER NOT NULL
	);
	CREATE INDEX sessions_expires ON sessions(expires_at);
	CREATE TABLE one_time_keys (
		euicc_otpk BLOB PRIMARY KEY,
		iccid      TEXT NOT NULL DEFAULT '',
		smdp_otpk  BLOB,
		key_ref    TEXT NOT NULL DEFAULT '',
		expires_at INTEGER NOT NULL
	);
	CREATE INDEX one_time_keys_expires ON one_time_keys(expires_at);
	CREATE TABLE audit (
		id       INTEGER PRIMARY KEY AUTOINCREMENT,
		iccid    TEXT NOT NULL,
		batch_id TEXT NOT NULL,
		state    TEXT NOT NULL,
		eid      TEXT NOT NULL DEFAULT '',
		action   TEXT NOT NULL,
		at       INTEGER NOT NULL
	);
	CREATE INDEX audit_iccid ON audit(iccid);`,
	// 2: input chunks became River jobs (package jobs, tables river_* in
	// this file): the hand-written chunk claims go. Batches record what
	// identifies their input and count rejects; workers are tallied.
	`DROP TABLE chunks;
	ALTER TABLE batches ADD COLUMN input_sha256 TEXT NOT NULL DEFAULT '';
	ALTER TABLE batches ADD COLUMN records INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE batches ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE batches ADD COLUMN iccid_first TEXT NOT NULL DEFAULT '';
	ALTER TABLE batches ADD COLUMN iccid_last TEXT NOT NULL DEFAULT '';
	CREATE TABLE batch_workers (
		batch_id   TEXT NOT NULL REFERENCES batches(id),
		worker     TEXT NOT NULL,
		chunks     INTEGER NOT NULL DEFAULT 0,
		profiles   INTEGER NOT NULL DEFAULT 0,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (batch_id, worker)
	);`,
	// 3: ES2+ operators (their TLS trust anchors and callback URL, see
	// operators.go) and which operator placed each order, so that the
	// order's progress is reported to it.
	`CREATE TABLE operators (
		id           TEXT PRIMARY KEY,
		trust_pem    TEXT NOT NULL,
		callback_url TEXT NOT NULL DEFAULT '',
		created_at   INTEGER NOT NULL
	);
	CREATE TABLE order_owners (
		iccid       TEXT PRIMARY KEY,
		operator_id TEXT NOT NULL
	);`,
	// 4: sessions lose their expiry index (sqlite_es9.go,
	// sqliteSessionsExpiresDropped).
	sqliteSessionsExpiresDropped,
	// 5: which input chunk stored a row (BatchWrite.Chunk; 0: not
	// recorded), so that a chunk written again after a crash between its
	// row transactions counts the rows it had stored as its own, not as
	// duplicates (putRowsTx).
	`ALTER TABLE profiles ADD COLUMN chunk INTEGER NOT NULL DEFAULT 0;`,
}

// The blobs file: the protected material, keyed by ICCID and batch so that
// a batch never overwrites or adopts another batch's material.
var sqliteBlobMigrations = []string{
	`CREATE TABLE blobs (
		iccid         TEXT NOT NULL,
		batch_id      TEXT NOT NULL,
		protected_ppk BLOB,
		segments      BLOB,
		PRIMARY KEY (iccid, batch_id)
	);`,
	// 2: when material was written (0 before this migration), so that the
	// sweep can collect material whose profile row never followed (a
	// PutBatch interrupted between its two commits and never re-run), and
	// how far that collection has got.
	`ALTER TABLE blobs ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX blobs_created ON blobs(created_at);
	CREATE TABLE orphan_scan (id INTEGER PRIMARY KEY CHECK (id = 1), checked_until INTEGER NOT NULL);
	INSERT INTO orphan_scan (id, checked_until) VALUES (1, -1);`,
	// 3: the segments move to the append-only segment file; a row names
	// its extent there (NULL: the segments are inline, written before).
	`ALTER TABLE blobs ADD COLUMN seg_off INTEGER;
	ALTER TABLE blobs ADD COLUMN seg_len INTEGER;`,
}

func openSQLite(ctx context.Context, path string, live bool) (backend, error) {
	if path == "" {
		return nil, errors.New("store: sqlite needs a file path")
	}
	if strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return nil, fmt.Errorf("store: sqlite dsn must be a plain file path, got %q", path)
	}
	b := &sqliteBackend{kick: make(chan struct{}, 1), stop: make(chan struct{}), ckptDone: make(chan struct{}),
		walPath: path + "-wal", rowsPerTx: sqliteRowsPerTx}
	var err error
	// The turn first: every use of the inventory's write connection takes
	// it, the migrations at open included (turnConnector).
	if b.turn.f, err = openTurnFile(path + ".turn"); err != nil {
		return nil, err
	}
	if b.turn.live = live; live && b.turn.f != nil {
		if err := b.turn.f.markLive(); err != nil {
			b.turn.close()
			return nil, err
		}
	}
	b.w, b.r, err = b.openFile(ctx, path, inventoryFile, sqliteMigrations, sqliteTxStmts)
	if err != nil {
		b.turn.close()
		return nil, err
	}
	b.bw, b.br, err = b.openFile(ctx, path+".blobs", materialFile, sqliteBlobMigrations, sqliteBlobTxStmts)
	if err != nil {
		b.w.Close()
		b.r.Close()
		b.turn.close()
		return nil, err
	}
	if b.seg, err = openSegmentFile(path + ".segments"); err != nil {
		b.w.Close()
		b.r.Close()
		b.bw.Close()
		b.br.Close()
		b.turn.close()
		return nil, err
	}
	go b.checkpointer()
	return b, nil
}

// sqliteFile is how one of the two database files is opened.
type sqliteFile struct {
	pageSize int
	// wal: WAL journal with synchronous=NORMAL and background checkpoints
	// (the inventory). Otherwise a rollback journal with synchronous=FULL
	// (the material).
	wal bool
	// writeCacheKiB and readCacheKiB bound the page cache of the write
	// connection and of each read connection: resident memory.
	writeCacheKiB, readCacheKiB int
}

var (
	// The inventory: small rows, order transactions beside bulk loads,
	// readers that must not wait for a writer: WAL.
	//
	// Its caches are small because in WAL mode a connection's cache is
	// only good until another connection commits: at the start of its
	// next transaction a connection that sees a changed WAL discards its
	// whole cache. perso serve commits on every ES9+ call, so its read
	// connections keep little beyond the transaction in hand, and its
	// write connection fills with the pages of the random profiles it
	// updates until a commit from another process (orders, a load) resets
	// it. A large cache then mostly buys resident memory, outside the Go
	// heap: the pure-Go SQLite allocates each 4 KiB page with its header in
	// an 8 KiB slot, and reuses rather than returns what a discarded cache
	// held. With 8 MiB per connection (8 readers and the writer) perso
	// serve's RSS rose from 71 to 103 MiB between 4 000 and 40 000
	// downloads of a soak and jumped by 8 MiB whenever the other process
	// stopped committing (the writer's cache then filled); 2 MiB readers
	// alone still left 71 → 96. With 2 MiB each it stayed within 74-78 MiB
	// from 4 000 to 30 000 (docs/performance.md § soak), and the server's
	// CPU per download was the same within the noise (4.27-4.46 ms at 1 or
	// 2 MiB against 4.42 at 8). 2 MiB (≈ 470 pages) still holds the
	// interior pages of the B-trees of millions of profiles, so a lookup by
	// matching ID or ICCID reads only its leaf from the OS page cache. The
	// bulk load needs no more: it writes at the right edge of each B-tree
	// and empties the write cache after every commit (afterBulkCommit).
	inventoryFile = sqliteFile{pageSize: 4096, wal: true, writeCacheKiB: 2048, readCacheKiB: 2048}
	// The material: a bulk load appends megabytes per transaction, in
	// pages that no transaction ever rewrites. In WAL mode every byte was
	// written twice (WAL, then the checkpoint into the database), read back
	// once, and the checkpointer fell behind by a gigabyte of WAL. With a
	// rollback journal the appended pages go straight into the database
	// file (only the few pages that existed before the transaction are
	// journaled), and synchronous=FULL fsyncs journal and database before
	// the commit returns: the inventory rows that name this material
	// commit afterwards, so even a power loss never leaves a row without
	// its material. The price: a download reading material waits (busy
	// timeout) while a bulk commit writes its pages.
	// A download reads its profile's material once (one or two 64 KiB
	// leaf pages, never read again by another download), so a read cache
	// of 1 MiB (15 pages: the B-tree's interior and the pages in hand) is
	// enough; 2 MiB per read connection only held other profiles' pages.
	materialFile = sqliteFile{pageSize: 65536, wal: false, writeCacheKiB: 4096, readCacheKiB: 1024}
)

// openFile opens one database file: a single write connection, migrated,
// with its transaction statements prepared, a pool of read-only
// connections, and (WAL) a connection for the background checkpoints.
func (b *sqliteBackend) openFile(ctx context.Context, path string, f sqliteFile, migrations, txStmts []string) (w, r *sql.DB, err error) {
	// WAL with synchronous=NORMAL: a commit survives a crash of the
	// process (kill -9); an OS crash or power loss may lose the last
	// commits but never corrupts the database. page_size applies when the
	// file is created.
	pragmas := fmt.Sprintf("_pragma=foreign_keys(1)&_pragma=page_size(%d)", f.pageSize)
	common := "_pragma=busy_timeout(30000)&" + pragmas
	if f.wal {
		common += "&_pragma=synchronous(NORMAL)"
	} else {
		common += "&_pragma=synchronous(FULL)"
	}
	writer := fmt.Sprintf("&_pragma=cache_size(-%d)&_txlock=immediate", f.writeCacheKiB)
	if f.wal {
		writer += "&_pragma=wal_autocheckpoint(0)&_journal_mode=WAL"
	} else {
		// TRUNCATE: the journal file is emptied, not deleted, after each
		// commit (no directory update per commit).
		writer += "&_pragma=journal_mode(TRUNCATE)"
	}
	w, err = b.openWriter("file:"+path+"?"+common+writer, f.wal)
	if err != nil {
		return nil, nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrateSQLite(ctx, w, migrations); err != nil {
		w.Close()
		return nil, nil, err
	}
	for _, q := range txStmts {
		if _, err := b.stmt(ctx, w, q); err != nil {
			w.Close()
			return nil, nil, fmt.Errorf("store: prepare: %w", err)
		}
	}
	r, err = sql.Open("sqlite", "file:"+path+"?"+common+fmt.Sprintf("&_pragma=cache_size(-%d)&_pragma=query_only(1)", f.readCacheKiB))
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	if !f.wal {
		return w, r, nil
	}
	// The checkpoint connection's own busy timeout bounds how long a WAL
	// restart holds back commits while it waits for readers (PASSIVE
	// checkpoints never wait).
	// Not through the turn: a PASSIVE checkpoint takes no write lock and
	// may run for tens of milliseconds; the checkpointer takes the turn
	// for a RESTART only.
	ckpt, err := sql.Open("sqlite", "file:"+path+"?"+fmt.Sprintf("_pragma=busy_timeout(%d)&", sqliteRestartBusyMS)+pragmas+"&_pragma=synchronous(NORMAL)&_pragma=cache_size(-1024)")
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, err
	}
	ckpt.SetMaxOpenConns(1)
	b.ckpt = append(b.ckpt, ckpt)
	return w, r, nil
}

// openWriter opens a connection pool that writes to a database file; on
// the inventory (inTurn) its connections take the writer turn for
// everything they run.
func (b *sqliteBackend) openWriter(dsn string, inTurn bool) (*sql.DB, error) {
	if !inTurn {
		return sql.Open("sqlite", dsn)
	}
	return sql.OpenDB(turnConnector{dsn: dsn, turn: &b.turn}), nil
}

func (b *sqliteBackend) close() error {
	b.closeOnce.Do(func() {
		if runs := b.group.runs.Load(); runs > 0 {
			slog.Debug("store: group commits", "transactions", runs, "calls", b.group.calls.Load())
		}
		close(b.stop)
		<-b.ckptDone
		b.stmts.Range(func(_, st any) bool { st.(*sql.Stmt).Close(); return true })
		errs := []error{b.r.Close(), b.w.Close(), b.br.Close(), b.bw.Close(), b.seg.close(), b.turn.close()}
		for _, db := range b.ckpt {
			errs = append(errs, db.Close())
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

func migrateSQLite(ctx context.Context, w *sql.DB, migrations []string) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("store: database schema version %d is newer than this binary (%d)", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
			v, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
	}
	return tx.Commit()
}

// sqliteUnique reports a UNIQUE constraint failure on the column.
func sqliteUnique(err error, column string) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE &&
		strings.Contains(se.Error(), column)
}

func sqliteUniqueAny(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE ||
		se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// --- batches ---

const batchCols = `id, profile_type, template_id, key_blob, kek_label, input_sha256, records, chunks,
	profiles, duplicates, conflicts, rejected, chunks_done, iccid_first, iccid_last, created_at, updated_at`

func scanSQLiteBatch(row interface{ Scan(...any) error }) (Batch, error) {
	var b Batch
	var created, updated int64
	err := row.Scan(&b.ID, &b.ProfileType, &b.TemplateID, &b.KeyBlob, &b.KEKLabel, &b.InputSHA256, &b.Records,
		&b.Chunks, &b.Profiles, &b.Duplicates, &b.Conflicts, &b.Rejected, &b.ChunksDone, &b.ICCIDFirst, &b.ICCIDLast,
		&created, &updated)
	b.CreatedAt, b.UpdatedAt = timeOrZero(created), timeOrZero(updated)
	return b, err
}

func (b *sqliteBackend) createBatch(ctx context.Context, in Batch, now time.Time, inTx func(context.Context, Tx) error) (Batch, error) {
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return Batch{}, err
	}
	defer tx.Rollback()
	got, err := scanSQLiteBatch(tx.QueryRowContext(ctx, `SELECT `+batchCols+` FROM batches WHERE id = ?`, in.ID))
	switch {
	case err == nil:
		return sameBatch(got, in)
	case !errors.Is(err, sql.ErrNoRows):
		return Batch{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO batches (id, profile_type, template_id, key_blob, kek_label,
		input_sha256, records, chunks, rejected, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		in.ID, in.ProfileType, in.TemplateID, nullBytes(in.KeyBlob), in.KEKLabel, in.InputSHA256, in.Records,
		in.Chunks, in.Rejected, now.UnixMicro(), now.UnixMicro()); err != nil {
		return Batch{}, err
	}
	if inTx != nil {
		if err := inTx(ctx, Tx{sql: tx}); err != nil {
			return Batch{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return Batch{}, err
	}
	return newBatch(in, now), nil
}

// newBatch is the record CreateBatch stored for in.
func newBatch(in Batch, now time.Time) Batch {
	return Batch{ID: in.ID, ProfileType: in.ProfileType, TemplateID: in.TemplateID, KeyBlob: in.KeyBlob,
		KEKLabel: in.KEKLabel, InputSHA256: in.InputSHA256, Records: in.Records, Chunks: in.Chunks,
		Rejected: in.Rejected, CreatedAt: now, UpdatedAt: now}
}

// sameBatch decides whether re-creating a batch is a repeat (the stored
// record is returned) or a conflict.
func sameBatch(got, in Batch) (Batch, error) {
	if string(got.KeyBlob) != string(in.KeyBlob) || got.Chunks != in.Chunks || got.Records != in.Records ||
		got.InputSHA256 != in.InputSHA256 || got.ProfileType != in.ProfileType || got.TemplateID != in.TemplateID ||
		got.KEKLabel != in.KEKLabel {
		return Batch{}, &Error{Kind: ErrConflict, Key: KeyBatch, Value: in.ID, Detail: "batch exists with other parameters"}
	}
	return got, nil
}

func (b *sqliteBackend) getBatch(ctx context.Context, id string) (Batch, error) {
	got, err := scanSQLiteBatch(b.r.QueryRowContext(ctx, `SELECT `+batchCols+` FROM batches WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Batch{}, newErr(ErrNotFound, "", KeyBatch, id)
	}
	return got, err
}

func (b *sqliteBackend) listBatches(ctx context.Context) ([]Batch, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT `+batchCols+` FROM batches ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Batch
	for rows.Next() {
		bt, err := scanSQLiteBatch(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, bt)
	}
	return out, rows.Err()
}

func (b *sqliteBackend) batchWorkers(ctx context.Context, batchID string) ([]WorkerTally, error) {
	if _, err := b.getBatch(ctx, batchID); err != nil {
		return nil, err
	}
	rows, err := b.r.QueryContext(ctx, `SELECT worker, chunks, profiles FROM batch_workers WHERE batch_id = ? ORDER BY worker`, batchID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WorkerTally
	for rows.Next() {
		var w WorkerTally
		if err := rows.Scan(&w.Worker, &w.Chunks, &w.Profiles); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

func (b *sqliteBackend) footprint(ctx context.Context) (bytes, profiles int64, err error) {
	for _, db := range []*sql.DB{b.r, b.br} {
		var size int64
		if err := db.QueryRowContext(ctx, `SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`).Scan(&size); err != nil {
			return 0, 0, err
		}
		bytes += size
	}
	seg, err := b.seg.allocated()
	if err != nil {
		return 0, 0, fmt.Errorf("store: segment file: %w", err)
	}
	bytes += seg
	// COUNT(*) reads every page of the profiles table. On a pooled reader
	// those pages would fill its 8 MiB cache and stay there: after a
	// 1 000 000-record run this scan raised the process's peak resident
	// memory by 15 MiB, past anything the run itself reached. So the scan runs
	// with a small cache, and the connection gets its own back after.
	conn, err := b.r.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA cache_size = -256`); err != nil {
		return 0, 0, fmt.Errorf("store: count profiles: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA cache_size = -%d`, inventoryFile.readCacheKiB))
	err = conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM profiles`).Scan(&profiles)
	return bytes, profiles, err
}

// putProfiles writes the protected material of every write first (blobs
// file, keyed by ICCID and batch, insert-if-absent, one commit and so one
// fsync for all of them), then the rows of all of them in one transaction.
// A crash in between leaves material without a row, which the re-run finds
// and keeps; a row never exists without its material. Material of an ICCID
// refused as a conflict is removed again.
func (b *sqliteBackend) putProfiles(ctx context.Context, batchID string, ws []BatchWrite, now time.Time) ([]PutResult, error) {
	return b.putProfilesSync(ctx, batchID, ws, now, true)
}

// putProfilesSync is putProfiles; without sync the inventory's WAL is not
// flushed after the commit (the caller calls syncWAL before it reports the
// writes stored: WriteBatchesUnsynced).
func (b *sqliteBackend) putProfilesSync(ctx context.Context, batchID string, ws []BatchWrite, now time.Time, sync bool) ([]PutResult, error) {
	if _, err := b.getBatch(ctx, batchID); err != nil {
		return nil, err
	}
	var ahead []BatchWrite // the writes whose material is not written yet (WriteMaterial)
	for k := range ws {
		if !ws[k].material {
			ahead = append(ahead, ws[k])
		}
	}
	if err := b.writeMaterial(ctx, batchID, ahead, now); err != nil {
		return nil, err
	}
	res, conflicts, err := b.putRowsTx(ctx, batchID, ws, now)
	if err != nil {
		return nil, err
	}
	if sync {
		if err := b.syncWAL(); err != nil {
			return nil, err
		}
	}
	if len(conflicts) > 0 {
		// Committed: the clean-up must not be cut short by a caller that
		// stops waiting now (the engine ends a finished batch's run).
		if err := b.deleteBlobs(context.WithoutCancel(ctx), conflicts); err != nil {
			return res, err
		}
	}
	b.afterBulkCommit(ctx)
	return res, nil
}

// sqliteRowsPerTx bounds the rows of one inventory transaction of a chunk
// write (BatchWrite.Chunk set): a multiple of sqliteRowsPerInsert, so that
// each piece goes in whole bulk statements.
//
// Why: every transaction holds SQLite's single write lock, and a live
// server's ES9+ calls commit through that same lock. A group of two
// 1 000-row chunks held it for 28 ms at the median and up to 90 ms, and
// the live download p99 under a 200 000-record batch went from 10 ms idle
// to 2 s (perso bench mixed, docs/performance.md § mixed). Pieces of 64 to
// 256 rows brought it to 90–120 ms; the batch pays one BEGIN/COMMIT and a
// turn hand-over per piece.
const sqliteRowsPerTx = 100

// putRowsTx writes the rows of ws into the inventory and updates the
// batch's counters, and returns the conflicts to clean up. Each
// transaction is taken in the writer turn like the order transactions: a
// live server's calls wait for it on the turn's file lock, woken as it
// ends, and the loader lets them have the turn before its next
// transaction (where SQLite's busy handler made them sleep 1, 2, 5 …
// 100 ms between tries while the loader took the lock again).
//
// Small writes commit in one transaction. When ws holds more rows than
// rowsPerTx and every write names its chunk, the rows go first in pieces
// of at most rowsPerTx rows, a transaction each, and the counters and
// each write's InTx (the chunk's job completion) commit last, in one
// transaction: the chunk is counted, and its job done, all or nothing,
// while its rows become visible piece by piece. A crash between the
// pieces and the last commit leaves rows that the chunk's next write
// recognises by their chunk column and counts as its own, once.
func (b *sqliteBackend) putRowsTx(ctx context.Context, batchID string, ws []BatchWrite, now time.Time) ([]PutResult, [][2]string, error) {
	ts := now.UnixMicro()
	tally := make([]rowTally, len(ws))
	n, chunks := 0, true
	for k := range ws {
		n += len(ws[k].Profiles)
		chunks = chunks && ws[k].Chunk > 0
	}
	piece := b.rowsPerTx
	if chunks && piece > 0 && n > piece {
		for k := range ws {
			for from := 0; from < len(ws[k].Profiles); from += piece {
				to := min(from+piece, len(ws[k].Profiles))
				if err := b.rowTx(ctx, func(tx *sql.Tx, st rowStmts) error {
					return b.insertRows(ctx, tx, st, batchID, &ws[k], from, to, ts, &tally[k])
				}); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	res := make([]PutResult, len(ws))
	err := b.rowTx(ctx, func(tx *sql.Tx, st rowStmts) error {
		for k := range ws {
			if tally[k].next < len(ws[k].Profiles) {
				if err := b.insertRows(ctx, tx, st, batchID, &ws[k], tally[k].next, len(ws[k].Profiles), ts, &tally[k]); err != nil {
					return err
				}
			}
			var err error
			if res[k], err = b.finishWrite(ctx, tx, batchID, &ws[k], &tally[k], ts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	var conflicts [][2]string
	for k := range res {
		for _, c := range res[k].Conflicts {
			conflicts = append(conflicts, [2]string{c.ICCID, batchID})
		}
	}
	return res, conflicts, nil
}

// rowTx runs fn in one inventory transaction, in the writer turn, with the
// row statements bound to it, and commits.
func (b *sqliteBackend) rowTx(ctx context.Context, fn func(tx *sql.Tx, st rowStmts) error) error {
	tx, err := b.w.BeginTx(ctx, nil) // in the writer turn until it ends (turnConnector)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := rowStmts{}
	for _, x := range []struct {
		st **sql.Stmt
		q  string
	}{{&st.one, sqlInsertProfile}, {&st.many, sqlInsertProfiles}, {&st.owner, sqlProfileOwner}} {
		if *x.st, err = b.txStmt(ctx, tx, x.q); err != nil {
			return err
		}
		defer (*x.st).Close()
	}
	if err := fn(tx, st); err != nil {
		return err
	}
	return tx.Commit()
}

// syncWAL makes the inventory commits so far survive a power loss. The
// inventory runs with synchronous=NORMAL (an order transaction must not
// pay an fsync), under which a commit survives kill -9 but the last ones
// may be lost with the machine; a bulk write reports its chunks stored
// (River jobs complete) only after this flush of the WAL. A checkpoint
// that has already moved the frames into the database file fsynced it
// first (SQLite's order), so flushing the WAL afterwards is still enough.
func (b *sqliteBackend) syncWAL() error {
	f, err := os.Open(b.walPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil // checkpointed and removed: in the synced database file
	}
	if err != nil {
		return fmt.Errorf("store: flush the inventory WAL: %w", err)
	}
	defer f.Close()
	if err := syncData(f); err != nil {
		return fmt.Errorf("store: flush the inventory WAL: %w", err)
	}
	return nil
}

// rowStmts are the statements of insertRows, bound to the transaction.
type rowStmts struct {
	one, many, owner *sql.Stmt // insert one row, sqliteRowsPerInsert rows; who holds an ICCID
}

// rowTally is what the rows of one write have done so far, across the
// transactions of putRowsTx.
type rowTally struct {
	next        int // the write's profiles before this one are in
	res         PutResult
	first, last string // the range of ICCIDs inserted
	// firstAt maps each ICCID of the write to its first index among the
	// write's profiles; built only when a row of the write's own chunk is
	// found already stored (isFirst).
	firstAt map[string]int
	// args holds one bulk statement's arguments, reused by the write's
	// pieces.
	args []any
}

// isFirst tells whether profile i of ps is the first with its ICCID.
func (t *rowTally) isFirst(ps []Profile, i int) bool {
	if t.firstAt == nil {
		t.firstAt = make(map[string]int, len(ps))
		for j := len(ps) - 1; j >= 0; j-- {
			t.firstAt[ps[j].ICCID] = j
		}
	}
	return t.firstAt[ps[i].ICCID] == i
}

// insertRows inserts the rows of w's profiles [from, to) in tx, into t.
// Rows go sqliteRowsPerInsert to a statement; a statement that inserted
// fewer (an ICCID exists already) is rolled back to its savepoint and its
// rows inserted one by one, to tell duplicates from conflicts.
func (b *sqliteBackend) insertRows(ctx context.Context, tx *sql.Tx, st rowStmts, batchID string, w *BatchWrite, from, to int, ts int64, t *rowTally) error {
	if t.args == nil {
		t.args = make([]any, 0, 15*sqliteRowsPerInsert)
	}
	args := t.args
	row := func(args []any, p *Profile) []any {
		m := &p.Metadata
		return append(args, p.ICCID, p.IMSI, p.ProfileType, p.TemplateID, batchID, p.PPKKeyRef,
			ts, ts, m.ServiceProviderName, m.ProfileName, m.ProfileClass, m.IconType, nullBytes(m.Icon),
			nullBytes(m.DER), w.Chunk)
	}
	i := from
	for ; i+sqliteRowsPerInsert <= to; i += sqliteRowsPerInsert {
		group := w.Profiles[i : i+sqliteRowsPerInsert]
		args = args[:0]
		for j := range group {
			args = row(args, &group[j])
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT bulk_rows`); err != nil {
			return err
		}
		r, err := st.many.ExecContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("store: insert %s…: %w", group[0].ICCID, err)
		}
		if n, _ := r.RowsAffected(); n == int64(len(group)) {
			if _, err := tx.ExecContext(ctx, `RELEASE bulk_rows`); err != nil {
				return err
			}
			t.res.Inserted += len(group)
			for j := range group {
				t.first, t.last = iccidRange(t.first, t.last, group[j].ICCID)
			}
			continue
		}
		for _, q := range []string{`ROLLBACK TO bulk_rows`, `RELEASE bulk_rows`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if err := b.insertOneByOne(ctx, st, batchID, w, i, i+sqliteRowsPerInsert, row, t); err != nil {
			return err
		}
	}
	if err := b.insertOneByOne(ctx, st, batchID, w, i, to, row, t); err != nil {
		return err
	}
	t.next = to
	return nil
}

// finishWrite adds what t counted for w to the batch's counters and its
// worker's tally, and runs w.InTx, in tx.
func (b *sqliteBackend) finishWrite(ctx context.Context, tx *sql.Tx, batchID string, w *BatchWrite, t *rowTally, ts int64) (PutResult, error) {
	res := t.res
	done := 0
	if w.ChunkDone {
		done = 1
	}
	if _, err := tx.ExecContext(ctx, `UPDATE batches SET profiles = profiles + ?, duplicates = duplicates + ?,
		conflicts = conflicts + ?, rejected = rejected + ?, chunks_done = chunks_done + ?,
		iccid_first = CASE WHEN ? != '' AND (iccid_first = '' OR ? < iccid_first) THEN ? ELSE iccid_first END,
		iccid_last = CASE WHEN ? > iccid_last THEN ? ELSE iccid_last END,
		updated_at = ? WHERE id = ?`,
		res.Inserted, res.Duplicates, len(res.Conflicts), w.Rejected, done, t.first, t.first, t.first, t.last, t.last,
		ts, batchID); err != nil {
		return res, err
	}
	if w.Worker != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO batch_workers (batch_id, worker, chunks, profiles, updated_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (batch_id, worker) DO UPDATE SET chunks = chunks + excluded.chunks,
			profiles = profiles + excluded.profiles, updated_at = excluded.updated_at`,
			batchID, w.Worker, done, res.Inserted, ts); err != nil {
			return res, err
		}
	}
	if w.InTx != nil {
		if err := w.InTx(ctx, Tx{sql: tx}); err != nil {
			return PutResult{}, err
		}
	}
	return res, nil
}

// insertOneByOne inserts the rows of w's profiles [from, to) one
// statement each. A row already stored is a duplicate when this batch
// holds it, a conflict when another does; but a row stored by an earlier
// write of the same chunk (its pieces committed, its last transaction
// not) is counted as inserted, at the first occurrence of its ICCID in
// the write.
func (b *sqliteBackend) insertOneByOne(ctx context.Context, st rowStmts, batchID string, w *BatchWrite, from, to int,
	row func([]any, *Profile) []any, t *rowTally) error {
	args := t.args[:0]
	for i := from; i < to; i++ {
		p := &w.Profiles[i]
		r, err := st.one.ExecContext(ctx, row(args[:0], p)...)
		if err != nil {
			return fmt.Errorf("store: insert %s: %w", p.ICCID, err)
		}
		if n, _ := r.RowsAffected(); n == 1 {
			t.res.Inserted++
			t.first, t.last = iccidRange(t.first, t.last, p.ICCID)
			continue
		}
		var holder string
		var chunk int
		if err := st.owner.QueryRowContext(ctx, p.ICCID).Scan(&holder, &chunk); err != nil {
			return err
		}
		switch {
		case holder != batchID:
			t.res.Conflicts = append(t.res.Conflicts, Conflict{ICCID: p.ICCID, BatchID: holder})
		case w.Chunk > 0 && chunk == w.Chunk && t.isFirst(w.Profiles, i):
			t.res.Inserted++
			t.first, t.last = iccidRange(t.first, t.last, p.ICCID)
		default:
			t.res.Duplicates++
		}
	}
	return nil
}

// iccidRange widens [first, last] to include iccid ("" first: empty).
// ICCIDs compare as strings: a batch's ICCIDs share their length.
func iccidRange(first, last, iccid string) (string, string) {
	if first == "" || iccid < first {
		first = iccid
	}
	if iccid > last {
		last = iccid
	}
	return first, last
}

// writeMaterial stores the material of ws (putBlobs) and empties the
// blobs writer's page cache (see afterBulkCommit).
func (b *sqliteBackend) writeMaterial(ctx context.Context, batchID string, ws []BatchWrite, now time.Time) error {
	n := 0
	for k := range ws {
		n += len(ws[k].Profiles)
	}
	if n == 0 {
		return nil
	}
	if err := b.putBlobs(ctx, batchID, ws, now); err != nil {
		return err
	}
	b.bw.ExecContext(ctx, `PRAGMA shrink_memory`) // committed: a failure only leaves the cache as it was
	return nil
}

// putBlobs stores the material of ws: the segments appended to the
// segment file and flushed, then (in the same blobs transaction, whose
// lock serialises the appends of every process) the wrapped PPKs and the
// extents, insert-if-absent, committed with synchronous=FULL. An
// (ICCID, batch) that already has material (a crashed write's, re-run)
// keeps it; the bytes just appended for it stay unreferenced.
func (b *sqliteBackend) putBlobs(ctx context.Context, batchID string, ws []BatchWrite, now time.Time) error {
	tx, err := b.bw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	one, err := b.txStmtOn(ctx, b.bw, tx, sqlInsertBlob)
	if err != nil {
		return err
	}
	defer one.Close()
	many, err := b.txStmtOn(ctx, b.bw, tx, sqlInsertBlobs)
	if err != nil {
		return err
	}
	defer many.Close()
	var bufs [][]byte
	for k := range ws {
		for i := range ws[k].Profiles {
			bufs = append(bufs, ws[k].Profiles[i].Segments)
		}
	}
	offs, write, err := b.seg.prepare(bufs)
	if err != nil {
		return err
	}
	// The write and the flush to disk run while the rows are inserted (they
	// wait for the disk, the rows for the CPU); the commit waits for them,
	// so no row names a byte that is not on disk.
	synced := make(chan error, 1)
	go func() { synced <- write() }()
	waited := false
	defer func() {
		if !waited {
			<-synced // not past the store's close
		}
	}()
	next := 0 // index into offs, in the order of bufs
	ts := now.UnixMicro()
	args := make([]any, 0, 6*sqliteRowsPerInsert)
	for k := range ws {
		ps := ws[k].Profiles
		for len(ps) > 0 {
			n, ins := sqliteRowsPerInsert, many
			if len(ps) < n {
				n, ins = 1, one
			}
			args = args[:0]
			for i := range ps[:n] {
				p := &ps[i]
				var segOff, segLen any // no segments: NULL, as before
				if len(p.Segments) > 0 {
					segOff, segLen = offs[next], int64(len(p.Segments))
				}
				next++
				args = append(args, p.ICCID, batchID, nullBytes(p.ProtectedPPK), segOff, segLen, ts)
			}
			if _, err := ins.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("store: insert material of %s: %w", ps[0].ICCID, err)
			}
			ps = ps[n:]
		}
	}
	waited = true
	if err := <-synced; err != nil {
		return err
	}
	return tx.Commit()
}

// deleteBlobs removes the material of (ICCID, batch) pairs: the rows,
// then the space of their extents in the segment file.
func (b *sqliteBackend) deleteBlobs(ctx context.Context, keys [][2]string) error {
	tx, err := b.bw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	del, err := tx.PrepareContext(ctx, `DELETE FROM blobs WHERE iccid = ? AND batch_id = ? RETURNING seg_off, seg_len`)
	if err != nil {
		return err
	}
	defer del.Close()
	var extents [][2]int64
	for _, k := range keys {
		rows, err := del.QueryContext(ctx, k[0], k[1])
		if err != nil {
			return err
		}
		for rows.Next() {
			var off, n sql.NullInt64
			if err := rows.Scan(&off, &n); err != nil {
				rows.Close()
				return err
			}
			if off.Valid && n.Valid {
				extents = append(extents, [2]int64{off.Int64, n.Int64})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return b.seg.release(extents)
}

func (b *sqliteBackend) countByState(ctx context.Context, batchID string) (map[State]int64, error) {
	q := `SELECT state, COUNT(*) FROM profiles GROUP BY state`
	args := []any{}
	if batchID != "" {
		q = `SELECT state, COUNT(*) FROM profiles WHERE batch_id = ? GROUP BY state`
		args = append(args, batchID)
	}
	rows, err := b.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[State]int64{}
	for rows.Next() {
		var s State
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// --- profiles ---

const orderCols = `iccid, imsi, profile_type, template_id, batch_id, ppk_key_ref, state, eid,
	matching_id, cc_hash, download_attempts, cc_attempts, created_at, updated_at, order_expires_at, swept_at`

const fullCols = orderCols + `, sp_name, profile_name, profile_class, icon_type, icon,
	metadata_der, protected_ppk, segments`

// sqliteFullCols: the material is in the blobs file.
const sqliteFullCols = orderCols + `, sp_name, profile_name, profile_class, icon_type, icon, metadata_der`

func scanSQLiteProfile(row interface{ Scan(...any) error }, full bool) (Profile, error) {
	var p Profile
	var eid, mid sql.NullString
	var created, updated, expires, swept int64
	dst := []any{&p.ICCID, &p.IMSI, &p.ProfileType, &p.TemplateID, &p.BatchID, &p.PPKKeyRef, &p.State, &eid,
		&mid, &p.CCHash, &p.DownloadAttempts, &p.CCAttempts, &created, &updated, &expires, &swept}
	if full {
		m := &p.Metadata
		dst = append(dst, &m.ServiceProviderName, &m.ProfileName, &m.ProfileClass, &m.IconType, &m.Icon, &m.DER)
	}
	if err := row.Scan(dst...); err != nil {
		return Profile{}, err
	}
	p.EID, p.MatchingID = eid.String, mid.String
	p.CreatedAt, p.UpdatedAt = timeOrZero(created), timeOrZero(updated)
	p.OrderExpiresAt, p.SweptAt = timeOrZero(expires), timeOrZero(swept)
	return p, nil
}

func (b *sqliteBackend) getProfile(ctx context.Context, column, value string, full bool) (Profile, error) {
	// On the readers, not the write connection: under a batch that one
	// waits in BEGIN IMMEDIATE, and a read there would wait with it.
	cols := orderCols
	if full {
		cols = sqliteFullCols
	}
	p, err := scanSQLiteProfile(b.queryRow(ctx, b.r, `SELECT `+cols+` FROM profiles WHERE `+column+` = ?`, value), full)
	if errors.Is(err, sql.ErrNoRows) {
		key := KeyICCID
		if column == "matching_id" {
			key = KeyMatchingID
		}
		return Profile{}, newErr(ErrNotFound, "", key, value)
	}
	if err != nil || !full || !p.SweptAt.IsZero() {
		return p, err
	}
	var off, n sql.NullInt64
	err = b.queryRow(ctx, b.br, `SELECT protected_ppk, segments, seg_off, seg_len FROM blobs WHERE iccid = ? AND batch_id = ?`,
		p.ICCID, p.BatchID).Scan(&p.ProtectedPPK, &p.Segments, &off, &n)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, fmt.Errorf("store: protected material of %s (batch %s) is missing", p.ICCID, p.BatchID)
	}
	if err != nil || !off.Valid {
		return p, err
	}
	p.Segments, err = b.seg.read(off.Int64, n.Int64)
	return p, err
}

func (b *sqliteBackend) pendingByEID(ctx context.Context, eid string) (Profile, error) {
	p, err := scanSQLiteProfile(b.queryRow(ctx, b.r, `SELECT `+orderCols+` FROM profiles
		WHERE eid = ? AND matching_id IS NULL AND state IN ('Confirmed', 'Released', 'Downloaded')
		ORDER BY updated_at DESC LIMIT 1`, eid), false)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, newErr(ErrNotFound, "", KeyEID, eid)
	}
	return p, err
}

func (b *sqliteBackend) typeExists(ctx context.Context, profileType string) (bool, error) {
	var one int
	err := b.r.QueryRowContext(ctx, `SELECT 1 FROM profiles WHERE profile_type = ? LIMIT 1`, profileType).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

const sqlAllocate = `UPDATE profiles SET state = ?, eid = ?, matching_id = NULL,
		cc_hash = NULL, download_attempts = 0, cc_attempts = 0, order_expires_at = 0, updated_at = ?
		WHERE rowid = (SELECT rowid FROM profiles WHERE profile_type = ? AND state = 'Available' LIMIT 1)
		RETURNING ` + orderCols

func (b *sqliteBackend) allocate(ctx context.Context, profileType, eid string, state State, now time.Time, after afterWrite) (Profile, error) {
	if after == nil {
		// One statement on the single write connection: atomic, and
		// serialised with every other writer (in this process by the pool
		// of one, across processes by SQLite's write lock).
		p, err := scanSQLiteProfile(b.queryRow(ctx, b.w, sqlAllocate, state, nullStr(eid), now.UnixMicro(), profileType), false)
		if errors.Is(err, sql.ErrNoRows) {
			return Profile{}, newErr(ErrNoProfileAvailable, "", KeyProfileType, profileType)
		}
		return p, err
	}
	tx, err := b.w.BeginTx(ctx, nil) // in the writer turn until it ends (turnConnector)
	if err != nil {
		return Profile{}, err
	}
	defer tx.Rollback()
	st, err := b.txStmt(ctx, tx, sqlAllocate)
	if err != nil {
		return Profile{}, err
	}
	p, err := scanSQLiteProfile(st.QueryRowContext(ctx, state, nullStr(eid), now.UnixMicro(), profileType), false)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, newErr(ErrNoProfileAvailable, "", KeyProfileType, profileType)
	}
	if err != nil {
		return Profile{}, err
	}
	if err := after(ctx, Tx{sql: tx}, StateAvailable, p); err != nil {
		return Profile{}, err
	}
	return p, tx.Commit()
}

func (b *sqliteBackend) mutate(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite) (Profile, error) {
	return b.mutateSession(ctx, iccid, fn, after, nil, time.Time{}) // sqlite_es9.go
}

// --- sessions ---

const sessionCols = `transaction_id, eid, iccid, matching_id, phase, euicc_challenge, server_challenge,
	euicc_otpk, smdp_otpk, ot_key_ref, data, version, created_at, updated_at, expires_at`

// putSession inserts s in the next group transaction (sqlite_group.go):
// every initiateAuthentication writes one, beside other calls' writes.
func (b *sqliteBackend) putSession(ctx context.Context, s Session) error {
	err := b.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		err := b.execOne(ctx, tx, nil, sqlSessionInsert,
			s.TransactionID, s.EID, s.ICCID, s.MatchingID, s.Phase, nullBytes(s.EUICCChallenge), nullBytes(s.ServerChallenge),
			nullBytes(s.EUICCOtPK), nullBytes(s.SMDPOtPK), s.OTKeyRef, nullBytes(s.Data), s.Version,
			micros(s.CreatedAt), micros(s.UpdatedAt), micros(s.ExpiresAt))
		return err == nil, err
	})
	if sqliteUniqueAny(err) {
		return newErr(ErrConflict, "", KeyTransactionID, s.TransactionID)
	}
	return err
}

func (b *sqliteBackend) getSession(ctx context.Context, tid string) (Session, error) {
	var s Session
	var created, updated, expires int64
	err := b.queryRow(ctx, b.r, `SELECT `+sessionCols+` FROM sessions WHERE transaction_id = ?`, tid).Scan(
		&s.TransactionID, &s.EID, &s.ICCID, &s.MatchingID, &s.Phase, &s.EUICCChallenge, &s.ServerChallenge,
		&s.EUICCOtPK, &s.SMDPOtPK, &s.OTKeyRef, &s.Data, &s.Version, &created, &updated, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, newErr(ErrNotFound, "", KeyTransactionID, tid)
	}
	s.CreatedAt, s.UpdatedAt, s.ExpiresAt = timeOrZero(created), timeOrZero(updated), timeOrZero(expires)
	return s, err
}

func (b *sqliteBackend) updateSession(ctx context.Context, s Session, keepExpiry bool, now time.Time) (bool, error) {
	q, args := sqliteSessionUpdate(s, keepExpiry, now)
	r, err := b.exec(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

func (b *sqliteBackend) deleteSession(ctx context.Context, tid string) (bool, error) {
	r, err := b.exec(ctx, sqlSessionDelete, tid)
	if err != nil {
		return false, err
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

func (b *sqliteBackend) putOneTimeKey(ctx context.Context, k OneTimeKey) error {
	_, err := b.exec(ctx, sqlOneTimeKeyPut, k.EUICCOtPK, k.ICCID, nullBytes(k.SMDPOtPK), k.KeyRef, micros(k.ExpiresAt))
	return err
}

func (b *sqliteBackend) getOneTimeKey(ctx context.Context, otpk []byte) (OneTimeKey, error) {
	var k OneTimeKey
	var expires int64
	err := b.queryRow(ctx, b.r, `SELECT euicc_otpk, iccid, smdp_otpk, key_ref, expires_at FROM one_time_keys
		WHERE euicc_otpk = ?`, otpk).Scan(&k.EUICCOtPK, &k.ICCID, &k.SMDPOtPK, &k.KeyRef, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return OneTimeKey{}, newErr(ErrNotFound, "", KeyEUICCOtPK, "")
	}
	k.ExpiresAt = timeOrZero(expires)
	return k, err
}

func (b *sqliteBackend) deleteExpired(ctx context.Context, now time.Time) (int, error) {
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	total := 0
	for _, q := range []string{`DELETE FROM sessions WHERE expires_at <= ?`, `DELETE FROM one_time_keys WHERE expires_at <= ?`} {
		r, err := tx.ExecContext(ctx, q, now.UnixMicro())
		if err != nil {
			return 0, err
		}
		n, _ := r.RowsAffected()
		total += int(n)
	}
	return total, tx.Commit()
}

// --- retention ---

func (b *sqliteBackend) sweep(ctx context.Context, p SweepPolicy, now time.Time) (SweepResult, error) {
	var res SweepResult
	tx, err := b.w.BeginTx(ctx, nil)
	if err != nil {
		return res, err
	}
	defer tx.Rollback()
	limit := p.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	ts := now.UnixMicro()
	run := func(action, where string, arg int64, newState string) (int, error) {
		sel := `SELECT iccid FROM profiles WHERE ` + where + ` ORDER BY iccid LIMIT ?`
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit (iccid, batch_id, state, eid, action, at)
			SELECT iccid, batch_id, state, COALESCE(eid, ''), ?, ? FROM profiles WHERE iccid IN (`+sel+`)`,
			action, ts, arg, limit); err != nil {
			return 0, err
		}
		r, err := tx.ExecContext(ctx, `UPDATE profiles SET ppk_key_ref = '',
			icon = NULL, metadata_der = NULL, cc_hash = NULL, swept_at = ?, state = `+newState+`
			WHERE iccid IN (`+sel+`)`, ts, arg, limit)
		if err != nil {
			return 0, err
		}
		n, err := r.RowsAffected()
		return int(n), err
	}
	if p.InstalledFor >= 0 {
		res.Installed, err = run("sweep-installed", `state = 'Installed' AND swept_at = 0 AND updated_at <= ?`,
			now.Add(-p.InstalledFor).UnixMicro(), "state")
		if err != nil {
			return SweepResult{}, err
		}
	}
	if p.MaxAge > 0 {
		res.Expired, err = run("sweep-expired", `state IN ('Available', 'Unavailable', 'Error') AND swept_at = 0 AND created_at <= ?`,
			now.Add(-p.MaxAge).UnixMicro(), "'Unavailable'")
		if err != nil {
			return SweepResult{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return SweepResult{}, err
	}
	if err := b.purge(ctx); err != nil {
		return res, err
	}
	if p.OrphanAfter < 0 {
		return res, nil
	}
	res.Orphans, err = b.collectOrphans(ctx, now.Add(-cmp.Or(p.OrphanAfter, DefaultOrphanAfter)))
	return res, err
}

// collectOrphans deletes material written up to horizon that has no
// profile row of its batch: material of a PutBatch interrupted between its
// two commits and never re-run, or of an ICCID refused as a conflict when
// the process died before removing it. Each piece of material is checked
// once: the scan resumes where the previous one stopped.
func (b *sqliteBackend) collectOrphans(ctx context.Context, horizon time.Time) (int, error) {
	var from int64
	if err := b.br.QueryRowContext(ctx, `SELECT checked_until FROM orphan_scan WHERE id = 1`).Scan(&from); err != nil {
		return 0, err
	}
	until := horizon.UnixMicro()
	if until <= from {
		return 0, nil
	}
	n := 0
	for at, row := from, int64(math.MaxInt64); ; {
		keys, lastAt, lastRow, err := b.orphansAfter(ctx, at, row, until)
		if err != nil {
			return n, err
		}
		if lastRow == 0 {
			break
		}
		if err := b.deleteBlobs(ctx, keys); err != nil {
			return n, err
		}
		n += len(keys)
		at, row = lastAt, lastRow
	}
	_, err := b.bw.ExecContext(ctx, `UPDATE orphan_scan SET checked_until = ? WHERE id = 1`, until)
	return n, err
}

// orphansAfter examines the next (up to) 1000 pieces of material in
// (created_at, rowid) order after (at, row), written no later than until,
// and returns those without a profile row of their batch and the position
// of the last one examined (lastRow 0: none left). The order is the
// created_at index's, so each page is a seek, not a scan.
func (b *sqliteBackend) orphansAfter(ctx context.Context, at, row, until int64) (keys [][2]string, lastAt, lastRow int64, err error) {
	rows, err := b.br.QueryContext(ctx, `SELECT created_at, rowid, iccid, batch_id FROM blobs
		WHERE (created_at, rowid) > (?, ?) AND created_at <= ? ORDER BY created_at, rowid LIMIT 1000`, at, row, until)
	if err != nil {
		return nil, 0, 0, err
	}
	var all [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&lastAt, &lastRow, &k[0], &k[1]); err != nil {
			rows.Close()
			return nil, 0, 0, err
		}
		all = append(all, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, 0, err
	}
	for _, k := range all {
		var one int
		err := b.r.QueryRowContext(ctx, `SELECT 1 FROM profiles WHERE iccid = ? AND batch_id = ?`, k[0], k[1]).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			keys = append(keys, k)
		} else if err != nil {
			return nil, 0, 0, err
		}
	}
	return keys, lastAt, lastRow, nil
}

// purge deletes the material of swept profiles from the blobs file, then
// marks them purged. It also finishes the work of a sweep interrupted
// between its two commits.
func (b *sqliteBackend) purge(ctx context.Context) error {
	for {
		rows, err := b.r.QueryContext(ctx, `SELECT iccid, batch_id FROM profiles
			WHERE swept_at != 0 AND purged = 0 ORDER BY iccid LIMIT 1000`)
		if err != nil {
			return err
		}
		var keys [][2]string
		for rows.Next() {
			var k [2]string
			if err := rows.Scan(&k[0], &k[1]); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := b.deleteBlobs(ctx, keys); err != nil {
			return err
		}
		tx, err := b.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `UPDATE profiles SET purged = 1 WHERE iccid = ?`, k[0]); err != nil {
				tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
}

func (b *sqliteBackend) audit(ctx context.Context, iccid string) ([]AuditRecord, error) {
	rows, err := b.r.QueryContext(ctx, `SELECT id, iccid, batch_id, state, eid, action, at FROM audit
		WHERE iccid = ? ORDER BY id`, iccid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var a AuditRecord
		var at int64
		if err := rows.Scan(&a.ID, &a.ICCID, &a.BatchID, &a.State, &a.EID, &a.Action, &at); err != nil {
			return nil, err
		}
		a.At = timeOrZero(at)
		out = append(out, a)
	}
	return out, rows.Err()
}
