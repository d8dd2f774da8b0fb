package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"time"
)

// The ES9+ session statements, named so that the autocommit calls
// (putSession, updateSession …) and the transactions of mutateSession use
// one prepared statement each.
const (
	sqlSessionInsert = `INSERT INTO sessions (` + sessionCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlSessionUpdate = `UPDATE sessions SET eid = ?, iccid = ?, matching_id = ?, phase = ?,
		euicc_challenge = ?, server_challenge = ?, euicc_otpk = ?, smdp_otpk = ?, ot_key_ref = ?, data = ?,
		version = ?, updated_at = ?, expires_at = CASE WHEN ? THEN expires_at ELSE ? END
		WHERE transaction_id = ? AND version = ? AND expires_at > ?`
	// sqlSessionUpdateKeep is sqlSessionUpdate keeping the expiry: a
	// column that is not SET leaves its index (sessions_expires) alone,
	// one WAL frame less per call.
	sqlSessionUpdateKeep = `UPDATE sessions SET eid = ?, iccid = ?, matching_id = ?, phase = ?,
		euicc_challenge = ?, server_challenge = ?, euicc_otpk = ?, smdp_otpk = ?, ot_key_ref = ?, data = ?,
		version = ?, updated_at = ?
		WHERE transaction_id = ? AND version = ? AND expires_at > ?`
	sqlSessionDelete        = `DELETE FROM sessions WHERE transaction_id = ?`
	sqlSessionDeleteVersion = `DELETE FROM sessions WHERE transaction_id = ? AND version = ?`
	sqlOneTimeKeyPut        = `INSERT INTO one_time_keys (euicc_otpk, iccid, smdp_otpk, key_ref, expires_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (euicc_otpk) DO UPDATE SET iccid = excluded.iccid,
		smdp_otpk = excluded.smdp_otpk, key_ref = excluded.key_ref, expires_at = excluded.expires_at`
	sqlOneTimeKeyNew = `INSERT INTO one_time_keys (euicc_otpk, iccid, smdp_otpk, key_ref, expires_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (euicc_otpk) DO NOTHING`
	sqlOrderOwner = `SELECT operator_id FROM order_owners WHERE iccid = ?`
	// sqlMutateSelectOwner is sqlMutateSelect with the order's owner, for
	// a transaction whose hook needs it (sqliteTxOwner).
	sqlMutateSelectOwner = `SELECT ` + orderCols + `, (SELECT operator_id FROM order_owners WHERE order_owners.iccid = profiles.iccid)
		FROM profiles WHERE iccid = ?`

	// Narrower order updates (see sqliteOrderUpdate). SQLite rewrites the
	// entry of every index whose columns an UPDATE sets, changed or not:
	// sqlMutateUpdate, which sets every order column, dirtied the
	// matching_id and eid index pages on each ES9+ event, two WAL frames
	// of a commit's five to eight.
	sqlOrderUpdateState    = `UPDATE profiles SET state = ?, updated_at = ? WHERE iccid = ?`
	sqlOrderUpdateAttempts = `UPDATE profiles SET state = ?, download_attempts = ?, cc_attempts = ?, updated_at = ? WHERE iccid = ?`
	sqlOrderUpdateEID      = `UPDATE profiles SET state = ?, eid = ?, download_attempts = ?, cc_attempts = ?, updated_at = ? WHERE iccid = ?`
)

// sqliteSessionsExpiresDropped is the inventory's migration 4. Every
// download inserts a session at initiateAuthentication and deletes it at
// handleNotification: with sessions_expires each of the two wrote one
// index page more into the WAL (16 → 14 frames per download). The index
// served only DeleteExpired, which now scans the table: it holds the
// sessions in flight and the abandoned ones of the last session TTL, and
// perso serve sweeps once a minute, not per call.
const sqliteSessionsExpiresDropped = `DROP INDEX IF EXISTS sessions_expires;`

