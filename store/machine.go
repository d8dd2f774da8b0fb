package store

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// backend is what a database provides, like a database/sql/driver.Driver
// below *sql.DB: the state machine above it (DB) is shared. Errors of the
// domain are *Error values (Event may be left empty: DB fills it in).
type backend interface {
	close() error

	// createBatch runs inTx (when not nil) in the transaction that
	// creates the batch, not when the batch exists already.
	createBatch(ctx context.Context, b Batch, now time.Time, inTx func(context.Context, Tx) error) (Batch, error)
	getBatch(ctx context.Context, id string) (Batch, error)
	listBatches(ctx context.Context) ([]Batch, error)
	batchWorkers(ctx context.Context, batchID string) ([]WorkerTally, error)
	// putProfiles writes ws atomically, all or nothing (see WriteBatches).
	putProfiles(ctx context.Context, batchID string, ws []BatchWrite, now time.Time) ([]PutResult, error)
	footprint(ctx context.Context) (bytes, profiles int64, err error)
	countByState(ctx context.Context, batchID string) (map[State]int64, error)

	// getProfile loads one profile by "iccid" or "matching_id"; full adds
	// the protected material and metadata.
	getProfile(ctx context.Context, column, value string, full bool) (Profile, error)
	pendingByEID(ctx context.Context, eid string) (Profile, error)
	typeExists(ctx context.Context, profileType string) (bool, error)
	// allocate moves one Available profile of the type to state (bound to
	// eid) and returns it; ErrNoProfileAvailable when there is none.
	// after as for mutate.
	allocate(ctx context.Context, profileType, eid string, state State, now time.Time, after afterWrite) (Profile, error)
	// mutate locks the profile's row, loads its order columns, applies fn
	// and writes the order columns back, atomically. fn returning errNoWrite
	// skips the write; returning commitErr writes and then fails.
	// after (when not nil) runs in the same transaction once the row is
	// written, and its error rolls the write back (see DB.SetTransitionHook).
	mutate(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite) (Profile, error)
	// mutateSession is mutate followed, in the same transaction, by w's
	// session writes, unless fn fails (a refused change, or commitErr:
	// the row is written, the session is not); also when fn asks for no
	// write. An update that matches no row rolls everything back:
	// errSessionStale.
	mutateSession(ctx context.Context, iccid string, fn func(p *Profile) error, after afterWrite, w *sessionWrites, now time.Time) (Profile, error)

	putSession(ctx context.Context, s Session) error
	getSession(ctx context.Context, tid string) (Session, error)
	// updateSession writes s where version = s.Version-1 and the session is
	// not expired at now; false when no row matched.
	updateSession(ctx context.Context, s Session, keepExpiry bool, now time.Time) (bool, error)
	deleteSession(ctx context.Context, tid string) (bool, error)
	putOneTimeKey(ctx context.Context, k OneTimeKey) error
	getOneTimeKey(ctx context.Context, euiccOtPK []byte) (OneTimeKey, error)
	deleteExpired(ctx context.Context, now time.Time) (int, error)

	sweep(ctx context.Context, p SweepPolicy, now time.Time) (SweepResult, error)
	audit(ctx context.Context, iccid string) ([]AuditRecord, error)
}

// errNoWrite tells mutate to leave the row as it is (an idempotent repeat).
var errNoWrite = errors.New("store: no write")

// commitErr tells mutate to write the row and then return err.
type commitErr struct{ err error }

func (c commitErr) Error() string { return c.err.Error() }

// DB is the SM-DP+ inventory, opened by Open: the state machine on top of
// a backend (SQLite or PostgreSQL). Every method is safe for concurrent use
// by several goroutines, processes and (PostgreSQL) hosts. Callers declare
// the small interfaces they need (an order desk, a session keeper, a batch
// loader) and pass a *DB where they are wired.
type DB struct {
	b    backend
	o    options
	hook atomic.Pointer[TransitionHook] // see SetTransitionHook
}

func (d *DB) now() time.Time { return d.o.now().UTC().Truncate(time.Microsecond) }

