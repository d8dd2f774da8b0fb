package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/smdp"
	"github.com/perso-esim/perso/store"
)

func init() { register(newServeCmd) }

// serveDrain is how long in-flight calls get after SIGTERM. The signal
// watcher exits the process stopGrace after the first signal, so draining
// must end before that.
const serveDrain = stopGrace - 150*time.Millisecond

func newServeCmd(a *app) *cobra.Command {
	var stopAfter time.Duration
	var demoPINs bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve ES9+ (SGP.22 profile download) over HTTPS",
		Long: `Serves the ES9+ functions to LPAs and eUICCs:

  /gsma/rsp2/es9plus/{initiateAuthentication,authenticateClient,
                      getBoundProfilePackage,handleNotification,cancelSession}  (JSON)
  /gsma/rsp2/asn1                                                               (ASN.1)

Operations (serve.metrics_listen, plain HTTP, off by default; bind it to
loopback or a management network): /metrics (Prometheus: calls by function
and SGP.22 status, latency per function, HSM queue depth, process), /healthz
(the process answers), /readyz (store and HSM answer within 2 s; 503 from
SIGTERM on, while calls in flight drain). Each client
address gets serve.rate_limit ES9+ calls per second (burst serve.rate_burst);
a refused call is Failed 8.8/3.7 with Retry-After (handleNotification: 429).

Profiles come from the store (perso run), orders from ES2+ (until it lands:
through the store). Sessions live in the store, so several servers on one
PostgreSQL database can serve one session's calls alternately. The HSM signs
with its DPauth/DPpb keys and binds each package on its live lane; serve
checks at start that those keys match the certificates in serve.pki_dir.

TLS uses serve.tls_cert/serve.tls_key (default: the SGP.26 DPtls NIST
certificate for testsmdpplus1.example.com, valid to 2027-02-06). Go's TLS
has no brainpool: the NIST TLS certificate serves clients of both curves.
SIGTERM stops accepting connections and lets calls in flight finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			return runServe(cmd.Context(), a, demoPINs, stopAfter, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.String("serve.listen", "", "listen address (default from config: serve.listen)")
	f.String("serve.address", "", "SM-DP+ address (default from config: serve.address)")
	f.String("store.dsn", "", "store DSN (default from config: store.dsn)")
	f.String("serve.metrics_listen", "", "plain-HTTP address for /metrics, /healthz, /readyz (default from config: serve.metrics_listen; off when empty)")
	f.DurationVar(&stopAfter, "stop-after", 0, "stop after this long, as on SIGTERM (tests, benchmarks); 0: run until stopped")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof; cgo time inside the PKCS#11 module shows under its calls)")
	f.BoolVar(&demoPINs, "demo-pins", false, "when hsm.pin is unset, log in with the demo PIN 1234 (a token made by hsm init --demo-pins)")
	return cmd
}

func runServe(ctx context.Context, a *app, demoPINs bool, stopAfter time.Duration, out io.Writer) error {
	v := a.v
	curves, err := serveCurves(v.GetString("serve.curves"))
	if err != nil {
		return usageError(err)
	}
	creds, err := loadCredentials(v.GetString("serve.pki_dir"), curves)
	if err != nil {
		return usageError(fmt.Errorf("serve: %w (serve.pki_dir from %s)", err, a.conf.source("serve.pki_dir")))
	}
	var tlsCert *tls.Certificate
	if v.GetString("serve.tls") == "on" {
		c, err := loadTLSCertificate(v.GetString("serve.tls_cert"), v.GetString("serve.tls_key"))
		if err != nil {
			return usageError(fmt.Errorf("serve: %w (serve.tls_cert from %s, serve.tls_key from %s)", err,
				a.conf.source("serve.tls_cert"), a.conf.source("serve.tls_key")))
		}
		tlsCert = c
	}
	// Before the PKCS#11 module is loaded: see setUpMalloc.
	arenas := setUpMalloc(2)
	gc := serveGCPercent(serveGOGC)
	pool, err := openHSM(ctx, a, demoPINs)
	if err != nil {
		return fmt.Errorf("serve: opening the HSM: %w", err)
	}
	slog.Info("serve: memory", "malloc", arenas, "gc", gc, "hsm.recycle_after", v.GetInt("hsm.recycle_after"))
	defer pool.Close()
	if err := checkHSMKeys(ctx, pool, creds); err != nil {
		return err
	}
	dsn := v.GetString("store.dsn")
	db, err := store.Open(ctx, v.GetString("store.driver"), dsn, store.WithSessionTTL(v.GetDuration("serve.session_ttl")), store.WithLive())
	if err != nil {
		return fmt.Errorf("serve: opening the store %s: %w", redactDSN(dsn), scrubDSN(err, dsn))
	}
	defer db.Close()

	hsm := smdp.NewPoolHSM(pool)
	defer hsm.Close()
	srv, err := smdp.NewServer(smdp.Config{
		Address: v.GetString("serve.address"), Credentials: creds, Store: db, HSM: hsm, Log: slog.Default(),
		SessionTTL: v.GetDuration("serve.session_ttl"),
	})
	if err != nil {
		return usageError(fmt.Errorf("serve: %w", err))
	}
	callTimeout := v.GetDuration("serve.call_timeout")
	maxBody := int64(v.GetInt("serve.max_body"))
	limiter := smdp.NewClientLimiter(float64(v.GetInt("serve.rate_limit")), v.GetInt("serve.rate_burst"))
	metrics := newServeMetrics(pool, limiter, srv)
	es9 := smdp.HTTPOptions{MaxBody: maxBody, CallTimeout: callTimeout, Observe: metrics.observe}
	if limiter != nil {
		es9.Limit = limiter.Allow
	}
	handler, stopES2, err := serveES2(ctx, a, db, srv, metrics.count(srv.Handler(es9)), tlsCert, callTimeout, maxBody)
	if err != nil {
		return err
	}
	defer stopES2()
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       callTimeout,
		WriteTimeout:      callTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	if tlsCert != nil {
		hs.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{*tlsCert},
			MinVersion:   tls.VersionTLS12,
			// The SGP.22 baseline suites; the CBC one is outside Go's
			// defaults and must be listed (es2-es10-codes.md §6.3).
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
			// ES2+ shares the listener: a client certificate is requested,
			// not required (eUICCs have none), and checked per operator by
			// the ES2+ handler (es2-es10-codes.md §6.1).
			ClientAuth: tls.RequestClientCert,
			// Full-size records from the first byte: a bound package
			// (18 KB) in one or two records and writes, not a dozen
			// MSS-sized ones while a connection is young. Answers are read
			// whole before use, so smaller first records gain nothing.
			DynamicRecordSizingDisabled: true,
		}
	}
	ln, err := net.Listen("tcp", v.GetString("serve.listen"))
	if err != nil {
		return fmt.Errorf("serve: listening on %s: %w (serve.listen from %s)", v.GetString("serve.listen"), err, a.conf.source("serve.listen"))
	}
	scheme := "https"
	if tlsCert == nil {
		scheme = "http"
	}
	// On stdout too, whatever the log level: scripts take the port from it
	// when serve.listen asks for any (":0").
	fmt.Fprintf(out, "perso serve: ES9+ on %s://%s as %s (curves %s, store %s)\n", scheme, ln.Addr(),
		v.GetString("serve.address"), v.GetString("serve.curves"), v.GetString("store.driver"))

	runCtx := ctx
	if stopAfter > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, stopAfter)
		defer cancel()
	}
	if addr := v.GetString("serve.metrics_listen"); addr != "" {
		stopOps, err := serveOps(addr, opsHandler(metrics, db, pool, runCtx.Done()), func(line string) { fmt.Fprintln(out, line) })
		if err != nil {
			return err
		}
		defer stopOps()
	}
	go sweepSessions(runCtx, db)
	errc := make(chan error, 1)
	go func() {
		if tlsCert != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-runCtx.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), serveDrain)
	defer cancel()
	if err := hs.Shutdown(drain); err != nil {
		hs.Close()
		slog.Warn("serve: calls still in flight at shutdown were cut", "err", err)
	}
	slog.Info("serve: stopped")
	if ctx.Err() != nil {
		return context.Cause(ctx) // stopped by a signal
	}
	return nil
}

// startCPUProfile profiles the process into path until the returned
// function runs.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("serve: --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("serve: --cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			slog.Warn("serve: writing the CPU profile", "path", path, "err", err)
		}
	}, nil
}

// sweepSessions deletes expired sessions and one-time keys once a minute.
func sweepSessions(ctx context.Context, db *store.DB) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := db.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
				slog.Warn("serve: deleting expired sessions", "err", err)
			}
		}
	}
}

func serveCurves(s string) ([]esim.Curve, error) {
	var out []esim.Curve
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "nist", "p-256", "p256":
			out = append(out, esim.CurveP256)
		case "brp", "brainpool", "brainpoolp256r1":
			out = append(out, esim.CurveBrainpoolP256r1)
		default:
			return nil, fmt.Errorf("serve.curves: %q is not a curve (want a list of nist, brp)", f)
		}
	}
	return out, nil
}

// loadCredentials reads each curve's CI, DPauth and DPpb certificates from
// a directory laid out as the SGP.26 test PKI.
func loadCredentials(dir string, curves []esim.Curve) ([]smdp.Credentials, error) {
	var out []smdp.Credentials
	for _, c := range curves {
		n := c.SGP26Name()
		var certs [3]*rsp.Certificate
		for i, rel := range []string{"CertificateIssuer/CERT_CI_ECDSA_" + n + ".der", "DPauth/CERT_S_SM_DPauth_ECDSA_" + n + ".der",
			"DPpb/CERT_S_SM_DPpb_ECDSA_" + n + ".der"} {
			path := filepath.Join(dir, rel)
			der, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", path, err)
			}
			if certs[i], err = rsp.ParseCertificate(der); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
		out = append(out, smdp.Credentials{CI: certs[0], DPauth: certs[1], DPpb: certs[2]})
	}
	return out, nil
}

// checkHSMKeys refuses to start when the HSM's DPauth/DPpb keys are not
// the certificates' keys: every signature would fail on the eUICC.
func checkHSMKeys(ctx context.Context, pool *hsmpool.Pool, creds []smdp.Credentials) error {
	for _, c := range creds {
		for _, k := range []struct {
			label string
			cert  *rsp.Certificate
		}{{hsmpool.DPauthLabel(c.CI.Curve), c.DPauth}, {hsmpool.DPpbLabel(c.CI.Curve), c.DPpb}} {
			_, point, err := pool.PublicKey(ctx, k.label)
			if err != nil {
				return fmt.Errorf("serve: HSM key %s: %w (provision it with perso hsm init)", k.label, err)
			}
			want := append([]byte{4}, append(k.cert.PublicKey.X.FillBytes(make([]byte, 32)), k.cert.PublicKey.Y.FillBytes(make([]byte, 32))...)...)
			if !bytes.Equal(point, want) {
				return fmt.Errorf("serve: HSM key %s does not match its certificate in serve.pki_dir", k.label)
			}
		}
	}
	return nil
}

// loadTLSCertificate reads a DER or PEM certificate and a PEM private key.
func loadTLSCertificate(certPath, keyPath string) (*tls.Certificate, error) {
	certData, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS certificate: %w", err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(certData), []byte("-----BEGIN")) {
		b, _ := pem.Decode(certData)
		if b == nil {
			return nil, fmt.Errorf("TLS certificate %s: no PEM block", certPath)
		}
		certData = b.Bytes
	}
	keyData, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS key: %w", err)
	}
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certData}), keyData)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w (Go's TLS serves NIST P-256 only)", certPath, keyPath, err)
	}
	return &c, nil
}

// serveGOGC is the Go collector's target of perso serve when GOGC is not
// set: a collection when the heap has grown by 200 % of what the last one
// left live, not 100 %. Why: what an ES9+ download allocates (request and
// answer bodies, the bound package, TLS records) hardly outlives it, and
// the collector cost ≈ 0.1 ms of the server's CPU per download at the
// default (docs/performance.md § ES9+, fourth round).
// The live heap is a few MiB (the sessions in flight, caches of bounded
// size), so the peak heap grows by that much, not with the run's length:
// the serve soak (§ soak) measures RSS over 200 000 downloads with it.
// Not above 200: the soak's 10 % flatness is measured at this setting.
const serveGOGC = 200

// serveGCPercent sets the collector's target to percent unless the GOGC
// environment variable chose one (the runtime read it at start), and
// returns the setting in force for the log.
func serveGCPercent(percent int) string {
	if v := os.Getenv("GOGC"); v != "" {
		return "GOGC=" + v + " (environment)"
	}
	debug.SetGCPercent(percent)
	return "GOGC " + strconv.Itoa(percent) + " (perso serve's default; set GOGC to choose)"
}
