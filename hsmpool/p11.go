package hsmpool

import (
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/perso-esim/perso/esim"
)

// p11API is the part of the PKCS#11 API the pool uses. *pkcs11.Ctx satisfies
// it; tests wrap it to inject faults (see Config.wrapAPI).
type p11API interface {
	Initialize(opts ...pkcs11.InitializeOption) error
	Finalize() error
	Destroy()
	GetInfo() (pkcs11.Info, error)
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error)
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error
	SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
	DeriveKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, basekey pkcs11.ObjectHandle, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	WrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, wrappingkey, key pkcs11.ObjectHandle) ([]byte, error)
	UnwrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, unwrappingkey pkcs11.ObjectHandle, wrappedkey []byte, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Decrypt(sh pkcs11.SessionHandle, cipher []byte) ([]byte, error)
	GenerateRandom(sh pkcs11.SessionHandle, length int) ([]byte, error)
}

// countingAPI counts PKCS#11 calls that reach the token (for the
// round-trips-per-profile figure). It wraps every backend's API.
type countingAPI struct {
	p11API
	calls atomic.Uint64
}

func (c *countingAPI) n() { c.calls.Add(1) }

func (c *countingAPI) SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	c.n()
	return c.p11API.SignInit(sh, m, o)
}
func (c *countingAPI) Sign(sh pkcs11.SessionHandle, msg []byte) ([]byte, error) {
	c.n()
	return c.p11API.Sign(sh, msg)
}
func (c *countingAPI) GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, t []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	c.n()
	return c.p11API.GenerateKey(sh, m, t)
}
func (c *countingAPI) GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, pub, priv []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	c.n()
	return c.p11API.GenerateKeyPair(sh, m, pub, priv)
}
func (c *countingAPI) DeriveKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, k pkcs11.ObjectHandle, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	c.n()
	return c.p11API.DeriveKey(sh, m, k, a)
}
func (c *countingAPI) WrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, w, k pkcs11.ObjectHandle) ([]byte, error) {
	c.n()
	return c.p11API.WrapKey(sh, m, w, k)
}
func (c *countingAPI) UnwrapKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, u pkcs11.ObjectHandle, w []byte, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	c.n()
	return c.p11API.UnwrapKey(sh, m, u, w, a)
}
func (c *countingAPI) GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	c.n()
	return c.p11API.GetAttributeValue(sh, o, a)
}
func (c *countingAPI) DestroyObject(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle) error {
	c.n()
	return c.p11API.DestroyObject(sh, o)
}
func (c *countingAPI) DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	c.n()
	return c.p11API.DecryptInit(sh, m, o)
}
func (c *countingAPI) Decrypt(sh pkcs11.SessionHandle, ct []byte) ([]byte, error) {
	c.n()
	return c.p11API.Decrypt(sh, ct)
}
func (c *countingAPI) GenerateRandom(sh pkcs11.SessionHandle, n int) ([]byte, error) {
	c.n()
	return c.p11API.GenerateRandom(sh, n)
}
func (c *countingAPI) FindObjectsInit(sh pkcs11.SessionHandle, t []*pkcs11.Attribute) error {
	c.n()
	return c.p11API.FindObjectsInit(sh, t)
}
func (c *countingAPI) FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error) {
	c.n()
	return c.p11API.FindObjects(sh, max)
}
func (c *countingAPI) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	c.n()
	return c.p11API.FindObjectsFinal(sh)
}

// keyInfo is what the pool caches about a token object: found once, reused.
type keyInfo struct {
	h       pkcs11.ObjectHandle
	keyType uint
	curve   esim.Curve // EC keys only
}

