package euiccsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/rsp"
)

// Binding selects the ES9+ HTTP binding.
type Binding int

const (
	// BindingJSON is SGP.22's JSON binding (POST /gsma/rsp2/es9plus/<function>).
	BindingJSON Binding = iota
	// BindingASN1 is the ASN.1 binding (POST /gsma/rsp2/asn1).
	BindingASN1
)

func (b Binding) String() string {
	if b == BindingASN1 {
		return "asn1"
	}
	return "json"
}

// ParseBinding accepts "json" and "asn1".
func ParseBinding(s string) (Binding, error) {
	switch strings.ToLower(s) {
	case "json", "":
		return BindingJSON, nil
	case "asn1", "asn.1":
		return BindingASN1, nil
	}
	return 0, fmt.Errorf("euiccsim: binding %q: want json or asn1", s)
}

// LPAConfig configures an LPA.
type LPAConfig struct {
	Binding Binding
	// RootCAs verifies the SM-DP+'s TLS certificate (e.g. the SGP.26 DPtls
	// certificate itself, or the CI that issued it); nil means the system
	// roots.
	RootCAs *x509.CertPool
	// Resolve maps an SM-DP+ host name to the address to dial instead
	// ("127.0.0.1", or "127.0.0.1:8443" to change the port too). TLS still
	// checks the certificate against the host name.
	Resolve map[string]string
	// ConfirmationCode is sent (hashed) when the SM-DP+ requires one.
	ConfirmationCode string
	// HTTPClient, if set, replaces the client built from RootCAs and Resolve.
	HTTPClient *http.Client
	// Logger receives one line per ES9+ call (never matching IDs or codes).
	Logger *slog.Logger
}

// LPA is the Local Profile Assistant side of a download: an ES9+ client
// that drives an EUICC through ES10b.
type LPA struct {
	euicc   *EUICC
	binding Binding
	client  *http.Client
	cc      string
	log     *slog.Logger
	// DeviceInfo goes into ctxParams1 (TAC 35290611, empty capabilities,
	// as lpac sends by default).
	DeviceInfo rsp.DeviceInfo
}

// NewLPA returns an LPA for e.
func NewLPA(e *EUICC, cfg LPAConfig) *LPA {
	l := &LPA{euicc: e, binding: cfg.Binding, client: cfg.HTTPClient, cc: cfg.ConfirmationCode, log: cfg.Logger,
		DeviceInfo: rsp.DeviceInfo{TAC: [4]byte{0x35, 0x29, 0x06, 0x11}, DeviceCapabilities: []byte{}}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.client == nil {
		l.client = NewHTTPClient(cfg.RootCAs, cfg.Resolve)
	}
	return l
}

// NewHTTPClient returns the HTTPS client an LPA uses: TLS 1.2 or later
// verified against roots (nil: system roots), with host names in resolve
// dialled at the given address instead.
func NewHTTPClient(roots *x509.CertPool, resolve map[string]string) *http.Client {
	return newHTTPClient(roots, resolve, true)
}

// NewHTTP1Client is NewHTTPClient speaking HTTP/1.1 (keep-alive), as
// pySim's client (python-requests) and libcurl builds without HTTP/2 do:
// one goroutine and no framing layer per connection on either side.
func NewHTTP1Client(roots *x509.CertPool, resolve map[string]string) *http.Client {
	return newHTTPClient(roots, resolve, false)
}

func newHTTPClient(roots *x509.CertPool, resolve map[string]string, h2 bool) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		// Full-size TLS records (see perso serve): fewer seals and writes.
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, DynamicRecordSizingDisabled: true},
		ForceAttemptHTTP2:   h2,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if to, ok := resolve[strings.ToLower(host)]; ok {
				if _, _, err := net.SplitHostPort(to); err == nil {
					addr = to
				} else {
					addr = net.JoinHostPort(strings.Trim(to, "[]"), port)
				}
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// LoadTLSRoots reads a certificate file (PEM, any number of certificates,
// or one DER certificate) into a pool for LPAConfig.RootCAs.
func LoadTLSRoots(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("euiccsim: TLS root: %w", err)
	}
	pool := x509.NewCertPool()
	if bytes.Contains(b, []byte("-----BEGIN")) {
		n := 0
		for {
			var blk *pem.Block
			if blk, b = pem.Decode(b); blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("euiccsim: TLS root %s: %w (Go's TLS cannot use brainpool certificates: give a NIST P-256 one)", path, err)
			}
			pool.AddCert(c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("euiccsim: TLS root %s holds no PEM CERTIFICATE", path)
		}
		return pool, nil
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("euiccsim: TLS root %s: %w (Go's TLS cannot use brainpool certificates: give a NIST P-256 one)", path, err)
	}
	pool.AddCert(c)
	return pool, nil
}

