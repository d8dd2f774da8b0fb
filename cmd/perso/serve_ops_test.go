package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/store"
)

// TestServeOps runs `perso serve` (the binary, on PostgreSQL and SoftHSM2)
// with its operations listener: two downloads (JSON and ASN.1 bindings)
// by the virtual eUICC, then /metrics carries the ES9+ calls by function,
// binding and status, the latency histograms, the HSM lanes' queue depth
// and the session gauges; /healthz and /readyz answer 200, and /readyz 503
// while the store refuses connections (and 200 again once it is back).
// Then SIGTERM arrives while a getBoundProfilePackage is in flight: /readyz
// answers 503 during the drain, the call is answered or cut, the process
// exits within a second with status 143, and a restarted server finishes
// that download (retried in the same session if the answer was lost) up
// to Installed: nothing is left half-written.
func TestServeOps(t *testing.T) {
	admin, own, dsn, role := serveOpsRole(t)
	sgp26 := testenv.Path(t, "sgp26")
	env := append(provisionedToken(t),
		"PERSO_STORE_DRIVER=postgres", "PERSO_STORE_DSN="+dsn,
		"PERSO_SERVE_PKI_DIR="+sgp26,
		"PERSO_SERVE_TLS_CERT="+filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"),
		"PERSO_SERVE_TLS_KEY="+filepath.Join(sgp26, "DPtls", "SK_S_SM_DP_TLS_NIST.pem"))
	dir := t.TempDir()
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", "6", "-o", "in.csv"); res.code != 0 {
		t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
	}
	if res := runChild(t, dir, env, nil, 2*time.Minute, "run", "--template", testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der"),
		"--input", "in.csv", "--batch", "ops", "--profile-type", "ts48", "--progress", "none"); res.code != 0 {
		t.Fatalf("run: %d\n%s", res.code, res.stderr)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, "postgres", own) // the test's connections stay up in the outage
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	srv := startServeOps(t, dir, env)
	roots, err := euiccsim.LoadTLSRoots(filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := euiccsim.LoadSGP26(sgp26, esim.CurveP256)
	if err != nil {
		t.Fatal(err)
	}
	const address = "testsmdpplus1.example.com"
	var downloaded []string
	for _, b := range []euiccsim.Binding{euiccsim.BindingJSON, euiccsim.BindingASN1} {
		p := orderOne(t, db)
		eu, err := euiccsim.New(creds)
		if err != nil {
			t.Fatal(err)
		}
		lpa := euiccsim.NewLPA(eu, euiccsim.LPAConfig{Binding: b, RootCAs: roots, Resolve: map[string]string{address: srv.es9}})
		if _, err := lpa.Download(ctx, "1$"+address+"$"+p.MatchingID); err != nil {
			t.Fatalf("download (%s): %v", b, err)
		}
		downloaded = append(downloaded, p.MatchingID)
	}

	// /metrics: names, labels, types and the counts of the two downloads.
	code, body := httpGet(t, srv.ops, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: HTTP %d\n%s", code, body)
	}
	m := parseMetrics(t, body)
	for name, typ := range map[string]string{
		"perso_es9_requests_total": "counter", "perso_es9_request_duration_seconds": "histogram",
		"perso_es9_requests_in_flight": "gauge", "perso_es9_sessions_started_total": "counter",
		"perso_es9_sessions_active": "gauge", "perso_hsm_queue_depth": "gauge", "perso_hsm_sessions_in_use": "gauge",
		"perso_hsm_operations_total": "counter", "process_resident_memory_bytes": "gauge",
	} {
		if m.types[name] != typ {
			t.Errorf("%s: TYPE %q, want %s", name, m.types[name], typ)
		}
	}
	for _, fn := range []string{"initiateAuthentication", "authenticateClient", "getBoundProfilePackage", "handleNotification"} {
		for _, binding := range []string{"json", "asn1"} {
			m.want(t, fmt.Sprintf(`perso_es9_requests_total{binding="%s",function="%s",status="ok"}`, binding, fn), 1)
		}
		m.want(t, fmt.Sprintf(`perso_es9_request_duration_seconds_count{function="%s"}`, fn), 2)
		m.want(t, fmt.Sprintf(`perso_es9_request_duration_seconds_bucket{function="%s",le="+Inf"}`, fn), 2)
	}
	m.want(t, `perso_es9_sessions_started_total`, 2)
	m.want(t, `perso_es9_sessions_active`, 0) // both ended by their installation result
	m.want(t, `perso_es9_requests_in_flight`, 0)
	m.want(t, `perso_hsm_queue_depth{lane="live"}`, 0)
	m.want(t, `perso_hsm_queue_depth{lane="batch"}`, 0)
	if n := m.sum(`perso_hsm_operations_total{`, `lane="live"`); n < 4 { // per download: two signatures and a bind at least
		t.Errorf("perso_hsm_operations_total on the live lane: %v, want at least 4", n)
	}
	for _, mid := range downloaded {
		if strings.Contains(body, mid) {
			t.Error("/metrics carries a matching ID")
		}
	}
	if strings.Contains(body, pinMark) {
		t.Error("/metrics carries the HSM PIN")
	}

	// Health and readiness, then a store that refuses connections.
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, srv.ops, p); code != 200 {
			t.Fatalf("%s: HTTP %d: %s", p, code, body)
		}
	}
	pgExec(t, admin, "ALTER ROLE "+role+" NOLOGIN")
	pgExec(t, admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+role+"'")
	waitStatus(t, srv.ops, "/readyz", 503, "store")
	if code, body := httpGet(t, srv.ops, "/healthz"); code != 200 {
		t.Fatalf("/healthz with the store down: HTTP %d: %s", code, body)
	}
	pgExec(t, admin, "ALTER ROLE "+role+" LOGIN")
	waitStatus(t, srv.ops, "/readyz", 200, "ready")

	// SIGTERM with a getBoundProfilePackage in flight (its body half sent
	// when the signal arrives): finished during the drain, then never.
	k := &interruption{t: t, db: db, creds: creds, roots: roots, address: address, dir: dir, env: env}
	srv = k.run(srv, true)
	k.run(srv, false)
}

