package smdp

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// Store is what the ES9+ handlers need of the inventory; *store.DB
// implements it. Sessions live there, not in process memory, so that
// several servers on one database can serve one session's calls.
type Store interface {
	PutSession(ctx context.Context, s store.Session) (store.Session, error)
	GetSession(ctx context.Context, tid string) (store.Session, error)
	UpdateSession(ctx context.Context, s store.Session) (store.Session, error)
	DeleteSession(ctx context.Context, tid string) error
	GetOneTimeKey(ctx context.Context, euiccOtPK []byte) (store.OneTimeKey, error)
	PutOneTimeKey(ctx context.Context, k store.OneTimeKey) error

	ProfileByMatchingID(ctx context.Context, matchingID string) (store.Profile, error)
	DownloadProfile(ctx context.Context, matchingID string) (store.Profile, error)
	PendingOrderByEID(ctx context.Context, eid string) (store.Profile, error)
	GetProfile(ctx context.Context, iccid string) (store.Profile, error)
	GetBatch(ctx context.Context, id string) (store.Batch, error)

	AuthenticateClient(ctx context.Context, iccid, eid string) (store.Profile, error)
	CheckAuthenticateClient(p store.Profile, eid string) (store.Profile, error)
	// The …With events commit the call's session change in their
	// transaction: one commit per call, and order and session never
	// disagree.
	AuthenticateClientWith(ctx context.Context, iccid, eid string, expect func(store.Profile) error, ch *store.SessionChange) (store.Profile, error)
	ConfirmationCodeFailed(ctx context.Context, iccid string) (store.Profile, error)
	BPPDeliveredWith(ctx context.Context, iccid string, ch *store.SessionChange) (store.Profile, error)
	InstallResultWith(ctx context.Context, iccid string, success bool, ch *store.SessionChange) (store.Profile, error)
	SessionCancelled(ctx context.Context, iccid string) (store.Profile, error)
}

// Role names an SM-DP+ signing key.
type Role int

const (
	RoleDPauth Role = iota + 1 // serverSignature1
	RoleDPpb                   // smdpSignature2, smdpSign
)

// HSM is what the handlers need of the key store; cmd/perso adapts
// hsmpool.Pool (live lane). No private key ever reaches this package.
type HSM interface {
	Signer(role Role, c esim.Curve) bpp.Signer
	KeyAgreement(c esim.Curve) bpp.KeyAgreement
	// UnprotectPPK returns a stored profile's PPK (48 bytes) from its batch
	// key blob; the caller zeroes it.
	UnprotectPPK(ctx context.Context, batchKeyBlob []byte, iccid string, protected []byte) ([]byte, error)
	// SealSecret seals a short secret (the ECDH shared secret of a binding,
	// kept so that the same eUICC one-time key can be bound again in a
	// later session, es2-es10-codes.md §4.1) under an HSM-held key, bound
	// to label; the reference is stored, the secret never is.
	SealSecret(ctx context.Context, label string, secret []byte) (ref string, err error)
	// OpenSecret returns the secret of a reference from SealSecret with the
	// same label; the caller zeroes it.
	OpenSecret(ctx context.Context, label, ref string) ([]byte, error)
}

// Credentials are one curve's SM-DP+ certificates and the CI they chain to.
type Credentials struct {
	CI     *rsp.Certificate
	DPauth *rsp.Certificate
	DPpb   *rsp.Certificate
}

// Config configures a Server.
type Config struct {
	// Address is the SM-DP+ FQDN (the activation code's address, the TLS
	// name); compared case-insensitively, a ":port" suffix tolerated.
	Address string
	// Credentials, in order of preference when an eUICC supports several CIs.
	Credentials []Credentials
	Store       Store
	HSM         HSM
	HostID      []byte           // BPP CRT host ID (4..16 bytes); default "perso-smdp"
	Now         func() time.Time // default time.Now
	Log         *slog.Logger     // default slog.Default()
	// SessionTTL is the store's session lifetime (store.WithSessionTTL),
	// for ActiveSessions; default 10 minutes.
	SessionTTL time.Duration
}

