package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench/storebench"
)

func init() { registerBench(newBenchStoreCmd) }

func newBenchStoreCmd(a *app) *cobra.Command {
	var (
		backends, loaders, callers string
		cfg                        storebench.Config
		out                        benchOutput
	)
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Measure store bulk insert and order throughput on SQLite and PostgreSQL",
		Long: `Measures, on fresh stores, bulk insert (PutBatch of --chunk-profile chunks of TS.48-size
protected profiles, by each --loaders count) and the ES2+ order path (DownloadOrder from a
profile-type pool with an EID, then ConfirmOrder, by each --callers count): profiles/s and
orders/s, process CPU per profile and per order, the store's bytes per profile, and the
PostgreSQL / SQLite ratios of the same run.

SQLite stores are made in a temporary directory. PostgreSQL is the configured database
(store.driver postgres and store.dsn, from perso.yaml, PERSO_STORE_DSN or --store.dsn): each
measurement runs in a scratch schema it creates and drops, so the database's own tables are
never touched (the user needs CREATE on the database). Without a PostgreSQL store
configured, --backends sqlite,postgres stops with what to set; the default (auto) then
measures SQLite alone and says so.

Plots (--plots): store-bulk-insert-by-loaders.png, store-orders-by-callers.png and the
history of each figure.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			defer func() { err = benchError(ctx, "store", err) }()
			started := time.Now()
			if cfg.Loaders, err = intList("--loaders", loaders); err != nil {
				return err
			}
			if cfg.Callers, err = intList("--callers", callers); err != nil {
				return err
			}
			if cfg.Profiles < 1 || cfg.Orders < 1 || cfg.Chunk < 1 || cfg.SegmentBytes < 1 {
				return usagef("bench store: --profiles, --orders, --chunk and --segment-bytes must be positive")
			}
			if err := out.check(); err != nil {
				return err
			}
			driver, dsn := a.v.GetString("store.driver"), a.v.GetString("store.dsn")
			var notes []string
			switch backends {
			case "auto", "sqlite,postgres", "postgres,sqlite", "sqlite", "postgres":
			default:
				return usagef("bench store: --backends %q: want auto, sqlite, postgres or sqlite,postgres", backends)
			}
			if backends == "auto" {
				backends = "sqlite"
				if driver == "postgres" {
					backends = "sqlite,postgres"
				} else {
					notes = append(notes, "PostgreSQL not measured: store.driver is not postgres (set store.driver: postgres and store.dsn, e.g. PERSO_STORE_DRIVER=postgres PERSO_STORE_DSN=postgres://…)")
				}
			}
			for _, b := range strings.Split(backends, ",") {
				switch b {
				case "sqlite":
					cfg.Backends = append(cfg.Backends, storebench.Backend{Driver: "sqlite"})
				case "postgres":
					if driver != "postgres" {
						return usagef("bench store: --backends %s needs a PostgreSQL store: store.driver is %s (from %s); set store.driver: postgres and store.dsn (PERSO_STORE_DRIVER, PERSO_STORE_DSN)",
							backends, driver, a.conf.source("store.driver"))
					}
					cfg.Backends = append(cfg.Backends, storebench.Backend{Driver: "postgres", DSN: dsn, Redacted: redactDSN(dsn)})
				}
			}
			r := a.benchStart(ctx, cmd, "store", "store.driver", "store.dsn")
			r.Notes = append(r.Notes, notes...)
			r.Notes = append(r.Notes, "process CPU is perso's own: for PostgreSQL the server's CPU is not in it")
			stderr := cmd.ErrOrStderr()
			cfg.TempDir = os.TempDir()
			cfg.Progress = func(s string) { fmt.Fprintf(stderr, "bench store: measuring %s\n", s) }
			if err := storebench.Run(ctx, cfg, r); err != nil {
				return err
			}
			return out.finish(ctx, r, started, cmd.OutOrStdout(), stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&backends, "backends", "auto", "stores to measure: auto (SQLite, and PostgreSQL when store.driver is postgres), sqlite, postgres or sqlite,postgres")
	f.IntVar(&cfg.Profiles, "profiles", 40000, "profiles bulk-inserted at each loader count")
	f.IntVar(&cfg.Chunk, "chunk", 1000, "profiles per PutBatch call")
	f.IntVar(&cfg.SegmentBytes, "segment-bytes", 12*1024, "protected material per profile, bytes (a TS.48 profile: about 12 KiB)")
	f.StringVar(&loaders, "loaders", "1,2", "comma-separated counts of concurrent PutBatch callers")
	f.IntVar(&cfg.Orders, "orders", 10000, "orders placed at each caller count")
	f.StringVar(&callers, "callers", "1,4,16", "comma-separated counts of concurrent order callers")
	f.String("store.driver", "", "store driver: sqlite or postgres (default from config: store.driver)")
	f.String("store.dsn", "", "PostgreSQL DSN to measure in scratch schemas (default from config: store.dsn)")
	out.addFlags(f)
	return cmd
}

// intList parses a comma-separated list of positive integers.
func intList(flag, s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, usagef("%s %q: want a comma-separated list of positive integers", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}