// sqliteOrderUpdate returns the statement and arguments that write p, the
// order columns after a change of old: the narrowest of the updates above
// that covers the columns that changed.
func sqliteOrderUpdate(old, p *Profile) (string, []any) {
	if p.MatchingID != old.MatchingID || !bytes.Equal(p.CCHash, old.CCHash) || !p.OrderExpiresAt.Equal(old.OrderExpiresAt) {
		return sqlMutateUpdate, []any{p.State, nullStr(p.EID), nullStr(p.MatchingID), nullBytes(p.CCHash), p.DownloadAttempts, p.CCAttempts,
			micros(p.OrderExpiresAt), micros(p.UpdatedAt), p.ICCID}
	}
	switch {
	case p.EID != old.EID:
		return sqlOrderUpdateEID, []any{p.State, nullStr(p.EID), p.DownloadAttempts, p.CCAttempts, micros(p.UpdatedAt), p.ICCID}
	case p.DownloadAttempts != old.DownloadAttempts || p.CCAttempts != old.CCAttempts:
		return sqlOrderUpdateAttempts, []any{p.State, p.DownloadAttempts, p.CCAttempts, micros(p.UpdatedAt), p.ICCID}
	}
	return sqlOrderUpdateState, []any{p.State, micros(p.UpdatedAt), p.ICCID}
}

// The statements that run inside order transactions are prepared when the
// inventory opens (the single write connection is busy with the
// transaction when they run: it cannot prepare for the cache then, and a
// statement prepared per transaction is parsed again every time, which
// modernc's SQLite does in Go at some 20 µs a statement).
func init() {
	sqliteTxStmts = append(sqliteTxStmts, sqlSessionInsert, sqlSessionUpdate, sqlSessionUpdateKeep, sqlSessionDelete, sqlSessionDeleteVersion,
		sqlOneTimeKeyPut, sqlOneTimeKeyNew, sqlOrderOwner, sqlMutateSelectOwner, sqlOrderUpdateState, sqlOrderUpdateAttempts, sqlOrderUpdateEID)
}

// sqliteSessionUpdate returns the statement and arguments that store s
// at its next version (see SessionChange.Update): sqlSessionUpdateKeep
// when the expiry stays.
func sqliteSessionUpdate(s Session, keepExpiry bool, now time.Time) (string, []any) {
	q, args := sqlSessionUpdate, []any{s.EID, s.ICCID, s.MatchingID, s.Phase, nullBytes(s.EUICCChallenge), nullBytes(s.ServerChallenge),
		nullBytes(s.EUICCOtPK), nullBytes(s.SMDPOtPK), s.OTKeyRef, nullBytes(s.Data), s.Version, micros(s.UpdatedAt)}
	if keepExpiry {
		q = sqlSessionUpdateKeep
	} else {
		args = append(args, false, micros(s.ExpiresAt))
	}
	return q, append(args, s.TransactionID, s.Version-1, now.UnixMicro())
}

// mutateInTx is mutate's work inside tx: it locks nothing (BEGIN IMMEDIATE
// did), loads the order columns, applies fn and writes them back, then runs
// after. wrote is false when fn asked for no write (p is the row as
// stored) or refused the change (err is fn's error); result is the error
// of a change that is written and then fails (commitErr).
func (b *sqliteBackend) mutateInTx(ctx context.Context, tx *sql.Tx, iccid string, fn func(p *Profile) error,
	after afterWrite) (p Profile, wrote bool, result, err error) {
	q, row := sqlMutateSelect, rowAnd{}
	var owner sql.NullString
	if after != nil {
		q, row.extra = sqlMutateSelectOwner, &owner
	}
	sel, err := b.txStmt(ctx, tx, q)
	if err != nil {
		return Profile{}, false, nil, err
	}
	row.row = sel.QueryRowContext(ctx, iccid)
	p, err = scanSQLiteProfile(row, false)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, false, nil, newErr(ErrNotFound, "", KeyICCID, iccid)
	}
	if err != nil {
		return Profile{}, false, nil, err
	}
	old := p
	write, result := runMutation(fn, &p)
	if !write {
		if result != nil {
			return Profile{}, false, nil, result
		}
		return p, false, nil, nil
	}
	q, args := sqliteOrderUpdate(&old, &p)
	upd, err := b.txStmt(ctx, tx, q)
	if err != nil {
		return Profile{}, false, nil, err
	}
	_, err = upd.ExecContext(ctx, args...)
	if sqliteUnique(err, "matching_id") {
		return Profile{}, false, nil, newErr(ErrMatchingIDInUse, "", KeyMatchingID, p.MatchingID)
	}
	if err != nil {
		return Profile{}, false, nil, err
	}
	if after != nil {
		b.txOwner.Store(&sqliteTxOwner{tx: tx, iccid: iccid, owner: owner.String})
		err := after(ctx, Tx{sql: tx}, old.State, p)
		b.txOwner.Store(nil)
		if err != nil {
			return Profile{}, false, nil, err
		}
	}
	return p, true, result, nil
}

