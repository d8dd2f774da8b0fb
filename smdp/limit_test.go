package smdp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/rsp"
)

// The bucket refills at the rate, never beyond the burst, per address.
func TestClientLimiterBuckets(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewClientLimiter(2, 3) // 2/s, 3 at once
	l.now = func() time.Time { return now }
	steps := []struct {
		advance time.Duration
		client  string
		want    bool
	}{
		{0, "a", true}, {0, "a", true}, {0, "a", true}, // the burst
		{0, "a", false},
		{0, "b", true}, // another address has its own bucket
		{500 * time.Millisecond, "a", true},
		{0, "a", false},
		{time.Hour, "a", true}, {0, "a", true}, {0, "a", true}, // refilled to the burst, not beyond
		{0, "a", false},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, after := l.allow(s.client)
		if ok != s.want {
			t.Fatalf("step %d (%s): allowed %v, want %v", i, s.client, ok, s.want)
		}
		if !ok && (after <= 0 || after > 500*time.Millisecond) {
			t.Fatalf("step %d: retry after %v, want within one token's time (500ms)", i, after)
		}
	}
	// Buckets full again are forgotten by the next sweep.
	now = now.Add(2 * time.Minute)
	l.allow("c")
	if n := l.Clients(); n != 1 {
		t.Fatalf("%d buckets after the sweep, want 1 (c)", n)
	}
	if NewClientLimiter(0, 5) != nil {
		t.Fatal("rate 0 must mean no limiter")
	}
}

// A refused call gets the answer clients of each function understand, and
// is observed with its status; an admitted one runs as usual.
func TestHTTPRateLimited(t *testing.T) {
	e := newEnv(t)
	admit := true
	var observed []string
	h := e.srv.Handler(HTTPOptions{
		Limit: func(*http.Request) (bool, time.Duration) { return admit, 1500 * time.Millisecond },
		Observe: func(fn, binding, status string, _ time.Duration) {
			observed = append(observed, fn+" "+binding+" "+status)
		},
	})
	ia := wireJSON(t, newTestEUICC(t, esim.CurveP256).initiate())
	for _, tc := range []struct {
		name, path, ct, body string
		admit                bool
		code                 int
		want                 string // JSON status; "" with 200: success
		observed             string
	}{
		{"admitted", "/gsma/rsp2/es9plus/initiateAuthentication", "application/json", ia, true, 200, "", "initiateAuthentication json ok"},
		{"refused JSON", "/gsma/rsp2/es9plus/initiateAuthentication", "application/json", ia, false, 200, "8.8/3.7", "initiateAuthentication json 8.8/3.7"},
		{"refused notification", "/gsma/rsp2/es9plus/handleNotification", "application/json", `{"pendingNotification":"AAAA"}`, false, 429, "", "handleNotification json 8.8/3.7"},
		{"refused ASN.1", rsp.ASN1Path, rsp.ASN1ContentType, "\xA2\x05\xBF\x41\x02\x80\x01", false, 200, "", "cancelSession asn1 8.8/3.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admit, observed = tc.admit, nil
			r := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ct)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if len(observed) != 1 || observed[0] != tc.observed {
				t.Errorf("observed %q, want [%s]", observed, tc.observed)
			}
			if !tc.admit && w.Header().Get("Retry-After") != "2" {
				t.Errorf("Retry-After %q, want 2 (seconds, rounded up)", w.Header().Get("Retry-After"))
			}
			switch {
			case tc.path == rsp.ASN1Path:
				// The ASN.1 binding has no code for "unavailable": the
				// answer is the function's error alternative.
				_, st, err := rsp.DecodeASN1Response(rsp.CancelSession, w.Body.Bytes())
				if err != nil || st.IsZero() {
					t.Fatalf("ASN.1 answer %v, %v, want the function's error alternative", st, err)
				}
			case tc.code == 200:
				var out struct {
					Header struct {
						FunctionExecutionStatus struct {
							Status         string
							StatusCodeData *struct{ SubjectCode, ReasonCode string }
						}
					}
				}
				if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
					t.Fatal(err)
				}
				fes := out.Header.FunctionExecutionStatus
				got := ""
				if fes.StatusCodeData != nil {
					got = fes.StatusCodeData.SubjectCode + "/" + fes.StatusCodeData.ReasonCode
				}
				if got != tc.want {
					t.Fatalf("status %q, want %q: %s", got, tc.want, w.Body)
				}
			}
		})
	}
}
