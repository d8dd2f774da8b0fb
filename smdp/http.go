package smdp

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/perso-esim/perso/rsp"
)

// AdminProtocol is the X-Admin-Protocol the server answers with.
const AdminProtocol = "gsma/rsp/v2.5.0"

// DefaultMaxBody bounds a request body. The largest ES9+ request
// (AuthenticateClient: two certificates, euiccInfo2, base64 in JSON) is a
// few KB; 64 KiB leaves room for v3 additions.
const DefaultMaxBody = 64 << 10

// HTTPOptions configure the ES9+ HTTP handler.
type HTTPOptions struct {
	MaxBody     int64         // default DefaultMaxBody
	CallTimeout time.Duration // per call; default 30 s
	// Limit, when set, admits or refuses each call once its body is read
	// (NewClientLimiter(…).Allow). A refused call is answered as SGP.22
	// clients expect a busy server: HTTP 200 with the function's Failed
	// status 8.8/3.7 (SM-DP+ unavailable) and a Retry-After header; a
	// refused handleNotification, which has no error body, gets HTTP 429 so
	// that the LPA keeps the notification and sends it again.
	Limit func(*http.Request) (ok bool, retryAfter time.Duration)
	// Observe, when set, is told of every call once answered: its function
	// ("" when unknown), binding ("json", "asn1"), SGP.22 status ("ok" or
	// subject/reason) and duration (metrics).
	Observe func(function, binding, status string, d time.Duration)
	// OnPanic, when set, is told of every panic the handler recovers
	// (answered as 8.8/4.2 "internal error", which a store failure also
	// gives): the fuzz targets fail on it; clients see the same answer.
	OnPanic func(function string, v any)
}

// Handler returns the ES9+ HTTP handler: the JSON binding on
// /gsma/rsp2/es9plus/{function} and the ASN.1 binding on /gsma/rsp2/asn1.
// Every function answer is HTTP 200 with an SGP.22 status (HandleNotification
// 204); a panic in a handler is recovered into a Failed status, never a 500.
func (s *Server) Handler(o HTTPOptions) http.Handler {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	mux := http.NewServeMux()
	for _, f := range []rsp.Function{rsp.InitiateAuthentication, rsp.AuthenticateClient, rsp.GetBoundProfilePackage,
		rsp.HandleNotificationFunction, rsp.CancelSession} {
		mux.Handle("POST "+f.Path(), s.wrap(o, f, false))
	}
	mux.Handle("POST "+rsp.ASN1Path, s.wrap(o, 0, true))
	return warmHandler{next: mux, pool: newWarmPool(maxWarm)}
}

func (s *Server) wrap(o HTTPOptions, f rsp.Function, asn1 bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.CallTimeout)
		defer cancel()
		start := time.Now()
		fn := f
		var st rsp.Status
		defer func() {
			if v := recover(); v != nil {
				s.log.ErrorContext(ctx, "smdp: handler panic", "function", fn.String(), "panic", v)
				if o.OnPanic != nil {
					o.OnPanic(fn.String(), v)
				}
				st = rsp.Status{Subject: rsp.SubjectSMDP, Reason: rsp.ReasonExecutionError, Message: "internal error"}
				s.writeStatus(w, fn, asn1, st)
			}
			code := "ok"
			if !st.IsZero() {
				code = st.Code()
			}
			binding := "json"
			if asn1 {
				binding = "asn1"
			}
			// No request content is logged: matching IDs are bearer tokens.
			s.log.InfoContext(ctx, "es9+", "function", fn.String(), "binding", binding,
				"status", code, "ms", time.Since(start).Milliseconds(), "remote", r.RemoteAddr)
			if o.Observe != nil {
				name := ""
				if fn != 0 {
					name = fn.String()
				}
				o.Observe(name, binding, code, time.Since(start))
			}
		}()
		body, hst := readRequest(w, r, o.MaxBody, asn1)
		if hst.IsZero() && o.Limit != nil {
			if ok, after := o.Limit(r); !ok {
				if asn1 {
					fn = asn1Function(body)
				}
				st = rsp.Status{Subject: rsp.SubjectSMDP, Reason: rsp.ReasonUnavailable, Message: "too many calls from this address; retry later"}
				w.Header().Set("Retry-After", strconv.Itoa(int(after/time.Second)+1))
				if fn == rsp.HandleNotificationFunction || fn == 0 {
					w.Header().Set("X-Admin-Protocol", AdminProtocol)
					http.Error(w, st.Error(), http.StatusTooManyRequests)
					return
				}
				s.writeStatus(w, fn, asn1, st)
				return
			}
		}
		var req rsp.Request
		if hst.IsZero() {
			var err error
			if asn1 {
				req, err = rsp.DecodeASN1Request(body)
			} else {
				req, _, err = rsp.DecodeJSONRequest(f, body)
			}
			if err != nil {
				hst = decodeStatus(err)
				if asn1 {
					fn = asn1Function(body) // so that the answer is the function's error alternative
				}
			} else {
				fn = req.Function()
			}
		}
		if !hst.IsZero() {
			st = hst
			s.writeStatus(w, fn, asn1, st)
			return
		}
		resp, err := s.Execute(ctx, req)
		if err != nil {
			if !errors.As(err, &st) {
				st = rsp.Status{Subject: rsp.SubjectSMDP, Reason: rsp.ReasonExecutionError, Message: "internal error"}
			}
		}
		if fn == rsp.HandleNotificationFunction {
			w.WriteHeader(http.StatusNoContent) // always, whatever was verified (§3.5)
			return
		}
		if !st.IsZero() {
			s.writeStatus(w, fn, asn1, st)
			return
		}
		var out []byte
		if asn1 {
			out, err = rsp.EncodeASN1Response(fn, resp, rsp.Status{})
		} else {
			out, err = rsp.EncodeJSONResponse(resp)
		}
		if err != nil {
			s.log.ErrorContext(ctx, "smdp: encoding the answer", "function", fn.String(), "err", err)
			st = rsp.Status{Subject: rsp.SubjectSMDP, Reason: rsp.ReasonExecutionError, Message: "internal error"}
			s.writeStatus(w, fn, asn1, st)
			return
		}
		writeBody(w, asn1, out)
	})
}

