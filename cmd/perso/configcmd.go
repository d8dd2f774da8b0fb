package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func init() { register(newConfigCmd) }

func newConfigCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration and where each value comes from (defaults < perso.yaml < PERSO_* env < flags)",
		Long: `Prints every configuration key with its effective value and where that value
comes from: "default", "file perso.yaml:LINE", "env PERSO_X" or "flag --x".

Only non-secret keys are printed in the clear (an allow-list); every other key,
such as hsm.pin, hsm.so_pin, hsm.software.passphrase or a command's --ki set in
perso.yaml or PERSO_KI, is shown as "(set, redacted)" or "(unset)". A password
in store.dsn is replaced by REDACTED.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if a.conf.file != "" {
				fmt.Fprintf(out, "# config file: %s\n", a.conf.file)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, k := range configKeys(a) {
				fmt.Fprintf(tw, "%s: %s\t# %s\n", k, a.displayValue(k), a.conf.source(k))
			}
			return tw.Flush()
		},
	}
}

// configKeys lists the settings, plus any command flag given a value in
// perso.yaml or the environment (shown redacted: a command flag is never on
// the allow-list).
func configKeys(a *app) []string {
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, s := range settings {
		add(s.key)
	}
	for k := range a.conf.values {
		add(k)
	}
	flags := flagKeys(a.conf.cmd.Root())
	for _, kv := range os.Environ() {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PERSO_") || val == "" {
			continue
		}
		for k := range flags {
			if envName(k) == name {
				add(k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// displayValue renders key's effective value for `perso config`: in the
// clear only for allow-listed keys.
func (a *app) displayValue(key string) string {
	val := a.v.GetString(key)
	s, ok := settingFor(key)
	switch {
	case ok && s.show == showPlain:
		return quoteIfNeeded(val)
	case ok && s.show == showDSN:
		return quoteIfNeeded(redactDSN(val))
	case val != "" || a.conf.source(key) != "default":
		return "(set, redacted)"
	}
	return "(unset)"
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, ":#\"' \t") {
		return strconv.Quote(s)
	}
	return s
}
