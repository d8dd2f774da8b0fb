// Package store is the SM-DP+ inventory: protected profiles produced by a
// batch, the SGP.22 ES2+ download-order state machine, ES9+ session state
// shared by several server replicas, batch records (their input chunks are
// River jobs, completed in the transaction that stores them: WriteBatch),
// and a retention sweep.
//
// Open returns a *DB (as database/sql returns *sql.DB): the state machine,
// on one of two backends behind an unexported interface (as
// database/sql/driver is behind *sql.DB); both pass one conformance suite
// (store/storetest): an embedded SQLite database (driver "sqlite", the
// default, dsn = file path; pure Go, no server; the protected material goes
// to a second file "<path>.blobs" (wrapped PPKs and extents) and an
// append-only "<path>.segments" (the segments), flushed before the row
// that refers to it; Sweep collects material whose row never followed) and
// PostgreSQL (driver "postgres", dsn = a libpq URL or
// key=value string). Open runs the versioned schema migrations.
//
// The state machine lives in this package, once, on top of two backend
// primitives: a locked read-modify-write of one profile row, and a race-free
// allocation of one Available profile of a type (PostgreSQL: UPDATE … WHERE
// iccid = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1); SQLite: one writer,
// BEGIN IMMEDIATE, WAL).
//
// Secrets: the store never sees Ki, OPc or a PPK in the clear. It keeps the
// pre-computed `86` segments (encrypted under the PPK), the PPK wrapped under
// an HSM key (ProtectedPPK, PPKKeyRef), the batch's wrapped data key
// (Batch.KeyBlob), a hash of the confirmation code and references to one-time
// keys; all of it opaque bytes.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// State is a profile's ES2+ life-cycle state.
type State string

// Profile states. A profile moves Available → Allocated (ordered without EID)
// or Linked (ordered with an EID) → Confirmed → Released → Downloaded (BPP
// delivered) → Installed. Error is reached when a retry limit is exhausted or
// the installation failed for good; Unavailable after a CancelOrder that
// retires the profile, or after the retention sweep expired it.
const (
	StateAvailable   State = "Available"
	StateAllocated   State = "Allocated"
	StateLinked      State = "Linked"
	StateConfirmed   State = "Confirmed"
	StateReleased    State = "Released"
	StateDownloaded  State = "Downloaded"
	StateInstalled   State = "Installed"
	StateError       State = "Error"
	StateUnavailable State = "Unavailable"
)

// States lists every state, in life-cycle order.
var States = []State{StateAvailable, StateAllocated, StateLinked, StateConfirmed, StateReleased,
	StateDownloaded, StateInstalled, StateError, StateUnavailable}

// Event names an operation on the store; it appears in errors (Error.Event)
// and their messages.
type Event string

// Events. The ES2+ ones are the operator's functions; the ES9+ ones are the
// download steps the server reports.
const (
	EventDownloadOrder  Event = "DownloadOrder"
	EventConfirmOrder   Event = "ConfirmOrder"
	EventCancelOrder    Event = "CancelOrder"
	EventReleaseProfile Event = "ReleaseProfile"
	EventGetProfile     Event = "GetProfile"

	EventAuthenticateClient Event = "AuthenticateClient"     // ES9+ AuthenticateClient accepted an order: one download attempt
	EventCCFailure          Event = "ConfirmationCodeFailed" // GetBoundProfilePackage with a wrong or missing hashCc
	EventBPPDelivered       Event = "BPPDelivered"           // GetBoundProfilePackage answered with the BPP
	EventInstallResult      Event = "InstallResult"          // HandleNotification with a ProfileInstallationResult
	EventSessionCancelled   Event = "SessionCancelled"       // ES9+ CancelSession
	EventSession            Event = "Session"                // ES9+ session state

	EventBatch Event = "Batch"
	EventSweep Event = "Sweep"
)

// Metadata holds the StoreMetadata (BF25) fields of a profile. DER, when
// set, carries pre-encoded BF25 content (e.g. notification configuration,
// profile policy rules) that the server appends as is.
type Metadata struct {
	ServiceProviderName string
	ProfileName         string
	ProfileClass        int // SGP.22 ProfileClass: 0 test, 1 provisioning, 2 operational
	IconType            int // SGP.22 IconType: 0 JPG, 1 PNG (meaningful only with Icon)
	Icon                []byte
	DER                 []byte
}

// Profile is one protected profile and its order. Order operations return
// a Profile without Segments, ProtectedPPK and Metadata (the order columns
// only); GetProfile returns everything.
type Profile struct {
	ICCID       string // unique
	IMSI        string
	ProfileType string
	TemplateID  string
	BatchID     string

	Segments     []byte // the pre-computed `86` TLVs, concatenated (encrypted under the PPK)
	ProtectedPPK []byte // the PPK wrapped under an HSM key
	PPKKeyRef    string // which key: e.g. batch key blob id + KEK label
	Metadata     Metadata

	State            State
	EID              string // empty until bound
	MatchingID       string // empty when none
	CCHash           []byte // hash of the confirmation code (see HashConfirmationCode); nil when none
	DownloadAttempts int    // ES9+ AuthenticateClient attempts on this order
	CCAttempts       int    // failed confirmation code checks on this order

	CreatedAt      time.Time
	UpdatedAt      time.Time
	OrderExpiresAt time.Time // zero: no expiry (see WithOrderTTL)
	SweptAt        time.Time // non-zero: the protected material was removed by Sweep
}

