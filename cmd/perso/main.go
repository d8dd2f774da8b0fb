// Command perso is the single binary of the perso eSIM data-preparation engine.
//
// Library packages never read configuration themselves; this command wires
// them from a layered configuration: flags over PERSO_* environment variables
// over perso.yaml over built-in defaults.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// app carries what every subcommand needs: the merged configuration and a logger.
type app struct {
	v    *viper.Viper
	log  *slog.Logger
	conf configSources // where each value came from (config.go)
}

// defaultConfigFile is read from the working directory when --config is not given.
const defaultConfigFile = "perso.yaml"

// commands is filled by the init functions of the files that define subcommands.
var commands []func(*app) *cobra.Command

func register(f func(*app) *cobra.Command) { commands = append(commands, f) }

func main() {
	ctx, stop := watchSignals()
	err := newRootCmd().ExecuteContext(ctx)
	if sig := stop.received(); sig != nil {
		// Whatever the command returned, it was cut short: say so and exit
		// as shells expect of a process stopped by sig (128+n).
		what := stoppedError{sig}.Error()
		msg := ""
		if err != nil {
			// Commands say what they finished or rolled back; the bare
			// cancellation they end with is said once, here.
			msg = err.Error()
			for _, tail := range []string{what, context.Canceled.Error()} {
				msg = strings.TrimSuffix(strings.TrimSuffix(msg, tail), ": ")
			}
		}
		switch {
		case err == nil:
			fmt.Fprintf(os.Stderr, "perso: %s after the command completed\n", what)
		case msg == "":
			fmt.Fprintf(os.Stderr, "perso: %s\n", what)
		default:
			fmt.Fprintf(os.Stderr, "perso: %s: %s\n", what, msg)
		}
		os.Exit(signalExitCode(sig))
	}
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "perso:", err)
	os.Exit(exitCode(err))
}

func newRootCmd() *cobra.Command {
	a := &app{v: viper.New()}
	root := &cobra.Command{
		Use:   "perso",
		Short: "eSIM data preparation: personalise, protect and serve SGP.22 profiles",
		Long: `perso turns personalisation records and profile templates into protected SGP.22
profile packages and serves them.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// Checked here, before cobra does it, so that a missing flag is
			// a usage error (exit status 2) like every other one.
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return usageError(fmt.Errorf("%s: %w", cmd.CommandPath(), err))
			}
			return a.load(cmd)
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%s: %w", cmd.CommandPath(), err))
	})
	pf := root.PersistentFlags()
	pf.String("config", "", "configuration file (default: ./perso.yaml if present)")
	pf.String("log-level", "info", "log level: debug, info, warn, error")
	pf.String("log-format", "text", "log format: text or json")
	for _, f := range commands {
		root.AddCommand(f(a))
	}
	strictArgs(root)
	return root
}

// strictArgs makes every command of the tree refuse what it does not
// understand with a usage error (exit status 2): a command group (hsm,
// template, testdata, bench, the root) run with an unknown or missing
// subcommand, and stray arguments anywhere. Cobra would print the group's
// help and exit 0, so a typo in a script would "succeed".
func strictArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			if len(args) == 0 {
				return usagef("%s: missing subcommand (one of: %s; see %s --help)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usagef("unknown command %q for %q (one of: %s)%s", args[0], cmd.CommandPath(), strings.Join(names, ", "), hint)
		}
		return
	}
	check := c.Args
	if check == nil {
		check = cobra.NoArgs
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError(fmt.Errorf("%s: %w", cmd.CommandPath(), err))
		}
		return nil
	}
}
