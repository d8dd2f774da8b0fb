package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/perso-esim/perso/hsmpool"
	"github.com/spf13/cobra"
)

func init() { registerBench(newBenchHSMCmd) }

// benchHSMReport is the JSON document `perso bench hsm` prints.
type benchHSMReport struct {
	Time     time.Time               `json:"time"`
	Host     map[string]any          `json:"host"`
	Backend  string                  `json:"backend"`
	Duration string                  `json:"duration"`
	Results  []hsmpool.BenchResult   `json:"results"`
	QoS      *hsmpool.QoSBenchResult `json:"qos,omitempty"`
	PPK      *hsmpool.PPKBenchResult `json:"ppk,omitempty"`
}

func newBenchHSMCmd(a *app) *cobra.Command {
	var (
		ops, sessions, format, jsonOut string
		force                          bool
		duration                       time.Duration
		workers, ppkProfiles, ppkBatch int
		raw                            bool
	)
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Measure HSM throughput and latency per operation and session count",
		Long: `Measures, through the pool, ops/s and p50/p99/p99.9 latency of each operation at each
session count, and the raw single-session PKCS#11 throughput of the same token for comparison
("vs raw" = pool ops/s / raw ops/s).

Operations: ` + strings.Join(hsmpool.BenchOps, ", ") + `, plus
  qos   live-lane session wait and latency while batch work saturates the batch lane
        (at hsm.sessions sessions, default 4)
  ppk   protect and unprotect --ppk-profiles PPKs with batch keys of --ppk-batch profiles,
        reporting HSM round trips per profile and tamper detection

The HSM is the configured one (hsm.* / PERSO_HSM_*); it needs the keys of ` + "`perso hsm init`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			var counts []int
			for _, s := range strings.Split(sessions, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 1 {
					return exitError{2, fmt.Errorf("--sessions %q: want a comma-separated list of positive integers", sessions)}
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
			if format != "table" && format != "json" && format != "both" {
				return exitError{2, fmt.Errorf("--format %q: want table, json or both", format)}
			}
			// Refused now rather than after minutes of measuring.
			jsonOpts := outputOptions{force: force, flag: "--json"}
			if jsonOut != "" && jsonOut != "-" {
				if err := checkOutputPath(jsonOut, jsonOpts); err != nil {
					return err
				}
			}
			defer func() {
				if err != nil && ctx.Err() != nil {
					err = fmt.Errorf("bench hsm: the measurement in progress was discarded and no report written: %w", err)
				}
			}()
			cfg, err := hsmConfig(a, false)
			if err != nil {
				return err
			}
			rep := benchHSMReport{Time: time.Now().UTC(), Backend: cfg.Backend, Duration: duration.String(),
				Host: map[string]any{"cpus": runtime.NumCPU(), "goos": runtime.GOOS, "goarch": runtime.GOARCH, "module": cfg.Module}}
			showTable := format != "json"
			const rowFmt = "%-9s %-10s %8v %8v %9v %9v %9v %9v %7v %7v %9v\n"
			if showTable && len(poolOps) > 0 {
				fmt.Printf(rowFmt, "op", "mode", "sessions", "workers", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "errors", "vs raw", "vs shared")
			}
			if len(poolOps) > 0 {
				bc := hsmpool.BenchConfig{Ops: poolOps, Sessions: counts, Duration: duration, Workers: workers,
					Raw: raw && cfg.Backend != hsmpool.BackendSoftware}
				res, err := hsmpool.Bench(ctx, cfg, bc, func(r hsmpool.BenchResult) {
					if showTable {
						pct := func(x float64) string {
							if x <= 0 {
								return "-"
							}
							return fmt.Sprintf("%.0f%%", 100*x)
						}
						f0 := func(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }
						fmt.Printf(rowFmt, r.Op, r.Mode, r.Sessions, r.Workers, f0(r.OpsPerSec), f0(r.P50), f0(r.P99), f0(r.P999), r.Errors,
							pct(r.VsRaw), pct(r.VsShared))
					}
				})
				rep.Results = res
				if err != nil {
					return err
				}
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
						return err
					}
					rep.QoS = &q
					if showTable {
						fmt.Printf("\nqos: %d sessions (%d reserved for live), %d batch workers saturating the batch lane (%.0f%% of the time), %.0f batch ops/s\n",
							q.Sessions, q.LiveReserved, q.BatchWorkers, 100*q.Saturated, q.BatchOpsPerSec)
						fmt.Printf("qos: live wait for a session p50 %.1f µs  p99 %.1f µs  p99.9 %.1f µs;  live sign latency p50 %.0f µs  p99 %.0f µs  (%d requests)\n",
							q.LiveWaitP50, q.LiveWaitP99, q.LiveWaitP999, q.LiveLatencyP50, q.LiveLatencyP99, q.LiveRequests)
					}
				}
				if doPPK {
					r, err := hsmpool.BenchPPK(ctx, p, ppkProfiles, ppkBatch)
					if err != nil {
						return err
					}
					rep.PPK = &r
					if showTable {
						fmt.Printf("\nppk: %d profiles, %d batch keys: protect %d HSM round trips (%d PKCS#11 calls) = %.4f per profile, %.0f protects/s\n",
							r.Profiles, r.BatchKeys, r.ProtectHSMOps, r.ProtectPKCS11Calls, r.RoundTripsPerProfile, r.ProtectPerSec)
						fmt.Printf("ppk: unprotect %d HSM round trips, %.0f unprotects/s; tampering detected: records %d/%d, blobs %d/%d\n",
							r.UnprotectHSMOps, r.UnprotectPerSec, r.TamperedRecordsDetected, r.TamperChecks, r.TamperedBlobsDetected, r.TamperChecks)
					}
				}
			}
			if format == "table" && jsonOut == "" {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			if jsonOut != "" && jsonOut != "-" {
				doc, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				return writeAtomic(jsonOut, append(doc, '\n'), jsonOpts)
			}
			if showTable {
				fmt.Println()
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
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
	f.StringVar(&format, "format", "both", "output: table, json or both (JSON after the table)")
	f.StringVar(&jsonOut, "json", "", "write the JSON report to this file ('-' for stdout)")
	f.BoolVar(&force, "force", false, "replace an existing --json file")
	return cmd
}
