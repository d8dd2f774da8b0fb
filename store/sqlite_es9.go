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
	sqliteTxStmts = append(sqliteTxStmts, sqlSessionUpdate, sqlSessionUpdateKeep, sqlSessionDelete, sqlSessionDeleteVersion,
		sqlOneTimeKeyPut, sqlOneTimeKeyNew, sqlOrderOwner, sqlOrderUpdateState, sqlOrderUpdateAttempts, sqlOrderUpdateEID)
}

func sqliteSessionUpdateArgs(s Session, keepExpiry bool, now time.Time) []any {
	return []any{s.EID, s.ICCID, s.MatchingID, s.Phase, nullBytes(s.EUICCChallenge), nullBytes(s.ServerChallenge),
		nullBytes(s.EUICCOtPK), nullBytes(s.SMDPOtPK), s.OTKeyRef, nullBytes(s.Data), s.Version,
		micros(s.UpdatedAt), keepExpiry, micros(s.ExpiresAt), s.TransactionID, s.Version - 1, now.UnixMicro()}
}

// mutateInTx is mutate's work inside tx: it locks nothing (BEGIN IMMEDIATE
// did), loads the order columns, applies fn and writes them back, then runs
// after. wrote is false when fn asked for no write (p is the row as
// stored) or refused the change (err is fn's error); result is the error
// of a change that is written and then fails (commitErr).
func (b *sqliteBackend) mutateInTx(ctx context.Context, tx *sql.Tx, iccid string, fn func(p *Profile) error,
	after afterWrite) (p Profile, wrote bool, result, err error) {
	sel, err := b.txStmt(ctx, tx, sqlMutateSelect)
	if err != nil {
		return Profile{}, false, nil, err
	}
	p, err = scanSQLiteProfile(sel.QueryRowContext(ctx, iccid), false)
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
		if err := after(ctx, Tx{sql: tx}, old.State, p); err != nil {
			return Profile{}, false, nil, err
		}
	}
	return p, true, result, nil
}

func (b *sqliteBackend) mutateSession(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite,
	w *sessionWrites, now time.Time) (Profile, error) {
	if err := b.turn.acquire(ctx); err != nil {
		return Profile{}, err
	}
	defer b.turn.release()
	tx, err := b.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock is held from here
	if err != nil {
		return Profile{}, err
	}
	defer tx.Rollback()
	// From here the transaction holds the write lock: its statements wait
	// for nothing but this process's CPU and page cache, so they run
	// without ctx's cancellation. With it, the driver started a goroutine
	// per statement to interrupt it (five to seven per ES9+ call). A
	// cancelled call is still rolled back: database/sql does it for a
	// transaction begun with ctx, and the next statement or the commit
	// fails.
	ctx = context.WithoutCancel(ctx)
	p, _, result, err := b.mutateInTx(ctx, tx, iccid, fn, after)
	if err != nil {
		return Profile{}, err
	}
	if result == nil {
		if err := b.sessionWritesTx(ctx, tx, w, now); err != nil {
			return Profile{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return Profile{}, err
	}
	return p, result
}

// sessionWritesTx applies w in tx; errSessionStale when the update
// matches no row.
func (b *sqliteBackend) sessionWritesTx(ctx context.Context, tx *sql.Tx, w *sessionWrites, now time.Time) error {
	if s := w.update; s != nil {
		q, args := sqlSessionUpdate, sqliteSessionUpdateArgs(*s, w.keepExpiry, now)
		if w.keepExpiry {
			q = sqlSessionUpdateKeep
			args = []any{s.EID, s.ICCID, s.MatchingID, s.Phase, nullBytes(s.EUICCChallenge), nullBytes(s.ServerChallenge),
				nullBytes(s.EUICCOtPK), nullBytes(s.SMDPOtPK), s.OTKeyRef, nullBytes(s.Data), s.Version,
				micros(s.UpdatedAt), s.TransactionID, s.Version - 1, now.UnixMicro()}
		}
		st, err := b.txStmt(ctx, tx, q)
		if err != nil {
			return err
		}
		r, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return err
		}
		if n != 1 {
			return errSessionStale
		}
	}
	if w.delete != "" {
		q, args := sqlSessionDelete, []any{w.delete}
		if w.deleteVersion != 0 {
			q, args = sqlSessionDeleteVersion, []any{w.delete, w.deleteVersion}
		}
		st, err := b.txStmt(ctx, tx, q)
		if err != nil {
			return err
		}
		r, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		if w.deleteVersion != 0 {
			if n, err := r.RowsAffected(); err != nil || n != 1 {
				return cmp.Or(err, errSessionStale)
			}
		}
	}
	if k := w.otk; k != nil {
		q := sqlOneTimeKeyPut
		if w.otkNew {
			q = sqlOneTimeKeyNew
		}
		st, err := b.txStmt(ctx, tx, q)
		if err != nil {
			return err
		}
		r, err := st.ExecContext(ctx, k.EUICCOtPK, k.ICCID, nullBytes(k.SMDPOtPK), k.KeyRef, micros(k.ExpiresAt))
		if err != nil {
			return err
		}
		if w.otkNew {
			if n, err := r.RowsAffected(); err != nil || n != 1 {
				return cmp.Or[error](err, newErr(ErrConflict, EventSession, KeyEUICCOtPK, ""))
			}
		}
	}
	return nil
}

// orderOwnerTx reads the owner of an order in tx with the statement
// prepared at open.
func (b *sqliteBackend) orderOwnerTx(ctx context.Context, tx *sql.Tx, iccid string) (string, error) {
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
