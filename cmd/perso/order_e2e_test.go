package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/rsp"
)

// e2eOperator is an operator's HandleDownloadProgressInfo endpoint (mutual
// TLS: the SM-DP+ must present a certificate chaining to the SGP.26 CI)
// that fails the first two attempts of every report, the first with HTTP
// 500 and the second by dropping the connection without an answer, and
// processes each eventId once, as a real receiver deduplicates.
type e2eOperator struct {
	mu        sync.Mutex
	attempts  map[string]int // eventId → attempts seen
	processed map[string]int // eventId → times processed
	reports   []*rsp.HandleDownloadProgressInfoRequest
	bad       []string
	got       chan struct{}
}

func (o *e2eOperator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, err := rsp.DecodeES2Request(rsp.ES2HandleDownloadProgressInfo, body)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil || r.URL.Path != "/bss/progress" || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		o.bad = append(o.bad, r.URL.Path+": "+string(body))
		http.Error(w, "bad report", http.StatusBadRequest)
		return
	}
	m := req.(*rsp.HandleDownloadProgressInfoRequest)
	id := m.Header.FunctionCallIdentifier
	o.attempts[id]++
	switch o.attempts[id] {
	case 1:
		http.Error(w, "busy", http.StatusInternalServerError)
		return
	case 2:
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close() // no answer at all
		}
		return
	}
	if o.processed[id] == 0 {
		o.reports = append(o.reports, m)
		o.got <- struct{}{}
	}
	o.processed[id]++
	w.WriteHeader(http.StatusNoContent)
}

// TestOrderE2E is an operator's whole story through the perso binary: perso
// run loads a batch on a SoftHSM2 token; perso serve (the SGP.26 DPtls
// certificate for testsmdpplus1.example.com, ES2+ and ES9+ on one
// listener) takes perso order over mutual TLS, reached through --resolve;
// each activation code is downloaded by the virtual eUICC (perso euicc
// download), once without and once with a confirmation code; the
// operator's endpoint, which fails the first two attempts of every report,
// receives each order's reports (points 1, 3, 4) in order, each eventId
// processed exactly once.
func TestOrderE2E(t *testing.T) {
	sgp26 := testenv.Path(t, "sgp26")
	dir := t.TempDir()
	dptls := filepath.Join(sgp26, "DPtls", "CERT_S_SM_DP_VARO_TLS_NIST.der")
	pki := newTestPKI(t, dir)
	pki.issue(t, "operator")
	recv := &e2eOperator{attempts: map[string]int{}, processed: map[string]int{}, got: make(chan struct{}, 64)}
	ciPEM, err := os.ReadFile(filepath.Join(sgp26, "CertificateIssuer", "CERT_CI_ECDSA_NIST.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ci := x509.NewCertPool()
	ci.AppendCertsFromPEM(ciPEM)
	opSrv := httptest.NewUnstartedServer(recv)
	opSrv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.issue(t, "bss")}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ci}
	opSrv.StartTLS()
	defer opSrv.Close()

	env := append(provisionedToken(t),
		"PERSO_STORE_DSN="+filepath.Join(dir, "perso.db"),
		"PERSO_SERVE_PKI_DIR="+sgp26,
		"PERSO_SERVE_TLS_CERT="+dptls,
		"PERSO_SERVE_TLS_KEY="+filepath.Join(sgp26, "DPtls", "SK_S_SM_DP_TLS_NIST.pem"),
		"PERSO_SERVE_OPERATOR_ROOTS="+filepath.Join(dir, "ca.pem"),
		"PERSO_SERVE_CALLBACK_BACKOFF=10ms")
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	must := func(res childResult, what string) childResult {
		t.Helper()
		if res.code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", what, res.code, res.stdout, res.stderr)
		}
		if strings.Contains(res.stdout+res.stderr, pinMark) {
			t.Fatalf("%s printed the HSM PIN", what)
		}
		return res
	}
	must(runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", "4", "-o", "in.csv"), "testdata")
	must(runChild(t, dir, env, nil, 2*time.Minute, "run", "--template", tmpl, "--input", "in.csv", "--batch", "e2e",
		"--profile-type", "ts48", "--progress", "none", "--template.algorithm", "keep"), "run")
	must(runChild(t, dir, env, nil, time.Minute, "operator", "add", "op-e2e", "--trust", "ca.pem",
		"--callback-url", opSrv.URL+"/bss/progress"), "operator add")

	serve, addr := startServe(t, dir, env)
	_, port, _ := net.SplitHostPort(addr)
	const host = "testsmdpplus1.example.com"
	iccid := firstICCID(t, filepath.Join(dir, "in.csv"))
	order := []string{"order", "--server", "https://" + host + ":" + port, "--resolve", host + ":" + port + ":127.0.0.1",
		"--server-ca", dptls, "--requester", "op-e2e", "--client-cert", "operator.pem", "--client-key", "operator.key"}
	codeRE := regexp.MustCompile(`activation code: (\S+)`)
	var iccids []string
	for _, tc := range []struct {
		args []string
		cc   string
	}{
		{[]string{"--iccid", iccid}, ""},
		{[]string{"--profile-type", "ts48", "--confirmation-code", "20261204"}, "20261204"},
	} {
		res := must(runChild(t, dir, env, nil, time.Minute, append(append([]string{}, order...), tc.args...)...), "order")
		m := codeRE.FindStringSubmatch(res.stdout)
		mi := regexp.MustCompile(`iccid: (\d+)`).FindStringSubmatch(res.stdout)
		if m == nil || mi == nil || tc.cc != "" && (strings.Contains(res.stdout, tc.cc) || !strings.HasSuffix(m[1], "$1")) {
			t.Fatalf("perso order printed:\n%s", res.stdout)
		}
		iccids = append(iccids, mi[1])
		dl := []string{"euicc", "download", m[1], "--sgp26", sgp26, "--resolve", host + ":127.0.0.1:" + port}
		if tc.cc != "" {
			// Without the code the eUICC is refused; with it the download succeeds.
			if res := runChild(t, dir, env, nil, time.Minute, dl...); res.code == 0 {
				t.Fatalf("download without the confirmation code succeeded:\n%s", res.stdout)
			}
			dl = append(dl, "--cc", tc.cc)
		}
		res = must(runChild(t, dir, env, nil, time.Minute, dl...), "euicc download")
		if !strings.Contains(res.stdout, "installed on the virtual eUICC") || !strings.Contains(res.stdout, "ICCID "+mi[1]) {
			t.Fatalf("euicc download printed:\n%s", res.stdout)
		}
	}
	if iccids[0] != iccid {
		t.Fatalf("ordered ICCID %s, want %s", iccids[0], iccid)
	}

	// Points per order: 1 (eligibility) and 3 (BPP) and 4 (installed)
	// for each download; the refused download without the confirmation
	// code adds its own attempt's point 1 (and a point 3 failure when the
	// server reports the confirmation failure) before the successful one.
	deadline := time.After(2 * time.Minute)
	want := map[string][]int{iccids[0]: {1, 3, 4}}
	for len(reportsOf(recv, iccids[0])) < 3 || !endsInstalled(reportsOf(recv, iccids[1])) {
		select {
		case <-recv.got:
		case <-deadline:
			t.Fatalf("reports received: %v / %v", points(reportsOf(recv, iccids[0])), points(reportsOf(recv, iccids[1])))
		}
	}
	// Stop the server: it drains its deliveries, so a duplicate still in
	// flight would show below.
	serve.Process.Signal(syscall.SIGTERM)
	serve.Wait()

	byICCID, cc := reportsOf(recv, iccids[0]), reportsOf(recv, iccids[1])
	recv.mu.Lock()
	if len(recv.bad) > 0 {
		t.Errorf("malformed reports: %q", recv.bad)
	}
	if len(recv.processed) != len(byICCID)+len(cc) {
		t.Errorf("%d eventIds processed, want %d", len(recv.processed), len(byICCID)+len(cc))
	}
	for id, n := range recv.processed {
		if n != 1 || recv.attempts[id] != 3 {
			t.Errorf("eventId %s processed %d times after %d attempts; want once after 3 (500, dropped, 204)", id, n, recv.attempts[id])
		}
	}
	recv.mu.Unlock()
	if got := points(byICCID); !equalInts(got, want[iccids[0]]) {
		t.Errorf("order by ICCID: points %v, want %v", got, want[iccids[0]])
	}
	if got := points(cc); len(got) < 3 || !equalInts(got[len(got)-3:], []int{1, 3, 4}) || got[0] != 1 {
		t.Errorf("order with a confirmation code: points %v, want 1 … then 1, 3, 4", got)
	}
	t.Logf("reports: order by ICCID %v, order with a confirmation code %v", points(byICCID), points(cc))
	for _, r := range append(byICCID, cc[len(cc)-3:]...) {
		if !r.NotificationPointStatus.IsZero() || r.ProfileType != "ts48" || r.Header.FunctionRequesterIdentifier != host ||
			r.EID != "89049032123451234512345678901235" {
			t.Errorf("report %+v: want success of profile type ts48 from %s for the SGP.26 eUICC", r, host)
		}
	}
}

