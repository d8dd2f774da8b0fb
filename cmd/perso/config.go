package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Configuration keys map to perso.yaml (nested with dots), to PERSO_*
// environment variables (dots and dashes become underscores: hsm.module ->
// PERSO_HSM_MODULE) and, where a command defines one, to a flag of the same
// name. Priority: flags > environment > perso.yaml > built-in defaults.
//
// Every value is checked before a command runs: a key nobody defines, a value
// of the wrong type or out of range is a usage error (exit status 2) naming
// the key, the value (unless secret), what is expected and where the value
// came from. viper alone would turn "hsm.sessions: banana" into 0.

// display says how `perso config` may show a setting's value. The zero value
// is "secret", so a key added without thinking about it is never printed:
// `perso config` shows in the clear only what is on this allow-list.
type display int

const (
	showSecret display = iota // "(set, redacted)" or "(unset)"
	showPlain                 // the value itself
	showDSN                   // the value with any password replaced (redactDSN)
)

type settingKind int

const (
	kindString   settingKind = iota // free text: a label, a path
	kindEnum                        // one of enum
	kindInt                         // an integer in [min, max]
	kindDuration                    // a Go duration ("200us") in [min, max] nanoseconds
)

// setting describes one configuration key that is not just a command's flag.
type setting struct {
	key      string
	kind     settingKind
	def      any
	enum     []string
	min, max int64
	maxLen   int  // kindString: longest value in bytes (0: no limit)
	nonEmpty bool // kindString: "" is refused
	show     display
}

