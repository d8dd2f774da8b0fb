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
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// app carries what every subcommand needs: the merged configuration and a logger.
type app struct {
	v   *viper.Viper
	log *slog.Logger
}

// defaultConfigFile is read from the working directory when --config is not given.
const defaultConfigFile = "perso.yaml"

// commands is filled by the init functions of the files that define subcommands.
var commands []func(*app) *cobra.Command

func register(f func(*app) *cobra.Command) { commands = append(commands, f) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCmd().ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "perso:", err)
	os.Exit(exitCode(err))
}

func newRootCmd() *cobra.Command {
	a := &app{v: viper.New()}
	root := &cobra.Command{
		Use:           "perso",
		Short:         "eSIM data preparation: personalise, protect and serve SGP.22 profiles",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.load(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.String("config", "", "configuration file (default: ./perso.yaml if present)")
	pf.String("log-level", "info", "log level: debug, info, warn, error")
	pf.String("log-format", "text", "log format: text or json")
	for _, f := range commands {
		root.AddCommand(f(a))
	}
	return root
}

// load merges configuration sources and sets up logging.
func (a *app) load(cmd *cobra.Command) error {
	v := a.v
	setDefaults(v)
	v.SetEnvPrefix("PERSO")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return err
	}
	if file := v.GetString("config"); file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("reading config %s: %w", file, err)
		}
	} else if _, err := os.Stat(defaultConfigFile); err == nil {
		// An explicit file name, not SetConfigName: viper would also match
		// any extension-less "perso" (e.g. the binary itself) in the directory.
		v.SetConfigFile(defaultConfigFile)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("reading %s: %w", defaultConfigFile, err)
		}
	}
	return a.setupLogging()
}

func (a *app) setupLogging() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.v.GetString("log-level"))); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := a.v.GetString("log-format"); f {
	case "text":
		a.log = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		return fmt.Errorf("--log-format %q: want text or json", f)
	}
	slog.SetDefault(a.log)
	return nil
}
