package smdp

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// es9Client is the LPA's HTTP side: JSON or ASN.1 binding, strict decoding.
type es9Client struct {
	t     testing.TB
	hc    *http.Client
	bases []string // servers used in turn, one call each
	n     int
	asn1  bool
}

func (c *es9Client) base() string {
	b := c.bases[c.n%len(c.bases)]
	c.n++
	return b
}

func (c *es9Client) do(req rsp.Request) (rsp.Response, rsp.Status, int) {
	c.t.Helper()
	var body []byte
	var err error
	path, ct := req.Function().Path(), "application/json"
	if c.asn1 {
		body, err = rsp.EncodeASN1Request(req)
		path, ct = rsp.ASN1Path, rsp.ASN1ContentType
	} else {
		body, err = rsp.EncodeJSONRequest(req, nil)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	hr, _ := http.NewRequest("POST", c.base()+path, bytes.NewReader(body))
	hr.Header.Set("Content-Type", ct)
	hr.Header.Set("X-Admin-Protocol", "gsma/rsp/v2.2.2")
	resp, err := c.hc.Do(hr)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if req.Function() == rsp.HandleNotificationFunction {
		return nil, rsp.Status{}, resp.StatusCode
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("X-Admin-Protocol"), "gsma/rsp/v2.") {
		c.t.Fatalf("%v: HTTP %d, X-Admin-Protocol %q: %s", req.Function(), resp.StatusCode, resp.Header.Get("X-Admin-Protocol"), out)
	}
	var r rsp.Response
	var st rsp.Status
	if c.asn1 {
		r, st, err = rsp.DecodeASN1Response(req.Function(), out)
	} else {
		r, st, err = rsp.DecodeJSONResponse(req.Function(), out)
	}
	if err != nil {
		c.t.Fatalf("%v: strict client refuses the answer: %v\n%s", req.Function(), err, out)
	}
	return r, st, resp.StatusCode
}

// downloadHTTP runs a whole download through c.
func downloadHTTP(t *testing.T, c *es9Client, eu *testEUICC, mid string) []byte {
	r, st, _ := c.do(eu.initiate())
	wantStatus(t, st, "")
	ia := r.(*rsp.InitiateAuthenticationResponse)
	r, st, _ = c.do(eu.authenticate(t, ia.TransactionID, eu.authSigned1(ia, &mid), eu.cert, eu.eum))
	wantStatus(t, st, "")
	ac := r.(*rsp.AuthenticateClientResponse)
	r, st, _ = c.do(eu.prepare(t, ac, ""))
	wantStatus(t, st, "")
	upp, pir := eu.install(t, r.(*rsp.GetBoundProfilePackageResponse), true)
	if _, _, code := c.do(pir); code != http.StatusNoContent {
		t.Fatalf("handleNotification: HTTP %d, want 204", code)
	}
	return upp
}

func TestHTTPDownload(t *testing.T) {
	for _, asn1 := range []bool{false, true} {
		for _, c := range []esim.Curve{esim.CurveP256, esim.CurveBrainpoolP256r1} {
			name := map[bool]string{false: "JSON", true: "ASN.1"}[asn1] + "/" + c.String()
			t.Run(name, func(t *testing.T) {
				e := newEnv(t)
				ts := httptest.NewTLSServer(e.srv.Handler(HTTPOptions{}))
				defer ts.Close()
				p := e.order(t, e.addProfile(t), "", nil, "")
				cl := &es9Client{t: t, hc: ts.Client(), bases: []string{ts.URL}, asn1: asn1}
				if upp := downloadHTTP(t, cl, newTestEUICC(t, c), p.MatchingID); !bytes.Equal(upp, e.upp) {
					t.Fatal("UPP differs")
				}
				if got, _ := e.db.GetProfile(context.Background(), p.ICCID); got.State != store.StateInstalled {
					t.Fatalf("state %s", got.State)
				}
			})
		}
	}
}

// Two servers, each with its own connection to one database, serve one
// session's calls alternately: no session state is held in a process.
func TestTwoServersOneStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { twoServers(t, "sqlite", filepath.Join(t.TempDir(), "shared.db")) })
	t.Run("postgres", func(t *testing.T) { twoServers(t, "postgres", testenv.PostgresSchemaDSN(t)) })
}