// Close closes the database.
func (d *DB) Close() error { return d.b.close() }

// --- batches ---

// CreateBatch records a batch; Rejected is its initial reject count (the
// records its input refused before any chunk ran), the other counters start
// at zero. Re-creating an existing batch with the same parameters (key blob,
// KEK, profile type, template, input hash, record and chunk counts) returns
// the stored record; with others it is ErrConflict.
func (d *DB) CreateBatch(ctx context.Context, b Batch) (Batch, error) {
	return d.CreateBatchTx(ctx, b, nil)
}

// GetBatch returns a batch record and its counters; ErrNotFound when unknown.
func (d *DB) GetBatch(ctx context.Context, id string) (Batch, error) {
	b, err := d.b.getBatch(ctx, id)
	return b, withEvent(err, EventBatch)
}

// PutBatch inserts profiles into an existing batch, state Available.
// Idempotent: an ICCID already stored under the same batch is a no-op
// (Duplicates); under another batch it is reported in Conflicts and not
// touched. Each call is atomic.
func (d *DB) PutBatch(ctx context.Context, batchID string, ps []Profile) (PutResult, error) {
	return d.WriteBatch(ctx, batchID, BatchWrite{Profiles: ps})
}

// CountByState counts a batch's profiles per state ("" = all batches).
func (d *DB) CountByState(ctx context.Context, batchID string) (map[State]int64, error) {
	return d.b.countByState(ctx, batchID)
}

// --- lookups ---

// GetProfile returns a profile with its protected material and metadata.
func (d *DB) GetProfile(ctx context.Context, iccid string) (Profile, error) {
	p, err := d.b.getProfile(ctx, "iccid", iccid, true)
	return p, withEvent(err, EventGetProfile)
}

// ProfileByMatchingID finds the order of an activation-code token (ES9+
// AuthenticateClient); ErrNotFound with KeyMatchingID when there is none.
func (d *DB) ProfileByMatchingID(ctx context.Context, matchingID string) (Profile, error) {
	if matchingID == "" {
		return Profile{}, newErr(ErrNotFound, EventAuthenticateClient, KeyMatchingID, "")
	}
	p, err := d.b.getProfile(ctx, "matching_id", matchingID, false)
	return p, withEvent(err, EventAuthenticateClient)
}

// PendingOrderByEID finds the latest Confirmed or Released order bound to
// the EID without matching ID (SM-DS / default SM-DP+ use case); ErrNotFound
// with KeyEID when there is none.
func (d *DB) PendingOrderByEID(ctx context.Context, eid string) (Profile, error) {
	if eid == "" {
		return Profile{}, newErr(ErrInvalid, EventAuthenticateClient, KeyEID, "")
	}
	p, err := d.b.pendingByEID(ctx, eid)
	return p, withEvent(err, EventAuthenticateClient)
}

// --- ES2+ ---

// DownloadOrder is ES2+ DownloadOrder: it reserves the given ICCID, or
// allocates one Available profile of the type, bound to the EID if given. A
// resent identical call succeeds again.
func (d *DB) DownloadOrder(ctx context.Context, r DownloadOrderRequest) (Profile, error) {
	const ev = EventDownloadOrder
	state := StateAllocated
	if r.EID != "" {
		state = StateLinked
	}
	now := d.now()
	if r.ICCID == "" {
		if r.ProfileType == "" {
			return Profile{}, &Error{Kind: ErrInvalid, Event: ev, Key: KeyProfileType, Detail: "neither iccid nor profileType given"}
		}
		p, err := d.allocate(ctx, r, state, now)
		if errors.Is(err, ErrNoProfileAvailable) {
			exists, xerr := d.b.typeExists(ctx, r.ProfileType)
			if xerr != nil {
				return Profile{}, xerr
			}
			if !exists {
				return Profile{}, newErr(ErrUnknownProfileType, ev, KeyProfileType, r.ProfileType)
			}
			return Profile{}, newErr(ErrNoProfileAvailable, ev, KeyProfileType, r.ProfileType)
		}
		return p, withEvent(err, ev)
	}
	p, err := d.mutateOwned(ctx, ev, r.ICCID, r.Operator, func(p *Profile) error {
		if r.ProfileType != "" && p.ProfileType != r.ProfileType {
			return &Error{Kind: ErrProfileTypeMismatch, Event: ev, Key: KeyICCID, Value: p.ICCID,
				Detail: "profile is of type " + p.ProfileType}
		}
		switch p.State {
		case StateAvailable:
			resetOrder(p, false)
			p.State, p.EID = state, r.EID
			p.UpdatedAt = now
			return nil
		case StateAllocated, StateLinked:
			if p.EID == r.EID {
				return errNoWrite // a resent call: same parameters, same answer
			}
			return &Error{Kind: ErrConflict, Event: ev, From: p.State, Key: KeyICCID, Value: p.ICCID,
				Detail: "already reserved by a different order"}
		}
		return illegal(ev, p.State, p.ICCID)
	})
	return p, withEvent(err, ev)
}

