package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// ES2+ operators, the owner of each order, and the transition hook that
// lets a caller act inside the transaction of every order change (the SM-DP+
// enqueues the operator's HandleDownloadProgressInfo callback there, so
// that a change is reported if and only if it commits).

// Operator is an ES2+ client: an MNO's business support system.
type Operator struct {
	// ID is the functionRequesterIdentifier the operator sends in every
	// ES2+ header.
	ID string
	// TrustPEM holds the certificates (PEM) its TLS client certificate
	// must chain to: the operator's CA, or its self-signed certificate.
	TrustPEM string
	// CallbackURL receives HandleDownloadProgressInfo; empty: none sent.
	CallbackURL string
	CreatedAt   time.Time
}

// KeyOperator is the Key of errors about an operator (its ID).
const KeyOperator Key = "operator"

// EventOperator names the operator administration in errors.
const EventOperator Event = "Operator"

// Transition is one committed-to-be change of an order, seen by the
// transition hook inside its transaction.
type Transition struct {
	Event    Event
	From, To State   // equal when the write changed counters only (e.g. a download attempt)
	Profile  Profile // the order columns after the change
	Operator string  // the operator that placed the order ("" when unknown)
}

// TransitionHook runs inside the transaction of every order write
// (DownloadOrder … InstallResult); its error rolls the write back. It must
// use only tx: on SQLite the write connection is tx's.
type TransitionHook func(ctx context.Context, tx Tx, t Transition) error

// SetTransitionHook installs h (nil removes it). Install it before serving:
// writes already under way keep the hook they started with.
func (d *DB) SetTransitionHook(h TransitionHook) {
	if h == nil {
		d.hook.Store(nil)
		return
	}
	d.hook.Store(&h)
}

// afterWrite is what a backend runs after writing a profile row, in its
// transaction: from is the state before the write, p the row written.
type afterWrite func(ctx context.Context, tx Tx, from State, p Profile) error

// mutate runs a state-machine step with the transition hook.
func (d *DB) mutate(ctx context.Context, ev Event, iccid string, fn func(*Profile) error) (Profile, error) {
	return d.b.mutate(ctx, iccid, fn, d.after(ev, false, ""))
}

// mutateOwned is mutate for DownloadOrder: a write records operator as the
// order's owner (none when empty).
func (d *DB) mutateOwned(ctx context.Context, ev Event, iccid, operator string, fn func(*Profile) error) (Profile, error) {
	return d.b.mutate(ctx, iccid, fn, d.after(ev, true, operator))
}

func (d *DB) allocate(ctx context.Context, r DownloadOrderRequest, state State, now time.Time) (Profile, error) {
	return d.b.allocate(ctx, r.ProfileType, r.EID, state, now, d.after(EventDownloadOrder, true, r.Operator))
}

// after returns the backend's afterWrite for an event: record the owner
// (setOwner: a new order), then call the hook. nil when there is nothing
// to do, so that the backend keeps its fast path.
func (d *DB) after(ev Event, setOwner bool, operator string) afterWrite {
	hp := d.hook.Load()
	if hp == nil && !setOwner {
		return nil
	}
	return func(ctx context.Context, tx Tx, from State, p Profile) error {
		owner := operator
		var err error
		if setOwner {
			err = setOrderOwnerTx(ctx, tx, p.ICCID, operator)
		} else if sb, ok := d.b.(*sqliteBackend); ok && hp != nil && tx.sql != nil {
			owner, err = sb.orderOwnerTx(ctx, tx.sql, p.ICCID) // prepared once, not per transaction
		} else if hp != nil {
			owner, err = orderOwnerTx(ctx, tx, p.ICCID)
		}
		if err != nil {
			return err
		}
		if hp == nil {
			return nil
		}
		return (*hp)(ctx, tx, Transition{Event: ev, From: from, To: p.State, Profile: p, Operator: owner})
	}
}

func setOrderOwnerTx(ctx context.Context, tx Tx, iccid, operator string) error {
	var err error
	switch {
	case tx.sql != nil && operator == "":
		_, err = tx.sql.ExecContext(ctx, `DELETE FROM order_owners WHERE iccid = ?`, iccid)
	case tx.sql != nil:
		_, err = tx.sql.ExecContext(ctx, `INSERT INTO order_owners (iccid, operator_id) VALUES (?, ?)
			ON CONFLICT (iccid) DO UPDATE SET operator_id = excluded.operator_id`, iccid, operator)
	case operator == "":
		_, err = tx.pg.Exec(ctx, `DELETE FROM order_owners WHERE iccid = $1`, iccid)
	default:
		_, err = tx.pg.Exec(ctx, `INSERT INTO order_owners (iccid, operator_id) VALUES ($1, $2)
			ON CONFLICT (iccid) DO UPDATE SET operator_id = excluded.operator_id`, iccid, operator)
	}
	return err
}

func orderOwnerTx(ctx context.Context, tx Tx, iccid string) (string, error) {
	var (
		owner string
		err   error
	)
	if tx.sql != nil {
		err = tx.sql.QueryRowContext(ctx, `SELECT operator_id FROM order_owners WHERE iccid = ?`, iccid).Scan(&owner)
	} else {
		err = tx.pg.QueryRow(ctx, `SELECT operator_id FROM order_owners WHERE iccid = $1`, iccid).Scan(&owner)
	}
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return owner, err
}

// Order returns a profile's order columns (no protected material);
// ErrNotFound when the ICCID is unknown.
func (d *DB) Order(ctx context.Context, iccid string) (Profile, error) {
	p, err := d.b.getProfile(ctx, "iccid", iccid, false)
	return p, withEvent(err, EventGetProfile)
}

