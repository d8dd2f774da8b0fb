package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The PostgreSQL backend (pgx/v5, a connection pool). Allocation is a
// single statement with FOR UPDATE SKIP LOCKED; a profile's
// read-modify-write holds its row lock (SELECT … FOR UPDATE) for the
// transaction; bulk loads use COPY.
type pgBackend struct {
	pool *pgxpool.Pool
	// toastChunk is the server's TOAST chunk size when known (1996 bytes
	// with 8 KiB pages), 0 otherwise: see splitSegments.
	toastChunk int
}

// splitSegments cuts the segments into a head of whole TOAST chunks
// (stored out of line) and the remainder (segments_tail, under 2 KB,
// kept inline in the row). Why: stored whole, a 12,330-byte PPP became
// six full TOAST chunks and one of 354 bytes; mixing full and short
// chunks, COPY's bulk insertion left part of each TOAST page empty:
// 13,654 bytes of TOAST per profile (1.107 × the data) before the row
// and the indexes. Whole chunks pack four to a page. Without a known
// chunk size the segments are stored whole, as before.
func (b *pgBackend) splitSegments(seg []byte) (head, tail []byte) {
	if b.toastChunk <= 0 || len(seg) <= b.toastChunk {
		return seg, nil
	}
	n := len(seg) / b.toastChunk * b.toastChunk
	if n == len(seg) {
		return seg, nil
	}
	return seg[:n], seg[n:]
}