// DownloadError is a failed download: the step that failed (an ES9+
// function, an ES10b command, or an LPA check), the SGP.22 status when the
// SM-DP+ answered Failed, and the cause (an *ES10Error when the eUICC
// refused).
type DownloadError struct {
	Step   string
	Status rsp.Status // zero unless the SM-DP+ returned a status code
	Err    error
}

func (e *DownloadError) Error() string {
	var b strings.Builder
	b.WriteString("euiccsim: download failed at " + e.Step)
	if !e.Status.IsZero() {
		b.WriteString(": " + e.Status.Error())
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *DownloadError) Unwrap() error { return e.Err }

// ErrConfirmationCodeRequired is wrapped when the SM-DP+ requires a
// confirmation code and the LPA has none.
var ErrConfirmationCodeRequired = errors.New("the SM-DP+ requires a confirmation code: give one (--cc)")

// HashCC is SGP.22's confirmation-code hash as LPAs compute it:
// SHA-256(SHA-256(code) ‖ transactionId), the code taken as its ASCII
// characters (lpac, pySim; es2-es10-codes.md §4.2).
func HashCC(code string, tid rsp.TransactionID) []byte {
	h1 := sha256.Sum256([]byte(code))
	h2 := sha256.Sum256(append(h1[:], tid...))
	return h2[:]
}

// maxResponse bounds an ES9+ answer: a BPP plus base64 and JSON overhead.
const maxResponse = bpp.MaxBPPSize*4/3 + 64<<10

// Download runs a complete SGP.22 download for activationCode against its
// SM-DP+: initiateAuthentication, AuthenticateServer, authenticateClient,
// PrepareDownload, getBoundProfilePackage, LoadBoundProfilePackage and
// handleNotification with the PIR. It returns the installed profile's UPP
// (a copy). Failures are *DownloadError, carrying the SM-DP+'s rsp.Status
// when it answered one.
func (l *LPA) Download(ctx context.Context, activationCode string) ([]byte, error) {
	ac, err := activation.Parse(activationCode)
	if err != nil {
		return nil, &DownloadError{Step: "activation code", Err: err}
	}
	e := l.euicc
	fail := func(step string, err error) ([]byte, error) {
		var de *DownloadError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, &DownloadError{Step: step, Err: err}
	}

	// 1. initiateAuthentication.
	challenge, err := e.GetEUICCChallenge()
	if err != nil {
		return fail("GetEUICCChallenge", err)
	}
	r, err := l.call(ctx, ac.SMDPAddress, &rsp.InitiateAuthenticationRequest{
		EUICCChallenge: challenge, SMDPAddress: ac.SMDPAddress, EUICCInfo1: *e.GetEUICCInfo1()})
	if err != nil {
		return fail(rsp.InitiateAuthentication.String(), err)
	}
	ia := r.(*rsp.InitiateAuthenticationResponse)
	tid := ia.TransactionID
	if err := checkServerSigned1(ia, ac.SMDPAddress); err != nil {
		return fail("initiateAuthentication answer", err)
	}

	// 2. AuthenticateServer on the eUICC, authenticateClient at the SM-DP+.
	mid := ac.MatchingID
	asr, authErr := e.AuthenticateServer(&rsp.AuthenticateServerRequest{
		ServerSigned1: ia.ServerSigned1, ServerSignature1: ia.ServerSignature1,
		EUICCCIPKIDToBeUsed: ia.EUICCCIPKIDToBeUsed, ServerCertificate: ia.ServerCertificate,
		CtxParams1: rsp.CtxParams1{Common: &rsp.CtxParamsForCommonAuthentication{MatchingID: &mid, DeviceInfo: l.DeviceInfo}},
	})
	if asr == nil {
		return fail("AuthenticateServer", authErr)
	}
	// An eUICC refusal is forwarded: the SM-DP+ ends its session with it.
	r, err = l.call(ctx, ac.SMDPAddress, &rsp.AuthenticateClientRequest{TransactionID: tid, AuthenticateServerResponse: *asr})
	if authErr != nil {
		return fail("AuthenticateServer", authErr)
	}
	if err != nil {
		return fail(rsp.AuthenticateClient.String(), err)
	}
	ac2 := r.(*rsp.AuthenticateClientResponse)
	if !ac2.TransactionID.Equal(tid) {
		return fail("authenticateClient answer", fmt.Errorf("transactionId %v is not the session's %v", ac2.TransactionID, tid))
	}
	var hashCc []byte
	if ac2.SmdpSigned2.CCRequired {
		if l.cc == "" {
			l.cancel(ctx, ac.SMDPAddress, tid, rsp.CancelEndUserRejection)
			return fail("confirmation code", ErrConfirmationCodeRequired)
		}
		hashCc = HashCC(l.cc, tid)
	}

	// 3. PrepareDownload on the eUICC, getBoundProfilePackage at the SM-DP+.
	pdr, prepErr := e.PrepareDownload(&rsp.PrepareDownloadRequest{
		SmdpSigned2: ac2.SmdpSigned2, SmdpSignature2: ac2.SmdpSignature2, HashCc: hashCc, SmdpCertificate: ac2.SmdpCertificate})
	if pdr == nil {
		return fail("PrepareDownload", prepErr)
	}
	r, err = l.call(ctx, ac.SMDPAddress, &rsp.GetBoundProfilePackageRequest{TransactionID: tid, PrepareDownloadResponse: *pdr})
	if prepErr != nil {
		return fail("PrepareDownload", prepErr)
	}
	if err != nil {
		return fail(rsp.GetBoundProfilePackage.String(), err)
	}
	gb := r.(*rsp.GetBoundProfilePackageResponse)
	if !gb.TransactionID.Equal(tid) {
		return fail("getBoundProfilePackage answer", fmt.Errorf("transactionId %v is not the session's %v", gb.TransactionID, tid))
	}

	// 4. Install, then report the signed PIR.
	pir, loadErr := e.LoadBoundProfilePackage(gb.BoundProfilePackage)
	if pir == nil {
		return fail("LoadBoundProfilePackage", loadErr)
	}
	if err := l.notify(ctx, ac.SMDPAddress, pir); err != nil {
		if loadErr != nil {
			return fail("LoadBoundProfilePackage", errors.Join(loadErr, err))
		}
		return fail(rsp.HandleNotificationFunction.String(), err)
	}
	if loadErr != nil {
		return fail("LoadBoundProfilePackage", loadErr)
	}
	parsed, err := rsp.ParseProfileInstallationResult(pir)
	if err != nil {
		return fail("LoadBoundProfilePackage", err)
	}
	iccid, err := esim.ICCIDFromSwappedBCD(parsed.Data.NotificationMetadata.ICCID)
	if err != nil {
		return fail("LoadBoundProfilePackage", fmt.Errorf("PIR ICCID: %w", err))
	}
	p, ok := e.Profile(iccid)
	if !ok {
		return fail("LoadBoundProfilePackage", fmt.Errorf("profile %s not on the eUICC after a successful PIR", iccid))
	}
	l.log.InfoContext(ctx, "profile installed", "iccid", iccid.String(), "smdp", ac.SMDPAddress, "upp_bytes", len(p.UPP))
	return bytes.Clone(p.UPP), nil
}

// checkServerSigned1 is the LPA's check of InitiateAuthentication's answer
// before the eUICC sees it: the signed transactionId is the one the SM-DP+
// announced, and the signed address is the SM-DP+ the LPA called
// (case-insensitively, as DNS names compare).
func checkServerSigned1(ia *rsp.InitiateAuthenticationResponse, address string) error {
	if !ia.ServerSigned1.TransactionID.Equal(ia.TransactionID) {
		return fmt.Errorf("serverSigned1.transactionId %v differs from the answer's %v", ia.ServerSigned1.TransactionID, ia.TransactionID)
	}
	if !strings.EqualFold(ia.ServerSigned1.ServerAddress, address) {
		return fmt.Errorf("serverSigned1.serverAddress %q is not the SM-DP+ address %q of the activation code", ia.ServerSigned1.ServerAddress, address)
	}
	return nil
}

// notify sends a pending notification and removes it from the eUICC once
// the SM-DP+ accepted it.
func (l *LPA) notify(ctx context.Context, address string, der []byte) error {
	pn, err := rsp.ParsePendingNotification(der)
	if err != nil {
		return err
	}
	if _, err := l.call(ctx, address, &rsp.HandleNotification{PendingNotification: *pn}); err != nil {
		return err
	}
	var seq int64
	if pn.PIR != nil {
		seq = pn.PIR.Data.NotificationMetadata.SeqNumber
	} else {
		seq = pn.Other.TBSOtherNotification.SeqNumber
	}
	l.euicc.RemoveNotificationFromList(seq)
	return nil
}

// SendNotifications delivers every pending notification addressed to
// address (PIRs of failed deliveries, enable/disable/delete
// notifications) and returns how many were accepted.
func (l *LPA) SendNotifications(ctx context.Context, address string) (int, error) {
	n := 0
	for _, der := range l.euicc.RetrieveNotificationsList() {
		pn, err := rsp.ParsePendingNotification(der)
		if err != nil {
			return n, err
		}
		var to string
		if pn.PIR != nil {
			to = pn.PIR.Data.NotificationMetadata.NotificationAddress
		} else {
			to = pn.Other.TBSOtherNotification.NotificationAddress
		}
		if !strings.EqualFold(to, address) {
			continue
		}
		if err := l.notify(ctx, address, der); err != nil {
			return n, &DownloadError{Step: rsp.HandleNotificationFunction.String(), Err: err}
		}
		n++
	}
	return n, nil
}

// cancel ends the session on the eUICC and at the SM-DP+ (best effort: the
// download has failed already, and the caller reports why).
func (l *LPA) cancel(ctx context.Context, address string, tid rsp.TransactionID, reason rsp.CancelSessionReason) {
	csr, err := l.euicc.CancelSession(&rsp.CancelSessionRequest{TransactionID: tid, Reason: reason})
	if err != nil || csr == nil || csr.Ok == nil {
		l.log.WarnContext(ctx, "eUICC refused CancelSession", "err", err)
		return
	}
	if _, err := l.call(ctx, address, &rsp.CancelSessionRequestEs9{TransactionID: tid, CancelSessionResponse: *csr}); err != nil {
		l.log.WarnContext(ctx, "cancelSession failed", "err", err)
	}
}

// call performs one ES9+ function over the configured binding. A Failed
// answer is a *DownloadError carrying its status.
func (l *LPA) call(ctx context.Context, address string, req rsp.Request) (rsp.Response, error) {
	f := req.Function()
	var (
		body []byte
		err  error
		url  = "https://" + address
		ct   string
	)
	switch l.binding {
	case BindingASN1:
		body, err = rsp.EncodeASN1Request(req)
		url += rsp.ASN1Path
		ct = rsp.ASN1ContentType
	default:
		body, err = rsp.EncodeJSONRequest(req, nil)
		url += f.Path()
		ct = "application/json"
	}
	if err != nil {
		return nil, fmt.Errorf("encoding %v: %w", f, err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", ct)
	hreq.Header.Set("Accept", ct)
	hreq.Header.Set("X-Admin-Protocol", "gsma/rsp/v2.5.0")
	hreq.Header.Set("User-Agent", "gsma-rsp-lpad")
	start := time.Now()
	resp, err := l.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	l.log.DebugContext(ctx, "ES9+ call", "function", f.String(), "binding", l.binding.String(),
		"http_status", resp.StatusCode, "bytes", len(data), "duration", time.Since(start))
	if len(data) > maxResponse {
		return nil, fmt.Errorf("answer larger than %d bytes", maxResponse)
	}
	if f == rsp.HandleNotificationFunction {
		// 204 is the answer; strict clients also accept 200 with a
		// header-only success body.
		switch {
		case resp.StatusCode == http.StatusNoContent:
			return nil, nil
		case resp.StatusCode == http.StatusOK && len(data) == 0:
			return nil, nil
		case resp.StatusCode == http.StatusOK && l.binding == BindingJSON:
			_, st, err := rsp.DecodeJSONResponse(rsp.InitiateAuthentication, data)
			if err == nil && !st.IsZero() {
				return nil, &DownloadError{Step: f.String(), Status: st}
			}
			return nil, nil
		}
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s, want 200", resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || !strings.EqualFold(mt, strings.Split(ct, ";")[0]) {
		return nil, fmt.Errorf("answer Content-Type %q, want %s", resp.Header.Get("Content-Type"), ct)
	}
	var (
		out rsp.Response
		st  rsp.Status
	)
	if l.binding == BindingASN1 {
		out, st, err = rsp.DecodeASN1Response(f, data)
	} else {
		out, st, err = rsp.DecodeJSONResponse(f, data)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding the answer: %w", err)
	}
	if !st.IsZero() {
		return nil, &DownloadError{Step: f.String(), Status: st}
	}
	if out == nil && f != rsp.CancelSession {
		return nil, errors.New("empty answer")
	}
	return out, nil
}
