package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func init() { register(newConfigCmd) }

// secretKeys are configuration keys whose values are never printed.
var secretKeys = map[string]bool{
	"hsm.pin":                 true,
	"hsm.software.passphrase": true,
}

func newConfigCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration (defaults < perso.yaml < PERSO_* env < flags)",
		Long: `Prints every configuration key with its effective value and where that value
comes from. Secrets (hsm.pin, hsm.software.passphrase) are shown only as set or unset.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys := a.v.AllKeys()
			sort.Strings(keys)
			out := cmd.OutOrStdout()
			if f := a.v.ConfigFileUsed(); f != "" {
				fmt.Fprintf(out, "# config file: %s\n", f)
			}
			for _, k := range keys {
				if k == "config" {
					continue
				}
				val := fmt.Sprint(a.v.Get(k))
				if secretKeys[k] {
					val = "(unset)"
					if a.v.GetString(k) != "" {
						val = "(set, redacted)"
					}
				}
				fmt.Fprintf(out, "%s: %s\n", k, quoteIfNeeded(val))
			}
			return nil
		},
	}
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, ":#") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
