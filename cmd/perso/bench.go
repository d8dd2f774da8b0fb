package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/perso-esim/perso/bench"
)

func init() { register(newBenchCmd) }

// benchSubcommands lets any file add a `perso bench <what>` subcommand with
// registerBench from its init function. A mode is one file: its flags, its
// measurement returning a *bench.Result, and a call to benchOutput.finish,
// which prints, writes and appends it the same way for every mode.
var benchSubcommands []func(*app) *cobra.Command

func registerBench(f func(*app) *cobra.Command) { benchSubcommands = append(benchSubcommands, f) }

func newBenchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks (e.g. `perso bench hsm`), each a table, a JSON report, a history line and plots",
		Long: `Every mode prints a table, can write a JSON report (--json), appends one line to the
results history (--history, JSON Lines; default ` + bench.DefaultHistory + ` when run inside the
perso repository) and can draw PNG plots (--plots DIR): the mode's own charts and each of its
figures across the runs of the history, so that a regression shows.

Each run records the machine (CPU model, cores, memory, load), the Go version, the git
revision, the HSM module and token, the store backend and the configuration (secrets
redacted). Figures are CPU time per unit of work and ratios measured in the same run
next to wall-clock throughput.`,
	}
	for _, f := range benchSubcommands {
		cmd.AddCommand(f(a))
	}
	return cmd
}

// benchOutput holds the output flags every mode shares.
type benchOutput struct {
	format, jsonOut, history, plots string
	force                           bool
}

func (o *benchOutput) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.format, "format", "table", "output on stdout: table, json or both (JSON after the table)")
	f.StringVar(&o.jsonOut, "json", "", "write the JSON report to this file ('-' for stdout)")
	f.BoolVar(&o.force, "force", false, "replace an existing --json file")
	f.StringVar(&o.history, "history", "", "append the result to this JSON Lines file (default: "+bench.DefaultHistory+
		" in the perso repository containing the working directory; 'none': do not append)")
	f.StringVar(&o.plots, "plots", "", "draw PNG plots (this run's charts and the history of each figure) into this directory")
}

// check refuses bad output flags before minutes of measuring.
func (o *benchOutput) check() error {
	switch o.format {
	case "table", "json", "both":
	default:
		return usagef("--format %q: want table, json or both", o.format)
	}
	if o.jsonOut != "" && o.jsonOut != "-" {
		if err := checkOutputPath(o.jsonOut, outputOptions{force: o.force, flag: "--json"}); err != nil {
			return err
		}
	}
	if o.plots != "" {
		if fi, err := os.Stat(o.plots); err == nil && !fi.IsDir() {
			return usagef("--plots %s: not a directory", o.plots)
		}
	}
	return nil
}

// historyPath is where the result is appended, or "" for nowhere.
func (o *benchOutput) historyPath() string {
	switch o.history {
	case "none":
		return ""
	case "":
		if root := persoRepoRoot(); root != "" {
			return filepath.Join(root, bench.DefaultHistory)
		}
		return ""
	}
	return o.history
}

// persoRepoRoot is the directory of the perso module's go.mod containing
// the working directory, or "" outside a checkout (an installed binary run
// elsewhere keeps no history unless told where).
func persoRepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/perso-esim/perso\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// benchStart fills what every mode records: time, machine, revision, and
// the configuration (redacted). keys are the settings the mode used.
func (a *app) benchStart(ctx context.Context, cmd *cobra.Command, mode string, keys ...string) *bench.Result {
	r := &bench.Result{Mode: mode, Time: time.Now().UTC(), Env: bench.CurrentEnv(ctx), Config: map[string]string{}}
	for _, k := range keys {
		r.Config[k] = a.displayValue(k)
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Name == "force" {
			return
		}
		if _, ok := settingFor(f.Name); ok {
			r.Config[f.Name] = a.displayValue(f.Name)
			return
		}
		if _, ok := r.Config[f.Name]; !ok {
			r.Config["--"+f.Name] = f.Value.String()
		}
	})
	return r
}

// hsmInfo is what the results say about the HSM: never its PIN.
func hsmInfo(a *app) *bench.HSMInfo {
	return &bench.HSMInfo{Backend: a.v.GetString("hsm.backend"), Module: a.v.GetString("hsm.module"), Token: a.v.GetString("hsm.token")}
}

// finish prints r as --format says, writes --json, appends the history and
// draws --plots. A measurement cut short (ctx done) is not recorded.
func (o *benchOutput) finish(ctx context.Context, r *bench.Result, started time.Time, stdout, stderr io.Writer) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bench %s: the measurement in progress was discarded and no report written: %w", r.Mode, context.Cause(ctx))
	}
	r.WallSeconds = time.Since(started).Seconds()
	doc, err := bench.JSON(r)
	if err != nil {
		return err
	}
	if o.format != "json" {
		if err := bench.WriteTable(stdout, r); err != nil {
			return err
		}
	}
	if o.format != "table" || o.jsonOut == "-" {
		if o.format == "both" {
			fmt.Fprintln(stdout)
		}
		if _, err := stdout.Write(doc); err != nil {
			return err
		}
	}
	if o.jsonOut != "" && o.jsonOut != "-" {
		if err := writeAtomic(o.jsonOut, doc, outputOptions{force: o.force, flag: "--json"}); err != nil {
			return err
		}
	}
	hist := bench.History{}
	if path := o.historyPath(); path != "" {
		if err := bench.AppendHistory(path, r); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench %s: result appended to %s\n", r.Mode, path)
		if o.plots != "" {
			if hist, err = bench.ReadHistory(path); err != nil {
				return err
			}
			if len(hist.Bad) > 0 {
				fmt.Fprintf(stderr, "bench: %s: skipped %d lines that are not results (lines %v)\n", path, len(hist.Bad), hist.Bad)
			}
		}
	} else {
		fmt.Fprintf(stderr, "bench %s: no results history appended (not in the perso repository, or --history none); give --history FILE to keep one\n", r.Mode)
		hist.Results = []*bench.Result{r}
	}
	if o.plots != "" {
		files, err := bench.WritePlots(o.plots, r, hist)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench %s: plots %s\n", r.Mode, strings.Join(files, " "))
	}
	return nil
}

// benchError says, when the command was stopped, that nothing was
// recorded, rather than the bare cancellation a measurement ends with.
func benchError(ctx context.Context, mode string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("bench %s: the measurement in progress was discarded and no report written: %w", mode, context.Cause(ctx))
	}
	return err
}
