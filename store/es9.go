package store

import (
	"context"
	"errors"
	"time"
)

// SessionChange is what an ES9+ call changes in its session and in the
// one-time keys, committed in the transaction of the call's order event
// (AuthenticateClientWith, BPPDeliveredWith, InstallResultWith): the order
// and the session never disagree (a call that loses a race with another
// replica on the session changes neither), and the call costs one commit
// instead of two or three.
type SessionChange struct {
	// Update, when not nil, is stored as UpdateSession stores it: only if
	// the stored version is Update.Version and the session has not expired
	// (the version is incremented; a zero ExpiresAt keeps the stored
	// expiry). Otherwise nothing of the transaction is written and the
	// error is ErrStale, or ErrNotFound when the session is gone or expired.
	Update *Session
	// Delete, when not empty, removes that session; one already gone is
	// no error, unless DeleteVersion is set.
	Delete string
	// DeleteVersion, when not zero, deletes the session only at that
	// version: otherwise nothing of the transaction is written and the
	// error is ErrStale, or ErrNotFound when the session is gone.
	DeleteVersion int64
	// OneTimeKey, when not nil, is recorded as PutOneTimeKey records it.
	OneTimeKey *OneTimeKey
	// OneTimeKeyNew: OneTimeKey must not be recorded yet (expired or
	// not): otherwise nothing of the transaction is written and the error
	// is ErrConflict (KeyEUICCOtPK). A caller that bound a package without
	// looking the key up first learns here that it should have.
	OneTimeKeyNew bool
}

// sessionWrites is a SessionChange ready for a backend: times stamped,
// version incremented.
type sessionWrites struct {
	update        *Session
	keepExpiry    bool // update: keep the stored expires_at
	delete        string
	deleteVersion int64 // delete: only at this version (0: any)
	otk           *OneTimeKey
	otkNew        bool // otk: refuse an existing key
}

// tid is the session a stale write concerns.
func (w *sessionWrites) tid() string {
	if w.update != nil {
		return w.update.TransactionID
	}
	return w.delete
}

// errSessionStale: the session update (or versioned delete) of a
// mutateSession matched no row (another version, expired or gone); the
// backend rolled everything back.
var errSessionStale = errors.New("store: session update matched no row")

// AuthenticateClientWith is AuthenticateClient and, when the attempt is
// recorded, ch in the same transaction. expect (when not nil) sees the
// order as it would be written and may refuse it: its error is returned and
// nothing is written (the caller prepared its answer, e.g. a signature,
// from an earlier read and checks that the order still matches).
func (d *DB) AuthenticateClientWith(ctx context.Context, iccid, eid string, expect func(Profile) error, ch *SessionChange) (Profile, error) {
	const ev = EventAuthenticateClient
	if eid == "" {
		return Profile{}, newErr(ErrInvalid, ev, KeyEID, "")
	}
	now := d.now()
	p, err := d.mutateWith(ctx, ev, iccid, now, func(p *Profile) error {
		if err := d.authenticateClient(p, eid, now); err != nil {
			return err
		}
		if expect != nil {
			return expect(*p)
		}
		return nil
	}, ch)
	return p, withEvent(err, ev)
}

// CheckAuthenticateClient tells what AuthenticateClient would do to p, an
// order as read from the store: the order after the change, or the error
// the change would end with. Nothing is written: the caller prepares its
// answer from it and records the attempt with AuthenticateClientWith
// (expecting the same order), or with AuthenticateClient on an error, so
// that the store's verdict is the committed one.
func (d *DB) CheckAuthenticateClient(p Profile, eid string) (Profile, error) {
	const ev = EventAuthenticateClient
	if eid == "" {
		return Profile{}, newErr(ErrInvalid, ev, KeyEID, "")
	}
	err := d.authenticateClient(&p, eid, d.now())
	var ce commitErr
	if errors.As(err, &ce) {
		err = ce.err
	}
	if err != nil {
		return Profile{}, withEvent(err, ev)
	}
	return p, nil
}

// BPPDeliveredWith is BPPDelivered and ch in the same transaction (ch also
// when the BPP had been delivered already).
func (d *DB) BPPDeliveredWith(ctx context.Context, iccid string, ch *SessionChange) (Profile, error) {
	const ev = EventBPPDelivered
	now := d.now()
	p, err := d.mutateWith(ctx, ev, iccid, now, func(p *Profile) error { return d.bppDelivered(p, now) }, ch)
	return p, withEvent(err, ev)
}

// InstallResultWith is InstallResult and ch in the same transaction (ch
// also for a repeated notification).
func (d *DB) InstallResultWith(ctx context.Context, iccid string, success bool, ch *SessionChange) (Profile, error) {
	const ev = EventInstallResult
	now := d.now()
	p, err := d.mutateWith(ctx, ev, iccid, now, func(p *Profile) error { return d.installResult(p, success, now) }, ch)
	return p, withEvent(err, ev)
}

// DownloadProfile is ProfileByMatchingID with the protected material and
// metadata (what GetProfile returns): the one read ES9+ AuthenticateClient
// needs.
func (d *DB) DownloadProfile(ctx context.Context, matchingID string) (Profile, error) {
	if matchingID == "" {
		return Profile{}, newErr(ErrNotFound, EventAuthenticateClient, KeyMatchingID, "")
	}
	p, err := d.b.getProfile(ctx, "matching_id", matchingID, true)
	return p, withEvent(err, EventAuthenticateClient)
}

// mutateWith runs a state-machine step with the transition hook and, unless
// the step fails, ch's session writes in its transaction.
func (d *DB) mutateWith(ctx context.Context, ev Event, iccid string, now time.Time, fn func(*Profile) error, ch *SessionChange) (Profile, error) {
	if ch == nil {
		return d.mutate(ctx, ev, iccid, fn)
	}
	w := sessionWrites{delete: ch.Delete, deleteVersion: ch.DeleteVersion}
	if ch.Update != nil {
		s := *ch.Update
		if s.TransactionID == "" {
			return Profile{}, newErr(ErrInvalid, EventSession, KeyTransactionID, "")
		}
		s.UpdatedAt = now
		s.Version++
		w.keepExpiry = s.ExpiresAt.IsZero()
		s.ExpiresAt = s.ExpiresAt.UTC().Truncate(time.Microsecond)
		w.update = &s
	}
	if ch.OneTimeKey != nil {
		k := *ch.OneTimeKey
		if len(k.EUICCOtPK) == 0 {
			return Profile{}, newErr(ErrInvalid, EventSession, KeyEUICCOtPK, "")
		}
		if k.ExpiresAt.IsZero() {
			k.ExpiresAt = now.Add(d.o.sessionTTL)
		}
		k.ExpiresAt = k.ExpiresAt.UTC().Truncate(time.Microsecond)
		w.otk, w.otkNew = &k, ch.OneTimeKeyNew
	}
	p, err := d.b.mutateSession(ctx, iccid, fn, d.after(ev, false, ""), &w, now)
	if errors.Is(err, errSessionStale) {
		tid := w.tid()
		if _, err := d.GetSession(ctx, tid); err != nil {
			return Profile{}, err // gone or expired
		}
		return Profile{}, &Error{Kind: ErrStale, Event: EventSession, Key: KeyTransactionID, Value: tid,
			Detail: "stored version differs"}
	}
	return p, err
}