// p11Backend talks to one PKCS#11 token through miekg/pkcs11. It is the only
// owner of the module's lifecycle (C_Initialize/C_Finalize) in the process
// for that module path.
type p11Backend struct {
	api   p11API
	count *countingAPI
	cfg   Config

	mu     sync.Mutex // guards slotID, slotOK and login
	slotID uint
	slotOK bool

	// sess[i] is used only by the holder of scheduler slot i.
	sess   []pkcs11.SessionHandle
	sessOK []bool
	// owner maps open session handles to slots (guarded by mu). A token may
	// reuse the handle of a session closed underneath us; stale marks the
	// slot whose handle now belongs to another slot.
	owner map[pkcs11.SessionHandle]int
	stale []atomic.Bool

	hmu     sync.RWMutex
	handles map[string]keyInfo // class/label -> handle

	replaced   atomic.Uint64
	tokenFails atomic.Uint64

	reinits atomic.Uint64 // module reinitialisations (Config.RecycleAfter)
}

const (
	sessFlags = pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION
)

// modules tracks which module paths this process has initialised, so that
// two pools on one module cannot both own C_Initialize.
var (
	modulesMu sync.Mutex
	modules   = map[string]bool{}
)

func openP11(ctx context.Context, cfg Config) (*p11Backend, error) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if modules[cfg.Module] {
		return nil, fmt.Errorf("hsmpool: module %s is already open in this process; share one Pool", cfg.Module)
	}
	raw := pkcs11.New(cfg.Module)
	if raw == nil {
		return nil, fmt.Errorf("hsmpool: cannot load PKCS#11 module %s", cfg.Module)
	}
	var api p11API = raw
	if cfg.wrapAPI != nil {
		api = cfg.wrapAPI(api)
	}
	count := &countingAPI{p11API: api}
	b := &p11Backend{
		api:     count,
		count:   count,
		cfg:     cfg,
		sess:    make([]pkcs11.SessionHandle, cfg.Sessions),
		sessOK:  make([]bool, cfg.Sessions),
		owner:   map[pkcs11.SessionHandle]int{},
		stale:   make([]atomic.Bool, cfg.Sessions),
		handles: map[string]keyInfo{},
	}
	if err := api.Initialize(); err != nil && p11Code(err) != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
		api.Destroy()
		return nil, fmt.Errorf("hsmpool: C_Initialize %s: %s", cfg.Module, describe(err))
	}
	// Open every session now (sessions are opened once and reused) and
	// log in; this also proves the PIN and the token label.
	if err := b.openSessions(ctx); err != nil {
		b.closeLocked()
		if p11Code(err) == pkcs11.CKR_PIN_INCORRECT || p11Code(err) == pkcs11.CKR_PIN_LEN_RANGE {
			return nil, errors.New("hsmpool: login to token " + strconv.Quote(cfg.TokenLabel) + " refused: wrong PIN")
		}
		return nil, err
	}
	modules[cfg.Module] = true
	return b, nil
}