// CCRequired reports whether the order requires a confirmation code.
func (p *Profile) CCRequired() bool { return len(p.CCHash) > 0 }

// Batch is a batch record: one per `perso run` input, holding the batch's
// wrapped data key, what identifies its input, and counters kept up to date
// by PutBatch and WriteBatch.
type Batch struct {
	ID          string
	ProfileType string
	TemplateID  string // the template's identity (the engine stores its hash)
	KeyBlob     []byte // the batch data key wrapped by the HSM
	KEKLabel    string // label of the HSM key that wraps KeyBlob
	InputSHA256 string // hex SHA-256 of the input file ("" when the batch has none)
	Records     int64  // records the input holds, good and bad
	Chunks      int    // number of input chunks (jobs); 0 when not chunked

	Profiles   int64  // counter: profiles inserted
	Duplicates int64  // counter: idempotent re-inserts (same ICCID, same batch)
	Conflicts  int64  // counter: ICCIDs refused because another batch holds them
	Rejected   int64  // counter: records refused before storage (set at creation, added to by WriteBatch)
	ChunksDone int    // counter: chunks whose WriteBatch said ChunkDone
	ICCIDFirst string // the smallest ICCID stored by the batch ("" when none)
	ICCIDLast  string // the largest

	CreatedAt time.Time
	UpdatedAt time.Time
}

// Conflict is an ICCID that PutBatch refused because another batch holds it.
type Conflict struct {
	ICCID   string
	BatchID string // the batch that holds it
}

// PutResult reports what PutBatch did with each profile: inserted, already
// present from the same batch (a no-op), or refused as a conflict.
type PutResult struct {
	Inserted   int
	Duplicates int
	Conflicts  []Conflict
}

// DownloadOrderRequest is ES2+ DownloadOrder: the given ICCID, or one
// Available profile of ProfileType, optionally bound to an EID.
type DownloadOrderRequest struct {
	EID         string
	ICCID       string
	ProfileType string
	// Operator is the ES2+ operator placing the order (Operator.ID): the
	// order's transitions are reported to it (Transition.Operator).
	// Empty: nobody is told.
	Operator string
}

// ConfirmOrderRequest is ES2+ ConfirmOrder. MatchingID nil: the store
// generates one; pointing to "": no activation-code token, the download is
// found by EID (which is then required); otherwise that matching ID, unique.
type ConfirmOrderRequest struct {
	ICCID       string
	EID         string
	MatchingID  *string
	CCHash      []byte // HashConfirmationCode(code); nil: no confirmation code
	ReleaseFlag bool
}

// CancelOrderRequest is ES2+ CancelOrder; Final is StateAvailable (reuse
// the profile) or StateUnavailable (retire it).
type CancelOrderRequest struct {
	ICCID      string
	EID        string
	MatchingID string
	Final      State
}

// Session is the state of one ES9+ download session, stored so that any
// replica can continue it. Data is opaque to the store (e.g. the DER of the
// eUICC certificates and smdpSignature2). No secret belongs here: one-time
// private keys are referenced (OTKeyRef), never stored.
type Session struct {
	TransactionID   string // hex, unique
	EID             string
	ICCID           string
	MatchingID      string
	Phase           string // server-defined: e.g. "initiated", "authenticated", "bound"
	EUICCChallenge  []byte
	ServerChallenge []byte
	EUICCOtPK       []byte
	SMDPOtPK        []byte
	OTKeyRef        string // reference of the SM-DP+ one-time private key (held or wrapped by the HSM)
	Data            []byte
	Version         int64 // optimistic concurrency: UpdateSession requires the stored version

	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time // zero on PutSession: now + the session TTL
}

// OneTimeKey maps an eUICC one-time public key to the SM-DP+ one-time key
// pair a BPP was bound with, so that a new session presenting the same
// euiccOtpk re-offers the same binding (es2-es10-codes.md §4.1).
type OneTimeKey struct {
	EUICCOtPK []byte
	ICCID     string
	SMDPOtPK  []byte
	KeyRef    string // reference of the SM-DP+ one-time private key
	ExpiresAt time.Time
}

// SweepPolicy selects the profiles whose protected material (segments,
// protected PPK, key reference, icon, metadata DER) the sweep removes.
type SweepPolicy struct {
	// InstalledFor: profiles Installed at least this long ago. Negative
	// disables; 0 sweeps every installed profile.
	InstalledFor time.Duration
	// MaxAge: profiles never delivered (Available, Unavailable, Error)
	// created at least this long ago expire and become Unavailable. 0
	// disables.
	MaxAge time.Duration
	// Limit bounds the profiles swept per call (0: no limit); call again
	// until the result is empty.
	Limit int
	// OrphanAfter: protected material stored at least this long ago
	// without its profile row (a PutBatch interrupted by a crash and never
	// re-run) is deleted (SQLite; PostgreSQL writes both in one
	// transaction). 0 means DefaultOrphanAfter; negative disables. It must
	// exceed the longest PutBatch call, or material about to get its row
	// would be taken for an orphan.
	OrphanAfter time.Duration
}

