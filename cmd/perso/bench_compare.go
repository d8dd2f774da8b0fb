package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/bench/compare"
)

func init() { registerBench(newBenchCompareCmd) }

// compareChildEnv marks the environment of the engine runs.
const compareChildEnv = "PERSO_BENCH_COMPARE_ENGINE"

func newBenchCompareCmd(a *app) *cobra.Command {
	var (
		reference, input, template, engineArgs, engine string
		runs                                           int
		out                                            benchOutput
	)
	cmd := &cobra.Command{
		Use:   "compare --reference 'CMD …' --input F --template T",
		Short: "Run the same records through perso run and a reference command, and compare",
		Long: `Runs the records of --input through the engine (` + "`perso run`" + `, this binary, as a child
process, into a fresh temporary SQLite store each time) and through the reference command,
alternately, --runs times each, and reports the medians side by side: wall time, records/s,
CPU per record (user + system of the child process and its descendants), peak RSS, and the
ratios reference ÷ engine for wall time and CPU per record.

The reference runs under sh -c. In it {input}, {template} and {out} become the shell-quoted
input file, template file and an empty output directory of its own; they are also in its
environment as PERSO_BENCH_INPUT, PERSO_BENCH_TEMPLATE and PERSO_BENCH_OUT. Example:

  perso bench compare --input records.csv --template T.der \
      --reference 'other-tool --profiles {template} --in {input} --out {out}'

The engine uses the configured HSM (hsm.*, PERSO_HSM_PIN …) from the environment and
perso.yaml; --engine-args adds flags to its command line (e.g. '--workers 2').`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			defer func() { err = benchError(ctx, "compare", err) }()
			started := time.Now()
			stderr := cmd.ErrOrStderr()
			// The engine child must never run bench compare again (an
			// --engine that is not perso, or a wrapper that re-enters
			// this command, would fork without end).
			if os.Getenv(compareChildEnv) != "" {
				return usagef("bench compare: refusing to run inside an engine run of bench compare (%s is set): --engine must be a perso binary", compareChildEnv)
			}
			if runCmd, _, err := cmd.Root().Find([]string{"run"}); err != nil || runCmd == cmd.Root() {
				fmt.Fprintln(stderr, "bench compare: skipped: this perso has no `perso run` (the engine) to compare yet")
				return nil
			}
			if runs < 1 {
				return usagef("bench compare: --runs %d: want at least 1", runs)
			}
			if strings.TrimSpace(reference) == "" {
				return usagef("bench compare: --reference is empty: give the command to compare with, e.g. --reference 'tool {input} {template} {out}'")
			}
			for _, f := range []struct{ flag, path string }{{"--input", input}, {"--template", template}} {
				if fi, err := os.Stat(f.path); err != nil || !fi.Mode().IsRegular() {
					return usagef("bench compare: %s %s: not a readable regular file", f.flag, f.path)
				}
			}
			if err := out.check(); err != nil {
				return err
			}
			if _, err := hsmConfig(a, false); err != nil { // the engine will need it: say so now
				return err
			}
			self := engine
			if self == "" {
				if self, err = os.Executable(); err != nil {
					return fmt.Errorf("bench compare: finding this perso binary to run as the engine (or give --engine): %w", err)
				}
			}
			absInput, _ := filepath.Abs(input)
			absTemplate, _ := filepath.Abs(template)
			extra := strings.Fields(engineArgs)
			r := a.benchStart(ctx, cmd, "compare", "hsm.backend", "hsm.module", "hsm.token", "hsm.pin", "hsm.sessions")
			r.HSM = hsmInfo(a)
			r.Store = "sqlite (a fresh temporary store per engine run)"
			cfg := compare.Config{Reference: reference, Input: absInput, Template: absTemplate, Runs: runs, TempDir: os.TempDir(),
				EngineEnv: []string{compareChildEnv + "=1"},
				Engine: func(i int, dir, report string) []string {
					return append([]string{self, "run", "--template", absTemplate, "--input", absInput,
						"--batch", fmt.Sprintf("compare-%d", i), "--store.driver", "sqlite", "--store.dsn", filepath.Join(dir, "store.db"),
						"--report", report, "--rejects", filepath.Join(dir, "rejects.csv"), "--progress", "none"}, extra...)
				},
				Progress: func(s string) { fmt.Fprintf(stderr, "bench compare: %s\n", s) }}
			if err := compare.Run(ctx, cfg, r); err != nil {
				return err
			}
			return out.finish(ctx, r, started, cmd.OutOrStdout(), stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&reference, "reference", "", "the reference command, run with sh -c ({input}, {template}, {out} substituted)")
	f.StringVar(&input, "input", "", "personalisation records (CSV, .out, Parquet, Arrow)")
	f.StringVar(&template, "template", "", "SAIP DER profile template")
	f.IntVar(&runs, "runs", 3, "alternating runs of each command (medians are reported)")
	f.StringVar(&engineArgs, "engine-args", "", "extra flags for perso run, space-separated")
	f.StringVar(&engine, "engine", "", "the perso binary to run as the engine (default: this one)")
	out.addFlags(f)
	_ = cmd.MarkFlagRequired("reference")
	_ = cmd.MarkFlagRequired("input")
	_ = cmd.MarkFlagRequired("template")
	return cmd
}