// openSessions opens and logs in every session. While the token is not
// present or not usable yet (transientAtOpen) it initialises the module
// again and retries, with a backoff from 5ms doubling up to 200ms, until
// Config.TokenWait has passed; then it says how long it looked, wrapping
// ErrTokenUnavailable and the last PKCS#11 error (Diagnose lists the
// tokens the module offers).
//
// The transient case this is for: SoftHSM2 2.6.1 rewrites token.object on
// every successful C_Login (it stores the token flags) and its File::unlock
// releases the fcntl lock before stdio flushes the new contents, so for
// about 0.1ms the file is empty and unlocked (strace: ftruncate, F_UNLCK,
// write). A C_Initialize in another process that reads it then loads the
// token without its attributes. Looking again in the same module instance
// found the token in only 43 of 105 such cases, and then without its PINs
// (C_Login: CKR_USER_PIN_NOT_INITIALIZED or CKR_GENERAL_ERROR);
// initialising the module again found it in all 856, within 7 tries. Two
// `perso run --worker` starting on one token directory hit it about once
// in 9 runs. A real outage lasts longer than TokenWait and still fails,
// with the count of attempts.
func (b *p11Backend) openSessions(ctx context.Context) error {
	start := time.Now()
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := b.openEach(ctx)
		if err == nil || !transientAtOpen(err) || b.cfg.TokenWait < 0 {
			return err
		}
		waited := time.Since(start)
		if waited+backoff > b.cfg.TokenWait {
			return fmt.Errorf("%w: token %q still unavailable in module %s after %d attempts over %s, the module initialised again before each: %w",
				ErrTokenUnavailable, b.cfg.TokenLabel, b.cfg.Module, attempt, waited.Round(time.Millisecond), err)
		}
		b.cfg.Logger.Debug("hsmpool: token not usable yet; initialising the module again",
			"token", b.cfg.TokenLabel, "attempt", attempt, "backoff", backoff, "error", describe(err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w while waiting for token %q: %w", ErrTokenUnavailable, b.cfg.TokenLabel, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
		b.mu.Lock()
		err = b.restartLocked()
		b.mu.Unlock()
		b.flushHandles()
		if err != nil {
			return fmt.Errorf("hsmpool: initialising module %s again while waiting for token %q: %s", b.cfg.Module, b.cfg.TokenLabel, describe(err))
		}
	}
}

// transientAtOpen reports whether an error opening or logging in a session
// may go away when the module is initialised again (see openSessions). A
// wrong PIN is never retried: each try would spend one of the token's
// login attempts.
func transientAtOpen(err error) bool {
	switch p11Code(err) {
	case pkcs11.CKR_USER_PIN_NOT_INITIALIZED, pkcs11.CKR_GENERAL_ERROR:
		return true
	}
	return classify(err) == classToken
}

// openEach opens (and logs in) every session not open yet.
func (b *p11Backend) openEach(ctx context.Context) error {
	for i := range b.sess {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := b.session(i); err != nil {
			return err
		}
	}
	return nil
}

func (b *p11Backend) name() string { return "pkcs11" }

func (b *p11Backend) close() error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	return b.closeLocked()
}

// closeLocked closes sessions and finalizes; the caller holds modulesMu.
func (b *p11Backend) closeLocked() error {
	for i := range b.sess {
		if b.sessOK[i] {
			b.api.CloseSession(b.sess[i])
			b.sessOK[i] = false
		}
	}
	err := b.api.Finalize()
	delete(modules, b.cfg.Module)
	b.api.Destroy()
	if err != nil {
		return fmt.Errorf("hsmpool: C_Finalize: %s", describe(err))
	}
	return nil
}

// findSlot locates the token by label. Caller holds b.mu.
func (b *p11Backend) findSlot() error {
	if b.slotOK {
		return nil
	}
	slots, err := b.api.GetSlotList(true)
	if err != nil {
		return err
	}
	for _, s := range slots {
		ti, err := b.api.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if trimLabel(ti.Label) == b.cfg.TokenLabel {
			b.slotID, b.slotOK = s, true
			return nil
		}
	}
	return pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
}

func trimLabel(s string) string {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == 0) {
		s = s[:len(s)-1]
	}
	return s
}

// session returns slot i's session, opening (and logging in) if needed.
func (b *p11Backend) session(i int) (pkcs11.SessionHandle, error) {
	if b.stale[i].Swap(false) {
		b.sessOK[i] = false // the handle was reissued to another slot: do not close it
		b.replaced.Add(1)
	}
	if b.sessOK[i] {
		return b.sess[i], nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.findSlot(); err != nil {
		return 0, err
	}
	sh, err := b.api.OpenSession(b.slotID, sessFlags)
	if err != nil {
		if classify(err) == classToken {
			b.slotOK = false
		}
		return 0, err
	}
	// Login state is per application and token, and is lost when the last
	// session closes; logging in on each new session is cheap and safe.
	if err := b.api.Login(sh, pkcs11.CKU_USER, b.cfg.PIN); err != nil && p11Code(err) != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
		b.api.CloseSession(sh)
		return 0, err
	}
	if j, ok := b.owner[sh]; ok && j != i {
		b.stale[j].Store(true)
	}
	b.owner[sh] = i
	b.sess[i], b.sessOK[i] = sh, true
	return sh, nil
}