// OrderOwner returns the operator that placed the current order of an
// ICCID ("" when none is recorded).
func (d *DB) OrderOwner(ctx context.Context, iccid string) (string, error) {
	var (
		owner string
		err   error
	)
	switch b := d.b.(type) {
	case *sqliteBackend:
		err = b.r.QueryRowContext(ctx, `SELECT operator_id FROM order_owners WHERE iccid = ?`, iccid).Scan(&owner)
	case *pgBackend:
		err = b.pool.QueryRow(ctx, `SELECT operator_id FROM order_owners WHERE iccid = $1`, iccid).Scan(&owner)
	}
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return owner, err
}

// AddOperator records an operator. Adding an existing ID again with the
// same trust anchors and callback URL is a no-op; with others ErrConflict
// (remove it first).
func (d *DB) AddOperator(ctx context.Context, op Operator) (Operator, error) {
	if op.ID == "" {
		return Operator{}, &Error{Kind: ErrInvalid, Event: EventOperator, Key: KeyOperator, Detail: "operator without ID"}
	}
	if op.TrustPEM == "" {
		return Operator{}, &Error{Kind: ErrInvalid, Event: EventOperator, Key: KeyOperator, Value: op.ID,
			Detail: "operator without trusted certificates"}
	}
	now := d.now()
	var (
		n   int64
		err error
	)
	switch b := d.b.(type) {
	case *sqliteBackend:
		var res sql.Result
		res, err = b.w.ExecContext(ctx, `INSERT INTO operators (id, trust_pem, callback_url, created_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, op.ID, op.TrustPEM, op.CallbackURL, now.UnixMicro())
		if err == nil {
			n, err = res.RowsAffected()
		}
	case *pgBackend:
		var tag interface{ RowsAffected() int64 }
		tag, err = b.pool.Exec(ctx, `INSERT INTO operators (id, trust_pem, callback_url, created_at)
			VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`, op.ID, op.TrustPEM, op.CallbackURL, now)
		if err == nil {
			n = tag.RowsAffected()
		}
	}
	if err != nil {
		return Operator{}, err
	}
	if n == 1 {
		op.CreatedAt = now
		return op, nil
	}
	got, err := d.GetOperator(ctx, op.ID)
	if err != nil {
		return Operator{}, err
	}
	if got.TrustPEM != op.TrustPEM || got.CallbackURL != op.CallbackURL {
		return Operator{}, &Error{Kind: ErrConflict, Event: EventOperator, Key: KeyOperator, Value: op.ID,
			Detail: "recorded with other certificates or callback URL: remove it first"}
	}
	return got, nil
}

const operatorCols = `id, trust_pem, callback_url, created_at`

func (d *DB) queryOperators(ctx context.Context, where string, args ...any) ([]Operator, error) {
	var out []Operator
	switch b := d.b.(type) {
	case *sqliteBackend:
		rows, err := b.r.QueryContext(ctx, `SELECT `+operatorCols+` FROM operators `+where+` ORDER BY id`, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var op Operator
			var at int64
			if err := rows.Scan(&op.ID, &op.TrustPEM, &op.CallbackURL, &at); err != nil {
				return nil, err
			}
			op.CreatedAt = timeOrZero(at)
			out = append(out, op)
		}
		return out, rows.Err()
	case *pgBackend:
		if where != "" {
			where = "WHERE id = $1"
		}
		rows, err := b.pool.Query(ctx, `SELECT `+operatorCols+` FROM operators `+where+` ORDER BY id`, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var op Operator
			if err := rows.Scan(&op.ID, &op.TrustPEM, &op.CallbackURL, &op.CreatedAt); err != nil {
				return nil, err
			}
			op.CreatedAt = op.CreatedAt.UTC()
			out = append(out, op)
		}
		return out, rows.Err()
	}
	return nil, errors.New("store: unknown backend")
}

// GetOperator returns an operator; ErrNotFound when unknown.
func (d *DB) GetOperator(ctx context.Context, id string) (Operator, error) {
	ops, err := d.queryOperators(ctx, `WHERE id = ?`, id)
	if err != nil {
		return Operator{}, err
	}
	if len(ops) == 0 {
		return Operator{}, newErr(ErrNotFound, EventOperator, KeyOperator, id)
	}
	return ops[0], nil
}

// ListOperators returns every operator, by ID.
func (d *DB) ListOperators(ctx context.Context) ([]Operator, error) {
	return d.queryOperators(ctx, "")
}

// RemoveOperator deletes an operator; ErrNotFound when unknown. Its orders
// keep their owner, so that callbacks already enqueued are not orphaned;
// new ones are not sent once the operator is gone.
func (d *DB) RemoveOperator(ctx context.Context, id string) error {
	var (
		n   int64
		err error
	)
	switch b := d.b.(type) {
	case *sqliteBackend:
		var res sql.Result
		if res, err = b.w.ExecContext(ctx, `DELETE FROM operators WHERE id = ?`, id); err == nil {
			n, err = res.RowsAffected()
		}
	case *pgBackend:
		var tag interface{ RowsAffected() int64 }
		if tag, err = b.pool.Exec(ctx, `DELETE FROM operators WHERE id = $1`, id); err == nil {
			n = tag.RowsAffected()
		}
	}
	if err != nil {
		return err
	}
	if n == 0 {
		return newErr(ErrNotFound, EventOperator, KeyOperator, id)
	}
	return nil
}