// interruption sends SIGTERM to a server while a getBoundProfilePackage
// is in flight, then has a new server on the same store finish that
// download.
type interruption struct {
	t       *testing.T
	db      *store.DB
	creds   *euiccsim.Credentials
	roots   *x509.CertPool
	address string
	dir     string
	env     []string
}

// run interrupts srv: the call's body is half sent at SIGTERM and, when
// finish, the rest follows during the drain. /readyz must answer 503 from
// the signal on, the process exit within a second with status 143, the
// order be Downloaded if the call was answered and Released otherwise,
// and a new server (returned) finish the download in the same session.
func (k *interruption) run(srv *serveProc, finish bool) *serveProc {
	t, ctx := k.t, context.Background()
	p := orderOne(t, k.db)
	eu, err := euiccsim.New(k.creds)
	if err != nil {
		t.Fatal(err)
	}
	c := &es9JSON{t: t, hc: euiccsim.NewHTTPClient(k.roots, map[string]string{k.address: srv.es9}), base: "https://" + k.address}
	gbpp := c.prepare(eu, k.address, p.MatchingID)
	body, err := rsp.EncodeJSONRequest(gbpp, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", srv.es9, &tls.Config{RootCAs: k.roots, ServerName: k.address, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Admin-Protocol: gsma/rsp/v2.5.0\r\nContent-Length: %d\r\n\r\n",
		rsp.GetBoundProfilePackage.Path(), k.address, len(body))
	half := len(body) / 2
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the handler is reading the body
	sent := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, srv.ops, "/readyz", 503, "shutting down")
	if finish {
		if _, err := conn.Write(body[half:]); err != nil {
			t.Logf("finishing the body after SIGTERM: %v", err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var answered *rsp.GetBoundProfilePackageResponse
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
		data, _ := io.ReadAll(resp.Body)
		r, st, err := rsp.DecodeJSONResponse(rsp.GetBoundProfilePackage, data)
		if !finish || resp.StatusCode != 200 || err != nil || !st.IsZero() {
			t.Fatalf("the call in flight at SIGTERM (body finished: %v): HTTP %d, %v, %v", finish, resp.StatusCode, st, err)
		}
		answered = r.(*rsp.GetBoundProfilePackageResponse)
	} else if finish {
		t.Logf("the call in flight at SIGTERM got no answer (%v): the restarted server must finish it", err)
	}
	select {
	case <-srv.exited:
	case <-time.After(10 * time.Second):
		srv.cmd.Process.Kill()
		<-srv.exited
		t.Fatalf("still running 10 s after SIGTERM\nstderr: %.2000s", srv.stderr.String())
	}
	took := time.Since(sent)
	if took > time.Second {
		t.Errorf("stopped %s after SIGTERM with a call in flight, want within a second", took)
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != exitTerminated {
		t.Errorf("exit status %d, want %d\nstderr: %.2000s", code, exitTerminated, srv.stderr.String())
	}
	if s := srv.stderr.String(); !strings.Contains(s, "stopped by SIGTERM") || strings.Contains(s, "panic:") {
		t.Errorf("stderr does not report the stop:\n%.3000s", lastLines(s, 5))
	}
	got, err := k.db.GetProfile(ctx, p.ICCID)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case answered != nil && got.State != store.StateDownloaded:
		t.Fatalf("state %s after an answered getBoundProfilePackage, want Downloaded", got.State)
	case !finish && got.State != store.StateReleased:
		t.Fatalf("state %s after a call cut before its body was read, want Released", got.State)
	case got.State != store.StateReleased && got.State != store.StateDownloaded:
		t.Fatalf("state %s after the stop, want Released or Downloaded", got.State)
	}

	// A new server on the same store finishes the download: the session
	// lives in the store.
	next := startServeOps(t, k.dir, k.env)
	c.hc = euiccsim.NewHTTPClient(k.roots, map[string]string{k.address: next.es9})
	wasAnswered := answered != nil
	if answered == nil {
		answered = c.call(gbpp).(*rsp.GetBoundProfilePackageResponse)
	}
	if _, err := eu.LoadBoundProfilePackage(answered.BoundProfilePackage); err != nil {
		t.Fatalf("eUICC: the package of the interrupted download: %v", err)
	}
	lpa := euiccsim.NewLPA(eu, euiccsim.LPAConfig{RootCAs: k.roots, Resolve: map[string]string{k.address: next.es9}})
	if n, err := lpa.SendNotifications(ctx, k.address); n != 1 || err != nil {
		t.Fatalf("installation result: %d sent, %v", n, err)
	}
	if got, _ := k.db.GetProfile(ctx, p.ICCID); got.State != store.StateInstalled {
		t.Fatalf("state %s after the restarted server took the installation result, want Installed", got.State)
	}
	t.Logf("stopped %s after SIGTERM with a getBoundProfilePackage in flight (body finished: %v, answered: %v)",
		took.Round(time.Millisecond), finish, wasAnswered)
	return next
}

// serveOpsRole makes a PostgreSQL login role of its own for the server,
// so that the test can refuse it connections (ALTER ROLE … NOLOGIN) while
// it keeps its own: it returns the administrator's DSN, the
// administrator's and the role's DSNs on a fresh schema, and the role's
// name.
func serveOpsRole(t *testing.T) (admin, own, dsn, role string) {
	t.Helper()
	admin = testenv.PostgresDSN(t)
	own = testenv.PostgresSchemaDSN(t)
	role = fmt.Sprintf("perso_ops_%d", time.Now().UnixNano())
	pgExec(t, admin, "CREATE ROLE "+role+" LOGIN SUPERUSER")
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+role+"'")
		c.Exec(ctx, "DROP OWNED BY "+role+" CASCADE")
		c.Exec(ctx, "DROP ROLE "+role)
	})
	u, err := url.Parse(own)
	if err != nil || u.Scheme == "" {
		t.Skipf("PERSO_TEST_PG_DSN is not a URL (%v): cannot name another role", err)
	}
	u.User = url.User(role)
	return admin, own, u.String(), role
}