// rowAnd scans a row into the destinations given and then extra (when not
// nil): the order columns and one more.
type rowAnd struct {
	row   *sql.Row
	extra any
}

func (r rowAnd) Scan(dst ...any) error {
	if r.extra != nil {
		dst = append(dst, r.extra)
	}
	return r.row.Scan(dst...)
}

// sqliteTxOwner is the owner of the order that transaction tx has just
// written, read with the order (sqlMutateSelectOwner): the ES2+ progress
// hook asks for it on every order event, and a statement of its own cost
// 55–80 µs per download (three events) under load. Set only while the
// write connection runs tx's hook, so it never answers for another
// transaction or order.
type sqliteTxOwner struct {
	tx           *sql.Tx
	iccid, owner string
}

// mutateSession runs mutateInTx and, unless fn's change fails, w's
// session writes (none when w is nil) in one transaction, shared with
// the concurrent calls of this process (inGroup). Without session
// writes, a step that writes nothing commits nothing.
func (b *sqliteBackend) mutateSession(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite,
	w *sessionWrites, now time.Time) (Profile, error) {
	var p Profile
	var result error
	// The group's transaction holds the write lock while this runs: its
	// statements wait for nothing but this process's CPU and page cache,
	// so inGroup runs them without ctx's cancellation. With it, the
	// driver started a goroutine per statement to interrupt it (five to
	// seven per ES9+ call).
	err := b.inGroup(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		var wrote bool
		var err error
		p, wrote, result, err = b.mutateInTx(ctx, tx, iccid, fn, after)
		switch {
		case err != nil:
			return false, err
		case w == nil && !wrote:
			return false, nil
		case w != nil && result == nil:
			if err := b.sessionWritesTx(ctx, tx, w, now); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return Profile{}, err
	}
	return p, result
}

// sessionWritesTx applies w in tx; errSessionStale when the update
// matches no row.
func (b *sqliteBackend) sessionWritesTx(ctx context.Context, tx *sql.Tx, w *sessionWrites, now time.Time) error {
	if s := w.update; s != nil {
		q, args := sqliteSessionUpdate(*s, w.keepExpiry, now)
		if err := b.execOne(ctx, tx, errSessionStale, q, args...); err != nil {
			return err
		}
	}
	if w.delete != "" {
		q, args, miss := sqlSessionDelete, []any{w.delete}, error(nil) // one already gone is no error
		if w.deleteVersion != 0 {
			q, args, miss = sqlSessionDeleteVersion, []any{w.delete, w.deleteVersion}, errSessionStale
		}
		if err := b.execOne(ctx, tx, miss, q, args...); err != nil {
			return err
		}
	}
	if k := w.otk; k != nil {
		q, miss := sqlOneTimeKeyPut, error(nil)
		if w.otkNew {
			q, miss = sqlOneTimeKeyNew, newErr(ErrConflict, EventSession, KeyEUICCOtPK, "")
		}
		if err := b.execOne(ctx, tx, miss, q, k.EUICCOtPK, k.ICCID, nullBytes(k.SMDPOtPK), k.KeyRef, micros(k.ExpiresAt)); err != nil {
			return err
		}
	}
	return nil
}

// execOne runs the prepared statement q in tx; when miss is not nil, the
// statement must change exactly one row, else the error is miss.
func (b *sqliteBackend) execOne(ctx context.Context, tx *sql.Tx, miss error, q string, args ...any) error {
	st, err := b.txStmt(ctx, tx, q)
	if err != nil {
		return err
	}
	r, err := st.ExecContext(ctx, args...)
	if err != nil || miss == nil {
		return err
	}
	if n, err := r.RowsAffected(); err != nil || n != 1 {
		return cmp.Or(err, miss)
	}
	return nil
}

// orderOwnerTx returns the owner of an order in tx: the one read with the
// order by mutateInTx, else read with the statement prepared at open.
func (b *sqliteBackend) orderOwnerTx(ctx context.Context, tx *sql.Tx, iccid string) (string, error) {
	if o := b.txOwner.Load(); o != nil && o.tx == tx && o.iccid == iccid {
		return o.owner, nil
	}
	st, err := b.txStmt(ctx, tx, sqlOrderOwner)
	if err != nil {
		return "", err
	}
	var owner string
	err = st.QueryRowContext(ctx, iccid).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return owner, err
}