// resetOrder clears the order fields; keepEID keeps the EID binding.
func resetOrder(p *Profile, keepEID bool) {
	if !keepEID {
		p.EID = ""
	}
	p.MatchingID, p.CCHash = "", nil
	p.DownloadAttempts, p.CCAttempts = 0, 0
	p.OrderExpiresAt = time.Time{}
}

// ConfirmOrder is ES2+ ConfirmOrder: it sets the matching ID and the
// confirmation code hash, and releases the order when ReleaseFlag is set.
func (d *DB) ConfirmOrder(ctx context.Context, r ConfirmOrderRequest) (Profile, error) {
	const ev = EventConfirmOrder
	if r.ICCID == "" {
		return Profile{}, newErr(ErrInvalid, ev, KeyICCID, "")
	}
	now := d.now()
	p, err := d.mutate(ctx, ev, r.ICCID, func(p *Profile) error {
		if resentConfirm(p, r) {
			return errNoWrite // a resent call: same parameters, same answer
		}
		if p.State != StateAllocated && p.State != StateLinked {
			return illegal(ev, p.State, p.ICCID)
		}
		if r.EID != "" {
			if p.EID != "" && p.EID != r.EID {
				return newErr(ErrEIDMismatch, ev, KeyEID, r.EID)
			}
			p.EID = r.EID
		}
		switch {
		case r.MatchingID == nil:
			p.MatchingID = newMatchingID()
		case *r.MatchingID == "":
			if p.EID == "" {
				return &Error{Kind: ErrEIDRequired, Event: ev, Key: KeyEID, Detail: "an empty matchingId needs an EID"}
			}
			p.MatchingID = ""
		default:
			p.MatchingID = *r.MatchingID
		}
		p.CCHash = append([]byte(nil), r.CCHash...)
		if len(p.CCHash) == 0 {
			p.CCHash = nil
		}
		p.DownloadAttempts, p.CCAttempts = 0, 0
		p.State = StateConfirmed
		if r.ReleaseFlag {
			p.State = StateReleased
		}
		p.OrderExpiresAt = time.Time{}
		if d.o.orderTTL > 0 {
			p.OrderExpiresAt = now.Add(d.o.orderTTL)
		}
		p.UpdatedAt = now
		return nil
	})
	return p, withEvent(err, ev)
}

// resentConfirm reports whether r repeats the ConfirmOrder that confirmed
// p: same EID (or none), same matching ID (or none asked for: the one given
// then is returned again), same confirmation code, and the same release
// flag (a confirmation without release that ReleaseProfile released since is
// no longer the same call: it answers as a conflict).
func resentConfirm(p *Profile, r ConfirmOrderRequest) bool {
	if p.State != StateConfirmed && p.State != StateReleased {
		return false
	}
	return (r.EID == "" || r.EID == p.EID) &&
		(r.MatchingID == nil || *r.MatchingID == p.MatchingID) &&
		bytes.Equal(r.CCHash, p.CCHash) &&
		r.ReleaseFlag == (p.State == StateReleased)
}

