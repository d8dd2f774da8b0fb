package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/riverqueue/river"

	"github.com/perso-esim/perso/jobs"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/smdp"
	"github.com/perso-esim/perso/store"
)

// reportPoll is how often perso serve looks for ES2+ reports to deliver.
// On SQLite River finds new jobs only by polling (jobs.Config
// PollOnlySQLite: no outbox listener); with River's 50 ms fetch poll and
// its 50 ms listener the idle server spent 38–54 ms of CPU per second,
// most of it parsing those two queries (≈ 0.09 ms per download at 430
// downloads/s); with a 1 s poll alone, 11–13 ms (a fetch ≈ 2–3 ms of it). A
// report waits up to this long before its first attempt:
// HandleDownloadProgressInfo is a notification to the operator, which
// SGP.22 does not time; on PostgreSQL, River's LISTEN wakes the worker
// at once.
const reportPoll = time.Second

// serveES2 puts ES2+ next to ES9+ on the serve listener and starts the
// delivery of HandleDownloadProgressInfo reports (and of deletions the
// eUICCs notify to srv). ES2+ needs the client
// certificates that only perso's own TLS sees: with serve.tls off (a TLS
// terminator in front) it is not mounted. The returned stop function stops
// the report worker (reports not yet delivered stay queued in the store).
func serveES2(ctx context.Context, a *app, db *store.DB, srv *smdp.Server, es9 http.Handler, tlsCert *tls.Certificate, callTimeout time.Duration, maxBody int64) (http.Handler, func(), error) {
	if tlsCert == nil {
		slog.Warn("serve: ES2+ not served: it needs perso's own TLS for the operators' client certificates (serve.tls is off)")
		return es9, func() {}, nil
	}
	v := a.v
	es2, err := smdp.NewES2(smdp.ES2Config{Address: v.GetString("serve.address"), Desk: db, Log: slog.Default()})
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("serve: %w", err))
	}
	// Reports go to the operators over mutual TLS: the SM-DP+'s TLS
	// certificate is its client certificate (SGP.26 DPtls carries
	// clientAuth).
	tc := &tls.Config{Certificates: []tls.Certificate{*tlsCert}, MinVersion: tls.VersionTLS12}
	if roots := v.GetString("serve.operator_roots"); roots != "" {
		data, err := os.ReadFile(roots)
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("serve: serve.operator_roots (from %s): %w", a.conf.source("serve.operator_roots"), err))
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(data) {
			return nil, nil, usagef("serve: serve.operator_roots %s (from %s) holds no PEM certificate", roots, a.conf.source("serve.operator_roots"))
		}
	}
	workers := river.NewWorkers()
	worker := &smdp.ProgressWorker{Operators: db, RequesterID: v.GetString("serve.address"), Log: slog.Default(),
		Backoff: smdp.ProgressBackoff(v.GetDuration("serve.callback_backoff"), 30*time.Minute),
		HTTP:    &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}}
	river.AddWorker(workers, worker)
	host, _ := os.Hostname()
	jc, err := jobs.New(ctx, db, jobs.Config{ID: fmt.Sprintf("serve-%s-%d", host, os.Getpid()),
		Queues: map[string]int{smdp.ProgressQueue: v.GetInt("serve.callback_workers")}, Workers: workers,
		PollInterval: reportPoll, PollOnlySQLite: true})
	if err != nil {
		return nil, nil, fmt.Errorf("serve: ES2+ reports: %w", err)
	}
	worker.Pending = jc // one indexed query per report for the order's earlier ones
	db.SetTransitionHook(smdp.ProgressHook(jc, nil))
	srv.SetDeletionReporter(smdp.DeletionReports(jc, db, nil))
	if err := jc.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("serve: starting ES2+ report delivery: %w", err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serveDrain)
		defer cancel()
		if err := jc.Stop(sctx); err != nil {
			slog.Warn("serve: ES2+ report delivery stopped with reports in flight (they are retried at the next start)", "err", err)
		}
	}
	mux := http.NewServeMux()
	// An operator's record is read from the store at most once a second
	// per operator: perso operator remove, run by another process, takes
	// effect within that second.
	mux.Handle(rsp.ES2PathPrefix, smdp.NewES2Handler(es2, smdp.ES2HTTPOptions{Operators: db, CallTimeout: callTimeout, MaxBody: maxBody,
		OperatorTTL: time.Second}))
	mux.Handle("/", es9)
	slog.Info("serve: ES2+ on the same listener (operators by TLS client certificate: perso operator add)")
	return mux, stop, nil
}