// Server executes the ES9+ functions. Its methods take and return rsp
// types, and a failure is an rsp.Status (as the error), so that they are
// tested without HTTP.
type Server struct {
	cfg  Config
	log  *slog.Logger
	eums *rsp.EUMCache // EUM certificates verified with a CI, by their DER's hash

	// batchKeys: a batch's key blob by batch id. A batch record never
	// changes its key blob (re-creating it with another is a conflict), so
	// the store is read once per batch, not once per download.
	batchMu   sync.RWMutex
	batchKeys map[string][]byte

	// loaded: the profile AuthenticateClient read (material included), by
	// transaction id, for the session's GetBoundProfilePackage on this
	// process. A profile's material and batch never change once it is
	// ordered, so the copy is as good as a second read; another replica,
	// or a retry, reads the store.
	loadedMu sync.Mutex
	loaded   map[string]store.Profile
	loadedQ  []string // insertion order, for eviction

	// active: sessions this process opened, until their PIR or
	// CancelSession is handled here or their TTL passes (ActiveSessions).
	activeMu sync.Mutex
	active   map[string]time.Time

	deleted atomic.Pointer[DeletionReporter] // see SetDeletionReporter (es2_progress.go)

	sessions sessionCache // the sessions this process wrote (sessioncache.go)
}

// ActiveSessions is the number of RSP sessions this process opened that
// are still open: neither ended (installation result or CancelSession
// handled by this process) nor expired. With one server it is the exact
// number of open sessions in the store; with several sharing a store,
// each counts its own, and a session ended on another replica is counted
// here until its TTL passes.
func (s *Server) ActiveSessions() int {
	now := s.cfg.Now()
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	for tid, exp := range s.active {
		if !now.Before(exp) {
			delete(s.active, tid)
		}
	}
	return len(s.active)
}

func (s *Server) sessionOpened(tid string) {
	s.activeMu.Lock()
	s.active[tid] = s.cfg.Now().Add(s.cfg.SessionTTL)
	s.activeMu.Unlock()
}

func (s *Server) sessionEnded(tid string) {
	s.activeMu.Lock()
	delete(s.active, tid)
	s.activeMu.Unlock()
}

// maxLoaded bounds the profiles kept between AuthenticateClient and
// GetBoundProfilePackage (≈ 13 KB each): more sessions in flight than
// this only cost a store read each.
const maxLoaded = 1024

func (s *Server) keepLoaded(tid string, p store.Profile) {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	for len(s.loadedQ) >= maxLoaded {
		delete(s.loaded, s.loadedQ[0])
		s.loadedQ = s.loadedQ[1:]
	}
	s.loaded[tid] = p
	s.loadedQ = append(s.loadedQ, tid)
}

// takeLoaded returns and forgets the profile kept for tid.
func (s *Server) takeLoaded(tid, iccid string) (store.Profile, bool) {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	p, ok := s.loaded[tid]
	if ok {
		delete(s.loaded, tid) // its key stays in loadedQ until evicted: harmless
	}
	return p, ok && p.ICCID == iccid
}

// peekLoaded returns the profile kept for tid without forgetting it.
func (s *Server) peekLoaded(tid, iccid string) (store.Profile, bool) {
	s.loadedMu.Lock()
	defer s.loadedMu.Unlock()
	p, ok := s.loaded[tid]
	return p, ok && p.ICCID == iccid
}