// CancelOrder is ES2+ CancelOrder: the order ends and the profile becomes
// r.Final (Available or Unavailable).
func (d *DB) CancelOrder(ctx context.Context, r CancelOrderRequest) (Profile, error) {
	const ev = EventCancelOrder
	if r.ICCID == "" {
		return Profile{}, newErr(ErrInvalid, ev, KeyICCID, "")
	}
	if r.Final != StateAvailable && r.Final != StateUnavailable {
		return Profile{}, newErr(ErrInvalid, ev, KeyFinalState, string(r.Final))
	}
	now := d.now()
	p, err := d.mutate(ctx, ev, r.ICCID, func(p *Profile) error {
		switch p.State {
		case StateAllocated, StateLinked, StateConfirmed, StateReleased, StateError:
		default:
			return illegal(ev, p.State, p.ICCID)
		}
		if p.EID != "" && r.EID == "" {
			return &Error{Kind: ErrEIDRequired, Event: ev, Key: KeyEID, Detail: "the order is bound to an EID"}
		}
		if r.EID != "" && r.EID != p.EID {
			return newErr(ErrEIDMismatch, ev, KeyEID, r.EID)
		}
		if r.MatchingID != "" && r.MatchingID != p.MatchingID {
			return newErr(ErrMatchingIDMismatch, ev, KeyMatchingID, r.MatchingID)
		}
		p.State = r.Final
		resetOrder(p, false)
		p.UpdatedAt = now
		return nil
	})
	return p, withEvent(err, ev)
}

// ReleaseProfile is ES2+ ReleaseProfile: Confirmed → Released.
func (d *DB) ReleaseProfile(ctx context.Context, iccid string) (Profile, error) {
	const ev = EventReleaseProfile
	if iccid == "" {
		return Profile{}, newErr(ErrInvalid, ev, KeyICCID, "")
	}
	now := d.now()
	p, err := d.mutate(ctx, ev, iccid, func(p *Profile) error {
		if p.State == StateReleased {
			return errNoWrite // released already: a resent call, or released by ConfirmOrder's flag
		}
		if p.State != StateConfirmed {
			return illegal(ev, p.State, p.ICCID)
		}
		p.State, p.UpdatedAt = StateReleased, now
		return nil
	})
	return p, withEvent(err, ev)
}

// --- ES9+ download events ---

// AuthenticateClient records an ES9+ AuthenticateClient on a Released
// order: one download attempt, binding the EID if the order had none.
// Beyond the attempt limit the profile goes to Error (ErrRetryLimit).
func (d *DB) AuthenticateClient(ctx context.Context, iccid, eid string) (Profile, error) {
	return d.AuthenticateClientWith(ctx, iccid, eid, nil, nil)
}

// authenticateClient is AuthenticateClient's transition on p.
func (d *DB) authenticateClient(p *Profile, eid string, now time.Time) error {
	const ev = EventAuthenticateClient
	// Check order of es2-es10-codes.md §3.3 rows 16–19.
	if p.EID != "" && p.EID != eid {
		return newErr(ErrEIDMismatch, ev, KeyEID, eid)
	}
	if p.State != StateReleased {
		return illegal(ev, p.State, p.ICCID)
	}
	if !p.OrderExpiresAt.IsZero() && !now.Before(p.OrderExpiresAt) {
		return newErr(ErrOrderExpired, ev, KeyICCID, p.ICCID)
	}
	p.UpdatedAt = now
	if p.DownloadAttempts >= d.o.maxDownloadAttempts {
		p.State = StateError
		return commitErr{newErr(ErrRetryLimit, ev, KeyICCID, p.ICCID)}
	}
	p.DownloadAttempts++
	p.EID = eid
	return nil
}