var pgMigrations = []string{
	// 1: the initial schema. The protected material is stored EXTERNAL
	// (out of line, uncompressed: it is ciphertext, compression only costs).
	`CREATE TABLE batches (
		id           text PRIMARY KEY,
		profile_type text NOT NULL DEFAULT '',
		template_id  text NOT NULL DEFAULT '',
		key_blob     bytea,
		kek_label    text NOT NULL DEFAULT '',
		chunks       integer NOT NULL DEFAULT 0,
		profiles     bigint NOT NULL DEFAULT 0,
		duplicates   bigint NOT NULL DEFAULT 0,
		conflicts    bigint NOT NULL DEFAULT 0,
		chunks_done  integer NOT NULL DEFAULT 0,
		created_at   timestamptz NOT NULL,
		updated_at   timestamptz NOT NULL
	);
	CREATE TABLE chunks (
		batch_id    text NOT NULL REFERENCES batches(id),
		idx         integer NOT NULL,
		worker      text NOT NULL DEFAULT '',
		lease_until timestamptz NOT NULL DEFAULT '-infinity',
		done        boolean NOT NULL DEFAULT false,
		claims      integer NOT NULL DEFAULT 0,
		PRIMARY KEY (batch_id, idx)
	);
	CREATE TABLE profiles (
		iccid             text PRIMARY KEY,
		imsi              text NOT NULL DEFAULT '',
		profile_type      text NOT NULL DEFAULT '',
		template_id       text NOT NULL DEFAULT '',
		batch_id          text NOT NULL REFERENCES batches(id),
		ppk_key_ref       text NOT NULL DEFAULT '',
		state             text NOT NULL,
		eid               text,
		matching_id       text,
		cc_hash           bytea,
		download_attempts integer NOT NULL DEFAULT 0,
		cc_attempts       integer NOT NULL DEFAULT 0,
		created_at        timestamptz NOT NULL,
		updated_at        timestamptz NOT NULL,
		order_expires_at  timestamptz,
		swept_at          timestamptz,
		sp_name           text NOT NULL DEFAULT '',
		profile_name      text NOT NULL DEFAULT '',
		profile_class     integer NOT NULL DEFAULT 0,
		icon_type         integer NOT NULL DEFAULT 0,
		icon              bytea,
		metadata_der      bytea,
		protected_ppk     bytea,
		segments          bytea
	);
	ALTER TABLE profiles ALTER COLUMN segments SET STORAGE EXTERNAL,
		ALTER COLUMN protected_ppk SET STORAGE EXTERNAL;
	CREATE UNIQUE INDEX profiles_matching_id ON profiles(matching_id) WHERE matching_id IS NOT NULL;
	CREATE INDEX profiles_available ON profiles(profile_type) WHERE state = 'Available';
	CREATE INDEX profiles_eid ON profiles(eid) WHERE eid IS NOT NULL;
	CREATE INDEX profiles_installed ON profiles(updated_at) WHERE state = 'Installed' AND swept_at IS NULL;
	CREATE TABLE sessions (
		transaction_id   text PRIMARY KEY,
		eid              text NOT NULL DEFAULT '',
		iccid            text NOT NULL DEFAULT '',
		matching_id      text NOT NULL DEFAULT '',
		phase            text NOT NULL DEFAULT '',
		euicc_challenge  bytea,
		server_challenge bytea,
		euicc_otpk       bytea,
		smdp_otpk        bytea,
		ot_key_ref       text NOT NULL DEFAULT '',
		data             bytea,
		version          bigint NOT NULL,
		created_at       timestamptz NOT NULL,
		updated_at       timestamptz NOT NULL,
		expires_at       timestamptz NOT NULL
	);
	CREATE INDEX sessions_expires ON sessions(expires_at);
	CREATE TABLE one_time_keys (
		euicc_otpk bytea PRIMARY KEY,
		iccid      text NOT NULL DEFAULT '',
		smdp_otpk  bytea,
		key_ref    text NOT NULL DEFAULT '',
		expires_at timestamptz NOT NULL
	);
	CREATE INDEX one_time_keys_expires ON one_time_keys(expires_at);
	CREATE TABLE audit (
		id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		iccid    text NOT NULL,
		batch_id text NOT NULL,
		state    text NOT NULL,
		eid      text NOT NULL DEFAULT '',
		action   text NOT NULL,
		at       timestamptz NOT NULL
	);
	CREATE INDEX audit_iccid ON audit(iccid);`,
	// 2: input chunks became River jobs (package jobs, tables river_*):
	// the hand-written chunk claims go. Batches record what identifies
	// their input and count rejects; workers are tallied.
	`DROP TABLE chunks;
	ALTER TABLE batches ADD COLUMN input_sha256 text NOT NULL DEFAULT '',
		ADD COLUMN records bigint NOT NULL DEFAULT 0,
		ADD COLUMN rejected bigint NOT NULL DEFAULT 0,
		ADD COLUMN iccid_first text NOT NULL DEFAULT '',
		ADD COLUMN iccid_last text NOT NULL DEFAULT '';
	CREATE TABLE batch_workers (
		batch_id   text NOT NULL REFERENCES batches(id),
		worker     text NOT NULL,
		chunks     integer NOT NULL DEFAULT 0,
		profiles   bigint NOT NULL DEFAULT 0,
		updated_at timestamptz NOT NULL,
		PRIMARY KEY (batch_id, worker)
	);`,
	// 3: ES2+ operators (their TLS trust anchors and callback URL, see
	// operators.go) and which operator placed each order, so that the
	// order's progress is reported to it.
	`CREATE TABLE operators (
		id           TEXT PRIMARY KEY,
		trust_pem    TEXT NOT NULL,
		callback_url TEXT NOT NULL DEFAULT '',
		created_at   timestamptz NOT NULL
	);
	CREATE TABLE order_owners (
		iccid       TEXT PRIMARY KEY,
		operator_id TEXT NOT NULL
	);`,
	// The segments past their last whole TOAST chunk (splitSegments).
	`ALTER TABLE profiles ADD COLUMN segments_tail bytea;
	ALTER TABLE profiles ALTER COLUMN segments_tail SET STORAGE EXTERNAL;`,
}

func openPostgres(ctx context.Context, dsn string, o options) (backend, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres dsn: %w", err)
	}
	if o.pgMaxConns > 0 {
		cfg.MaxConns = o.pgMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	b := &pgBackend{pool: pool}
	if err := b.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	// TOAST_MAX_CHUNK_SIZE is a build constant of the server; with the
	// default 8 KiB block it is 1996 bytes. Other block sizes: no split.
	var block int
	if err := pool.QueryRow(ctx, `SELECT current_setting('block_size')::int`).Scan(&block); err == nil && block == 8192 {
		b.toastChunk = 1996
	}
	return b, nil
}

func (b *pgBackend) close() error { b.pool.Close(); return nil }

func (b *pgBackend) migrate(ctx context.Context) error {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	// Several processes may start at once: one migrates, the others wait.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.perso_store_migrate'))`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	if have > len(pgMigrations) {
		return fmt.Errorf("store: database schema version %d is newer than this binary (%d)", have, len(pgMigrations))
	}
	for v := have + 1; v <= len(pgMigrations); v++ {
		if _, err := tx.Exec(ctx, pgMigrations[v-1]); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
			return fmt.Errorf("store: migration %d: %w", v, err)
		}
	}
	return tx.Commit(ctx)
}

func pgUnique(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && (constraint == "" || pe.ConstraintName == constraint)
}