// Execute runs the ES9+ function of req. HandleNotification has no
// response.
func (s *Server) Execute(ctx context.Context, req rsp.Request) (rsp.Response, error) {
	switch m := req.(type) {
	case *rsp.InitiateAuthenticationRequest:
		return nilIfErr(s.InitiateAuthentication(ctx, m))
	case *rsp.AuthenticateClientRequest:
		return nilIfErr(s.AuthenticateClient(ctx, m))
	case *rsp.GetBoundProfilePackageRequest:
		return nilIfErr(s.GetBoundProfilePackage(ctx, m))
	case *rsp.HandleNotification:
		return nil, s.HandleNotification(ctx, m)
	case *rsp.CancelSessionRequestEs9:
		return nilIfErr(s.CancelSession(ctx, m))
	}
	return nil, status(subjectFunction, rsp.ReasonUnknownUnsupported, "unknown function")
}

// nilIfErr keeps a typed nil pointer out of the Response interface.
func nilIfErr[T rsp.Response](r T, err error) (rsp.Response, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

// readRequest checks the transport headers and reads the body within the
// limit (es2-es10-codes.md §1, §4.5).
func readRequest(w http.ResponseWriter, r *http.Request, limit int64, asn1 bool) ([]byte, rsp.Status) {
	want := "application/json"
	if asn1 {
		want = rsp.ASN1ContentType
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mt, want) {
		return nil, rsp.Status{Subject: subjectFunction, Reason: rsp.ReasonInvalidFormat, Message: "Content-Type must be " + want}
	}
	if ap := r.Header.Get("X-Admin-Protocol"); ap != "" && !strings.HasPrefix(ap, "gsma/rsp/v") {
		return nil, rsp.Status{Subject: subjectAdminHeader, Reason: rsp.ReasonInvalidFormat, Message: "X-Admin-Protocol must start with gsma/rsp/v"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, rsp.Status{Subject: subjectFunction, Reason: rsp.ReasonInvalidFormat, Message: "request body too large"}
		}
		return nil, rsp.Status{Subject: subjectFunction, Reason: rsp.ReasonInvalidFormat, Message: "request body unreadable"}
	}
	return body, rsp.Status{}
}

// asn1Function names the function a RemoteProfileProvisioningRequest body
// selects (A2 { BFxx … }), reading only the headers, so that a malformed
// message still gets its function's error answer; 0 when none.
func asn1Function(body []byte) rsp.Function {
	if len(body) < 4 || body[0] != 0xA2 {
		return 0
	}
	off := 2
	if body[1]&0x80 != 0 {
		off += int(body[1] & 0x7F)
	}
	if off+1 >= len(body) || body[off] != 0xBF {
		return 0
	}
	switch body[off+1] {
	case 0x39:
		return rsp.InitiateAuthentication
	case 0x3B:
		return rsp.AuthenticateClient
	case 0x3A:
		return rsp.GetBoundProfilePackage
	case 0x3D:
		return rsp.HandleNotificationFunction
	case 0x41:
		return rsp.CancelSession
	}
	return 0
}

// decodeStatus maps a request decoding failure: a missing member is
// "mandatory element missing" (2.2), anything else "invalid format" (2.1).
func decodeStatus(err error) rsp.Status {
	if errors.Is(err, rsp.ErrMissingField) {
		return rsp.Status{Subject: subjectFunction, Reason: rsp.ReasonMissing, Message: "mandatory element missing: " + err.Error()}
	}
	return rsp.Status{Subject: subjectFunction, Reason: rsp.ReasonInvalidFormat, Message: "malformed request: " + err.Error()}
}

func (s *Server) writeStatus(w http.ResponseWriter, f rsp.Function, asn1 bool, st rsp.Status) {
	if f == rsp.HandleNotificationFunction {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var out []byte
	var err error
	if asn1 {
		if f == 0 {
			// The request did not say which function it was: no error
			// alternative exists, so the answer is an HTTP error.
			w.Header().Set("X-Admin-Protocol", AdminProtocol)
			http.Error(w, st.Error(), http.StatusBadRequest)
			return
		}
		out, err = rsp.EncodeASN1Response(f, nil, st)
	} else {
		out, err = rsp.EncodeJSONStatus(st)
	}
	if err != nil {
		s.log.Error("smdp: encoding a status", "err", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	writeBody(w, asn1, out)
}

func writeBody(w http.ResponseWriter, asn1 bool, out []byte) {
	ct := rsp.JSONContentType
	if asn1 {
		ct = rsp.ASN1ContentType
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Admin-Protocol", AdminProtocol)
	// With the length known, HTTP/2 ends the stream on the last DATA
	// frame instead of sending an empty one after the handler returns.
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}