func (b *p11Backend) dropSession(i int) {
	if !b.sessOK[i] {
		return
	}
	b.mu.Lock()
	if j, ok := b.owner[b.sess[i]]; ok && j == i {
		delete(b.owner, b.sess[i])
		b.api.CloseSession(b.sess[i]) // may fail if already invalid; the handle is gone either way
	}
	b.mu.Unlock()
	b.sessOK[i] = false
	b.replaced.Add(1)
}

// reinitialize closes every session, finalizes the module and initialises
// it again, then reopens and logs in every session (Config.RecycleAfter):
// SoftHSM 2.6.1 frees destroyed session objects only when the module is
// finalized, not when their session closes. The caller holds every slot.
// A failure is logged by the caller; the sessions left closed are opened
// again, or repaired, by the next operation on them (with).
func (b *p11Backend) reinitialize() error {
	b.mu.Lock()
	err := b.restartLocked()
	b.mu.Unlock()
	b.flushHandles() // object handles die with the module instance
	if err != nil {
		return fmt.Errorf("hsmpool: reinitialising module %s: %s", b.cfg.Module, describe(err))
	}
	b.reinits.Add(1)
	// Another process's C_Login can hide the token from this
	// C_Initialize as from Open's (see openSessions).
	if err := b.openSessions(context.Background()); err != nil {
		return fmt.Errorf("hsmpool: reopening the sessions after reinitialising the module: %w", err)
	}
	return nil
}

// restartLocked closes every session and finalizes and initialises the
// module again. The caller holds b.mu and flushes the cached handles.
func (b *p11Backend) restartLocked() error {
	for i := range b.sess {
		if b.sessOK[i] {
			b.api.CloseSession(b.sess[i])
			b.sessOK[i] = false
		}
		b.stale[i].Store(false)
	}
	clear(b.owner)
	b.slotOK = false // slot IDs may change across C_Initialize
	err := b.api.Finalize()
	if err == nil {
		err = b.api.Initialize()
	}
	return err
}

func (b *p11Backend) recycled() uint64 { return b.reinits.Load() }

// defaultRecycleAfter is Config.RecycleAfter when unset: 20000 operations
// on SoftHSM2, whose destroyed session objects stay allocated until
// C_Finalize; never on other modules, which free them (a hardware HSM's
// C_Initialize can take seconds).
func (b *p11Backend) defaultRecycleAfter() int {
	info, err := b.api.GetInfo()
	if err == nil && strings.Contains(strings.ToLower(info.ManufacturerID+" "+info.LibraryDescription), "softhsm") {
		return 20000
	}
	return -1
}

func (b *p11Backend) flushHandles() {
	b.hmu.Lock()
	clear(b.handles)
	b.hmu.Unlock()
}

// with runs fn on slot i's session, replacing broken sessions and retrying
// with backoff while the token is gone. fn is retried only after it failed,
// so a request is never executed twice with a result; every PKCS#11 sequence
// fn performs leaves no token state behind on failure (session objects die
// with their session or are destroyed by fn).
func (b *p11Backend) with(ctx context.Context, i int, fn func(sh pkcs11.SessionHandle) error) error {
	backoff := b.cfg.RetryBackoff
	var repairs, tokenTries int
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		sh, err := b.session(i)
		if err == nil {
			if err = fn(sh); err == nil {
				return nil
			}
		}
		switch classify(err) {
		case classSession, classLogin:
			b.cfg.Logger.Warn("hsmpool: replacing a broken PKCS#11 session", "session", i, "error", describe(err))
			b.dropSession(i)
			repairs++
		case classHandle:
			b.flushHandles()
			repairs++
		case classToken:
			b.dropSession(i)
			b.mu.Lock()
			b.slotOK = false
			b.mu.Unlock()
			b.flushHandles()
			b.tokenFails.Add(1)
			tokenTries++
			b.cfg.Logger.Warn("hsmpool: token unavailable, retrying", "attempt", tokenTries, "backoff", backoff, "error", describe(err))
			if tokenTries > b.cfg.MaxRetries {
				return fmt.Errorf("%w: %s after %d attempts over %s", ErrTokenUnavailable, describe(err), tokenTries, b.cfg.retryBudget())
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("%w while waiting for token: %w", ErrTokenUnavailable, ctx.Err())
			case <-t.C:
			}
			backoff = min(2*backoff, b.cfg.MaxBackoff)
			continue
		default:
			return err
		}
		if repairs > b.cfg.MaxRetries {
			return err
		}
	}
}

