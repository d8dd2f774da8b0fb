package smdp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// errorLog records the messages logged at Error level: the ES2+ handler
// logs there what it answers as an internal error (a recovered panic, a
// store failure without an SGP.22 code), which malformed input must never
// cause.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	l.msgs = append(l.msgs, msg)
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

func (l *errorLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msgs
	l.msgs = nil
	return m
}

// FuzzES2HTTP feeds arbitrary bodies, content types and admin-protocol
// headers to every ES2+ function through the whole HTTP handler, as a
// registered operator: the answer is always HTTP 200 with a
// functionExecutionStatus the strict ES2+ decoder reads (Failed with a
// code for anything malformed or oversized), or 403 when the body names
// another requester; never a 500, a panic (ES2HTTPOptions.OnPanic: the
// client sees a recovered one as a plain Failed status) or an internal
// error.
func FuzzES2HTTP(f *testing.F) {
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(f.TempDir(), "perso.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1"}); err != nil {
		f.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, "b1", storetest.Profiles("t1", 0, 4, 8)); err != nil {
		f.Fatal(err)
	}
	ca := newTestCA(f, "Fuzz Operator CA")
	if _, err := s.AddOperator(ctx, store.Operator{ID: "op-a", TrustPEM: ca.pem()}); err != nil {
		f.Fatal(err)
	}
	logs := &errorLog{}
	e, err := NewES2(ES2Config{Address: smdpAddr, Desk: s, Log: slog.New(logs)})
	if err != nil {
		f.Fatal(err)
	}
	const maxBody = 4 << 10
	var (
		mu     sync.Mutex
		panics []string
	)
	h := NewES2Handler(e, ES2HTTPOptions{Operators: s, MaxBody: maxBody, OnPanic: func(fn string, v any) {
		mu.Lock()
		defer mu.Unlock()
		panics = append(panics, fmt.Sprintf("%s: %v", fn, v))
	}})
	peer := ca.issue(f, "bss").Leaf
	fns := []rsp.ES2Function{rsp.ES2DownloadOrder, rsp.ES2ConfirmOrder, rsp.ES2CancelOrder, rsp.ES2ReleaseProfile}

	hdr := `"header":{"functionRequesterIdentifier":"op-a","functionCallIdentifier":"c1"}`
	iccid := storetest.ICCID(1)
	for _, seed := range []struct {
		fn   uint8
		body string
	}{
		{0, `{` + hdr + `,"iccid":"` + iccid + `"}`},
		{0, `{` + hdr + `,"profileType":"t1","eid":"89049032123451234512345678901235"}`},
		{0, `{` + hdr + `,"iccid":"` + iccid[:19] + `F"}`},
		{1, `{` + hdr + `,"iccid":"` + iccid + `","releaseFlag":true,"confirmationCode":"1234","matchingId":"M-1"}`},
		{1, `{` + hdr + `,"iccid":"` + iccid + `","releaseFlag":false,"smdsAddress":"smds.example","matchingId":""}`},
		{2, `{` + hdr + `,"iccid":"` + iccid + `","finalProfileStatusIndicator":"Available","matchingId":"M-1"}`},
		{2, `{` + hdr + `,"iccid":"` + iccid + `","finalProfileStatusIndicator":"Gone"}`},
		{3, `{` + hdr + `,"iccid":"` + iccid + `"}`},
		{3, `{` + hdr + `,"iccid":12}`},
		{0, `{"header":{}}`},
		{1, `[]`},
		{2, `{` + hdr + `,"iccid":"` + iccid + `","extra":{"a":[1,2,{"b":null}]}}`},
		{0, `{` + hdr + `,"iccid":"` + strings.Repeat("9", maxBody) + `"}`},
	} {
		f.Add(seed.fn, []byte(seed.body), "application/json;charset=UTF-8", "gsma/rsp/v2.5.0")
	}
	f.Add(uint8(0), []byte(`{}`), "text/plain", "")
	f.Add(uint8(1), []byte(`{}`), "application/json", "http/1.1")

	f.Fuzz(func(t *testing.T, which uint8, body []byte, contentType, adminProtocol string) {
		fn := fns[int(which)%len(fns)]
		r := httptest.NewRequest(http.MethodPost, fn.Path(), bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if adminProtocol != "" {
			r.Header.Set("X-Admin-Protocol", adminProtocol)
		}
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{peer}}
		w := httptest.NewRecorder()
		mu.Lock()
		panics = nil
		mu.Unlock()
		h.ServeHTTP(w, r)
		mu.Lock()
		p := panics
		mu.Unlock()
		if len(p) > 0 {
			t.Fatalf("%s %q: handler panic recovered: %q", fn, body, p)
		}
		if m := logs.take(); len(m) > 0 {
			t.Fatalf("%s %q: internal error: %q", fn, body, m)
		}
		switch w.Code {
		case http.StatusOK:
		case http.StatusForbidden: // a header naming another requester
			return
		default:
			t.Fatalf("%s %q: HTTP %d: %s", fn, body, w.Code, w.Body)
		}
		_, st, err := rsp.DecodeES2Response(fn, w.Body.Bytes())
		if err != nil {
			t.Fatalf("%s %q: answer %s does not decode: %v", fn, body, w.Body, err)
		}
		if len(body) > maxBody && (st.IsZero() || st.Reason != rsp.ReasonInvalidFormat) {
			t.Fatalf("%s: oversized body answered %q, want a Failed x/2.1", fn, st.Code())
		}
	})
}