// ConfirmationCodeFailed counts a wrong or missing hashCc; at the limit the
// profile goes to Error and the error is ErrCCRetryLimit.
func (d *DB) ConfirmationCodeFailed(ctx context.Context, iccid string) (Profile, error) {
	const ev = EventCCFailure
	now := d.now()
	p, err := d.mutate(ctx, ev, iccid, func(p *Profile) error {
		if p.State != StateReleased {
			return illegal(ev, p.State, p.ICCID)
		}
		p.CCAttempts++
		p.UpdatedAt = now
		if p.CCAttempts >= d.o.maxCCAttempts {
			p.State = StateError
			return commitErr{newErr(ErrCCRetryLimit, ev, KeyICCID, p.ICCID)}
		}
		return nil
	})
	return p, withEvent(err, ev)
}

// BPPDelivered records the BPP served: Released → Downloaded.
func (d *DB) BPPDelivered(ctx context.Context, iccid string) (Profile, error) {
	return d.BPPDeliveredWith(ctx, iccid, nil)
}

func (d *DB) bppDelivered(p *Profile, now time.Time) error {
	switch p.State {
	case StateReleased:
		p.State, p.UpdatedAt = StateDownloaded, now
		return nil
	case StateDownloaded:
		return errNoWrite // the same BPP served again (a retried GetBoundProfilePackage)
	}
	return illegal(EventBPPDelivered, p.State, p.ICCID)
}

// InstallResult records a ProfileInstallationResult: Downloaded →
// Installed on success; on failure back to Released for a re-download, or
// Error once the attempts are used up.
func (d *DB) InstallResult(ctx context.Context, iccid string, success bool) (Profile, error) {
	return d.InstallResultWith(ctx, iccid, success, nil)
}

func (d *DB) installResult(p *Profile, success bool, now time.Time) error {
	switch {
	case p.State == StateDownloaded && success:
		p.State = StateInstalled
	case p.State == StateDownloaded:
		p.State = d.afterFailedAttempt(p)
	case p.State == StateInstalled && success:
		return errNoWrite // a repeated notification
	default:
		return illegal(EventInstallResult, p.State, p.ICCID)
	}
	p.UpdatedAt = now
	return nil
}

// SessionCancelled records an ES9+ CancelSession: Released or Downloaded →
// Released (re-download possible), or Error once the attempts are used up.
func (d *DB) SessionCancelled(ctx context.Context, iccid string) (Profile, error) {
	const ev = EventSessionCancelled
	now := d.now()
	p, err := d.mutate(ctx, ev, iccid, func(p *Profile) error {
		if p.State != StateReleased && p.State != StateDownloaded {
			return illegal(ev, p.State, p.ICCID)
		}
		p.State, p.UpdatedAt = d.afterFailedAttempt(p), now
		return nil
	})
	return p, withEvent(err, ev)
}

// afterFailedAttempt: back to Released for a re-download while attempts
// remain, else Error.
func (d *DB) afterFailedAttempt(p *Profile) State {
	if p.DownloadAttempts >= d.o.maxDownloadAttempts {
		return StateError
	}
	return StateReleased
}

// --- sessions ---

// PutSession stores a new ES9+ session (version 1); a zero ExpiresAt means
// now + the session TTL. ErrConflict when the transaction ID exists.
func (d *DB) PutSession(ctx context.Context, s Session) (Session, error) {
	if s.TransactionID == "" {
		return Session{}, newErr(ErrInvalid, EventSession, KeyTransactionID, "")
	}
	now := d.now()
	s.CreatedAt, s.UpdatedAt, s.Version = now, now, 1
	if s.ExpiresAt.IsZero() {
		s.ExpiresAt = now.Add(d.o.sessionTTL)
	}
	s.ExpiresAt = s.ExpiresAt.UTC().Truncate(time.Microsecond)
	if err := d.b.putSession(ctx, s); err != nil {
		return Session{}, withEvent(err, EventSession)
	}
	return s, nil
}

// GetSession returns a session; ErrNotFound when unknown or expired.
func (d *DB) GetSession(ctx context.Context, tid string) (Session, error) {
	s, err := d.b.getSession(ctx, tid)
	if err != nil {
		return Session{}, withEvent(err, EventSession)
	}
	if !d.now().Before(s.ExpiresAt) {
		return Session{}, &Error{Kind: ErrNotFound, Event: EventSession, Key: KeyTransactionID, Value: tid, Detail: "session expired"}
	}
	return s, nil
}