func classLabelKey(class uint, label string) string {
	return strconv.FormatUint(uint64(class), 16) + "/" + label
}

// key finds (once) and caches the object of the given class and label.
func (b *p11Backend) key(sh pkcs11.SessionHandle, class uint, label string) (keyInfo, error) {
	ck := classLabelKey(class, label)
	b.hmu.RLock()
	k, ok := b.handles[ck]
	b.hmu.RUnlock()
	if ok {
		return k, nil
	}
	hs, err := b.find(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}, 2)
	if err != nil {
		return keyInfo{}, err
	}
	switch len(hs) {
	case 0:
		return keyInfo{}, fmt.Errorf("%w: %q", ErrKeyNotFound, label)
	case 1:
	default:
		return keyInfo{}, fmt.Errorf("hsmpool: label %q names more than one key", label)
	}
	k.h = hs[0]
	want := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)}
	attrs, err := b.api.GetAttributeValue(sh, k.h, want)
	if err != nil {
		return keyInfo{}, err
	}
	k.keyType = attrUint(attrs[0].Value)
	if k.keyType == pkcs11.CKK_EC {
		attrs, err := b.api.GetAttributeValue(sh, k.h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil)})
		if err != nil {
			return keyInfo{}, err
		}
		if k.curve, err = curveFromParams(attrs[0].Value); err != nil {
			return keyInfo{}, err
		}
	}
	b.hmu.Lock()
	b.handles[ck] = k
	b.hmu.Unlock()
	return k, nil
}

func (b *p11Backend) find(sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := b.api.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	hs, _, err := b.api.FindObjects(sh, max)
	if ferr := b.api.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	return hs, err
}

// attrUint decodes a CK_ULONG attribute in native byte order (little-endian
// on the platforms Go and SoftHSM run on here).
func attrUint(v []byte) uint {
	var u uint
	for i := len(v) - 1; i >= 0; i-- {
		u = u<<8 | uint(v[i])
	}
	return u
}

// ecPointFromAttr unwraps CKA_EC_POINT: a DER OCTET STRING holding the
// uncompressed point (PKCS#11 v2.40), or the raw point (some tokens).
func ecPointFromAttr(v []byte) ([]byte, error) {
	if len(v) == 65 && v[0] == 4 {
		return v, nil
	}
	var p []byte
	if rest, err := asn1.Unmarshal(v, &p); err != nil || len(rest) != 0 || len(p) != 65 || p[0] != 4 {
		return nil, errors.New("hsmpool: token returned an EC point that is not uncompressed")
	}
	return p, nil
}

// ---- operations on one session (shared by the pool and the raw baseline) ----

var (
	mechECDSA   = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	mechECGen   = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}
	mechAESGen  = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
	mechAESWrap = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}
)

func (b *p11Backend) signOn(sh pkcs11.SessionHandle, label string, digest []byte) ([]byte, error) {
	k, err := b.key(sh, pkcs11.CKO_PRIVATE_KEY, label)
	if err != nil {
		return nil, err
	}
	if k.keyType != pkcs11.CKK_EC {
		return nil, ErrWrongKeyType
	}
	if err := b.api.SignInit(sh, mechECDSA, k.h); err != nil {
		return nil, err
	}
	sig, err := b.api.Sign(sh, digest)
	if err != nil {
		return nil, err
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("hsmpool: token returned a %d-byte ECDSA signature, want raw r||s (64)", len(sig))
	}
	return sig, nil
}