// NewServer checks cfg and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Address == "" {
		return nil, errors.New("smdp: no SM-DP+ address configured (set serve.address)")
	}
	if cfg.Store == nil || cfg.HSM == nil {
		return nil, errors.New("smdp: a store and an HSM are required")
	}
	if len(cfg.Credentials) == 0 {
		return nil, errors.New("smdp: no CI/DPauth/DPpb certificates configured")
	}
	for i, c := range cfg.Credentials {
		if c.CI == nil || c.DPauth == nil || c.DPpb == nil {
			return nil, fmt.Errorf("smdp: credentials %d: CI, DPauth and DPpb certificates are all required", i)
		}
		if c.DPauth.Curve != c.CI.Curve || c.DPpb.Curve != c.CI.Curve {
			return nil, fmt.Errorf("smdp: credentials %d: CI, DPauth and DPpb must be on one curve", i)
		}
		if !rsp.SameKeyID(c.DPauth.AKI, c.CI.SKI) || !c.DPauth.CheckSignatureFrom(c.CI) {
			return nil, fmt.Errorf("smdp: credentials %d: the DPauth certificate is not issued by the configured CI", i)
		}
		if !rsp.SameKeyID(c.DPpb.AKI, c.CI.SKI) || !c.DPpb.CheckSignatureFrom(c.CI) {
			return nil, fmt.Errorf("smdp: credentials %d: the DPpb certificate is not issued by the configured CI", i)
		}
		if c.DPauth.SMDPOID() == nil {
			return nil, fmt.Errorf("smdp: credentials %d: the DPauth certificate has no SAN registeredID (SM-DP+ OID)", i)
		}
	}
	if cfg.HostID == nil {
		cfg.HostID = []byte("perso-smdp")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 10 * time.Minute
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, log: log, eums: rsp.NewEUMCache(0), batchKeys: make(map[string][]byte),
		loaded: make(map[string]store.Profile), active: make(map[string]time.Time)}, nil
}

// Session phases (store.Session.Phase).
const (
	phaseInitiated     = "initiated"
	phaseAuthenticated = "authenticated"
	phaseBound         = "bound"
)

// sessionData is store.Session.Data: what later calls of the session need.
// No secret: certificates, signatures and public keys. The bound package is
// not kept: a retry binds it again with the same one-time keys (getbpp.go).
type sessionData struct {
	CISKI           []byte `json:"ci"`
	EUICCSignature1 []byte `json:"s1,omitempty"`
	EUICCCert       []byte `json:"euicc,omitempty"`
	SmdpSignature2  []byte `json:"s2,omitempty"`
	ProfileMetadata []byte `json:"md,omitempty"`
	CCRequired      bool   `json:"cc,omitempty"`
}

func tidKey(t rsp.TransactionID) string { return strings.ToUpper(hex.EncodeToString(t)) }

func status(subject rsp.SubjectCode, reason rsp.ReasonCode, msg string) error {
	return rsp.Status{Subject: subject, Reason: reason, Message: msg}
}

// Status codes the spec's tables give outside rsp's list.
const (
	subjectFunction    rsp.SubjectCode = "1.2.1" // the function request (content type, size, format)
	subjectAdminHeader rsp.SubjectCode = "1.2.2" // X-Admin-Protocol
)

// internal turns a failure without an SGP.22 condition (database, HSM) into
// a Failed status the client can act on (retry later), and logs the cause.
func (s *Server) internal(ctx context.Context, fn Function, what string, err error) error {
	if st, ok := StoreStatus(fn, err); ok {
		return st
	}
	s.log.ErrorContext(ctx, "smdp: "+what, "function", string(fn), "err", err)
	return status(rsp.SubjectSMDP, rsp.ReasonExecutionError, what+" failed; retry later")
}

