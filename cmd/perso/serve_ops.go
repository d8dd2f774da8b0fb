package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/smdp"
	"github.com/perso-esim/perso/store"
)

// serveMetrics are the Prometheus metrics of perso serve, in a registry of
// their own (nothing else in the process registers into it).
type serveMetrics struct {
	reg      *prometheus.Registry
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
	sessions prometheus.Counter
}

func newServeMetrics(pool *hsmpool.Pool, lim *smdp.ClientLimiter, srv *smdp.Server) *serveMetrics {
	m := &serveMetrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "perso_es9_requests_total",
			Help: "ES9+ calls answered, by function, binding and SGP.22 status (ok or subject/reason)."},
			[]string{"function", "binding", "status"}),
		// Buckets from 1 ms (a refused call) to 10 s (a bind queued behind
		// a saturated HSM).
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "perso_es9_request_duration_seconds",
			Help:    "ES9+ call latency from the request read to the answer written, by function.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"function"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "perso_es9_requests_in_flight",
			Help: "ES9+ calls being executed now."}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "perso_es9_sessions_started_total",
			Help: "RSP sessions opened (initiateAuthentication answered ok)."}),
	}
	m.reg.MustRegister(m.calls, m.latency, m.inFlight, m.sessions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&hsmCollector{pool: pool})
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "perso_es9_sessions_active",
		Help: "RSP sessions this process opened that are still open (no installation result or CancelSession yet, TTL not passed)."},
		func() float64 { return float64(srv.ActiveSessions()) }))
	if lim != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "perso_es9_rate_limited_clients",
			Help: "Client addresses with a rate-limit bucket (seen recently)."}, func() float64 { return float64(lim.Clients()) }))
	}
	return m
}

// observe is smdp.HTTPOptions.Observe.
func (m *serveMetrics) observe(function, binding, status string, d time.Duration) {
	if function == "" {
		function = "unknown"
	}
	m.calls.WithLabelValues(function, binding, status).Inc()
	m.latency.WithLabelValues(function).Observe(d.Seconds())
	if function == "initiateAuthentication" && status == "ok" {
		m.sessions.Inc()
	}
}

// count wraps the ES9+ handler to keep perso_es9_requests_in_flight.
func (m *serveMetrics) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		h.ServeHTTP(w, r)
	})
}

// hsmCollector reads the pool's figures once per scrape.
type hsmCollector struct{ pool *hsmpool.Pool }

var (
	hsmQueueDesc    = prometheus.NewDesc("perso_hsm_queue_depth", "Requests waiting for an HSM session, by lane.", []string{"lane"}, nil)
	hsmInUseDesc    = prometheus.NewDesc("perso_hsm_sessions_in_use", "HSM sessions executing a request, by lane.", []string{"lane"}, nil)
	hsmSessionsDesc = prometheus.NewDesc("perso_hsm_sessions", "HSM sessions in the pool.", nil, nil)
	hsmReinitDesc   = prometheus.NewDesc("perso_hsm_module_reinits_total", "PKCS#11 module reinitialisations (hsm.recycle_after).", nil, nil)
	hsmReplaceDesc  = prometheus.NewDesc("perso_hsm_sessions_replaced_total", "Broken HSM sessions replaced.", nil, nil)
	hsmTokenDesc    = prometheus.NewDesc("perso_hsm_token_failures_total", "Calls that found the token unavailable.", nil, nil)
	hsmOpsDesc      = prometheus.NewDesc("perso_hsm_operations_total", "HSM operations through the pool, by operation and lane.", []string{"op", "lane"}, nil)
	hsmOpErrDesc    = prometheus.NewDesc("perso_hsm_operation_errors_total", "Failed HSM operations, by operation and lane.", []string{"op", "lane"}, nil)
)

func (c *hsmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hsmQueueDesc, hsmInUseDesc, hsmSessionsDesc, hsmReinitDesc, hsmReplaceDesc, hsmTokenDesc, hsmOpsDesc, hsmOpErrDesc} {
		ch <- d
	}
}

func (c *hsmCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stats()
	ch <- prometheus.MustNewConstMetric(hsmQueueDesc, prometheus.GaugeValue, float64(st.LiveQueued), "live")
	ch <- prometheus.MustNewConstMetric(hsmQueueDesc, prometheus.GaugeValue, float64(st.BatchQueued), "batch")
	ch <- prometheus.MustNewConstMetric(hsmInUseDesc, prometheus.GaugeValue, float64(st.SessionsInUse-st.BatchInUse), "live")
	ch <- prometheus.MustNewConstMetric(hsmInUseDesc, prometheus.GaugeValue, float64(st.BatchInUse), "batch")
	ch <- prometheus.MustNewConstMetric(hsmSessionsDesc, prometheus.GaugeValue, float64(st.Sessions))
	ch <- prometheus.MustNewConstMetric(hsmReinitDesc, prometheus.CounterValue, float64(st.ModuleReinits))
	ch <- prometheus.MustNewConstMetric(hsmReplaceDesc, prometheus.CounterValue, float64(st.SessionsReplaced))
	ch <- prometheus.MustNewConstMetric(hsmTokenDesc, prometheus.CounterValue, float64(st.TokenFailures))
	for _, op := range st.Ops {
		ch <- prometheus.MustNewConstMetric(hsmOpsDesc, prometheus.CounterValue, float64(op.Latency.Count), op.Op, op.Lane)
		ch <- prometheus.MustNewConstMetric(hsmOpErrDesc, prometheus.CounterValue, float64(op.Errors), op.Op, op.Lane)
	}
}

// opsHandler serves /metrics, /healthz (the process answers) and /readyz
// (the store answers a read and the HSM a session check within 2 s: a
// load balancer stops sending devices to a server that cannot serve them).
// Once stopping is closed (SIGTERM, --stop-after) /readyz answers 503: the
// ES9+ listener no longer accepts connections while the calls in flight
// drain, and the operations listener is the last to close.
func opsHandler(m *serveMetrics, db *store.DB, pool *hsmpool.Pool, stopping <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		select {
		case <-stopping:
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		default:
		}
		if err := readiness(ctx, db, pool); err != nil {
			slog.WarnContext(ctx, "serve: not ready", "err", err)
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

func readiness(ctx context.Context, db *store.DB, pool *hsmpool.Pool) error {
	// A session lookup that cannot match is the cheapest read every store
	// backend answers: "not found" proves the database reachable.
	if _, err := db.GetSession(ctx, "readyz-probe"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("store: %w", err)
	}
	if err := pool.Health(ctx); err != nil {
		return fmt.Errorf("HSM: %w", err)
	}
	return nil
}

// serveOps starts the operations listener on addr; the returned function
// stops it.
func serveOps(addr string, h http.Handler, out func(string)) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve: listening on %s for metrics and health: %w (serve.metrics_listen)", addr, err)
	}
	out(fmt.Sprintf("perso serve: metrics and health on http://%s (/metrics, /healthz, /readyz)", ln.Addr()))
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("serve: the metrics listener stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hs.Shutdown(ctx)
	}, nil
}
