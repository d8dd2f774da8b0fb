package main

import "github.com/spf13/cobra"

func init() { register(newBenchCmd) }

// benchSubcommands lets any file add a `perso bench <what>` subcommand with
// registerBench from its init function.
var benchSubcommands []func(*app) *cobra.Command

func registerBench(f func(*app) *cobra.Command) { benchSubcommands = append(benchSubcommands, f) }

func newBenchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks (e.g. `perso bench hsm`)",
	}
	for _, f := range benchSubcommands {
		cmd.AddCommand(f(a))
	}
	return cmd
}
