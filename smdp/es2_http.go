package smdp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// OperatorBook finds an ES2+ operator by its functionRequesterIdentifier;
// *store.DB implements it.
type OperatorBook interface {
	GetOperator(ctx context.Context, id string) (store.Operator, error)
}

// ES2HTTPOptions configure the ES2+ HTTP handler.
type ES2HTTPOptions struct {
	Operators   OperatorBook
	MaxBody     int64            // default DefaultMaxBody
	CallTimeout time.Duration    // per call; default 30 s
	Now         func() time.Time // certificate validity and OperatorTTL time; default time.Now
	// OperatorTTL is how long an operator's record (its trust anchors),
	// once read from the store, authorises calls before it is read again:
	// reading it on every call cost a tenth of a DownloadOrder +
	// ConfirmOrder pair's CPU. An operator removed or replaced by another
	// process (perso operator remove) is refused or re-read within it.
	// 0: read on every call.
	OperatorTTL time.Duration
	// OnPanic, when set, is told of every panic the handler recovers
	// (answered as 8.8/4.2 "internal error"): the fuzz target fails on
	// it; clients see the same answer.
	OnPanic func(function string, v any)
}

// RequestClientCertificates makes a server TLS configuration ask clients
// for a certificate without requiring one, so that ES9+ (eUICCs, no client
// certificate) and ES2+ (operators, mutual TLS) share a listener
// (es2-es10-codes.md §6.1). The chain is verified per operator by the ES2+
// handler, against that operator's own trust anchors.
func RequestClientCertificates(cfg *tls.Config) {
	if cfg.ClientAuth == tls.NoClientCert {
		cfg.ClientAuth = tls.RequestClientCert
	}
}

// NewES2Handler returns the ES2+ HTTP handler for /gsma/rsp2/es2plus/
// {downloadOrder, confirmOrder, cancelOrder, releaseProfile}; mount it on
// rsp.ES2PathPrefix. A request without a TLS client certificate is refused
// with 401; one whose certificate does not chain to the trust anchors of the
// operator its functionRequesterIdentifier names (or names no operator)
// with 403. Everything else is answered as SGP.22 says: HTTP 200 with a
// functionExecutionStatus.
func NewES2Handler(es2 *ES2, o ES2HTTPOptions) http.Handler {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &es2Handler{es2: es2, o: o}
	mux := http.NewServeMux()
	for _, f := range []rsp.ES2Function{rsp.ES2DownloadOrder, rsp.ES2ConfirmOrder, rsp.ES2CancelOrder, rsp.ES2ReleaseProfile} {
		mux.Handle("POST "+f.Path(), h.wrap(f))
	}
	return warmHandler{next: mux, pool: newWarmPool(maxWarm)}
}

type es2Handler struct {
	es2   *ES2
	o     ES2HTTPOptions
	pools sync.Map // operator ID → *trust
}

// trust is an operator's parsed trust anchors, kept while its PEM is
// unchanged.
type trust struct {
	pem  string
	pool *x509.CertPool
	// read is when the operator's record was last read from the store
	// (unix nanoseconds): within OperatorTTL of it the record is not
	// read again.
	read atomic.Int64
	// verified caches chains already verified (leaf SHA-256 → the time
	// the result stops holding: the chain's earliest notAfter), so that an
	// operator's calls cost one chain verification per certificate, not
	// one per call.
	verified sync.Map
}