// ecdhOn generates a one-time key pair as session objects (CKA_TOKEN=false;
// private key sensitive and non-extractable), derives with CKM_ECDH1_DERIVE
// and CKD_NULL into an extractable generic-secret session object, reads Z
// from it, and destroys all three objects before returning.
func (b *p11Backend) ecdhOn(sh pkcs11.SessionHandle, c esim.Curve, peer []byte) (otpk, z []byte, err error) {
	pubT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ecParams(c)),
	}
	privT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
	}
	pub, priv, err := b.api.GenerateKeyPair(sh, mechECGen, pubT, privT)
	if err != nil {
		return nil, nil, err
	}
	defer b.api.DestroyObject(sh, pub)
	defer b.api.DestroyObject(sh, priv)
	attrs, err := b.api.GetAttributeValue(sh, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, nil, err
	}
	if otpk, err = ecPointFromAttr(attrs[0].Value); err != nil {
		return nil, nil, err
	}
	secretT := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE,
		pkcs11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, peer))}
	sec, err := b.api.DeriveKey(sh, mech, priv, secretT)
	if err != nil {
		return nil, nil, err
	}
	defer b.api.DestroyObject(sh, sec)
	attrs, err = b.api.GetAttributeValue(sh, sec, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, nil, err
	}
	z = attrs[0].Value
	if len(z) != 32 {
		clear(z)
		return nil, nil, fmt.Errorf("hsmpool: token derived a %d-byte secret, want 32", len(z))
	}
	return otpk, z, nil
}

func (b *p11Backend) decryptOn(sh pkcs11.SessionHandle, label string, alg transportAlg, ct []byte) ([]byte, error) {
	k, err := b.key(sh, pkcs11.CKO_SECRET_KEY, label)
	if err != nil {
		return nil, err
	}
	if k.keyType != alg.keyType {
		return nil, ErrWrongKeyType
	}
	if err := b.api.DecryptInit(sh, []*pkcs11.Mechanism{alg.mechanism()}, k.h); err != nil {
		return nil, err
	}
	return b.api.Decrypt(sh, ct)
}

// newDataKeyOn generates a 256-bit AES data key as an extractable session
// object, wraps it under the KEK (CKM_AES_KEY_WRAP, RFC 3394), reads its
// value for software use during the batch and destroys the object.
func (b *p11Backend) newDataKeyOn(sh pkcs11.SessionHandle, kek string) (key, wrapped []byte, err error) {
	k, err := b.key(sh, pkcs11.CKO_SECRET_KEY, kek)
	if err != nil {
		return nil, nil, err
	}
	dk, err := b.api.GenerateKey(sh, mechAESGen, dataKeyTemplate(true))
	if err != nil {
		return nil, nil, err
	}
	defer b.api.DestroyObject(sh, dk)
	if wrapped, err = b.api.WrapKey(sh, mechAESWrap, k.h, dk); err != nil {
		return nil, nil, err
	}
	attrs, err := b.api.GetAttributeValue(sh, dk, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, nil, err
	}
	if len(attrs[0].Value) != dataKeyLen {
		clear(attrs[0].Value)
		return nil, nil, errors.New("hsmpool: token returned a data key of the wrong length")
	}
	return attrs[0].Value, wrapped, nil
}

// dataKeyTemplate describes a batch data key: a session object (never on
// the token), extractable and non-sensitive so that its value can be read
// once for software use. C_GenerateKey needs CKA_VALUE_LEN; C_UnwrapKey
// must not be given it.
func dataKeyTemplate(generate bool) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}
	if generate {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, dataKeyLen))
	}
	return t
}