// settings lists every configuration key with its built-in default. No
// default points at a development module or a demo PIN: the HSM module and
// PIN must be configured (hsm init and demo use demo PINs only when told to
// with --demo-pins). The store defaults to the embedded SQLite store in the
// working directory, the intended product default for one host.
var settings = []setting{
	// HSM: a PKCS#11 token. The software backend is for development only
	// and is never chosen when a module is configured.
	{key: "hsm.backend", kind: kindEnum, def: "pkcs11", enum: []string{"pkcs11", "software"}, show: showPlain},
	{key: "hsm.module", kind: kindString, def: "", show: showPlain},
	// A PKCS#11 token label is at most 32 bytes (CK_TOKEN_INFO.label).
	{key: "hsm.token", kind: kindString, def: "perso", nonEmpty: true, maxLen: 32, show: showPlain},
	{key: "hsm.pin", kind: kindString, def: ""},
	{key: "hsm.so_pin", kind: kindString, def: ""}, // hsm init only
	{key: "hsm.sessions", kind: kindInt, def: 4, min: 1, max: 256, show: showPlain},
	// 0: max(1, sessions/4); must leave batch work at least one session.
	{key: "hsm.live_reserved", kind: kindInt, def: 0, min: 0, max: 255, show: showPlain},
	// Batch operations in flight while live requests run.
	{key: "hsm.batch_while_live", kind: kindInt, def: 1, min: 1, max: 256, show: showPlain},
	// How long waiting callers poll before sleeping; 0: 200µs; negative: never.
	// Polling longer than 100ms only burns CPU.
	{key: "hsm.spin_wait", kind: kindDuration, def: "200us", min: math.MinInt64, max: int64(100 * time.Millisecond), show: showPlain},
	{key: "hsm.kek", kind: kindString, def: "kek-1", nonEmpty: true, maxLen: 128, show: showPlain}, // KEK for new batch keys
	{key: "hsm.software.file", kind: kindString, def: "", show: showPlain},                         // development only
	{key: "hsm.software.passphrase", kind: kindString, def: ""},
	// Reinitialise the PKCS#11 module (sessions closed, C_Finalize,
	// C_Initialize, sessions reopened) after this many operations (0: 20000
	// on SoftHSM2, never on other modules; -1: never): SoftHSM 2.6.1 frees
	// destroyed session objects (~850 B per ECDH) only when the module is
	// finalized.
	{key: "hsm.recycle_after", kind: kindInt, def: 0, min: -1, max: 1 << 30, show: showPlain},

	// Store: embedded (perso.db in the working directory) by default,
	// PostgreSQL at scale. A PostgreSQL DSN may carry a password.
	{key: "store.driver", kind: kindEnum, def: "sqlite", enum: []string{"sqlite", "postgres"}, show: showPlain},
	{key: "store.dsn", kind: kindString, def: "perso.db", nonEmpty: true, show: showDSN},

	// perso serve (ES9+). The defaults serve the SGP.26 test PKI from the
	// repository's testdata as testsmdpplus1.example.com.
	{key: "serve.address", kind: kindString, def: "testsmdpplus1.example.com", nonEmpty: true, maxLen: 255, show: showPlain},
	{key: "serve.listen", kind: kindString, def: ":8443", nonEmpty: true, show: showPlain},
	{key: "serve.curves", kind: kindString, def: "nist,brp", nonEmpty: true, show: showPlain},
	{key: "serve.pki_dir", kind: kindString, def: "testdata/sgp26", nonEmpty: true, show: showPlain}, // CI, DPauth, DPpb certificates (SGP.26 layout)
	{key: "serve.tls", kind: kindEnum, def: "on", enum: []string{"on", "off"}, show: showPlain},      // off: behind a TLS terminator
	{key: "serve.tls_cert", kind: kindString, def: "testdata/sgp26/DPtls/CERT_S_SM_DP_VARO_TLS_NIST.der", nonEmpty: true, show: showPlain},
	{key: "serve.tls_key", kind: kindString, def: "testdata/sgp26/DPtls/SK_S_SM_DP_TLS_NIST.pem", nonEmpty: true, show: showPlain}, // a path, not the key
	// Sessions live in the store; LPAs pause between calls, so at least a minute.
	{key: "serve.session_ttl", kind: kindDuration, def: "10m", min: int64(time.Minute), max: int64(24 * time.Hour), show: showPlain},
	{key: "serve.max_body", kind: kindInt, def: 64 << 10, min: 4 << 10, max: 16 << 20, show: showPlain},
	{key: "serve.call_timeout", kind: kindDuration, def: "30s", min: int64(time.Second), max: int64(10 * time.Minute), show: showPlain},
	// ES2+ progress reports to operators: CA certificates (PEM file) their
	// callback servers chain to ("": the system roots), and deliveries in
	// flight.
	{key: "serve.operator_roots", kind: kindString, def: "", show: showPlain},
	{key: "serve.callback_workers", kind: kindInt, def: 4, min: 1, max: 256, show: showPlain},
	// Wait before the second delivery attempt of a report; it doubles per failure, up to 30 min.
	{key: "serve.callback_backoff", kind: kindDuration, def: "2s", min: int64(time.Millisecond), max: int64(time.Hour), show: showPlain},
	// Operations listener (plain HTTP: /metrics, /healthz, /readyz); ""
	// (default): none. Bind it to loopback or a management network: it is
	// unauthenticated.
	{key: "serve.metrics_listen", kind: kindString, def: "", show: showPlain},
	// Per-client (IP address) token bucket on ES9+: rate_limit calls per
	// second sustained (0: no limit), rate_burst at once. One download is
	// 4 or 5 calls; carrier NAT puts many devices behind one address.
	{key: "serve.rate_limit", kind: kindInt, def: 20, min: 0, max: 1 << 20, show: showPlain},
	{key: "serve.rate_burst", kind: kindInt, def: 60, min: 1, max: 1 << 20, show: showPlain},

	// perso run. rescue_after: how long a chunk may stay with a worker
	// before the other workers (run --worker) presume it dead and take the
	// chunk over; it must exceed a chunk's time in the pipeline.
	// stop_grace: after Ctrl-C/SIGTERM, how long the chunks in flight have
	// to be stored before they roll back. worker_id: this process's name in
	// the batch's report and job table ("": host:pid); unique among live
	// workers (run --worker reclaims its own ID's unfinished chunks at start).
	{key: "engine.rescue_after", kind: kindDuration, def: "30s", min: int64(2 * time.Second), max: int64(24 * time.Hour), show: showPlain},
	{key: "engine.stop_grace", kind: kindDuration, def: "10s", min: int64(100 * time.Millisecond), max: int64(10 * time.Minute), show: showPlain},
	{key: "engine.worker_id", kind: kindString, def: "", maxLen: 100, show: showPlain},
	// nice: the CPU priority perso run lowers itself to (0: left as it
	// is), so that a perso serve on the same host keeps its latency while
	// a batch runs; never raised (a run under nice -n 15 stays at 15).
	{key: "engine.nice", kind: kindInt, def: 10, min: 0, max: 19, show: showPlain},

	// Largest template file read (bytes); --template-max-size overrides it.
	{key: "template.max_size", kind: kindInt, def: 4 << 20, min: 1 << 10, max: 1 << 30, show: showPlain},
	// Per-template settings (cmd/perso/template_settings.go, docs/formats.md):
	// algorithm: auto (records' algorithm, refused if the template does not
	// declare it), keep (the template's, whatever the records say), or
	// milenage/tuak128/tuak256/test (switch the template to it).
	// home_plmn (MCC+MNC) turns the IMSI-derived files on; no_derive turns
	// some off (ad,hplmn,isim,csim); gid1/gid2 (hex) and suci
	// (B:ID:KEYHEX,A:ID:KEYHEX,null) are per-template file contents.
	{key: "template.algorithm", kind: kindEnum, def: "auto", enum: algorithmModes, show: showPlain},
	{key: "template.home_plmn", kind: kindString, def: "", maxLen: 6, show: showPlain},
	{key: "template.no_derive", kind: kindString, def: "", maxLen: 64, show: showPlain},
	{key: "template.gid1", kind: kindString, def: "", maxLen: 510, show: showPlain},
	{key: "template.gid2", kind: kindString, def: "", maxLen: 510, show: showPlain},
	{key: "template.suci", kind: kindString, def: "", maxLen: 4096, show: showPlain},

	{key: "log-level", kind: kindEnum, def: "info", enum: []string{"debug", "info", "warn", "error"}, show: showPlain},
	{key: "log-format", kind: kindEnum, def: "text", enum: []string{"text", "json"}, show: showPlain},
}

