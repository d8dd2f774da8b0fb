package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/spf13/cobra"
)

func init() { register(newHSMCmd) }

// The well-known demo PINs. `hsm init --demo-pins` sets them on a throwaway
// token and `demo --demo-pins` logs in with the user PIN; no other command
// ever uses them: trying a guessed PIN on a real token spends its retries.
const (
	demoPIN   = "1234"
	demoSOPIN = "12345678"
)

// softHSMModules are where `hsm init`, which creates SoftHSM2 tokens only,
// looks for the SoftHSM2 module when hsm.module is not set. Nothing else
// has a module default.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// openHSM opens the HSM pool configured under hsm.* (file, PERSO_HSM_* env,
// flags). Every command that uses the HSM opens it here; demoPINs is true
// only for `perso demo --demo-pins`.
func openHSM(ctx context.Context, a *app, demoPINs bool) (*hsmpool.Pool, error) {
	cfg, err := hsmConfig(a, demoPINs)
	if err != nil {
		return nil, err
	}
	p, err := hsmpool.Open(ctx, cfg)
	if err != nil {
		return nil, a.hsmOpenError(cfg, err)
	}
	return p, nil
}

// hsmOpenError adds to a failed Open what the operator needs to fix it:
// the token labels the module offers, the SoftHSM2 configuration it read,
// and which settings chose the module and token.
func (a *app) hsmOpenError(cfg hsmpool.Config, err error) error {
	err = hsmpool.Diagnose(cfg, err)
	if cfg.Backend == hsmpool.BackendSoftware {
		return fmt.Errorf("hsm: opening the software backend: %w (hsm.software.file from %s)", err, a.conf.source("hsm.software.file"))
	}
	return fmt.Errorf("hsm: opening token %q: %w (hsm.module from %s, hsm.token from %s)", cfg.TokenLabel, err,
		a.conf.source("hsm.module"), a.conf.source("hsm.token"))
}

// hsmConfig builds the pool configuration and refuses, with a usage error
// naming the setting, what would make Open guess: no module, no PIN, no
// software key file or passphrase, a live reservation that leaves batch
// work no session. demoPINs allows the demo PIN when hsm.pin is unset.
func hsmConfig(a *app, demoPINs bool) (hsmpool.Config, error) {
	v := a.v
	cfg := hsmpool.Config{
		Backend:        v.GetString("hsm.backend"),
		Module:         v.GetString("hsm.module"),
		TokenLabel:     v.GetString("hsm.token"),
		PIN:            v.GetString("hsm.pin"),
		Sessions:       v.GetInt("hsm.sessions"),
		LiveReserved:   v.GetInt("hsm.live_reserved"),
		BatchWhileLive: v.GetInt("hsm.batch_while_live"),
		SpinWait:       v.GetDuration("hsm.spin_wait"),
		KEK:            v.GetString("hsm.kek"),
		RecycleAfter:   v.GetInt("hsm.recycle_after"),
		Logger:         a.log,
	}
	if cfg.Sessions > 1 && cfg.LiveReserved >= cfg.Sessions {
		return cfg, usagef("hsm.live_reserved %d (from %s) must be below hsm.sessions %d (from %s): batch work needs a session",
			cfg.LiveReserved, a.conf.source("hsm.live_reserved"), cfg.Sessions, a.conf.source("hsm.sessions"))
	}
	if cfg.Backend == hsmpool.BackendSoftware {
		// Chosen only explicitly; Open refuses it if a module is configured too.
		cfg.PIN = ""
		cfg.SoftwareFile = v.GetString("hsm.software.file")
		cfg.SoftwarePassphrase = v.GetString("hsm.software.passphrase")
		if cfg.SoftwareFile == "" {
			return cfg, usagef("hsm.backend is software but hsm.software.file is not set: set PERSO_HSM_SOFTWARE_FILE (or hsm.software.file in perso.yaml) to the key file `perso hsm init --software` created")
		}
		if cfg.SoftwarePassphrase == "" {
			return cfg, usagef("hsm.software.passphrase is not set: set PERSO_HSM_SOFTWARE_PASSPHRASE to the key file's passphrase")
		}
		a.log.Warn("using the SOFTWARE HSM backend: development only, keys are in a file")
		return cfg, nil
	}
	if cfg.Module == "" {
		return cfg, usagef("hsm.module is not set: set PERSO_HSM_MODULE (or hsm.module in perso.yaml) to the path of the HSM's PKCS#11 module")
	}
	if _, err := os.Stat(cfg.Module); err != nil {
		return cfg, a.configErrorf("hsm.module", "%v: set it to the path of the HSM's PKCS#11 module", err)
	}
	if cfg.PIN == "" {
		if !demoPINs {
			return cfg, usagef("hsm.pin is not set: set PERSO_HSM_PIN (or hsm.pin in perso.yaml) to the token's user PIN")
		}
		a.log.Warn("hsm.pin is not set: --demo-pins: logging in with the demo PIN; for throwaway demo tokens only")
		cfg.PIN = demoPIN
	}
	return cfg, nil
}

func newHSMCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Manage the HSM token: create and provision it, list keys, check health",
	}
	cmd.AddCommand(newHSMInitCmd(a), newHSMStatusCmd(a))
	return cmd
}

func newHSMInitCmd(a *app) *cobra.Command {
	var o hsmInitOptions
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a SoftHSM2 token in DIR and provision the KEK, a transport key and the DPauth/DPpb keys",
		Long: `Creates a SoftHSM2 token directory DIR (DIR/softhsm2.conf, DIR/tokens) and a token in it,
then provisions:
  kek-1                  AES-256 key-encryption key (generated, never extractable)
  transport-1            Ki/OPc transport key (AES-128, or 3DES with --transport-alg 3des):
                         generated, or imported from $PERSO_HSM_TRANSPORT_KEY (hex) or
                         --transport-key-file (a file holding the hex value)
  dpauth-nist dpauth-brp dppb-nist dppb-brp
                         SM-DP+ signing keys (P-256 and brainpoolP256r1): generated, or with
                         --import-sgp26 DIR the GSMA SGP.26 test keys from DIR/DPauth, DIR/DPpb

The user PIN comes from hsm.pin ($PERSO_HSM_PIN), the SO PIN from hsm.so_pin
($PERSO_HSM_SO_PIN). Without them the command refuses, unless --demo-pins is given:
then the well-known demo PINs 1234 and 12345678 are set, for throwaway demo tokens only.

The module is hsm.module ($PERSO_HSM_MODULE), else SoftHSM2 at its usual paths.

DIR must not exist or be empty. Everything is built in a temporary directory beside DIR
and renamed to DIR only when the token is complete, so a failed or interrupted run
leaves nothing behind and can simply be repeated.

stdout receives shell exports for later commands, e.g.
  eval "$(perso hsm init --dir /tmp/hsm --import-sgp26 testdata/sgp26)"
and the same lines are written to DIR/perso-hsm.env. No PIN is written anywhere.

With --software, creates DIR/keys.json for the development-only software backend instead
(passphrase from hsm.software.passphrase, $PERSO_HSM_SOFTWARE_PASSPHRASE).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dir == "" {
				return usagef("hsm init: --dir is required")
			}
			abs, err := filepath.Abs(o.dir)
			if err != nil {
				return err
			}
			o.dir = abs
			return hsmInit(cmd.Context(), a, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "directory for the SoftHSM2 configuration and token files (must not exist or be empty)")
	f.StringVar(&o.label, "label", "", "token label (default: hsm.token, \"perso\")")
	f.StringVar(&o.importDir, "import-sgp26", "", "import the SGP.26 DPauth/DPpb test keys from this directory instead of generating keys")
	f.StringVar(&o.transportAlg, "transport-alg", "aes", "transport key algorithm: aes (AES-128) or 3des")
	f.StringVar(&o.transportFile, "transport-key-file", "", "file holding the transport key value in hex (else $PERSO_HSM_TRANSPORT_KEY, else generated)")
	f.StringVar(&o.kek, "kek", hsmpool.DefaultKEK, "label of the KEK to create")
	f.BoolVar(&o.software, "software", false, "create a development-only software key file instead of a SoftHSM2 token")
	f.BoolVar(&o.demoPINs, "demo-pins", false, "when hsm.pin / hsm.so_pin are unset, set the demo PINs 1234 / 12345678 (throwaway tokens only)")
	return cmd
}

type hsmInitOptions struct {
	dir, label, importDir, transportAlg, transportFile, kek string
	software, demoPINs                                      bool
}

// initPIN returns the PIN configured under key, or with --demo-pins the
// demo PIN; otherwise it refuses, naming the setting.
func initPIN(a *app, o hsmInitOptions, key, demo, what string) (string, error) {
	if pin := a.v.GetString(key); pin != "" {
		return pin, nil
	}
	if !o.demoPINs {
		return "", usagef("hsm init: %s is not set: set %s (or %s in perso.yaml) to the new token's %s, or pass --demo-pins for a throwaway demo token",
			key, envName(key), key, what)
	}
	a.log.Warn("--demo-pins: setting the well-known demo PIN; for throwaway demo tokens only", "setting", key)
	return demo, nil
}

// initModule is hsm.module, or the SoftHSM2 module at its usual place.
func initModule(a *app) (string, error) {
	if m := a.v.GetString("hsm.module"); m != "" {
		if _, err := os.Stat(m); err != nil {
			return "", a.configErrorf("hsm.module", "%v: set it to the SoftHSM2 PKCS#11 module", err)
		}
		return m, nil
	}
	for _, m := range softHSMModules {
		if _, err := os.Stat(m); err == nil {
			return m, nil
		}
	}
	return "", usagef("hsm init: hsm.module is not set and SoftHSM2 is not at %s: set PERSO_HSM_MODULE (or hsm.module in perso.yaml) to libsofthsm2.so",
		strings.Join(softHSMModules, ", "))
}

// checkInitTarget refuses a DIR that holds anything: the token directory is
// renamed into place whole, and an earlier token must never be replaced.
func checkInitTarget(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return usagef("hsm init: --dir %s exists and is not a directory; choose a new or empty directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return usagef("hsm init: --dir %s is not empty (it holds %s); choose a new or empty directory", dir, entries[0].Name())
	}
	return nil
}

// shellQuote quotes s for the exports printed for eval, if it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:,=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// softHSMConf is a SoftHSM2 configuration keeping its tokens in tokens.
func softHSMConf(tokens string) []byte {
	return []byte("directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n")
}

// hsmInit builds the token in a temporary directory beside o.dir and renames
// it to o.dir only once it is complete: any failure, including a signal,
// removes the temporary directory, so a retry starts clean.
func hsmInit(ctx context.Context, a *app, o hsmInitOptions) (err error) {
	if o.label == "" {
		o.label = a.v.GetString("hsm.token")
	}
	if o.label == "" || len(o.label) > 32 {
		return usagef("hsm init: --label %q: want 1 to 32 bytes (a PKCS#11 token label)", o.label)
	}
	if err := checkInitTarget(o.dir); err != nil {
		return err
	}
	parent := filepath.Dir(o.dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("hsm init: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(o.dir)+".init-")
	if err != nil {
		return fmt.Errorf("hsm init: %w", err)
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()

	var cfg hsmpool.Config
	var exports []string
	if o.software {
		pass := a.v.GetString("hsm.software.passphrase")
		if pass == "" {
			return usagef("hsm init --software: hsm.software.passphrase is not set: set PERSO_HSM_SOFTWARE_PASSPHRASE to the passphrase for the new key file")
		}
		file := filepath.Join(tmp, "keys.json")
		if err := hsmpool.CreateSoftwareKeyFile(file, pass); err != nil {
			return err
		}
		cfg = hsmpool.Config{Backend: hsmpool.BackendSoftware, SoftwareFile: file, SoftwarePassphrase: pass, Sessions: 1, Logger: a.log}
		exports = []string{"PERSO_HSM_BACKEND=" + hsmpool.BackendSoftware, "PERSO_HSM_SOFTWARE_FILE=" + shellQuote(filepath.Join(o.dir, "keys.json"))}
	} else {
		pin, err := initPIN(a, o, "hsm.pin", demoPIN, "user PIN")
		if err != nil {
			return err
		}
		soPIN, err := initPIN(a, o, "hsm.so_pin", demoSOPIN, "SO PIN")
		if err != nil {
			return err
		}
		module, err := initModule(a)
		if err != nil {
			return err
		}
		conf, tokens := filepath.Join(tmp, "softhsm2.conf"), filepath.Join(tmp, "tokens")
		if err := os.Mkdir(tokens, 0o700); err != nil {
			return fmt.Errorf("hsm init: %w", err)
		}
		if err := os.WriteFile(conf, softHSMConf(tokens), 0o600); err != nil {
			return fmt.Errorf("hsm init: %w", err)
		}
		os.Setenv("SOFTHSM2_CONF", conf) // before the module is loaded
		cfg = hsmpool.Config{Module: module, TokenLabel: o.label, PIN: pin, Sessions: 1, Logger: a.log}
		if err := hsmpool.InitToken(module, o.label, soPIN, pin); err != nil {
			return fmt.Errorf("hsm init: %w", hsmpool.Diagnose(cfg, err))
		}
		exports = []string{"SOFTHSM2_CONF=" + shellQuote(filepath.Join(o.dir, "softhsm2.conf")),
			"PERSO_HSM_MODULE=" + shellQuote(module), "PERSO_HSM_TOKEN=" + shellQuote(o.label)}
	}
	if err := provisionToken(ctx, a, cfg, o); err != nil {
		return err
	}
	if !o.software {
		// The token files hold no path: only the configuration names
		// where they will live once renamed.
		if err := os.WriteFile(filepath.Join(tmp, "softhsm2.conf"), softHSMConf(filepath.Join(o.dir, "tokens")), 0o600); err != nil {
			return fmt.Errorf("hsm init: %w", err)
		}
	}
	var sb strings.Builder
	for _, e := range exports {
		fmt.Fprintf(&sb, "export %s\n", e)
	}
	if err := os.WriteFile(filepath.Join(tmp, "perso-hsm.env"), []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("hsm init: %w", err)
	}
	if err := syncTree(tmp); err != nil {
		return fmt.Errorf("hsm init: %w", err)
	}
	// rename(2) replaces an empty directory and fails on anything else, so
	// a DIR filled since checkInitTarget is never overwritten.
	if err := os.Rename(tmp, o.dir); err != nil {
		return fmt.Errorf("hsm init: moving the new token into place: %w (choose a new or empty --dir)", err)
	}
	tmp = ""
	if d, err := os.Open(parent); err == nil {
		d.Sync()
		d.Close()
	}
	fmt.Fprint(os.Stdout, sb.String())
	return nil
}

// provisionToken opens the new token, provisions its keys and lists them
// on stderr; the pool is closed (the module finalised, every file written)
// before the directory is renamed.
func provisionToken(ctx context.Context, a *app, cfg hsmpool.Config, o hsmInitOptions) error {
	p, err := hsmpool.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("hsm init: %w", hsmpool.Diagnose(cfg, err))
	}
	closed := false
	defer func() {
		if !closed {
			p.Close()
		}
	}()
	if err := provision(ctx, p, o); err != nil {
		return err
	}
	keys, err := p.ListKeys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stderr, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "LABEL\tCLASS\tTYPE\tCURVE/BITS\n")
	for _, k := range keys {
		extra := k.Curve
		if k.Bits > 0 {
			extra = fmt.Sprint(k.Bits)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Label, k.Class, k.Type, extra)
	}
	tw.Flush()
	closed = true
	return p.Close()
}

// syncTree fsyncs every file and directory under dir, so that the rename
// publishes a complete token even across a crash.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// maxTransportKeyFile bounds --transport-key-file: a hex key is at most 48
// characters plus white space.
const maxTransportKeyFile = 1024

// transportKeyValue returns the transport key to import, or nil to generate.
func transportKeyValue(o hsmInitOptions) ([]byte, error) {
	var h string
	switch {
	case o.transportFile != "":
		f, err := os.Open(o.transportFile)
		if err != nil {
			return nil, usagef("hsm init: --transport-key-file: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(f, maxTransportKeyFile+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("hsm init: --transport-key-file %s: %w", o.transportFile, err)
		}
		if len(b) > maxTransportKeyFile {
			clear(b)
			return nil, usagef("hsm init: --transport-key-file %s: larger than %d bytes; want the key in hex", o.transportFile, maxTransportKeyFile)
		}
		h = string(b)
		clear(b)
	case os.Getenv("PERSO_HSM_TRANSPORT_KEY") != "":
		h = os.Getenv("PERSO_HSM_TRANSPORT_KEY")
	default:
		return nil, nil
	}
	v, err := hex.DecodeString(strings.TrimSpace(h))
	if err != nil {
		return nil, usagef("hsm init: the transport key value (--transport-key-file or PERSO_HSM_TRANSPORT_KEY) is not hex")
	}
	return v, nil
}

func provision(ctx context.Context, p *hsmpool.Pool, o hsmInitOptions) error {
	if err := p.GenerateSecretKey(ctx, o.kek, hsmpool.KindKEK); err != nil {
		return err
	}
	kind := hsmpool.KindTransportAES
	switch o.transportAlg {
	case "aes", "AES", "aes128", "AES-128":
	case "3des", "3DES", "des3":
		kind = hsmpool.KindTransport3DES
	default:
		return usagef("hsm init: --transport-alg %q: want aes or 3des", o.transportAlg)
	}
	tk, err := transportKeyValue(o)
	if err != nil {
		return err
	}
	if tk != nil {
		err = p.ImportSecretKey(ctx, "transport-1", kind, tk)
		clear(tk)
	} else {
		err = p.GenerateSecretKey(ctx, "transport-1", kind)
	}
	if err != nil {
		return err
	}
	for _, k := range []struct{ label, dir, file string }{
		{"dpauth-nist", "DPauth", "SK_S_SM_DPauth_ECDSA_NIST.pem"},
		{"dpauth-brp", "DPauth", "SK_S_SM_DPauth_ECDSA_BRP.pem"},
		{"dppb-nist", "DPpb", "SK_S_SM_DPpb_ECDSA_NIST.pem"},
		{"dppb-brp", "DPpb", "SK_S_SM_DPpb_ECDSA_BRP.pem"},
	} {
		if o.importDir != "" {
			pemData, err := os.ReadFile(filepath.Join(o.importDir, k.dir, k.file))
			if err != nil {
				return err
			}
			_, _, err = p.ImportECKeyPEM(ctx, k.label, pemData)
			clear(pemData)
			if err != nil {
				return fmt.Errorf("importing %s: %w", k.file, err)
			}
			continue
		}
		curve := esim.CurveP256
		if strings.HasSuffix(k.label, "-brp") {
			curve = esim.CurveBrainpoolP256r1
		}
		if _, err := p.GenerateECKey(ctx, k.label, curve); err != nil {
			return err
		}
	}
	return nil
}

func newHSMStatusCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Open the configured HSM, check every session and list its keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			p, err := openHSM(ctx, a, false)
			if err != nil {
				return err
			}
			defer p.Close()
			health := "ok"
			if err := p.Health(ctx); err != nil {
				health = err.Error()
			}
			keys, err := p.ListKeys(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"health": health, "keys": keys, "stats": p.Stats()})
			}
			fmt.Printf("backend %s, health: %s\n", p.Backend(), health)
			tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "LABEL\tCLASS\tTYPE\tCURVE/BITS\n")
			for _, k := range keys {
				extra := k.Curve
				if k.Bits > 0 {
					extra = fmt.Sprint(k.Bits)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Label, k.Class, k.Type, extra)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (health, keys, metrics)")
	return cmd
}
