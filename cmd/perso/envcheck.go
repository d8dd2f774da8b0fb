package main

import (
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// toolEnv are PERSO_* variables read by the project's scripts and tests,
// not by perso itself; they must not be reported as unknown settings.
var toolEnv = map[string]bool{
	"PERSO_BIN":              true, // scripts/demo.sh, scripts/bench.sh
	"PERSO_PKCS11_MODULE":    true, // scripts/with-services.sh
	"PERSO_REQUIRE_SERVICES": true, // internal/testenv
}

var toolEnvPrefixes = []string{"PERSO_TEST_", "PERSO_BENCH_"}

// unknownEnv lists the PERSO_* variables in environ that name no setting
// and no flag of any command: a typo such as PERSO_STORE_DNS would
// otherwise be ignored silently and the default used instead. Each comes
// with the closest known name, if one is near.
func unknownEnv(root *cobra.Command, environ []string) map[string]string {
	known := map[string]bool{}
	for _, s := range settings {
		known[envName(s.key)] = true
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		visit := func(f *pflag.Flag) { known[envName(f.Name)] = true }
		c.Flags().VisitAll(visit)
		c.PersistentFlags().VisitAll(visit)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for name := range commandLineOnly {
		delete(known, envName(name))
	}
	unknown := map[string]string{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PERSO_") || known[name] || toolEnv[name] || name == envName("demo-pins") {
			continue
		}
		if hasAnyPrefix(name, toolEnvPrefixes) {
			continue
		}
		unknown[name] = closest(name, known)
	}
	return unknown
}

// warnUnknownEnv logs one warning per unknown PERSO_* variable. A warning,
// not an error: a shared environment may carry variables for another
// perso version.
func warnUnknownEnv(log *slog.Logger, root *cobra.Command) {
	unknown := unknownEnv(root, os.Environ())
	names := make([]string, 0, len(unknown))
	for n := range unknown {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if near := unknown[n]; near != "" {
			log.Warn("environment variable is not a perso setting and is ignored; did you mean "+near+"?", "variable", n)
			continue
		}
		log.Warn("environment variable is not a perso setting and is ignored (see perso config)", "variable", n)
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