// DefaultOrphanAfter is SweepPolicy.OrphanAfter's default.
const DefaultOrphanAfter = time.Hour

// SweepResult counts the profiles swept, and the orphaned material
// collected.
type SweepResult struct {
	Installed int
	Expired   int
	Orphans   int
}

// AuditRecord is a row kept after the sweep removed a profile's material.
type AuditRecord struct {
	ID      int64
	ICCID   string
	BatchID string
	State   State // the state at sweep time
	EID     string
	Action  string // "sweep-installed" or "sweep-expired"
	At      time.Time
}

// Option configures Open.
type Option func(*options)

type options struct {
	now                 func() time.Time
	maxDownloadAttempts int
	maxCCAttempts       int
	sessionTTL          time.Duration
	orderTTL            time.Duration
	pgMaxConns          int32
	live                bool
}

func defaultOptions() options {
	return options{
		now:                 time.Now,
		maxDownloadAttempts: 3,
		maxCCAttempts:       3,
		sessionTTL:          10 * time.Minute,
	}
}

// WithClock replaces time.Now (tests: session expiry, sweep, order TTL).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMaxDownloadAttempts sets the re-download limit: the number of
// AuthenticateClient attempts per order (default 3).
func WithMaxDownloadAttempts(n int) Option { return func(o *options) { o.maxDownloadAttempts = n } }

// WithMaxCCAttempts sets the number of wrong confirmation codes tolerated
// per order (default 3).
func WithMaxCCAttempts(n int) Option { return func(o *options) { o.maxCCAttempts = n } }

// WithSessionTTL sets the default ES9+ session lifetime (default 10 min).
func WithSessionTTL(d time.Duration) Option { return func(o *options) { o.sessionTTL = d } }

// WithOrderTTL gives confirmed orders a time to live (default none).
func WithOrderTTL(d time.Duration) Option { return func(o *options) { o.orderTTL = d } }

// WithMaxConns sets the PostgreSQL pool size (default: pgxpool's).
func WithMaxConns(n int) Option { return func(o *options) { o.pgMaxConns = int32(n) } }

// WithLive marks the process as serving live requests (perso serve). On
// SQLite its writers go before those of batch processes on the same store
// (see writerTurn): it yields the writer turn to a waiting batch at most
// once per 50 ms, and a batch that holds the turn while it waits pauses
// its CPU-bound stages (WaitWriter). No effect on PostgreSQL.
func WithLive() Option { return func(o *options) { o.live = true } }

// Open opens (creating if needed) a store and runs its migrations. driver
// is "sqlite" (default when empty; dsn = a file path) or "postgres".
func Open(ctx context.Context, driver, dsn string, opts ...Option) (*DB, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	var (
		b   backend
		err error
	)
	switch driver {
	case "", "sqlite":
		b, err = openSQLite(ctx, dsn, o.live)
	case "postgres", "postgresql", "pgx":
		b, err = openPostgres(ctx, dsn, o)
	default:
		return nil, fmt.Errorf("store: unknown driver %q (want sqlite or postgres)", driver)
	}
	if err != nil {
		return nil, err
	}
	return &DB{b: b, o: o}, nil
}

// HashConfirmationCode returns the value to store as ConfirmOrderRequest.
// CCHash: SHA-256 of the code's ASCII digits, followed, when the code is
// valid hex, by SHA-256 of its hex-decoded bytes — the two inputs clients use
// for hashCc = SHA-256(SHA-256(CC) ‖ transactionId) (es2-es10-codes.md §4.2).
func HashConfirmationCode(code string) []byte {
	a := sha256.Sum256([]byte(code))
	out := a[:]
	if raw, err := hex.DecodeString(code); err == nil && len(raw) > 0 {
		h := sha256.Sum256(raw)
		out = append(out[:32:32], h[:]...)
	}
	return out
}

// newMatchingID returns a random activation-code token: 4 groups of 5
// base32 characters (100 bits), e.g. "K3ZQ7-…".
func newMatchingID() string {
	t := rand.Text()
	return strings.Join([]string{t[0:5], t[5:10], t[10:15], t[15:20]}, "-")
}

// WaitWriter returns at once, unless this process holds the SQLite writer
// turn while a live process (WithLive) waits for it: then it waits until
// the turn is given back. CPU-bound stages of a batch call it between
// units of work, so that the process's transaction, which a device's
// download is waiting for, gets the CPUs and ends. An atomic load when
// there is nothing to wait for.
func (d *DB) WaitWriter() {
	if b, ok := d.b.(*sqliteBackend); ok {
		b.turn.wait()
	}
}
