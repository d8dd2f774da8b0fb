package smdp

import (
	"context"
	"errors"
	"log/slog"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// OrderDesk is what the ES2+ handlers need of the inventory; *store.DB
// implements it.
type OrderDesk interface {
	DownloadOrder(ctx context.Context, r store.DownloadOrderRequest) (store.Profile, error)
	ConfirmOrder(ctx context.Context, r store.ConfirmOrderRequest) (store.Profile, error)
	CancelOrder(ctx context.Context, r store.CancelOrderRequest) (store.Profile, error)
	ReleaseProfile(ctx context.Context, iccid string) (store.Profile, error)
	Order(ctx context.Context, iccid string) (store.Profile, error)
	OrderOwner(ctx context.Context, iccid string) (string, error)
}

// SMDSRegistrar registers an event at an SM-DS (ES12 RegisterEvent) for
// ConfirmOrder's smdsAddress; the event ID is the matching ID.
type SMDSRegistrar interface {
	RegisterEvent(ctx context.Context, smdsAddress, eid, eventID string) error
}

// ES2Config configures the ES2+ functions.
type ES2Config struct {
	// Address is the SM-DP+ address answered as smdpAddress and put into
	// activation codes (the ES9+ server's Config.Address).
	Address string
	// OID, when set, is the SM-DP+ OID written into activation codes.
	OID  string
	Desk OrderDesk
	SMDS SMDSRegistrar // nil: ConfirmOrder with an smdsAddress fails 8.9/5.1
	Log  *slog.Logger  // default slog.Default()
}

// ES2 executes the ES2+ functions for an authenticated operator. Each
// method takes the operator's ID (functionRequesterIdentifier, already
// matched to its TLS client certificate by the HTTP layer) and an rsp
// request, and returns the answer or a non-zero rsp.Status: tested without
// HTTP.
type ES2 struct {
	cfg ES2Config
	log *slog.Logger
}

// NewES2 checks cfg and returns the ES2+ function executor.
func NewES2(cfg ES2Config) (*ES2, error) {
	if cfg.Address == "" {
		return nil, errors.New("smdp: ES2+: no SM-DP+ address configured (set serve.address)")
	}
	if cfg.Desk == nil {
		return nil, errors.New("smdp: ES2+: no store")
	}
	if err := (activation.Code{SMDPAddress: cfg.Address, SMDPOID: cfg.OID}).Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &ES2{cfg: cfg, log: log}, nil
}

// ActivationCode is the activation code of a confirmed order: this
// SM-DP+'s address and OID, the order's matching ID, and whether a
// confirmation code was given.
func (s *ES2) ActivationCode(resp *rsp.ConfirmOrderResponse, ccRequired bool) activation.Code {
	return activation.Code{SMDPAddress: resp.SMDPAddress, MatchingID: resp.MatchingID, SMDPOID: s.cfg.OID, CCRequired: ccRequired}
}

// passed is the zero status: a check that passed.
var passed rsp.Status

func fail(subject rsp.SubjectCode, reason rsp.ReasonCode, msg string) rsp.Status {
	return rsp.Status{Subject: subject, Reason: reason, Message: msg}
}

// internal maps a store failure to its SGP.22 status, or logs a failure
// without one and answers "execution error, retry".
func (s *ES2) internal(ctx context.Context, fn Function, err error) rsp.Status {
	if st, known := StoreStatus(fn, err); known {
		return st
	}
	s.log.ErrorContext(ctx, "smdp: ES2+ store failure", "function", string(fn), "err", err)
	return fail(rsp.SubjectSMDP, rsp.ReasonExecutionError, "SM-DP+ internal error; retry later")
}

// NormalizeICCID returns the ICCID as the inventory keys it: 18 to 20
// decimal digits, a trailing F (pySim pads 19-digit ICCIDs) removed. The
// Luhn digit is not checked: an ICCID that is not in the inventory is
// "unknown" (8.2.1/3.9), never a format error (es2-es10-codes.md §2.1).
func NormalizeICCID(s string) (string, bool) {
	if n := len(s); n == 20 && (s[19] == 'F' || s[19] == 'f') {
		s = s[:19]
	}
	return s, len(s) >= 18 && len(s) <= 20 && allDigits(s)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// checkICCID: present (x/2.2) and of ICCID form (x/2.1); *iccid is
// normalised.
func checkICCID(iccid *string) rsp.Status {
	if *iccid == "" {
		return fail(rsp.SubjectICCID, rsp.ReasonMissing, "iccid missing")
	}
	n, valid := NormalizeICCID(*iccid)
	if !valid {
		return fail(rsp.SubjectICCID, rsp.ReasonInvalidFormat, "iccid must be 18 to 20 digits")
	}
	*iccid = n
	return passed
}

// checkEIDFormat: absent, or 32 decimal digits.
func checkEIDFormat(eid string) rsp.Status {
	if eid != "" && (len(eid) != 32 || !allDigits(eid)) {
		return fail(rsp.SubjectEID, rsp.ReasonInvalidFormat, "eid must be 32 digits")
	}
	return passed
}

// checkOwner refuses an operator acting on an order another operator
// placed (8.2.1/1.2, "not allowed"). An ICCID without a current order, or
// unknown, passes: the store's answer decides.
func (s *ES2) checkOwner(ctx context.Context, fn Function, op, iccid string) rsp.Status {
	owner, err := s.cfg.Desk.OrderOwner(ctx, iccid)
	if err != nil {
		return s.internal(ctx, fn, err)
	}
	if owner == "" || owner == op {
		return passed
	}
	p, err := s.cfg.Desk.Order(ctx, iccid)
	if err != nil {
		return s.internal(ctx, fn, err)
	}
	if p.State == store.StateAvailable || p.State == store.StateUnavailable {
		return passed // the other operator's order is over
	}
	if fn == ES2DownloadOrder {
		return fail(rsp.SubjectICCID, rsp.ReasonConflict, "ICCID already reserved by a different order")
	}
	return fail(rsp.SubjectICCID, rsp.ReasonNotAllowed, "the order belongs to another operator")
}

func firstFailure(checks ...func() rsp.Status) rsp.Status {
	for _, c := range checks {
		if st := c(); !st.IsZero() {
			return st
		}
	}
	return passed
}