// loadSession finds the session of tid in one of the phases; an unknown,
// expired, cancelled or finished session, or one in another phase (a
// replayed call), is 8.10.1/3.9.
func (s *Server) loadSession(ctx context.Context, fn Function, tid rsp.TransactionID, phases ...string) (store.Session, *sessionData, error) {
	if len(tid) == 0 {
		return store.Session{}, nil, status(rsp.SubjectTransactionID, rsp.ReasonUnknown, "unknown or expired transactionId")
	}
	key := tidKey(tid)
	var (
		sess store.Session
		d    *sessionData
	)
	u := useOf(ctx)
	if cs, ok := s.sessions.get(key); ok && u != nil && !u.fresh && s.cfg.Now().Before(cs.sess.ExpiresAt) {
		sess, d = cs.sess, &cs.d // cs is a copy
		u.cached, u.tid, u.version = true, key, sess.Version
	} else {
		var err error
		if sess, err = s.cfg.Store.GetSession(ctx, key); err != nil {
			return store.Session{}, nil, s.internal(ctx, fn, "loading the session", err)
		}
		d = new(sessionData)
		if err := json.Unmarshal(sess.Data, d); err != nil {
			return store.Session{}, nil, s.internal(ctx, fn, "decoding the session", err)
		}
	}
	ok := false
	for _, p := range phases {
		ok = ok || sess.Phase == p
	}
	if !ok {
		return store.Session{}, nil, status(rsp.SubjectTransactionID, rsp.ReasonUnknown, "transactionId not valid for this function (replayed or out of order)")
	}
	return sess, d, nil
}

// keepExpiry is sess as an update that leaves the stored expiry as it is
// (the store then does not rewrite its expiry index entry).
func keepExpiry(sess store.Session) *store.Session {
	sess.ExpiresAt = time.Time{}
	return &sess
}

// stored records sess as this process wrote it: next is its version in
// the store now.
func (s *Server) stored(sess store.Session, next int64, d *sessionData) {
	sess.Version = next
	s.sessions.put(sess, d)
}

// sessionWriteError is the answer to a failed write of the session (with
// the call's order change, when they share a transaction).
func (s *Server) sessionWriteError(ctx context.Context, fn Function, what string, err error) error {
	if errors.Is(err, store.ErrStale) {
		// Another replica advanced the session concurrently: this call
		// is a duplicate of one already executed.
		return status(rsp.SubjectTransactionID, rsp.ReasonUnknown, "session changed by a concurrent call")
	}
	return s.internal(ctx, fn, what, err)
}

// maxBatchKeys bounds the batch key cache (a server sees a few batches).
const maxBatchKeys = 4096

// batchKey returns the key blob of a batch, from the store the first time.
func (s *Server) batchKey(ctx context.Context, id string) ([]byte, error) {
	s.batchMu.RLock()
	k, ok := s.batchKeys[id]
	s.batchMu.RUnlock()
	if ok {
		return k, nil
	}
	b, err := s.cfg.Store.GetBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	s.batchMu.Lock()
	if len(s.batchKeys) >= maxBatchKeys {
		clear(s.batchKeys)
	}
	s.batchKeys[id] = b.KeyBlob
	s.batchMu.Unlock()
	return b.KeyBlob, nil
}

func (s *Server) credentialsFor(ciSKI []byte) *Credentials {
	for i := range s.cfg.Credentials {
		if rsp.SameKeyID(s.cfg.Credentials[i].CI.SKI, ciSKI) {
			return &s.cfg.Credentials[i]
		}
	}
	return nil
}

// sign signs SHA-256(data) with the role's key and returns the 5F37 element.
func (s *Server) sign(ctx context.Context, role Role, c esim.Curve, data []byte) (rsp.Signature, error) {
	d := sha256.Sum256(data)
	rs, err := s.cfg.HSM.Signer(role, c).SignDigest(ctx, d[:])
	if err != nil {
		return nil, err
	}
	return rsp.NewSignature(rs)
}

// verifyRS checks a raw r‖s signature element over data.
func verifyRS(pub *ecdsa.PublicKey, data []byte, sig rsp.Signature) bool {
	rs := sig.RS()
	if rs == nil {
		return false
	}
	d := sha256.Sum256(data)
	return bpp.VerifySignature(pub, d[:], rs)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// sameAddress compares SM-DP+ addresses case-insensitively, ignoring a
// ":port" suffix on either side (es2-es10-codes.md §6.2).
func sameAddress(a, b string) bool {
	strip := func(s string) string {
		if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "]") {
			s = s[:i]
		}
		return strings.TrimSuffix(s, ".")
	}
	return strings.EqualFold(strip(a), strip(b))
}
