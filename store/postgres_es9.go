package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgMutateInTx is mutate's work inside tx (see the SQLite mutateInTx): the
// row is locked FOR UPDATE, fn applied, the row written, after run.
func pgMutateInTx(ctx context.Context, tx pgx.Tx, iccid string, fn func(p *Profile) error,
	after afterWrite) (p Profile, wrote bool, result, err error) {
	p, err = scanPGProfile(tx.QueryRow(ctx, `SELECT `+orderCols+` FROM profiles WHERE iccid = $1 FOR UPDATE`, iccid), false)
	if errors.Is(err, pgx.ErrNoRows) {
		return Profile{}, false, nil, newErr(ErrNotFound, "", KeyICCID, iccid)
	}
	if err != nil {
		return Profile{}, false, nil, err
	}
	from := p.State
	write, result := runMutation(fn, &p)
	if !write {
		if result != nil {
			return Profile{}, false, nil, result
		}
		return p, false, nil, nil
	}
	_, err = tx.Exec(ctx, `UPDATE profiles SET state = $1, eid = $2, matching_id = $3, cc_hash = $4,
		download_attempts = $5, cc_attempts = $6, order_expires_at = $7, updated_at = $8 WHERE iccid = $9`,
		string(p.State), nullStr(p.EID), nullStr(p.MatchingID), nullBytes(p.CCHash), p.DownloadAttempts, p.CCAttempts,
		nullTime(p.OrderExpiresAt), p.UpdatedAt, p.ICCID)
	if pgUnique(err, "profiles_matching_id") {
		return Profile{}, false, nil, newErr(ErrMatchingIDInUse, "", KeyMatchingID, p.MatchingID)
	}
	if err != nil {
		return Profile{}, false, nil, err
	}
	if after != nil {
		if err := after(ctx, Tx{pg: tx}, from, p); err != nil {
			return Profile{}, false, nil, err
		}
	}
	return p, true, result, nil
}

func (b *pgBackend) mutateSession(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite,
	w *sessionWrites, now time.Time) (Profile, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return Profile{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	p, _, result, err := pgMutateInTx(ctx, tx, iccid, fn, after)
	if err != nil {
		return Profile{}, err
	}
	if result == nil {
		if err := pgSessionWritesTx(ctx, tx, w, now); err != nil {
			return Profile{}, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Profile{}, err
	}
	return p, result
}

// pgSessionWritesTx applies w in tx, its statements sent in one round
// trip; errSessionStale when the update matches no row.
func pgSessionWritesTx(ctx context.Context, tx pgx.Tx, w *sessionWrites, now time.Time) error {
	var batch pgx.Batch
	if s := w.update; s != nil {
		batch.Queue(`UPDATE sessions SET eid = $1, iccid = $2, matching_id = $3, phase = $4,
		euicc_challenge = $5, server_challenge = $6, euicc_otpk = $7, smdp_otpk = $8, ot_key_ref = $9, data = $10,
		version = $11, updated_at = $12, expires_at = CASE WHEN $13 THEN expires_at ELSE $14 END
		WHERE transaction_id = $15 AND version = $16 AND expires_at > $17`,
			s.EID, s.ICCID, s.MatchingID, s.Phase, nullBytes(s.EUICCChallenge), nullBytes(s.ServerChallenge),
			nullBytes(s.EUICCOtPK), nullBytes(s.SMDPOtPK), s.OTKeyRef, nullBytes(s.Data), s.Version,
			s.UpdatedAt, w.keepExpiry, s.ExpiresAt, s.TransactionID, s.Version-1, now)
	}
	deleteAt := -1 // the batch index of a versioned delete
	if w.delete != "" && w.deleteVersion != 0 {
		deleteAt = batch.Len()
		batch.Queue(`DELETE FROM sessions WHERE transaction_id = $1 AND version = $2`, w.delete, w.deleteVersion)
	} else if w.delete != "" {
		batch.Queue(`DELETE FROM sessions WHERE transaction_id = $1`, w.delete)
	}
	otkAt := -1 // the batch index of an insert that must be new
	if k := w.otk; k != nil && w.otkNew {
		otkAt = batch.Len()
		batch.Queue(`INSERT INTO one_time_keys (euicc_otpk, iccid, smdp_otpk, key_ref, expires_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (euicc_otpk) DO NOTHING`,
			k.EUICCOtPK, k.ICCID, nullBytes(k.SMDPOtPK), k.KeyRef, k.ExpiresAt)
	} else if k != nil {
		batch.Queue(`INSERT INTO one_time_keys (euicc_otpk, iccid, smdp_otpk, key_ref, expires_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (euicc_otpk) DO UPDATE SET iccid = excluded.iccid,
		smdp_otpk = excluded.smdp_otpk, key_ref = excluded.key_ref, expires_at = excluded.expires_at`,
			k.EUICCOtPK, k.ICCID, nullBytes(k.SMDPOtPK), k.KeyRef, k.ExpiresAt)
	}
	if batch.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &batch)
	for i := range batch.Len() {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return err
		}
		if (i == 0 && w.update != nil || i == deleteAt) && tag.RowsAffected() != 1 {
			br.Close()
			return errSessionStale
		}
		if i == otkAt && tag.RowsAffected() != 1 {
			br.Close()
			return newErr(ErrConflict, EventSession, KeyEUICCOtPK, "")
		}
	}
	return br.Close()
}