func utc(t time.Time) time.Time { return t.UTC() }

func utcPtr(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// --- batches ---

func scanPGBatch(row pgx.Row) (Batch, error) {
	var b Batch
	err := row.Scan(&b.ID, &b.ProfileType, &b.TemplateID, &b.KeyBlob, &b.KEKLabel, &b.InputSHA256, &b.Records,
		&b.Chunks, &b.Profiles, &b.Duplicates, &b.Conflicts, &b.Rejected, &b.ChunksDone, &b.ICCIDFirst, &b.ICCIDLast,
		&b.CreatedAt, &b.UpdatedAt)
	b.CreatedAt, b.UpdatedAt = utc(b.CreatedAt), utc(b.UpdatedAt)
	return b, err
}

func (b *pgBackend) createBatch(ctx context.Context, in Batch, now time.Time, inTx func(context.Context, Tx) error) (Batch, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return Batch{}, err
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `INSERT INTO batches (id, profile_type, template_id, key_blob, kek_label,
		input_sha256, records, chunks, rejected, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (id) DO NOTHING`,
		in.ID, in.ProfileType, in.TemplateID, nullBytes(in.KeyBlob), in.KEKLabel, in.InputSHA256, in.Records,
		in.Chunks, in.Rejected, now)
	if err != nil {
		return Batch{}, err
	}
	if tag.RowsAffected() == 0 {
		got, err := scanPGBatch(tx.QueryRow(ctx, `SELECT `+batchCols+` FROM batches WHERE id = $1`, in.ID))
		if err != nil {
			return Batch{}, err
		}
		return sameBatch(got, in)
	}
	if inTx != nil {
		if err := inTx(ctx, Tx{pg: tx}); err != nil {
			return Batch{}, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Batch{}, err
	}
	return newBatch(in, now), nil
}

func (b *pgBackend) getBatch(ctx context.Context, id string) (Batch, error) {
	got, err := scanPGBatch(b.pool.QueryRow(ctx, `SELECT `+batchCols+` FROM batches WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Batch{}, newErr(ErrNotFound, "", KeyBatch, id)
	}
	return got, err
}

func (b *pgBackend) listBatches(ctx context.Context) ([]Batch, error) {
	rows, err := b.pool.Query(ctx, `SELECT `+batchCols+` FROM batches ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Batch
	for rows.Next() {
		bt, err := scanPGBatch(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, bt)
	}
	return out, rows.Err()
}

func (b *pgBackend) batchWorkers(ctx context.Context, batchID string) ([]WorkerTally, error) {
	if _, err := b.getBatch(ctx, batchID); err != nil {
		return nil, err
	}
	rows, err := b.pool.Query(ctx, `SELECT worker, chunks, profiles FROM batch_workers WHERE batch_id = $1 ORDER BY worker`, batchID)
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

func (b *pgBackend) footprint(ctx context.Context) (bytes, profiles int64, err error) {
	err = b.pool.QueryRow(ctx, `SELECT pg_total_relation_size('profiles'), (SELECT COUNT(*) FROM profiles)`).Scan(&bytes, &profiles)
	return bytes, profiles, err
}

var pgInsertCols = []string{"iccid", "imsi", "profile_type", "template_id", "batch_id", "ppk_key_ref", "state",
	"created_at", "updated_at", "sp_name", "profile_name", "profile_class", "icon_type", "icon", "metadata_der",
	"protected_ppk", "segments", "segments_tail"}

// putProfiles COPYs the profiles straight into the table, the fast path of
// a first run. When an ICCID already exists (a re-run, another batch) the
// COPY fails as a whole; the call then COPYs into a temporary staging table
// and inserts from it with ON CONFLICT DO NOTHING, telling duplicates from
// conflicts by the stored batch id.
// pgDeadlockRetries is how many times a bulk write chosen as a deadlock
// victim runs again.
const pgDeadlockRetries = 3

// putProfiles writes ws in one transaction. Writers of one batch take the
// batch row first (FOR NO KEY UPDATE) and so run one after the other:
// two workers writing the same chunk (a rescued chunk and its slow first
// owner, or a group that holds it beside others) otherwise each held
// what the other needed — one the chunk's ICCIDs in the unique index,
// the other the batch row its counters had updated — and PostgreSQL
// aborted one of them for deadlock (TestPostgresTwoWritersOverlappingChunks).
// The counters update took that row lock after the first write of a
// group anyway, so the group's later writes were already serialised;
// taking it first costs little parallelism. Loads of different batches
// with overlapping ICCIDs can still deadlock on the index (their inputs
// order the rows differently): the victim is run again.
func (b *pgBackend) putProfiles(ctx context.Context, batchID string, ws []BatchWrite, now time.Time) ([]PutResult, error) {
	for attempt := 0; ; attempt++ {
		res, err := b.putProfilesOnce(ctx, batchID, ws, now)
		var pe *pgconn.PgError
		if attempt < pgDeadlockRetries && errors.As(err, &pe) && pe.Code == "40P01" {
			continue // deadlock_detected: this transaction was rolled back
		}
		return res, err
	}
}

func (b *pgBackend) putProfilesOnce(ctx context.Context, batchID string, ws []BatchWrite, now time.Time) ([]PutResult, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1 FROM batches WHERE id = $1 FOR NO KEY UPDATE`, batchID).Scan(&one); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, newErr(ErrNotFound, "", KeyBatch, batchID)
		}
		return nil, err
	}
	res := make([]PutResult, len(ws))
	for k := range ws {
		if res[k], err = b.putWrite(ctx, tx, batchID, &ws[k], now); err != nil {
			return nil, err
		}
	}
	// One commit, one WAL flush of the server, for all the writes.
	return res, tx.Commit(ctx)
}

// putWrite writes the profiles and counters of one write in tx.
func (b *pgBackend) putWrite(ctx context.Context, tx pgx.Tx, batchID string, w *BatchWrite, now time.Time) (PutResult, error) {
	var res PutResult
	ps := w.Profiles
	row := func(i int) ([]any, error) {
		p := &ps[i]
		m := &p.Metadata
		head, tail := b.splitSegments(p.Segments)
		return []any{p.ICCID, p.IMSI, p.ProfileType, p.TemplateID, batchID, p.PPKKeyRef, string(StateAvailable),
			now, now, m.ServiceProviderName, m.ProfileName, int32(m.ProfileClass), int32(m.IconType), nullBytes(m.Icon),
			nullBytes(m.DER), nullBytes(p.ProtectedPPK), nullBytes(head), nullBytes(tail)}, nil
	}
	sp, err := tx.Begin(ctx) // savepoint: a failed COPY leaves the transaction usable
	if err != nil {
		return res, err
	}
	n, err := sp.CopyFrom(ctx, pgx.Identifier{"profiles"}, pgInsertCols, pgx.CopyFromSlice(len(ps), row))
	switch {
	case err == nil:
		if err := sp.Commit(ctx); err != nil {
			return res, err
		}
		res.Inserted = int(n)
	case pgUnique(err, "profiles_pkey"):
		if err := sp.Rollback(ctx); err != nil {
			return res, err
		}
		if res, err = b.putStaged(ctx, tx, batchID, ps, row); err != nil {
			return res, err
		}
	default:
		return res, fmt.Errorf("store: copy profiles: %w", err)
	}
	var first, last string
	if res.Inserted > 0 {
		// The range of what this write inserted: every ICCID but the
		// duplicates and conflicts (few: read them back only then).
		skip := map[string]bool{}
		if res.Inserted < len(ps) {
			if skip, err = b.notInserted(ctx, tx, batchID, ps, now); err != nil {
				return res, err
			}
		}
		for i := range ps {
			if !skip[ps[i].ICCID] {
				first, last = iccidRange(first, last, ps[i].ICCID)
			}
		}
	}
	done := 0
	if w.ChunkDone {
		done = 1
	}
	if _, err := tx.Exec(ctx, `UPDATE batches SET profiles = profiles + $1, duplicates = duplicates + $2,
		conflicts = conflicts + $3, rejected = rejected + $4, chunks_done = chunks_done + $5,
		iccid_first = CASE WHEN $6 <> '' AND (iccid_first = '' OR $6 < iccid_first) THEN $6 ELSE iccid_first END,
		iccid_last = CASE WHEN $7 > iccid_last THEN $7 ELSE iccid_last END,
		updated_at = $8 WHERE id = $9`,
		res.Inserted, res.Duplicates, len(res.Conflicts), w.Rejected, done, first, last, now, batchID); err != nil {
		return res, err
	}
	if w.Worker != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO batch_workers (batch_id, worker, chunks, profiles, updated_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (batch_id, worker) DO UPDATE SET
			chunks = batch_workers.chunks + excluded.chunks, profiles = batch_workers.profiles + excluded.profiles,
			updated_at = excluded.updated_at`, batchID, w.Worker, done, res.Inserted, now); err != nil {
			return res, err
		}
	}
	if w.InTx != nil {
		if err := w.InTx(ctx, Tx{pg: tx}); err != nil {
			return PutResult{}, err
		}
	}
	return res, nil
}

// notInserted returns the ICCIDs of ps that this transaction did not
// insert: rows of the batch created earlier (duplicates) or of another
// batch (conflicts).
func (b *pgBackend) notInserted(ctx context.Context, tx pgx.Tx, batchID string, ps []Profile, now time.Time) (map[string]bool, error) {
	ids := make([]string, len(ps))
	for i := range ps {
		ids[i] = ps[i].ICCID
	}
	rows, err := tx.Query(ctx, `SELECT iccid FROM profiles WHERE iccid = ANY($1) AND (batch_id <> $2 OR created_at <> $3)`,
		ids, batchID, now)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

func (b *pgBackend) putStaged(ctx context.Context, tx pgx.Tx, batchID string, ps []Profile, row func(int) ([]any, error)) (PutResult, error) {
	var res PutResult
	if _, err := tx.Exec(ctx, `CREATE TEMPORARY TABLE IF NOT EXISTS profiles_stage (
		iccid text, imsi text, profile_type text, template_id text, batch_id text, ppk_key_ref text, state text,
		created_at timestamptz, updated_at timestamptz, sp_name text, profile_name text, profile_class integer,
		icon_type integer, icon bytea, metadata_der bytea, protected_ppk bytea, segments bytea, segments_tail bytea
	) ON COMMIT DELETE ROWS`); err != nil {
		return res, err
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE profiles_stage ALTER COLUMN segments SET STORAGE EXTERNAL,
		ALTER COLUMN segments_tail SET STORAGE EXTERNAL`); err != nil {
		return res, err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"profiles_stage"}, pgInsertCols, pgx.CopyFromSlice(len(ps), row)); err != nil {
		return res, fmt.Errorf("store: copy profiles: %w", err)
	}
	cols := "iccid, imsi, profile_type, template_id, batch_id, ppk_key_ref, state, created_at, updated_at, " +
		"sp_name, profile_name, profile_class, icon_type, icon, metadata_der, protected_ppk, segments, segments_tail"
	// ORDER BY: concurrent loaders take the unique-index locks in one order.
	tag, err := tx.Exec(ctx, `INSERT INTO profiles (`+cols+`) SELECT `+cols+` FROM profiles_stage
		ORDER BY iccid ON CONFLICT (iccid) DO NOTHING`)
	if err != nil {
		return res, err
	}
	res.Inserted = int(tag.RowsAffected())
	rows, err := tx.Query(ctx, `SELECT s.iccid, p.batch_id FROM profiles_stage s JOIN profiles p USING (iccid)
		WHERE p.batch_id <> $1 ORDER BY s.iccid`, batchID)
	if err != nil {
		return res, err
	}
	for rows.Next() {
		var c Conflict
		if err := rows.Scan(&c.ICCID, &c.BatchID); err != nil {
			rows.Close()
			return res, err
		}
		res.Conflicts = append(res.Conflicts, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, err
	}
	if _, err := tx.Exec(ctx, `TRUNCATE profiles_stage`); err != nil {
		return res, err
	}
	res.Duplicates = len(ps) - res.Inserted - len(res.Conflicts)
	return res, nil
}

func (b *pgBackend) countByState(ctx context.Context, batchID string) (map[State]int64, error) {
	rows, err := b.pool.Query(ctx, `SELECT state, COUNT(*) FROM profiles WHERE $1 = '' OR batch_id = $1 GROUP BY state`, batchID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[State]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[State(s)] = n
	}
	return out, rows.Err()
}

// --- profiles ---

func scanPGProfile(row pgx.Row, full bool) (Profile, error) {
	var p Profile
	var eid, mid *string
	var expires, swept *time.Time
	var state string
	var dl, cc int32
	dst := []any{&p.ICCID, &p.IMSI, &p.ProfileType, &p.TemplateID, &p.BatchID, &p.PPKKeyRef, &state, &eid,
		&mid, &p.CCHash, &dl, &cc, &p.CreatedAt, &p.UpdatedAt, &expires, &swept}
	var pc, it int32
	var tail []byte
	if full {
		m := &p.Metadata
		dst = append(dst, &m.ServiceProviderName, &m.ProfileName, &pc, &it, &m.Icon, &m.DER, &p.ProtectedPPK, &p.Segments, &tail)
	}
	if err := row.Scan(dst...); err != nil {
		return Profile{}, err
	}
	if len(tail) > 0 {
		p.Segments = append(p.Segments, tail...)
	}
	p.State, p.DownloadAttempts, p.CCAttempts = State(state), int(dl), int(cc)
	p.Metadata.ProfileClass, p.Metadata.IconType = int(pc), int(it)
	if eid != nil {
		p.EID = *eid
	}
	if mid != nil {
		p.MatchingID = *mid
	}
	p.CreatedAt, p.UpdatedAt = utc(p.CreatedAt), utc(p.UpdatedAt)
	p.OrderExpiresAt, p.SweptAt = utcPtr(expires), utcPtr(swept)
	return p, nil
}

func (b *pgBackend) getProfile(ctx context.Context, column, value string, full bool) (Profile, error) {
	cols := orderCols
	if full {
		cols = fullCols + `, segments_tail`
	}
	p, err := scanPGProfile(b.pool.QueryRow(ctx, `SELECT `+cols+` FROM profiles WHERE `+column+` = $1`, value), full)
	if errors.Is(err, pgx.ErrNoRows) {
		key := KeyICCID
		if column == "matching_id" {
			key = KeyMatchingID
		}
		return Profile{}, newErr(ErrNotFound, "", key, value)
	}
	return p, err
}

func (b *pgBackend) pendingByEID(ctx context.Context, eid string) (Profile, error) {
	p, err := scanPGProfile(b.pool.QueryRow(ctx, `SELECT `+orderCols+` FROM profiles
		WHERE eid = $1 AND matching_id IS NULL AND state IN ('Confirmed', 'Released', 'Downloaded')
		ORDER BY updated_at DESC LIMIT 1`, eid), false)
	if errors.Is(err, pgx.ErrNoRows) {
		return Profile{}, newErr(ErrNotFound, "", KeyEID, eid)
	}
	return p, err
}

func (b *pgBackend) typeExists(ctx context.Context, profileType string) (bool, error) {
	var ok bool
	err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM profiles WHERE profile_type = $1)`, profileType).Scan(&ok)
	return ok, err
}

// pgAllocate: SKIP LOCKED, so that concurrent orders each lock a different
// Available row instead of queueing on the same one; the lock re-checks the
// state, so a row allocated meanwhile is never taken twice.
const pgAllocate = `UPDATE profiles SET state = $1, eid = $2, matching_id = NULL,
		cc_hash = NULL, download_attempts = 0, cc_attempts = 0, order_expires_at = NULL, updated_at = $3
		WHERE iccid = (SELECT iccid FROM profiles WHERE profile_type = $4 AND state = 'Available'
			LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING ` + orderCols

func (b *pgBackend) allocate(ctx context.Context, profileType, eid string, state State, now time.Time, after afterWrite) (Profile, error) {
	if after == nil {
		p, err := scanPGProfile(b.pool.QueryRow(ctx, pgAllocate, string(state), nullStr(eid), now, profileType), false)
		if errors.Is(err, pgx.ErrNoRows) {
			return Profile{}, newErr(ErrNoProfileAvailable, "", KeyProfileType, profileType)
		}
		return p, err
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return Profile{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	p, err := scanPGProfile(tx.QueryRow(ctx, pgAllocate, string(state), nullStr(eid), now, profileType), false)
	if errors.Is(err, pgx.ErrNoRows) {
		return Profile{}, newErr(ErrNoProfileAvailable, "", KeyProfileType, profileType)
	}
	if err != nil {
		return Profile{}, err
	}
	if err := after(ctx, Tx{pg: tx}, StateAvailable, p); err != nil {
		return Profile{}, err
	}
	return p, tx.Commit(ctx)
}

// mutateTx is mutate as one pgx transaction, for writes that run a
// caller's statements (after) before the commit; mutate's pipelined
// BEGIN/COMMIT exchange has no pgx.Tx to hand out.
func (b *pgBackend) mutateTx(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite) (Profile, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return Profile{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	p, wrote, result, err := pgMutateInTx(ctx, tx, iccid, fn, after)
	if err != nil || !wrote {
		return p, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Profile{}, err
	}
	return p, result
}

// mutate runs BEGIN + SELECT … FOR UPDATE in one round trip and UPDATE +
// COMMIT in a second one (pgx batches), holding the row lock in between
// while fn decides.
func (b *pgBackend) mutate(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite) (Profile, error) {
	if after != nil {
		return b.mutateTx(ctx, iccid, fn, after)
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return Profile{}, err
	}
	defer conn.Release()
	inTx := false
	defer func() {
		// Leave the connection idle: roll back whatever is still open (a
		// refused transition, an error). A connection that cannot is
		// closed by the pool on release.
		if inTx || conn.Conn().PgConn().TxStatus() != 'I' {
			conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var begin pgx.Batch
	begin.Queue("BEGIN")
	begin.Queue(`SELECT `+orderCols+` FROM profiles WHERE iccid = $1 FOR UPDATE`, iccid)
	br := conn.SendBatch(ctx, &begin)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return Profile{}, err
	}
	inTx = true
	p, err := scanPGProfile(br.QueryRow(), false)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return Profile{}, newErr(ErrNotFound, "", KeyICCID, iccid)
	}
	if err != nil {
		return Profile{}, err
	}
	write, result := runMutation(fn, &p)
	if !write {
		if result != nil {
			return Profile{}, result
		}
		return p, nil
	}
	var commit pgx.Batch
	commit.Queue(`UPDATE profiles SET state = $1, eid = $2, matching_id = $3, cc_hash = $4,
		download_attempts = $5, cc_attempts = $6, order_expires_at = $7, updated_at = $8 WHERE iccid = $9`,
		string(p.State), nullStr(p.EID), nullStr(p.MatchingID), nullBytes(p.CCHash), p.DownloadAttempts, p.CCAttempts,
		nullTime(p.OrderExpiresAt), p.UpdatedAt, p.ICCID)
	commit.Queue("COMMIT")
	br = conn.SendBatch(ctx, &commit)
	_, err = br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if pgUnique(err, "profiles_matching_id") {
		return Profile{}, newErr(ErrMatchingIDInUse, "", KeyMatchingID, p.MatchingID)
	}
	if err != nil {
		return Profile{}, err
	}
	if tag.String() != "COMMIT" {
		return Profile{}, fmt.Errorf("store: commit of %s answered %q", iccid, tag.String())
	}
	inTx = false
	return p, result
}

// --- sessions ---

func (b *pgBackend) putSession(ctx context.Context, s Session) error {
	_, err := b.pool.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		s.TransactionID, s.EID, s.ICCID, s.MatchingID, s.Phase, nullBytes(s.EUICCChallenge), nullBytes(s.ServerChallenge),
		nullBytes(s.EUICCOtPK), nullBytes(s.SMDPOtPK), s.OTKeyRef, nullBytes(s.Data), s.Version,
		s.CreatedAt, s.UpdatedAt, s.ExpiresAt)
	if pgUnique(err, "") {
		return newErr(ErrConflict, "", KeyTransactionID, s.TransactionID)
	}
	return err
}

func (b *pgBackend) getSession(ctx context.Context, tid string) (Session, error) {
	var s Session
	err := b.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE transaction_id = $1`, tid).Scan(
		&s.TransactionID, &s.EID, &s.ICCID, &s.MatchingID, &s.Phase, &s.EUICCChallenge, &s.ServerChallenge,
		&s.EUICCOtPK, &s.SMDPOtPK, &s.OTKeyRef, &s.Data, &s.Version, &s.CreatedAt, &s.UpdatedAt, &s.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, newErr(ErrNotFound, "", KeyTransactionID, tid)
	}
	s.CreatedAt, s.UpdatedAt, s.ExpiresAt = utc(s.CreatedAt), utc(s.UpdatedAt), utc(s.ExpiresAt)
	return s, err
}

func (b *pgBackend) updateSession(ctx context.Context, s Session, keepExpiry bool, now time.Time) (bool, error) {
	tag, err := b.pool.Exec(ctx, `UPDATE sessions SET eid = $1, iccid = $2, matching_id = $3, phase = $4,
		euicc_challenge = $5, server_challenge = $6, euicc_otpk = $7, smdp_otpk = $8, ot_key_ref = $9, data = $10,
		version = $11, updated_at = $12, expires_at = CASE WHEN $13 THEN expires_at ELSE $14 END
		WHERE transaction_id = $15 AND version = $16 AND expires_at > $17`,
		s.EID, s.ICCID, s.MatchingID, s.Phase, nullBytes(s.EUICCChallenge), nullBytes(s.ServerChallenge),
		nullBytes(s.EUICCOtPK), nullBytes(s.SMDPOtPK), s.OTKeyRef, nullBytes(s.Data), s.Version,
		s.UpdatedAt, keepExpiry, s.ExpiresAt, s.TransactionID, s.Version-1, now)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

func (b *pgBackend) deleteSession(ctx context.Context, tid string) (bool, error) {
	tag, err := b.pool.Exec(ctx, `DELETE FROM sessions WHERE transaction_id = $1`, tid)
	return tag.RowsAffected() == 1, err
}

func (b *pgBackend) putOneTimeKey(ctx context.Context, k OneTimeKey) error {
	_, err := b.pool.Exec(ctx, `INSERT INTO one_time_keys (euicc_otpk, iccid, smdp_otpk, key_ref, expires_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (euicc_otpk) DO UPDATE SET iccid = excluded.iccid,
		smdp_otpk = excluded.smdp_otpk, key_ref = excluded.key_ref, expires_at = excluded.expires_at`,
		k.EUICCOtPK, k.ICCID, nullBytes(k.SMDPOtPK), k.KeyRef, k.ExpiresAt)
	return err
}

func (b *pgBackend) getOneTimeKey(ctx context.Context, otpk []byte) (OneTimeKey, error) {
	var k OneTimeKey
	err := b.pool.QueryRow(ctx, `SELECT euicc_otpk, iccid, smdp_otpk, key_ref, expires_at FROM one_time_keys
		WHERE euicc_otpk = $1`, otpk).Scan(&k.EUICCOtPK, &k.ICCID, &k.SMDPOtPK, &k.KeyRef, &k.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return OneTimeKey{}, newErr(ErrNotFound, "", KeyEUICCOtPK, "")
	}
	k.ExpiresAt = utc(k.ExpiresAt)
	return k, err
}

func (b *pgBackend) deleteExpired(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := b.pool.QueryRow(ctx, `WITH s AS (DELETE FROM sessions WHERE expires_at <= $1 RETURNING 1),
		k AS (DELETE FROM one_time_keys WHERE expires_at <= $1 RETURNING 1)
		SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM k)`, now).Scan(&n)
	return n, err
}

// --- retention ---

func (b *pgBackend) sweep(ctx context.Context, p SweepPolicy, now time.Time) (SweepResult, error) {
	var res SweepResult
	var limit any
	if p.Limit > 0 {
		limit = p.Limit
	}
	// One statement per kind: lock the victims (skipping rows a live order
	// holds), strip their material and write the audit rows.
	run := func(action, where string, cutoff time.Time, newState string) (int, error) {
		var n int
		err := b.pool.QueryRow(ctx, `WITH victims AS (
				SELECT iccid, state FROM profiles WHERE `+where+` ORDER BY iccid LIMIT $1 FOR UPDATE SKIP LOCKED),
			upd AS (
				UPDATE profiles p SET segments = NULL, segments_tail = NULL, protected_ppk = NULL, ppk_key_ref = '', icon = NULL,
					metadata_der = NULL, cc_hash = NULL, swept_at = $3, state = `+newState+`
				FROM victims v WHERE p.iccid = v.iccid
				RETURNING p.iccid, p.batch_id, v.state, COALESCE(p.eid, '') AS eid),
			ins AS (
				INSERT INTO audit (iccid, batch_id, state, eid, action, at)
				SELECT iccid, batch_id, state, eid, $4, $3 FROM upd RETURNING 1)
			SELECT count(*) FROM ins`, limit, cutoff, now, action).Scan(&n)
		return n, err
	}
	var err error
	if p.InstalledFor >= 0 {
		res.Installed, err = run("sweep-installed", `state = 'Installed' AND swept_at IS NULL AND updated_at <= $2`,
			now.Add(-p.InstalledFor), "p.state")
		if err != nil {
			return SweepResult{}, err
		}
	}
	if p.MaxAge > 0 {
		res.Expired, err = run("sweep-expired", `state IN ('Available', 'Unavailable', 'Error') AND swept_at IS NULL AND created_at <= $2`,
			now.Add(-p.MaxAge), "'Unavailable'")
		if err != nil {
			return SweepResult{}, err
		}
	}
	return res, nil
}

func (b *pgBackend) audit(ctx context.Context, iccid string) ([]AuditRecord, error) {
	rows, err := b.pool.Query(ctx, `SELECT id, iccid, batch_id, state, eid, action, at FROM audit
		WHERE iccid = $1 ORDER BY id`, iccid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var a AuditRecord
		var state string
		if err := rows.Scan(&a.ID, &a.ICCID, &a.BatchID, &state, &a.EID, &a.Action, &a.At); err != nil {
			return nil, err
		}
		a.State, a.At = State(state), utc(a.At)
		out = append(out, a)
	}
	return out, rows.Err()
}