func (b *p11Backend) unwrapDataKeyOn(sh pkcs11.SessionHandle, kek string, wrapped []byte) ([]byte, error) {
	k, err := b.key(sh, pkcs11.CKO_SECRET_KEY, kek)
	if err != nil {
		return nil, err
	}
	dk, err := b.api.UnwrapKey(sh, mechAESWrap, k.h, wrapped, dataKeyTemplate(false))
	if err != nil {
		switch p11Code(err) {
		case pkcs11.CKR_WRAPPED_KEY_INVALID, pkcs11.CKR_WRAPPED_KEY_LEN_RANGE, pkcs11.CKR_ENCRYPTED_DATA_INVALID,
			pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED:
			return nil, fmt.Errorf("%w: batch key blob rejected by the KEK (%s)", ErrIntegrity, describe(err))
		}
		return nil, err
	}
	defer b.api.DestroyObject(sh, dk)
	attrs, err := b.api.GetAttributeValue(sh, dk, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, err
	}
	if len(attrs[0].Value) != dataKeyLen {
		clear(attrs[0].Value)
		return nil, fmt.Errorf("%w: unwrapped data key has the wrong length", ErrIntegrity)
	}
	return attrs[0].Value, nil
}

func (b *p11Backend) publicKeyOn(sh pkcs11.SessionHandle, label string) (esim.Curve, []byte, error) {
	k, err := b.key(sh, pkcs11.CKO_PUBLIC_KEY, label)
	if err != nil {
		return 0, nil, err
	}
	if k.keyType != pkcs11.CKK_EC {
		return 0, nil, ErrWrongKeyType
	}
	attrs, err := b.api.GetAttributeValue(sh, k.h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return 0, nil, err
	}
	p, err := ecPointFromAttr(attrs[0].Value)
	return k.curve, p, err
}

// ---- backend interface ----

func (b *p11Backend) sign(ctx context.Context, i int, label string, digest []byte) (sig []byte, err error) {
	err = b.with(ctx, i, func(sh pkcs11.SessionHandle) (e error) { sig, e = b.signOn(sh, label, digest); return })
	return
}

func (b *p11Backend) ecdh(ctx context.Context, i int, c esim.Curve, peer []byte) (otpk, z []byte, err error) {
	err = b.with(ctx, i, func(sh pkcs11.SessionHandle) (e error) { otpk, z, e = b.ecdhOn(sh, c, peer); return })
	return
}

func (b *p11Backend) decrypt(ctx context.Context, i int, label string, alg transportAlg, ct []byte) (pt []byte, err error) {
	err = b.with(ctx, i, func(sh pkcs11.SessionHandle) (e error) { pt, e = b.decryptOn(sh, label, alg, ct); return })
	return
}

func (b *p11Backend) newDataKey(ctx context.Context, i int, kek string) (key, wrapped []byte, err error) {
	err = b.with(ctx, i, func(sh pkcs11.SessionHandle) (e error) { key, wrapped, e = b.newDataKeyOn(sh, kek); return })
	return
}

func (b *p11Backend) unwrapDataKey(ctx context.Context, i int, kek string, wrapped []byte) (key []byte, err error) {
	err = b.with(ctx, i, func(sh pkcs11.SessionHandle) (e error) { key, e = b.unwrapDataKeyOn(sh, kek, wrapped); return })
	return
}

func (b *p11Backend) random(ctx context.Context, i int, n int) (r []byte, err error) {
	err = b.with(ctx, i, func(sh pkcs11.SessionHandle) (e error) { r, e = b.api.GenerateRandom(sh, n); return })
	return
}

func (b *p11Backend) publicKey(ctx context.Context, i int, label string) (c esim.Curve, p []byte, err error) {
	err = b.with(ctx, i, func(sh pkcs11.SessionHandle) (e error) { c, p, e = b.publicKeyOn(sh, label); return })
	return
}

func (b *p11Backend) ping(ctx context.Context, i int) error {
	return b.with(ctx, i, func(sh pkcs11.SessionHandle) error {
		_, err := b.api.GetSessionInfo(sh)
		return err
	})
}

func (b *p11Backend) calls() uint64 { return b.count.calls.Load() }

func (b *p11Backend) faults() (replaced, tokenFails uint64) {
	return b.replaced.Load(), b.tokenFails.Load()
}