func pgExec(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// orderOne orders (released, no EID) one Available profile of the batch's
// type through the store, as ES2+ DownloadOrder and ConfirmOrder would.
func orderOne(t *testing.T, db *store.DB) store.Profile {
	t.Helper()
	ctx := context.Background()
	p, err := db.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: "ts48"})
	if err != nil {
		t.Fatal(err)
	}
	p, err = db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: p.ICCID, ReleaseFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type serveProc struct {
	cmd      *exec.Cmd
	es9, ops string // addresses announced
	stderr   *lockedBuffer
	exited   chan error
}

// startServeOps starts perso serve with its operations listener on
// loopback ports and returns once both addresses are announced; the
// test's cleanup kills it if it still runs.
func startServeOps(t *testing.T, dir string, env []string) *serveProc {
	t.Helper()
	cmd := exec.Command(persoBinary(t), "serve", "--serve.listen", "127.0.0.1:0", "--serve.metrics_listen", "127.0.0.1:0")
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	s := &serveProc{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads any more: keep draining
			}
		}
		close(lines)
		s.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.exited
		}
	})
	deadline := time.After(30 * time.Second)
	for s.es9 == "" || s.ops == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("perso serve ended before announcing its addresses\nstderr: %.2000s", s.stderr.String())
			}
			if _, rest, ok := strings.Cut(line, "ES9+ on https://"); ok {
				s.es9 = strings.Fields(rest)[0]
			}
			if _, rest, ok := strings.Cut(line, "metrics and health on http://"); ok {
				s.ops = strings.Fields(rest)[0]
			}
		case <-deadline:
			t.Fatalf("perso serve did not announce its addresses within 30 s\nstderr: %.2000s", s.stderr.String())
		}
	}
	return s
}

