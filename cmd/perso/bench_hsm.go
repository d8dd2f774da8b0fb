package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/hsmpool"
)

func init() { registerBench(newBenchHSMCmd) }

// benchHSMDetails is hsmpool's own report, kept whole in the result's
// details (the JSON document `perso bench hsm` wrote before the shared
// output model).
type benchHSMDetails struct {
	Backend  string                  `json:"backend"`
	Duration string                  `json:"duration"`
	Results  []hsmpool.BenchResult   `json:"results"`
	QoS      *hsmpool.QoSBenchResult `json:"qos,omitempty"`
	PPK      *hsmpool.PPKBenchResult `json:"ppk,omitempty"`
}

func newBenchHSMCmd(a *app) *cobra.Command {
	var (
		ops, sessions                  string
		duration                       time.Duration
		workers, ppkProfiles, ppkBatch int
		raw                            bool
		out                            benchOutput
	)
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Measure HSM throughput, latency and CPU per operation and session count",
		Long: `Measures, through the pool, ops/s, p50/p99/p99.9 latency and process CPU per operation at
each session count, and the raw single-session PKCS#11 throughput of the same token for
comparison, interleaved in 100 ms slices ("vs raw" = pool ops/s / raw ops/s, same run).

Operations: ` + strings.Join(hsmpool.BenchOps, ", ") + `, plus
  qos   live-lane session wait and latency while batch work saturates the batch lane
        (at hsm.sessions sessions, default 4)
  ppk   protect and unprotect --ppk-profiles PPKs with batch keys of --ppk-batch profiles,
        reporting HSM round trips per profile and tamper detection

The HSM is the configured one (hsm.* / PERSO_HSM_*); it needs the keys of ` + "`perso hsm init`" + `.
Plots (--plots): hsm-throughput-by-sessions.png, hsm-cpu-per-op-by-sessions.png and the
history of each figure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			defer func() { err = benchError(ctx, "hsm", err) }()
			started := time.Now()
			var counts []int
			for _, s := range strings.Split(sessions, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 1 {
					return usagef("--sessions %q: want a comma-separated list of positive integers", sessions)
				}
				counts = append(counts, n)
			}
			var poolOps []string
			var doQoS, doPPK bool
			for _, op := range strings.Split(ops, ",") {
				switch op = strings.TrimSpace(op); op {
				case "qos":
					doQoS = true
				case "ppk":
					doPPK = true
				case "":
				default:
					if !slices.Contains(hsmpool.BenchOps, op) {
						return usagef("--ops: unknown operation %q (want %s, qos or ppk)", op, strings.Join(hsmpool.BenchOps, ", "))
					}
					poolOps = append(poolOps, op)
				}
			}
			if err := out.check(); err != nil {
				return err
			}
			cfg, err := hsmConfig(a, false)
			if err != nil {
				return err
			}
			r := a.benchStart(ctx, cmd, "hsm", "hsm.backend", "hsm.module", "hsm.token", "hsm.pin", "hsm.sessions",
				"hsm.live_reserved", "hsm.batch_while_live", "hsm.spin_wait", "hsm.kek")
			r.HSM = hsmInfo(a)
			det := benchHSMDetails{Backend: cfg.Backend, Duration: duration.String()}
			stderr := cmd.ErrOrStderr()
			fmt.Fprintf(stderr, "bench hsm: measuring %s at %s sessions, %s each (the table follows when done)\n", ops, sessions, duration)
			if len(poolOps) > 0 {
				bc := hsmpool.BenchConfig{Ops: poolOps, Sessions: counts, Duration: duration, Workers: workers,
					Raw: raw && cfg.Backend != hsmpool.BackendSoftware}
				res, err := hsmpool.Bench(ctx, cfg, bc, func(row hsmpool.BenchResult) {
					if row.Mode == "pool" {
						fmt.Fprintf(stderr, "bench hsm: %s, %d sessions: %.0f ops/s\n", row.Op, row.Sessions, row.OpsPerSec)
					}
				})
				if err != nil {
					return fmt.Errorf("bench hsm: %w", err)
				}
				det.Results = res
				addHSMRows(r, res)
			}
			if doQoS || doPPK {
				qcfg := cfg // hsm.sessions (default 4), as perso serve would run
				if qcfg.Sessions < 2 {
					qcfg.Sessions = 4
				}
				p, err := hsmpool.Open(ctx, qcfg)
				if err != nil {
					return a.hsmOpenError(qcfg, err)
				}
				defer p.Close()
				if doQoS {
					q, err := hsmpool.BenchQoS(ctx, p, "", duration)
					if err != nil {
						return fmt.Errorf("bench hsm: qos: %w", err)
					}
					det.QoS = &q
					addHSMQoS(r, q)
				}
				if doPPK {
					pr, err := hsmpool.BenchPPK(ctx, p, ppkProfiles, ppkBatch)
					if err != nil {
						return fmt.Errorf("bench hsm: ppk: %w", err)
					}
					det.PPK = &pr
					addHSMPPK(r, pr)
				}
			}
			if err := r.SetDetails(det); err != nil {
				return err
			}
			return out.finish(ctx, r, started, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&ops, "ops", "sign,ecdh,wrap", "comma-separated operations: "+strings.Join(hsmpool.BenchOps, ",")+",qos,ppk")
	f.StringVar(&sessions, "sessions", "1,2,4,8,16", "comma-separated session counts")
	f.DurationVar(&duration, "duration", 10*time.Second, "duration of each measurement")
	f.IntVar(&workers, "workers", 2, "concurrent callers per session")
	f.BoolVar(&raw, "raw", true, "also measure the raw single-session PKCS#11 baseline")
	f.IntVar(&ppkProfiles, "ppk-profiles", 100000, "ppk: number of PPKs to protect and unprotect")
	f.IntVar(&ppkBatch, "ppk-batch", 1000, "ppk: profiles per batch key")
	out.addFlags(f)
	return cmd
}

// addHSMRows turns hsmpool's rows into the table, the figures (pool ops/s,
// the ratios to raw and raw-shared, CPU per op) and the plot series.
func addHSMRows(r *bench.Result, rows []hsmpool.BenchResult) {
	t := bench.Table{Title: "operations (raw and raw-shared: one bare session, measured in the same 100 ms slices as the pool row below them)",
		Columns: []bench.Column{{Name: "op"}, {Name: "mode"}, {Name: "sessions"}, {Name: "workers"}, {Name: "ops/s", Unit: "ops/s"},
			{Name: "cpu/op", Unit: "µs"}, {Name: "p50", Unit: "µs"}, {Name: "p99", Unit: "µs"}, {Name: "p99.9", Unit: "µs"},
			{Name: "errors"}, {Name: "vs raw", Unit: "%"}, {Name: "vs shared", Unit: "%"}}}
	pct := func(x float64) bench.Cell {
		if x <= 0 {
			return bench.Text("-")
		}
		return bench.Num(100*x, 0)
	}
	type key struct{ op, mode string }
	series := map[key]*bench.Series{}
	var order []key
	point := func(plot, title, ylabel, yunit string, k key, dashed bool, x, y float64) {
		sk := key{plot + "\x00" + k.op, k.mode}
		s := series[sk]
		if s == nil {
			name := k.op + " " + k.mode
			if k.mode == "raw" {
				name += " (1 session)"
			}
			s = &bench.Series{Plot: plot, Title: title, Name: name, XLabel: "HSM sessions in the pool", YLabel: ylabel, YUnit: yunit, Dashed: dashed, Group: k.op}
			series[sk] = s
			order = append(order, sk)
		}
		s.Points = append(s.Points, bench.Point{X: x, Y: y})
	}
	for i, row := range rows {
		t.AddRow(bench.Text(row.Op), bench.Text(row.Mode), bench.Num(float64(row.Sessions), 0), bench.Num(float64(row.Workers), 0),
			bench.Num(row.OpsPerSec, 0), bench.Num(row.CPUPerOp, 1), bench.Num(row.P50, 0), bench.Num(row.P99, 0), bench.Num(row.P999, 0),
			bench.Num(float64(row.Errors), 0), pct(row.VsRaw), pct(row.VsShared))
		if row.Mode == "pool" {
			n := fmt.Sprintf("%s, %d session", row.Op, row.Sessions)
			if row.Sessions > 1 {
				n += "s"
			}
			r.Add(n, row.OpsPerSec, "ops/s", bench.Higher, "through the pool")
			r.Add(n+" vs raw", 100*bench.Ratio(row.VsRaw, 1), "% of raw", bench.Higher, "pool ops/s ÷ one bare session's, same slices")
			r.Add(n+" cpu", row.CPUPerOp, "cpu-µs/op", bench.Lower, "process CPU (pool + in-process module) per op")
		}
		// The raw baselines are measured again at each session count (in
		// the same slices as that pool row): plotted at the row's x.
		x := float64(row.Sessions)
		if row.Mode != "pool" {
			x = float64(poolSessionsAfter(rows[i:], row))
		}
		if row.Mode == "raw-shared" {
			continue // a table column is enough; three lines per op crowd the chart
		}
		point("hsm-throughput-by-sessions", "HSM throughput through the pool by session count (raw: one bare session, same slices)",
			"throughput", "ops/s", key{row.Op, row.Mode}, row.Mode != "pool", x, row.OpsPerSec)
		if row.Mode == "pool" {
			point("hsm-cpu-per-op-by-sessions", "Process CPU per HSM operation through the pool (SoftHSM2 runs in-process)",
				"CPU time per operation", "µs", key{row.Op, row.Mode}, false, x, row.CPUPerOp)
		}
	}
	r.Tables = append(r.Tables, t)
	for _, k := range order {
		r.Series = append(r.Series, *series[k])
	}
}

// poolSessionsAfter is the session count of the pool row a raw row was
// measured beside: Bench emits raw, raw-shared, then their pool row.
func poolSessionsAfter(rest []hsmpool.BenchResult, raw hsmpool.BenchResult) int {
	for _, next := range rest {
		if next.Mode == "pool" && next.Op == raw.Op {
			return next.Sessions
		}
	}
	return raw.Sessions
}

func addHSMQoS(r *bench.Result, q hsmpool.QoSBenchResult) {
	r.Tables = append(r.Tables, bench.Table{
		Title: fmt.Sprintf("qos: %d sessions (%d reserved for live), %d batch workers saturating the batch lane, %d live sign requests",
			q.Sessions, q.LiveReserved, q.BatchWorkers, q.LiveRequests),
		Columns: []bench.Column{{Name: "live wait p50", Unit: "µs"}, {Name: "p99", Unit: "µs"}, {Name: "p99.9", Unit: "µs"},
			{Name: "live latency p50", Unit: "µs"}, {Name: "p99", Unit: "µs"}, {Name: "batch", Unit: "ops/s"}, {Name: "batch queued", Unit: "%"}},
		Rows: [][]bench.Cell{{bench.Num(q.LiveWaitP50, 1), bench.Num(q.LiveWaitP99, 1), bench.Num(q.LiveWaitP999, 1),
			bench.Num(q.LiveLatencyP50, 0), bench.Num(q.LiveLatencyP99, 0), bench.Num(q.BatchOpsPerSec, 0), bench.Num(100*q.Saturated, 0)}},
	})
	r.Add("qos live wait p99", q.LiveWaitP99, "µs", bench.Lower, "live request's wait for a session while batch saturates")
	r.Add("qos live sign latency p99", q.LiveLatencyP99, "µs", bench.Lower, "")
	r.Add("qos batch throughput", q.BatchOpsPerSec, "ops/s", bench.Higher, "")
}

func addHSMPPK(r *bench.Result, p hsmpool.PPKBenchResult) {
	r.Tables = append(r.Tables, bench.Table{
		Title: fmt.Sprintf("ppk: %d profiles, %d batch keys (%d profiles each)", p.Profiles, p.BatchKeys, p.PerBatchKey),
		Columns: []bench.Column{{Name: "protect HSM round trips"}, {Name: "PKCS#11 calls"}, {Name: "per profile", Unit: "round trips"},
			{Name: "protect", Unit: "/s"}, {Name: "unprotect HSM round trips"}, {Name: "unprotect", Unit: "/s"},
			{Name: "tamper detected (records)"}, {Name: "(blobs)"}},
		Rows: [][]bench.Cell{{bench.Num(float64(p.ProtectHSMOps), 0), bench.Num(float64(p.ProtectPKCS11Calls), 0),
			bench.Num(p.RoundTripsPerProfile, 4), bench.Num(p.ProtectPerSec, 0), bench.Num(float64(p.UnprotectHSMOps), 0),
			bench.Num(p.UnprotectPerSec, 0), bench.Text(fmt.Sprintf("%d/%d", p.TamperedRecordsDetected, p.TamperChecks)),
			bench.Text(fmt.Sprintf("%d/%d", p.TamperedBlobsDetected, p.TamperChecks))}},
	})
	r.Add("ppk HSM round trips per profile", p.RoundTripsPerProfile, "round trips/profile", bench.Lower, "")
	r.Add("ppk protects", p.ProtectPerSec, "ops/s", bench.Higher, "software AES-256-GCM under a batch data key")
	r.Add("ppk unprotects", p.UnprotectPerSec, "ops/s", bench.Higher, "data keys cached")
	if p.TamperChecks > 0 {
		r.Add("ppk tampering detected", 100*float64(p.TamperedRecordsDetected+p.TamperedBlobsDetected)/float64(2*p.TamperChecks), "%", bench.Higher, "")
	}
}