func twoServers(t *testing.T, driver, dsn string) {
	e := newEnv(t)
	var bases []string
	var dbs []*store.DB
	for range 2 {
		db, err := store.Open(context.Background(), driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)
		srv, err := NewServer(Config{Address: testAddress, Credentials: e.srv.cfg.Credentials, Store: db, HSM: e.hsm, Log: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewTLSServer(srv.Handler(HTTPOptions{}))
		defer ts.Close()
		bases = append(bases, ts.URL)
	}
	// The profile goes into the shared database.
	e.db = dbs[0]
	if _, err := e.db.CreateBatch(context.Background(), store.Batch{ID: e.batch, ProfileType: "test", KeyBlob: []byte("blob"), KEKLabel: "kek-1"}); err != nil {
		t.Fatal(err)
	}
	p := e.order(t, e.addProfile(t), "", nil, "")
	cl := &es9Client{t: t, hc: &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}, bases: bases}
	if upp := downloadHTTP(t, cl, newTestEUICC(t, esim.CurveP256), p.MatchingID); !bytes.Equal(upp, e.upp) {
		t.Fatal("UPP differs")
	}
	if got, _ := dbs[1].GetProfile(context.Background(), p.ICCID); got.State != store.StateInstalled {
		t.Fatalf("state %s", got.State)
	}
}

func TestHTTPRefusals(t *testing.T) {
	e := newEnv(t)
	h := e.srv.Handler(HTTPOptions{MaxBody: 8 << 10})
	ia := wireJSON(t, newTestEUICC(t, esim.CurveP256).initiate())
	for _, tc := range []struct {
		name, path, ct, admin, body string
		code                        int
		want                        string // JSON status code; "" with code 200: success
	}{
		{"ok", "/gsma/rsp2/es9plus/initiateAuthentication", "application/json;charset=UTF-8", "", ia, 200, ""},
		{"oversized body", "/gsma/rsp2/es9plus/initiateAuthentication", "application/json", "", `{"x":"` + strings.Repeat("A", 9<<10) + `"}`, 200, "1.2.1/2.1"},
		{"malformed JSON", "/gsma/rsp2/es9plus/authenticateClient", "application/json", "", `{"transactionId":`, 200, "1.2.1/2.1"},
		{"not an object", "/gsma/rsp2/es9plus/authenticateClient", "application/json", "", `[]`, 200, "1.2.1/2.1"},
		{"bad base64", "/gsma/rsp2/es9plus/authenticateClient", "application/json", "", `{"transactionId":"0102","authenticateServerResponse":"%%%"}`, 200, "1.2.1/2.1"},
		{"bad hex transactionId", "/gsma/rsp2/es9plus/getBoundProfilePackage", "application/json", "", `{"transactionId":"XY","prepareDownloadResponse":"vyEA"}`, 200, "1.2.1/2.1"},
		{"missing member", "/gsma/rsp2/es9plus/cancelSession", "application/json", "", `{"transactionId":"0102"}`, 200, "1.2.1/2.2"},
		{"DER that is not the message", "/gsma/rsp2/es9plus/authenticateClient", "application/json", "", `{"transactionId":"0102","authenticateServerResponse":"MAA="}`, 200, "1.2.1/2.1"},
		{"wrong content type", "/gsma/rsp2/es9plus/initiateAuthentication", "text/plain", "", ia, 200, "1.2.1/2.1"},
		{"wrong X-Admin-Protocol", "/gsma/rsp2/es9plus/initiateAuthentication", "application/json", "http/1.1", ia, 200, "1.2.2/2.1"},
		{"unknown transactionId", "/gsma/rsp2/es9plus/cancelSession", "application/json", "", `{"transactionId":"0102","cancelSessionResponse":"v0EDgQF/"}`, 200, "8.10.1/3.9"},
		{"notification garbage: 204", "/gsma/rsp2/es9plus/handleNotification", "application/json", "", `{"pendingNotification":"AAAA"}`, 204, ""},
		{"ASN.1 naming no function", "/gsma/rsp2/asn1", rsp.ASN1ContentType, "", "\x30\x00", 400, ""},
		{"unknown ASN.1 alternative", "/gsma/rsp2/asn1", rsp.ASN1ContentType, "", "\xA2\x03\xBF\x7F\x00", 400, ""},
		{"unknown path", "/gsma/rsp2/es9plus/nothing", "application/json", "", `{}`, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", tc.path, strings.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ct)
			if tc.admin != "" {
				r.Header.Set("X-Admin-Protocol", tc.admin)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			if tc.code != 200 {
				return
			}
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
			if tc.want == "" {
				if fes.Status != rsp.StatusExecutedSuccess {
					t.Fatalf("%s", w.Body)
				}
				return
			}
			if fes.Status != rsp.StatusFailed || fes.StatusCodeData == nil || fes.StatusCodeData.SubjectCode+"/"+fes.StatusCodeData.ReasonCode != tc.want {
				t.Fatalf("got %s, want %s", w.Body, tc.want)
			}
		})
	}
}

// A malformed ASN.1 request naming its function is answered with that
// function's error alternative (HTTP 200), as the JSON binding answers a
// Failed status.
func TestASN1MalformedGetsErrorAlternative(t *testing.T) {
	e := newEnv(t)
	h := e.srv.Handler(HTTPOptions{})
	for _, tc := range []struct {
		body string
		fn   rsp.Function
	}{
		{"\xA2\x05\xBF\x39\x02\x81", rsp.InitiateAuthentication},
		{"\xA2\x06\xBF\x3B\x03\x80\x01", rsp.AuthenticateClient},
		{"\xA2\x05\xBF\x3A\x02\x80\x00", rsp.GetBoundProfilePackage},
		{"\xA2\x05\xBF\x41\x02\x80\x01", rsp.CancelSession},
	} {
		r := httptest.NewRequest("POST", rsp.ASN1Path, strings.NewReader(tc.body))
		r.Header.Set("Content-Type", rsp.ASN1ContentType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		_, st, err := rsp.DecodeASN1Response(tc.fn, w.Body.Bytes())
		if w.Code != 200 || err != nil || st.IsZero() {
			t.Fatalf("%v: HTTP %d, %v, %v: % X", tc.fn, w.Code, st, err, w.Body.Bytes())
		}
	}
}

// A failing store (a lost database) answers a Failed status, not a 500;
// a panic below the handler too.
func TestHTTPNeverFiveHundred(t *testing.T) {
	e := newEnv(t)
	for _, st := range []brokenStore{{e.db, false}, {e.db, true}} {
		srv, err := NewServer(Config{Address: testAddress, Credentials: e.srv.cfg.Credentials, Store: st, HSM: e.hsm, Log: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", rsp.InitiateAuthentication.Path(), strings.NewReader(wireJSON(t, newTestEUICC(t, esim.CurveP256).initiate())))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		panics := 0
		srv.Handler(HTTPOptions{OnPanic: func(string, any) { panics++ }}).ServeHTTP(w, r)
		_, status, err := rsp.DecodeJSONResponse(rsp.InitiateAuthentication, w.Body.Bytes())
		if w.Code != 200 || err != nil || status.Code() != "8.8/4.2" {
			t.Fatalf("HTTP %d, %v, %v: %s", w.Code, status, err, w.Body)
		}
		// The same answer to the client; only the hook tells the panic.
		if want := map[bool]int{true: 1}[st.panics]; panics != want {
			t.Fatalf("panicking store %v: OnPanic called %d times, want %d", st.panics, panics, want)
		}
	}
}

type brokenStore struct {
	*store.DB
	panics bool
}

func (b brokenStore) PutSession(context.Context, store.Session) (store.Session, error) {
	if b.panics {
		panic("store bug")
	}
	return store.Session{}, io.ErrUnexpectedEOF
}

func wireJSON(t testing.TB, req rsp.Request) string {
	b, err := rsp.EncodeJSONRequest(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } // httptest's self-signed certificates