func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls path until it answers code with a body containing
// want (within 5 s).
func waitStatus(t *testing.T, addr, path string, code int, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, body := httpGet(t, addr, path)
		if c == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: HTTP %d %q, want %d with %q", path, c, body, code, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metrics is a scrape in the Prometheus text format: sample values by
// name{labels} as exposed (labels sorted by name) and TYPE by family.
type metrics struct {
	samples map[string]float64
	types   map[string]string
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)

func parseMetrics(t *testing.T, text string) metrics {
	t.Helper()
	m := metrics{samples: map[string]float64{}, types: map[string]string{}}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			m.types[f[2]] = f[3]
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		sm := sampleLine.FindStringSubmatch(line)
		if sm == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		v, err := strconv.ParseFloat(sm[2], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		m.samples[sm[1]] = v
	}
	return m
}

func (m metrics) want(t *testing.T, sample string, v float64) {
	t.Helper()
	got, ok := m.samples[sample]
	if !ok {
		t.Errorf("no sample %s", sample)
	} else if got != v {
		t.Errorf("%s = %v, want %v", sample, got, v)
	}
}

// sum adds the samples whose name{labels} starts with prefix and contain
// label.
func (m metrics) sum(prefix, label string) float64 {
	var n float64
	for k, v := range m.samples {
		if strings.HasPrefix(k, prefix) && strings.Contains(k, label) {
			n += v
		}
	}
	return n
}

// es9JSON is an LPA's JSON-binding client driven call by call.
type es9JSON struct {
	t    *testing.T
	hc   *http.Client
	base string
}

func (c *es9JSON) call(req rsp.Request) rsp.Response {
	c.t.Helper()
	body, err := rsp.EncodeJSONRequest(req, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	hr, err := http.NewRequest(http.MethodPost, c.base+req.Function().Path(), bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Admin-Protocol", "gsma/rsp/v2.5.0")
	resp, err := c.hc.Do(hr)
	if err != nil {
		c.t.Fatalf("%v: %v", req.Function(), err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r, st, err := rsp.DecodeJSONResponse(req.Function(), data)
	if resp.StatusCode != 200 || err != nil || !st.IsZero() {
		c.t.Fatalf("%v: HTTP %d, %v, %v", req.Function(), resp.StatusCode, st, err)
	}
	return r
}

// prepare runs a download up to the eUICC's PrepareDownload and returns
// the getBoundProfilePackage request.
func (c *es9JSON) prepare(eu *euiccsim.EUICC, address, matchingID string) *rsp.GetBoundProfilePackageRequest {
	c.t.Helper()
	challenge, err := eu.GetEUICCChallenge()
	if err != nil {
		c.t.Fatal(err)
	}
	ia := c.call(&rsp.InitiateAuthenticationRequest{EUICCChallenge: challenge, SMDPAddress: address,
		EUICCInfo1: *eu.GetEUICCInfo1()}).(*rsp.InitiateAuthenticationResponse)
	asr, err := eu.AuthenticateServer(&rsp.AuthenticateServerRequest{ServerSigned1: ia.ServerSigned1, ServerSignature1: ia.ServerSignature1,
		EUICCCIPKIDToBeUsed: ia.EUICCCIPKIDToBeUsed, ServerCertificate: ia.ServerCertificate,
		CtxParams1: rsp.CtxParams1{Common: &rsp.CtxParamsForCommonAuthentication{MatchingID: &matchingID,
			DeviceInfo: rsp.DeviceInfo{TAC: [4]byte{0x35, 0x29, 0x06, 0x11}, DeviceCapabilities: []byte{}}}}})
	if err != nil {
		c.t.Fatal(err)
	}
	ac := c.call(&rsp.AuthenticateClientRequest{TransactionID: ia.TransactionID, AuthenticateServerResponse: *asr}).(*rsp.AuthenticateClientResponse)
	pdr, err := eu.PrepareDownload(&rsp.PrepareDownloadRequest{SmdpSigned2: ac.SmdpSigned2, SmdpSignature2: ac.SmdpSignature2,
		SmdpCertificate: ac.SmdpCertificate})
	if err != nil {
		c.t.Fatal(err)
	}
	return &rsp.GetBoundProfilePackageRequest{TransactionID: ia.TransactionID, PrepareDownloadResponse: *pdr}
}