// commandLineOnly are flags that cannot come from perso.yaml or PERSO_*:
// where the configuration is, help, and the explicit opt-in to demo PINs
// (a configuration file must not be able to turn it on silently).
var commandLineOnly = map[string]bool{"config": true, "help": true, "demo-pins": true}

// maxConfigFile bounds the configuration file: it is small by nature, and
// --config /dev/zero must not exhaust memory.
const maxConfigFile = 1 << 20

func settingFor(key string) (setting, bool) {
	for _, s := range settings {
		if s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

func setDefaults(v *viper.Viper) {
	for _, s := range settings {
		v.SetDefault(s.key, s.def)
	}
}

// envName is the environment variable viper reads for key.
func envName(key string) string {
	return "PERSO_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// fileValue is a key set in the configuration file.
type fileValue struct {
	line int
	node *yaml.Node
}

// configSources records where the configuration came from, for error
// messages and `perso config`.
type configSources struct {
	file   string               // configuration file read ("" if none)
	values map[string]fileValue // keys set in it (null values excluded)
	cmd    *cobra.Command       // the command being run (its flags)
}

// source says where key's effective value comes from, as an operator
// would look for it: "flag --x", "env PERSO_X", "file perso.yaml:3", "default".
func (c *configSources) source(key string) string {
	if c.cmd != nil {
		if f := c.cmd.Flags().Lookup(key); f != nil && f.Changed {
			return "flag --" + key
		}
	}
	// viper ignores empty environment variables (AllowEmptyEnv is off).
	if v, ok := os.LookupEnv(envName(key)); ok && v != "" {
		return "env " + envName(key)
	}
	if fv, ok := c.values[key]; ok {
		return fmt.Sprintf("file %s:%d", c.file, fv.line)
	}
	return "default"
}

// load merges the configuration sources, checks every value and sets up
// logging. Any configuration error is a usage error (exit status 2).
func (a *app) load(cmd *cobra.Command) error {
	v := a.v
	setDefaults(v)
	v.SetEnvPrefix("PERSO")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return err
	}
	a.conf = configSources{cmd: cmd}
	file, explicit := v.GetString("config"), true
	if file == "" {
		// An explicit file name, not SetConfigName: viper would also match
		// any extension-less "perso" (e.g. the binary itself) in the directory.
		file, explicit = defaultConfigFile, false
	}
	data, err := readConfigFile(file, explicit)
	if err != nil {
		return usageError(err)
	}
	if data != nil {
		a.conf.file = file
		if a.conf.values, err = checkConfigFile(file, data, cmd); err != nil {
			return usageError(err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return usagef("%s: %w", file, err)
		}
	}
	if err := checkEnvAndFlags(cmd); err != nil {
		return usageError(err)
	}
	if err := a.setupLogging(); err != nil {
		return err
	}
	warnUnknownEnv(a.log, cmd.Root())
	return nil
}

// readConfigFile reads the configuration file, bounded. A missing default
// file is no error (nil data); a missing --config file is.
func readConfigFile(file string, explicit bool) ([]byte, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return nil, nil
	}
	if err != nil {
		if explicit {
			return nil, fmt.Errorf("--config: %w", err)
		}
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(data) > maxConfigFile {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a perso configuration file", file, maxConfigFile)
	}
	return data, nil
}

// flagKeys are the names of every flag some perso command defines: each
// may also be set in perso.yaml or PERSO_* (template personalise --ki from
// PERSO_KI, for instance).
func flagKeys(root *cobra.Command) map[string]bool {
	keys := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) { keys[f.Name] = true }
		c.LocalFlags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for k := range commandLineOnly {
		delete(keys, k)
	}
	return keys
}

// checkConfigFile decodes the YAML strictly and returns the keys it sets.
func checkConfigFile(file string, data []byte, cmd *cobra.Command) (map[string]fileValue, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	values := map[string]fileValue{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return values, nil // empty or only comments
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null" {
		return values, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping of configuration keys (e.g. \"hsm:\" then \"  token: perso\")", file, top.Line)
	}
	known := flagKeys(cmd.Root())
	for _, s := range settings {
		known[s.key] = true
	}
	var walk func(prefix string, m *yaml.Node) error
	walk = func(prefix string, m *yaml.Node) error {
		for i := 0; i+1 < len(m.Content); i += 2 {
			kn, vn := m.Content[i], m.Content[i+1]
			for vn.Kind == yaml.AliasNode && vn.Alias != nil {
				vn = vn.Alias
			}
			key := strings.ToLower(kn.Value)
			if prefix != "" {
				key = prefix + "." + key
			}
			where := fmt.Sprintf("%s:%d", file, kn.Line)
			switch {
			case commandLineOnly[key]:
				return fmt.Errorf("%s: %s can only be given on the command line (--%s)", where, key, key)
			case vn.Kind == yaml.MappingNode && isSection(key, known):
				// A section, even if a flag has the same name (template:
				// holds max_size; --template names a file).
				if err := walk(key, vn); err != nil {
					return err
				}
			case known[key]:
				if vn.Kind == yaml.ScalarNode && vn.ShortTag() == "!!null" {
					continue // "key:" with no value leaves it unset
				}
				if err := checkFileValue(key, vn, cmd); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
				values[key] = fileValue{line: kn.Line, node: vn}
			case isSection(key, known):
				if vn.Kind != yaml.MappingNode {
					return fmt.Errorf("%s: %s is a section: want keys under it (e.g. %s)", where, key, sectionExample(key, known))
				}
				if err := walk(key, vn); err != nil {
					return err
				}
			default:
				// The value is not shown: a misspelt key may hold a secret.
				msg := fmt.Sprintf("%s: unknown configuration key %q", where, key)
				if s := closest(key, known); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", s)
				}
				return errors.New(msg + " (`perso config` lists the keys; see the README's Configuration section)")
			}
		}
		return nil
	}
	if err := walk("", top); err != nil {
		return nil, err
	}
	return values, nil
}

func isSection(key string, known map[string]bool) bool {
	for k := range known {
		if strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

func sectionExample(key string, known map[string]bool) string {
	var ks []string
	for k := range known {
		if strings.HasPrefix(k, key+".") {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks[0]
}

// closest suggests the known key nearest to a misspelt one (edit distance
// at most 2, or the same last component).
func closest(key string, known map[string]bool) string {
	best, bestD := "", 3
	for k := range known {
		if d := editDistance(key, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// isSecretKey says whether key's value must never be shown: every key not
// on the allow-list of plain settings, including every command flag (--ki,
// --opc, --adm1 …).
func isSecretKey(key string) bool {
	s, ok := settingFor(key)
	return !ok || s.show == showSecret
}

// shown renders val for an error message: secrets never appear.
func shown(key, val string) string {
	if s, ok := settingFor(key); ok && s.show == showDSN {
		return strconv.Quote(redactDSN(val))
	}
	if isSecretKey(key) {
		return "the value (not shown)"
	}
	return strconv.Quote(val)
}

// checkFileValue checks a YAML value against what key expects. String
// values must be YAML strings: unquoted, 0123 is the number 83 and
// 8944150000000000017 a number that may lose digits.
func checkFileValue(key string, n *yaml.Node, cmd *cobra.Command) error {
	tag := n.ShortTag()
	if s, ok := settingFor(key); ok {
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want %s, got a %s", key, expectation(s), nodeKind(n))
		}
		switch s.kind {
		case kindInt:
			if tag != "!!int" {
				return fmt.Errorf("%s: %s is not an integer; want %s", key, shown(key, n.Value), expectation(s))
			}
		default:
			if tag != "!!str" {
				return fmt.Errorf("%s: %s is a %s; want %s, written as a quoted string in YAML", key, shown(key, n.Value), tagName(tag), expectation(s))
			}
		}
		return checkValue(s, n.Value)
	}
	// A command's flag: checked against the running command's flag type;
	// flags of other commands are checked when those commands run.
	f := cmd.Flags().Lookup(key)
	if f == nil {
		return nil
	}
	typ := f.Value.Type()
	want := map[string]string{"int": "!!int", "int64": "!!int", "uint": "!!int", "bool": "!!bool", "float64": "!!float",
		"string": "!!str", "duration": "!!str"}[typ]
	if strings.HasSuffix(typ, "Slice") {
		if n.Kind == yaml.SequenceNode {
			for _, e := range n.Content {
				if e.Kind != yaml.ScalarNode {
					return fmt.Errorf("%s: want a list of values, got a list holding a %s", key, nodeKind(e))
				}
				if err := checkFlagString(key, typ, e.Value); err != nil {
					return err
				}
			}
			return nil
		}
		want = "!!str"
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: want %s (as --%s takes), got a %s", key, typeName(typ), key, nodeKind(n))
	}
	if want == "!!float" && tag == "!!int" {
		tag = "!!float"
	}
	if want != "" && tag != want {
		return fmt.Errorf("%s: %s is a %s; want %s (as --%s takes)%s", key, shown(key, n.Value), tagName(tag), typeName(typ), key,
			map[bool]string{true: ", written as a quoted string in YAML"}[want == "!!str"])
	}
	return checkFlagString(key, typ, n.Value)
}

// checkFlagString checks a textual value for a flag of type typ.
func checkFlagString(key, typ, val string) error {
	var err error
	switch strings.TrimSuffix(typ, "Slice") {
	case "int", "int64":
		_, err = cast.ToInt64E(val)
	case "uint":
		_, err = cast.ToUint64E(val)
	case "bool":
		_, err = strconv.ParseBool(val)
	case "float64":
		_, err = strconv.ParseFloat(val, 64)
	case "duration":
		_, err = time.ParseDuration(val)
	}
	if err != nil {
		return fmt.Errorf("%s: %s is not %s (as --%s takes)", key, shown(key, val), typeName(typ), key)
	}
	return nil
}

// typeName names a pflag type for an operator.
func typeName(typ string) string {
	switch strings.TrimSuffix(typ, "Slice") {
	case "int", "int64", "uint":
		return "an integer"
	case "bool":
		return "true or false"
	case "float64":
		return "a number"
	case "duration":
		return "a duration such as 10s"
	}
	return "a string"
}

// checkValue checks a textual value against a setting.
func checkValue(s setting, val string) error {
	switch s.kind {
	case kindString:
		if s.nonEmpty && val == "" {
			return fmt.Errorf("%s: empty; want %s", s.key, expectation(s))
		}
		if s.maxLen > 0 && len(val) > s.maxLen {
			return fmt.Errorf("%s: %s is %d bytes long; want %s", s.key, shown(s.key, val), len(val), expectation(s))
		}
	case kindEnum:
		if !slices.Contains(s.enum, val) {
			return fmt.Errorf("%s: %s; want %s", s.key, shown(s.key, val), expectation(s))
		}
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %s is not an integer; want %s", s.key, shown(s.key, val), expectation(s))
		}
		if n < s.min || n > s.max {
			return fmt.Errorf("%s: %d is out of range; want %s", s.key, n, expectation(s))
		}
	case kindDuration:
		d, err := time.ParseDuration(strings.TrimSpace(val))
		if err != nil {
			return fmt.Errorf("%s: %s is not a duration; want %s", s.key, shown(s.key, val), expectation(s))
		}
		if int64(d) < s.min || int64(d) > s.max {
			return fmt.Errorf("%s: %s is out of range; want %s", s.key, d, expectation(s))
		}
	}
	return nil
}

func expectation(s setting) string {
	switch s.kind {
	case kindEnum:
		return "one of " + strings.Join(s.enum, ", ")
	case kindInt:
		return fmt.Sprintf("an integer from %d to %d", s.min, s.max)
	case kindDuration:
		if s.min == math.MinInt64 {
			return fmt.Sprintf("a duration such as 200us, at most %s (negative: never)", time.Duration(s.max))
		}
		return fmt.Sprintf("a duration from %s to %s", time.Duration(s.min), time.Duration(s.max))
	}
	w := "a string"
	if s.nonEmpty {
		w = "a non-empty string"
	}
	if s.maxLen > 0 {
		w += fmt.Sprintf(" of at most %d bytes", s.maxLen)
	}
	return w
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func tagName(tag string) string {
	switch tag {
	case "!!int":
		return "number"
	case "!!float":
		return "decimal number"
	case "!!bool":
		return "boolean"
	case "!!str":
		return "string"
	case "!!timestamp":
		return "date"
	}
	return "value of type " + tag
}

// checkEnvAndFlags checks the values the environment and the command line
// give to settings and to the running command's flags.
func checkEnvAndFlags(cmd *cobra.Command) error {
	// An opt-in to demo PINs must be seen on the command line, not
	// inherited from an environment.
	if val, ok := os.LookupEnv(envName("demo-pins")); ok && val != "" {
		return fmt.Errorf("%s is not read: --demo-pins can only be given on the command line", envName("demo-pins"))
	}
	for _, s := range settings {
		if f := cmd.Flags().Lookup(s.key); f != nil && f.Changed {
			if err := checkValue(s, f.Value.String()); err != nil {
				return fmt.Errorf("%w (from flag --%s)", err, s.key)
			}
		}
		if val, ok := os.LookupEnv(envName(s.key)); ok && val != "" {
			if err := checkValue(s, val); err != nil {
				return fmt.Errorf("%w (from env %s)", err, envName(s.key))
			}
		}
	}
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := settingFor(f.Name); ok || commandLineOnly[f.Name] || err != nil {
			return
		}
		if val, ok := os.LookupEnv(envName(f.Name)); ok && val != "" {
			if e := checkFlagString(f.Name, f.Value.Type(), val); e != nil {
				err = fmt.Errorf("%w (from env %s)", e, envName(f.Name))
			}
		}
	})
	return err
}

func (a *app) setupLogging() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.v.GetString("log-level"))); err != nil {
		return usagef("log-level (from %s): %w", a.conf.source("log-level"), err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := a.v.GetString("log-format"); f {
	case "text":
		a.log = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		return usagef("log-format %q (from %s): want text or json", f, a.conf.source("log-format"))
	}
	slog.SetDefault(a.log)
	return nil
}

// configErrorf is a usage error about a setting, naming where its value
// came from; secrets are never part of format's arguments.
func (a *app) configErrorf(key, format string, args ...any) error {
	return usagef("%s (from %s): %s", key, a.conf.source(key), fmt.Sprintf(format, args...))
}

// ---- DSN redaction ----

const redacted = "REDACTED"

var (
	// key=value DSNs (libpq): password=secret, password='se cret', sslpassword=…
	kvPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s]*)`)
	// URL query parameters: ?password=…&sslpassword=…
	queryPassword = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&#]*`)
)

// redactDSN returns dsn with every password replaced by REDACTED, in both
// the URL form (postgres://user:pass@host/db, ?password=) and the key=value
// form (password=… or password='…'). It is used wherever a DSN is printed,
// logged or put into an error. It errs on the side of hiding too much: in
// the URL form everything between the user name and the last '@' goes,
// since a password may itself hold '/', '@' or ':'.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		scheme, rest := dsn[:i+3], dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 {
				rest = rest[:colon+1] + redacted + rest[at:]
			}
		}
		return scheme + queryPassword.ReplaceAllString(rest, "${1}"+redacted)
	}
	return kvPassword.ReplaceAllString(dsn, "${1}"+redacted)
}

