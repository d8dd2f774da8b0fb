package smdp

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/rsp"
)

// FuzzHTTP feeds arbitrary bodies to every ES9+ endpoint: every answer is
// 200 with a status body the strict decoder of its binding reads, 204
// (notifications) or 400 (an ASN.1 body naming no function); and no call
// ends in a recovered panic (HTTPOptions.OnPanic) or in an internal error
// (8.8/4.2, which the store in this test never causes), although clients
// see both only as a Failed status.
func FuzzHTTP(f *testing.F) {
	e := newEnv(f)
	var (
		mu     sync.Mutex
		panics []string
		status string
	)
	h := e.srv.Handler(HTTPOptions{
		OnPanic: func(fn string, v any) {
			mu.Lock()
			defer mu.Unlock()
			panics = append(panics, fmt.Sprintf("%s: %v", fn, v))
		},
		Observe: func(_, _, st string, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			status = st
		},
	})
	eu := newTestEUICC(f, esim.CurveP256)
	f.Add(uint8(0), []byte(wireJSON(f, eu.initiate())))
	if b, err := rsp.EncodeASN1Request(eu.initiate()); err == nil {
		f.Add(uint8(5), b)
	}
	f.Add(uint8(1), []byte(`{"transactionId":"00","authenticateServerResponse":"vzgA"}`))
	f.Add(uint8(2), []byte(`{"transactionId":"00","prepareDownloadResponse":"vyEA"}`))
	f.Add(uint8(3), []byte(`{"pendingNotification":"vzcA"}`))
	f.Add(uint8(4), []byte(`{"transactionId":"00","cancelSessionResponse":"v0EA"}`))
	fns := []rsp.Function{rsp.InitiateAuthentication, rsp.AuthenticateClient, rsp.GetBoundProfilePackage,
		rsp.HandleNotificationFunction, rsp.CancelSession, 0}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		fn := fns[int(which)%len(fns)]
		path := rsp.ASN1Path
		if fn != 0 {
			path = fn.Path()
		}
		mu.Lock()
		panics, status = nil, ""
		mu.Unlock()
		r := httptest.NewRequest("POST", path, bytes.NewReader(body))
		r.Header.Set("Content-Type", map[bool]string{true: rsp.ASN1ContentType, false: "application/json"}[fn == 0])
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		mu.Lock()
		p, st := panics, status
		mu.Unlock()
		if len(p) > 0 {
			t.Fatalf("%s %q: handler panic recovered: %q", path, body, p)
		}
		if st == "8.8/4.2" {
			t.Fatalf("%s %q: internal error answered: %s", path, body, w.Body)
		}
		switch {
		case w.Code == 204 && fn == rsp.HandleNotificationFunction:
			return
		case w.Code == 400 && fn == 0:
			return
		case w.Code == 200:
		default:
			t.Fatalf("%s: HTTP %d: %s", path, w.Code, w.Body)
		}
		if fn != 0 {
			if _, _, err := rsp.DecodeJSONResponse(fn, w.Body.Bytes()); err != nil {
				t.Fatalf("%s %q: answer %s does not decode: %v", path, body, w.Body, err)
			}
			return
		}
		for _, f := range fns[:len(fns)-1] {
			if _, _, err := rsp.DecodeASN1Response(f, w.Body.Bytes()); err == nil {
				return
			}
		}
		t.Fatalf("%s %q: answer % X is no function's ASN.1 response", path, body, w.Body.Bytes())
	})
}