// UpdateSession stores s if the stored version is s.Version and returns it
// with the next version (ErrStale otherwise); a zero ExpiresAt keeps the
// stored expiry.
func (d *DB) UpdateSession(ctx context.Context, s Session) (Session, error) {
	now := d.now()
	s.UpdatedAt = now
	s.Version++
	keep := s.ExpiresAt.IsZero()
	s.ExpiresAt = s.ExpiresAt.UTC().Truncate(time.Microsecond)
	ok, err := d.b.updateSession(ctx, s, keep, now)
	if err != nil {
		return Session{}, withEvent(err, EventSession)
	}
	if !ok {
		if _, err := d.GetSession(ctx, s.TransactionID); err != nil {
			return Session{}, err // gone or expired
		}
		return Session{}, &Error{Kind: ErrStale, Event: EventSession, Key: KeyTransactionID, Value: s.TransactionID,
			Detail: "stored version differs"}
	}
	if keep {
		return d.GetSession(ctx, s.TransactionID)
	}
	return s, nil
}

// DeleteSession removes a session; ErrNotFound when there is none.
func (d *DB) DeleteSession(ctx context.Context, tid string) error {
	ok, err := d.b.deleteSession(ctx, tid)
	if err != nil {
		return err
	}
	if !ok {
		return newErr(ErrNotFound, EventSession, KeyTransactionID, tid)
	}
	return nil
}

// PutOneTimeKey records the SM-DP+ one-time key a BPP was bound with, for
// the eUICC one-time key it was bound to.
func (d *DB) PutOneTimeKey(ctx context.Context, k OneTimeKey) error {
	if len(k.EUICCOtPK) == 0 {
		return newErr(ErrInvalid, EventSession, KeyEUICCOtPK, "")
	}
	if k.ExpiresAt.IsZero() {
		k.ExpiresAt = d.now().Add(d.o.sessionTTL)
	}
	k.ExpiresAt = k.ExpiresAt.UTC().Truncate(time.Microsecond)
	return withEvent(d.b.putOneTimeKey(ctx, k), EventSession)
}

// GetOneTimeKey finds the binding of an eUICC one-time key; ErrNotFound when unknown or expired.
func (d *DB) GetOneTimeKey(ctx context.Context, euiccOtPK []byte) (OneTimeKey, error) {
	k, err := d.b.getOneTimeKey(ctx, euiccOtPK)
	if err != nil {
		return OneTimeKey{}, withEvent(err, EventSession)
	}
	if !d.now().Before(k.ExpiresAt) {
		return OneTimeKey{}, &Error{Kind: ErrNotFound, Event: EventSession, Key: KeyEUICCOtPK, Detail: "expired"}
	}
	return k, nil
}

// DeleteExpired removes expired sessions and one-time keys.
func (d *DB) DeleteExpired(ctx context.Context) (int, error) {
	return d.b.deleteExpired(ctx, d.now())
}

// --- retention ---

// Sweep removes the protected material of installed and expired
// profiles, keeping the row as a tombstone and an audit record.
func (d *DB) Sweep(ctx context.Context, p SweepPolicy) (SweepResult, error) {
	r, err := d.b.sweep(ctx, p, d.now())
	return r, withEvent(err, EventSweep)
}

// Audit returns the audit records the sweep left for an ICCID.
func (d *DB) Audit(ctx context.Context, iccid string) ([]AuditRecord, error) {
	return d.b.audit(ctx, iccid)
}

// runMutation applies fn and tells the backend whether to write the row and
// what to return.
func runMutation(fn func(*Profile) error, p *Profile) (write bool, result error) {
	err := fn(p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, errNoWrite) {
		return false, nil
	}
	var ce commitErr
	if errors.As(err, &ce) {
		return true, ce.err
	}
	return false, err
}

func timeOrZero(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}