// dsnPasswords extracts the passwords a DSN carries (for scrubbing them
// out of messages written by code that did not redact them).
func dsnPasswords(dsn string) []string {
	var pw []string
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 {
				pw = append(pw, rest[colon+1:at])
			}
		}
		for _, m := range queryPassword.FindAllStringIndex(rest, -1) {
			_, v, _ := strings.Cut(rest[m[0]:m[1]], "=")
			pw = append(pw, v)
		}
	} else {
		for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
			pw = append(pw, strings.Trim(m[2], "'"))
		}
	}
	return slices.DeleteFunc(pw, func(s string) bool { return s == "" })
}

// scrubbedError carries an error whose message had a DSN's password
// removed; errors.Is/As still see the original.
type scrubbedError struct {
	msg string
	err error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.err }

// scrubDSN removes dsn's password from err's message, whatever wrapped it
// (a driver may quote the DSN it failed to parse).
func scrubDSN(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), dsn, redactDSN(dsn))
	for _, pw := range dsnPasswords(dsn) {
		if len(pw) < 3 {
			continue // replacing every "a" would garble the message; the whole DSN is replaced above
		}
		msg = strings.ReplaceAll(msg, pw, redacted)
		if u, e := url.QueryUnescape(pw); e == nil && u != pw && len(u) >= 3 {
			msg = strings.ReplaceAll(msg, u, redacted)
		}
	}
	if msg == err.Error() {
		return err
	}
	return scrubbedError{msg: msg, err: err}
}