// reportsOf returns the processed reports of one ICCID, in arrival order.
func reportsOf(o *e2eOperator, iccid string) []*rsp.HandleDownloadProgressInfoRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*rsp.HandleDownloadProgressInfoRequest
	for _, r := range o.reports {
		if r.ICCID == iccid {
			out = append(out, r)
		}
	}
	return out
}

func endsInstalled(rs []*rsp.HandleDownloadProgressInfoRequest) bool {
	return len(rs) >= 3 && rs[len(rs)-1].NotificationPointID == 4 && rs[len(rs)-1].NotificationPointStatus.IsZero()
}

func points(rs []*rsp.HandleDownloadProgressInfoRequest) []int {
	var p []int
	for _, r := range rs {
		p = append(p, r.NotificationPointID)
	}
	return p
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// firstICCID reads the iccid column of the first record of a perso
// testdata CSV.
func firstICCID(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range head {
		if strings.EqualFold(strings.TrimSpace(h), "iccid") {
			return rec[i]
		}
	}
	t.Fatalf("%s has no iccid column: %q", path, head)
	return ""
}

// startServe starts perso serve on a loopback port and returns the process
// (the caller stops it; the test's cleanup kills it otherwise) and the
// address it announces.
func startServe(t *testing.T, dir string, env []string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(persoBinary(t), "serve", "--serve.listen", "127.0.0.1:0")
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "ES9+ on https://"); ok {
				found <- strings.Fields(rest)[0]
				break
			}
		}
		close(found)
		for sc.Scan() {
		}
	}()
	select {
	case addr, ok := <-found:
		if !ok {
			t.Fatal("perso serve ended without announcing its address")
		}
		return cmd, addr
	case <-time.After(30 * time.Second):
		t.Fatal("perso serve did not announce its address within 30 s")
	}
	return nil, ""
}