func (h *es2Handler) wrap(f rsp.ES2Function) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), h.o.CallTimeout)
		defer cancel()
		start := time.Now()
		var (
			st rsp.Status
			op string
		)
		defer func() {
			if v := recover(); v != nil {
				h.es2.log.ErrorContext(ctx, "smdp: ES2+ handler panic", "function", string(f), "panic", v)
				if h.o.OnPanic != nil {
					h.o.OnPanic(string(f), v)
				}
				st = fail(rsp.SubjectSMDP, rsp.ReasonExecutionError, "internal error")
				h.writeStatus(w, st)
			}
			h.es2.log.InfoContext(ctx, "es2+", "function", string(f), "operator", op, "status", st.Code(),
				"ms", time.Since(start).Milliseconds(), "remote", r.RemoteAddr)
		}()
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "ES2+ requires a TLS client certificate of a registered operator", http.StatusUnauthorized)
			return
		}
		body, st := readRequest(w, r, h.o.MaxBody, false)
		var req rsp.ES2Request
		if st.IsZero() {
			var err error
			if req, err = rsp.DecodeES2Request(f, body); err != nil {
				st = decodeStatus(err)
			}
		}
		if !st.IsZero() {
			h.writeStatus(w, st)
			return
		}
		op = req.ES2Header().FunctionRequesterIdentifier
		if err := h.authorize(ctx, op, r.TLS.PeerCertificates); err != nil {
			h.es2.log.WarnContext(ctx, "smdp: ES2+ caller refused", "function", string(f), "requester", op, "remote", r.RemoteAddr, "err", err)
			http.Error(w, "ES2+: "+err.Error(), http.StatusForbidden)
			return
		}
		var resp any
		switch m := req.(type) {
		case *rsp.DownloadOrderRequest:
			resp, st = h.es2.DownloadOrder(ctx, op, m)
		case *rsp.ConfirmOrderRequest:
			resp, st = h.es2.ConfirmOrder(ctx, op, m)
		case *rsp.CancelOrderRequest:
			_, st = h.es2.CancelOrder(ctx, op, m)
		case *rsp.ReleaseProfileRequest:
			_, st = h.es2.ReleaseProfile(ctx, op, m)
		}
		if !st.IsZero() {
			h.writeStatus(w, st)
			return
		}
		out, err := rsp.EncodeES2Response(f, resp)
		if err != nil {
			h.es2.log.ErrorContext(ctx, "smdp: encoding the ES2+ answer", "function", string(f), "err", err)
			st = fail(rsp.SubjectSMDP, rsp.ReasonExecutionError, "internal error")
			h.writeStatus(w, st)
			return
		}
		writeBody(w, false, out)
	})
}

func (h *es2Handler) writeStatus(w http.ResponseWriter, st rsp.Status) {
	out, err := rsp.EncodeJSONStatus(st)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	writeBody(w, false, out)
}

var errNotAuthorized = errors.New("the client certificate does not belong to the operator named by functionRequesterIdentifier")

// authorize checks that the operator named exists and that the client
// certificate chains (through the intermediates the client sent) to one of
// its trust anchors, valid now, for client authentication.
func (h *es2Handler) authorize(ctx context.Context, id string, peer []*x509.Certificate) error {
	if id == "" {
		return errNotAuthorized
	}
	t, err := h.trustOf(ctx, id)
	if err != nil {
		return err
	}
	now := h.o.Now()
	key := sha256.Sum256(peer[0].Raw)
	if until, found := t.verified.Load(key); found && now.Before(until.(time.Time)) && !now.Before(peer[0].NotBefore) {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	chains, err := peer[0].Verify(x509.VerifyOptions{Roots: t.pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return errNotAuthorized
	}
	until := peer[0].NotAfter
	for _, c := range chains[0] {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	t.verified.Store(key, until)
	return nil
}

// trustOf returns the operator's trust anchors: the cached ones within
// OperatorTTL of their reading, else read from the store (a removed
// operator is forgotten; changed anchors replace the cached ones and their
// verified chains).
func (h *es2Handler) trustOf(ctx context.Context, id string) (*trust, error) {
	v, cached := h.pools.Load(id)
	now := h.o.Now()
	if cached && h.o.OperatorTTL > 0 && now.Sub(time.Unix(0, v.(*trust).read.Load())) < h.o.OperatorTTL {
		return v.(*trust), nil
	}
	op, err := h.o.Operators.GetOperator(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		h.pools.Delete(id)
		return nil, errNotAuthorized
	}
	if err != nil {
		return nil, err
	}
	if cached && v.(*trust).pem == op.TrustPEM {
		v.(*trust).read.Store(now.UnixNano())
		return v.(*trust), nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(op.TrustPEM)) {
		return nil, errors.New("the operator's trust anchors hold no certificate")
	}
	t := &trust{pem: op.TrustPEM, pool: pool}
	t.read.Store(now.UnixNano())
	h.pools.Store(id, t)
	return t, nil
}
