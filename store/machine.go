package store

import (
	"context"
	"errors"
	"time"
)

// backend is what a database provides; the state machine above it is shared.
// Errors of the domain are *Error values (Event may be left empty: the
// caller fills it in).
type backend interface {
	close() error

	createBatch(ctx context.Context, b Batch, now time.Time) (Batch, error)
	getBatch(ctx context.Context, id string) (Batch, error)
	putProfiles(ctx context.Context, batchID string, ps []Profile, now time.Time) (PutResult, error)
	claimChunk(ctx context.Context, batchID, worker string, now, until time.Time) (Chunk, error)
	completeChunk(ctx context.Context, c Chunk, now time.Time) error
	countByState(ctx context.Context, batchID string) (map[State]int64, error)

	// getProfile loads one profile by "iccid" or "matching_id"; full adds
	// the protected material and metadata.
	getProfile(ctx context.Context, column, value string, full bool) (Profile, error)
	pendingByEID(ctx context.Context, eid string) (Profile, error)
	typeExists(ctx context.Context, profileType string) (bool, error)
	// allocate moves one Available profile of the type to state (bound to
	// eid) and returns it; ErrNoProfileAvailable when there is none.
	allocate(ctx context.Context, profileType, eid string, state State, now time.Time) (Profile, error)
	// mutate locks the profile's row, loads its order columns, applies fn
	// and writes the order columns back, atomically. fn returning errNoWrite
	// skips the write; returning commitErr writes and then fails.
	mutate(ctx context.Context, iccid string, fn func(p *Profile) error) (Profile, error)

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

// db implements Store on a backend.
type db struct {
	b backend
	o options
}

func (d *db) now() time.Time { return d.o.now().UTC().Truncate(time.Microsecond) }

func (d *db) Close() error { return d.b.close() }

// --- batches ---

func (d *db) CreateBatch(ctx context.Context, b Batch) (Batch, error) {
	if b.ID == "" {
		return Batch{}, newErr(KindInvalid, EventBatch, "batch", "")
	}
	if b.Chunks < 0 {
		return Batch{}, &Error{Kind: KindInvalid, Event: EventBatch, Key: "batch", Value: b.ID, Detail: "negative chunk count"}
	}
	got, err := d.b.createBatch(ctx, b, d.now())
	return got, withEvent(err, EventBatch)
}

func (d *db) GetBatch(ctx context.Context, id string) (Batch, error) {
	b, err := d.b.getBatch(ctx, id)
	return b, withEvent(err, EventBatch)
}

func (d *db) PutBatch(ctx context.Context, batchID string, ps []Profile) (PutResult, error) {
	for i := range ps {
		p := &ps[i]
		if p.ICCID == "" {
			return PutResult{}, &Error{Kind: KindInvalid, Event: EventBatch, Key: "iccid", Detail: "profile without ICCID"}
		}
		if p.BatchID != "" && p.BatchID != batchID {
			return PutResult{}, &Error{Kind: KindInvalid, Event: EventBatch, Key: "iccid", Value: p.ICCID,
				Detail: "profile of batch " + p.BatchID + " put into batch " + batchID}
		}
	}
	if len(ps) == 0 {
		if _, err := d.b.getBatch(ctx, batchID); err != nil {
			return PutResult{}, withEvent(err, EventBatch)
		}
		return PutResult{}, nil
	}
	r, err := d.b.putProfiles(ctx, batchID, ps, d.now())
	return r, withEvent(err, EventBatch)
}

func (d *db) ClaimChunk(ctx context.Context, batchID, worker string, lease time.Duration) (Chunk, error) {
	if worker == "" || lease <= 0 {
		return Chunk{}, &Error{Kind: KindInvalid, Event: EventBatch, Key: "chunk", Detail: "worker and a positive lease are required"}
	}
	now := d.now()
	c, err := d.b.claimChunk(ctx, batchID, worker, now, now.Add(lease))
	return c, withEvent(err, EventBatch)
}

func (d *db) CompleteChunk(ctx context.Context, c Chunk) error {
	return withEvent(d.b.completeChunk(ctx, c, d.now()), EventBatch)
}

func (d *db) CountByState(ctx context.Context, batchID string) (map[State]int64, error) {
	return d.b.countByState(ctx, batchID)
}

// --- lookups ---

func (d *db) GetProfile(ctx context.Context, iccid string) (Profile, error) {
	p, err := d.b.getProfile(ctx, "iccid", iccid, true)
	return p, withEvent(err, EventGetProfile)
}

func (d *db) ProfileByMatchingID(ctx context.Context, matchingID string) (Profile, error) {
	if matchingID == "" {
		return Profile{}, newErr(KindNotFound, EventAuthenticateClient, "matchingId", "")
	}
	p, err := d.b.getProfile(ctx, "matching_id", matchingID, false)
	return p, withEvent(err, EventAuthenticateClient)
}

func (d *db) PendingOrderByEID(ctx context.Context, eid string) (Profile, error) {
	if eid == "" {
		return Profile{}, newErr(KindInvalid, EventAuthenticateClient, "eid", "")
	}
	p, err := d.b.pendingByEID(ctx, eid)
	return p, withEvent(err, EventAuthenticateClient)
}

// --- ES2+ ---

func (d *db) DownloadOrder(ctx context.Context, r DownloadOrderRequest) (Profile, error) {
	const ev = EventDownloadOrder
	state := StateAllocated
	if r.EID != "" {
		state = StateLinked
	}
	now := d.now()
	if r.ICCID == "" {
		if r.ProfileType == "" {
			return Profile{}, &Error{Kind: KindInvalid, Event: ev, Key: "profileType", Detail: "neither iccid nor profileType given"}
		}
		p, err := d.b.allocate(ctx, r.ProfileType, r.EID, state, now)
		if errors.Is(err, ErrNoProfileAvailable) {
			exists, xerr := d.b.typeExists(ctx, r.ProfileType)
			if xerr != nil {
				return Profile{}, xerr
			}
			if !exists {
				return Profile{}, newErr(KindUnknownProfileType, ev, "profileType", r.ProfileType)
			}
			return Profile{}, newErr(KindNoProfileAvailable, ev, "profileType", r.ProfileType)
		}
		return p, withEvent(err, ev)
	}
	p, err := d.b.mutate(ctx, r.ICCID, func(p *Profile) error {
		if r.ProfileType != "" && p.ProfileType != r.ProfileType {
			return &Error{Kind: KindProfileTypeMismatch, Event: ev, Key: "iccid", Value: p.ICCID,
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
			return &Error{Kind: KindConflict, Event: ev, From: p.State, Key: "iccid", Value: p.ICCID,
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

func (d *db) ConfirmOrder(ctx context.Context, r ConfirmOrderRequest) (Profile, error) {
	const ev = EventConfirmOrder
	if r.ICCID == "" {
		return Profile{}, newErr(KindInvalid, ev, "iccid", "")
	}
	now := d.now()
	p, err := d.b.mutate(ctx, r.ICCID, func(p *Profile) error {
		if p.State != StateAllocated && p.State != StateLinked {
			return illegal(ev, p.State, p.ICCID)
		}
		if r.EID != "" {
			if p.EID != "" && p.EID != r.EID {
				return newErr(KindEIDMismatch, ev, "eid", r.EID)
			}
			p.EID = r.EID
		}
		switch {
		case r.MatchingID == nil:
			p.MatchingID = newMatchingID()
		case *r.MatchingID == "":
			if p.EID == "" {
				return &Error{Kind: KindEIDRequired, Event: ev, Key: "eid", Detail: "an empty matchingId needs an EID"}
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

func (d *db) CancelOrder(ctx context.Context, r CancelOrderRequest) (Profile, error) {
	const ev = EventCancelOrder
	if r.ICCID == "" {
		return Profile{}, newErr(KindInvalid, ev, "iccid", "")
	}
	if r.Final != StateAvailable && r.Final != StateUnavailable {
		return Profile{}, newErr(KindInvalid, ev, "finalProfileStatusIndicator", string(r.Final))
	}
	now := d.now()
	p, err := d.b.mutate(ctx, r.ICCID, func(p *Profile) error {
		switch p.State {
		case StateAllocated, StateLinked, StateConfirmed, StateReleased, StateError:
		default:
			return illegal(ev, p.State, p.ICCID)
		}
		if p.EID != "" && r.EID == "" {
			return &Error{Kind: KindEIDRequired, Event: ev, Key: "eid", Detail: "the order is bound to an EID"}
		}
		if r.EID != "" && r.EID != p.EID {
			return newErr(KindEIDMismatch, ev, "eid", r.EID)
		}
		if r.MatchingID != "" && r.MatchingID != p.MatchingID {
			return newErr(KindMatchingIDMismatch, ev, "matchingId", r.MatchingID)
		}
		p.State = r.Final
		resetOrder(p, false)
		p.UpdatedAt = now
		return nil
	})
	return p, withEvent(err, ev)
}

func (d *db) ReleaseProfile(ctx context.Context, iccid string) (Profile, error) {
	const ev = EventReleaseProfile
	if iccid == "" {
		return Profile{}, newErr(KindInvalid, ev, "iccid", "")
	}
	now := d.now()
	p, err := d.b.mutate(ctx, iccid, func(p *Profile) error {
		if p.State != StateConfirmed {
			return illegal(ev, p.State, p.ICCID)
		}
		p.State, p.UpdatedAt = StateReleased, now
		return nil
	})
	return p, withEvent(err, ev)
}

// --- ES9+ download events ---

func (d *db) AuthenticateClient(ctx context.Context, iccid, eid string) (Profile, error) {
	const ev = EventAuthenticateClient
	if eid == "" {
		return Profile{}, newErr(KindInvalid, ev, "eid", "")
	}
	now := d.now()
	p, err := d.b.mutate(ctx, iccid, func(p *Profile) error {
		// Check order of es2-es10-codes.md §3.3 rows 16–19.
		if p.EID != "" && p.EID != eid {
			return newErr(KindEIDMismatch, ev, "eid", eid)
		}
		if p.State != StateReleased {
			return illegal(ev, p.State, p.ICCID)
		}
		if !p.OrderExpiresAt.IsZero() && !now.Before(p.OrderExpiresAt) {
			return newErr(KindOrderExpired, ev, "iccid", p.ICCID)
		}
		p.UpdatedAt = now
		if p.DownloadAttempts >= d.o.maxDownloadAttempts {
			p.State = StateError
			return commitErr{newErr(KindRetryLimit, ev, "iccid", p.ICCID)}
		}
		p.DownloadAttempts++
		p.EID = eid
		return nil
	})
	return p, withEvent(err, ev)
}

func (d *db) ConfirmationCodeFailed(ctx context.Context, iccid string) (Profile, error) {
	const ev = EventCCFailure
	now := d.now()
	p, err := d.b.mutate(ctx, iccid, func(p *Profile) error {
		if p.State != StateReleased {
			return illegal(ev, p.State, p.ICCID)
		}
		p.CCAttempts++
		p.UpdatedAt = now
		if p.CCAttempts >= d.o.maxCCAttempts {
			p.State = StateError
			return commitErr{newErr(KindCCRetryLimit, ev, "iccid", p.ICCID)}
		}
		return nil
	})
	return p, withEvent(err, ev)
}

func (d *db) BPPDelivered(ctx context.Context, iccid string) (Profile, error) {
	const ev = EventBPPDelivered
	now := d.now()
	p, err := d.b.mutate(ctx, iccid, func(p *Profile) error {
		switch p.State {
		case StateReleased:
			p.State, p.UpdatedAt = StateDownloaded, now
			return nil
		case StateDownloaded:
			return errNoWrite // the same BPP served again (a retried GetBoundProfilePackage)
		}
		return illegal(ev, p.State, p.ICCID)
	})
	return p, withEvent(err, ev)
}

func (d *db) InstallResult(ctx context.Context, iccid string, success bool) (Profile, error) {
	const ev = EventInstallResult
	now := d.now()
	p, err := d.b.mutate(ctx, iccid, func(p *Profile) error {
		switch {
		case p.State == StateDownloaded && success:
			p.State = StateInstalled
		case p.State == StateDownloaded:
			p.State = d.afterFailedAttempt(p)
		case p.State == StateInstalled && success:
			return errNoWrite // a repeated notification
		default:
			return illegal(ev, p.State, p.ICCID)
		}
		p.UpdatedAt = now
		return nil
	})
	return p, withEvent(err, ev)
}

func (d *db) SessionCancelled(ctx context.Context, iccid string) (Profile, error) {
	const ev = EventSessionCancelled
	now := d.now()
	p, err := d.b.mutate(ctx, iccid, func(p *Profile) error {
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
func (d *db) afterFailedAttempt(p *Profile) State {
	if p.DownloadAttempts >= d.o.maxDownloadAttempts {
		return StateError
	}
	return StateReleased
}

// --- sessions ---

func (d *db) PutSession(ctx context.Context, s Session) (Session, error) {
	if s.TransactionID == "" {
		return Session{}, newErr(KindInvalid, EventSession, "transactionId", "")
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

func (d *db) GetSession(ctx context.Context, tid string) (Session, error) {
	s, err := d.b.getSession(ctx, tid)
	if err != nil {
		return Session{}, withEvent(err, EventSession)
	}
	if !d.now().Before(s.ExpiresAt) {
		return Session{}, &Error{Kind: KindNotFound, Event: EventSession, Key: "transactionId", Value: tid, Detail: "session expired"}
	}
	return s, nil
}

func (d *db) UpdateSession(ctx context.Context, s Session) (Session, error) {
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
		return Session{}, &Error{Kind: KindStale, Event: EventSession, Key: "transactionId", Value: s.TransactionID,
			Detail: "stored version differs"}
	}
	if keep {
		return d.GetSession(ctx, s.TransactionID)
	}
	return s, nil
}

func (d *db) DeleteSession(ctx context.Context, tid string) error {
	ok, err := d.b.deleteSession(ctx, tid)
	if err != nil {
		return err
	}
	if !ok {
		return newErr(KindNotFound, EventSession, "transactionId", tid)
	}
	return nil
}

func (d *db) PutOneTimeKey(ctx context.Context, k OneTimeKey) error {
	if len(k.EUICCOtPK) == 0 {
		return newErr(KindInvalid, EventSession, "euiccOtpk", "")
	}
	if k.ExpiresAt.IsZero() {
		k.ExpiresAt = d.now().Add(d.o.sessionTTL)
	}
	k.ExpiresAt = k.ExpiresAt.UTC().Truncate(time.Microsecond)
	return withEvent(d.b.putOneTimeKey(ctx, k), EventSession)
}

func (d *db) GetOneTimeKey(ctx context.Context, euiccOtPK []byte) (OneTimeKey, error) {
	k, err := d.b.getOneTimeKey(ctx, euiccOtPK)
	if err != nil {
		return OneTimeKey{}, withEvent(err, EventSession)
	}
	if !d.now().Before(k.ExpiresAt) {
		return OneTimeKey{}, &Error{Kind: KindNotFound, Event: EventSession, Key: "euiccOtpk", Detail: "expired"}
	}
	return k, nil
}

func (d *db) DeleteExpired(ctx context.Context) (int, error) {
	return d.b.deleteExpired(ctx, d.now())
}

// --- retention ---

func (d *db) Sweep(ctx context.Context, p SweepPolicy) (SweepResult, error) {
	r, err := d.b.sweep(ctx, p, d.now())
	return r, withEvent(err, EventSweep)
}

func (d *db) Audit(ctx context.Context, iccid string) ([]AuditRecord, error) {
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
