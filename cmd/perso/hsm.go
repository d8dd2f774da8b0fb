package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/perso-esim/perso/hsmpool"
	"github.com/spf13/cobra"
)

func init() { register(newHSMCmd) }

// Demo-only PINs used by `perso hsm init` when PERSO_HSM_PIN /
// PERSO_HSM_SO_PIN are not set. Never use them for a real token.
const (
	demoPIN   = "1234"
	demoSOPIN = "12345678"
)

// openHSM opens the HSM pool configured under hsm.* (file, PERSO_HSM_* env,
// flags). Other subcommands (run, serve) use it too.
func openHSM(ctx context.Context, a *app) (*hsmpool.Pool, error) {
	cfg := hsmConfig(a)
	if cfg.Backend != hsmpool.BackendSoftware && cfg.PIN == "" {
		a.log.Warn("hsm.pin / PERSO_HSM_PIN not set: using the demo PIN; set it for anything but a demo")
		cfg.PIN = demoPIN
	}
	return hsmpool.Open(ctx, cfg)
}

func hsmConfig(a *app) hsmpool.Config {
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
	}
	if cfg.Backend == hsmpool.BackendSoftware {
		// The software backend is chosen only explicitly. The built-in module
		// default does not count as "a module is configured"; an explicitly
		// configured module does, and Open then refuses.
		if !v.InConfig("hsm.module") && os.Getenv("PERSO_HSM_MODULE") == "" {
			cfg.Module = ""
		}
		cfg.SoftwareFile = v.GetString("hsm.software.file")
		cfg.SoftwarePassphrase = v.GetString("hsm.software.passphrase")
		a.log.Warn("using the SOFTWARE HSM backend: development only, keys are in a file")
	}
	return cfg
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
	var (
		dir, label, importDir, transportAlg, transportFile, kek string
		software                                                bool
	)
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

PINs come from $PERSO_HSM_PIN and $PERSO_HSM_SO_PIN. When unset, the demo PINs 1234 and
12345678 are used and a warning is printed: for demos and tests only.

stdout receives shell exports for later commands, e.g.
  eval "$(perso hsm init --dir /tmp/hsm --import-sgp26 testdata/sgp26)"
and the same lines are written to DIR/perso-hsm.env.

With --software, creates DIR/keys.json for the development-only software backend instead
(passphrase from $PERSO_HSM_SOFTWARE_PASSPHRASE).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return exitError{2, errors.New("hsm init: --dir is required")}
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			return hsmInit(cmd.Context(), a, hsmInitOptions{dir: abs, label: label, importDir: importDir,
				transportAlg: transportAlg, transportFile: transportFile, kek: kek, software: software})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory for the SoftHSM2 configuration and token files (created)")
	f.StringVar(&label, "label", "", "token label (default: hsm.token, \"perso\")")
	f.StringVar(&importDir, "import-sgp26", "", "import the SGP.26 DPauth/DPpb test keys from this directory instead of generating keys")
	f.StringVar(&transportAlg, "transport-alg", "aes", "transport key algorithm: aes (AES-128) or 3des")
	f.StringVar(&transportFile, "transport-key-file", "", "file holding the transport key value in hex (else $PERSO_HSM_TRANSPORT_KEY, else generated)")
	f.StringVar(&kek, "kek", hsmpool.DefaultKEK, "label of the KEK to create")
	f.BoolVar(&software, "software", false, "create a development-only software key file instead of a SoftHSM2 token")
	return cmd
}

type hsmInitOptions struct {
	dir, label, importDir, transportAlg, transportFile, kek string
	software                                                bool
}

// envOr returns the environment variable, or the demo default with a warning.
func envOr(a *app, name, demo string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	a.log.Warn("using the demo default; set it for anything but a demo", "variable", name)
	return demo
}

func hsmInit(ctx context.Context, a *app, o hsmInitOptions) error {
	if o.label == "" {
		o.label = a.v.GetString("hsm.token")
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	var cfg hsmpool.Config
	var exports []string
	if o.software {
		pass := os.Getenv("PERSO_HSM_SOFTWARE_PASSPHRASE")
		if pass == "" {
			return exitError{2, errors.New("hsm init --software: set PERSO_HSM_SOFTWARE_PASSPHRASE")}
		}
		file := filepath.Join(o.dir, "keys.json")
		if err := hsmpool.CreateSoftwareKeyFile(file, pass); err != nil {
			return err
		}
		cfg = hsmpool.Config{Backend: hsmpool.BackendSoftware, SoftwareFile: file, SoftwarePassphrase: pass, Sessions: 1}
		exports = []string{"PERSO_HSM_BACKEND=" + hsmpool.BackendSoftware, "PERSO_HSM_SOFTWARE_FILE=" + file}
	} else {
		conf := filepath.Join(o.dir, "softhsm2.conf")
		tokens := filepath.Join(o.dir, "tokens")
		if _, err := os.Stat(conf); err == nil {
			return fmt.Errorf("hsm init: %s already exists; choose an empty directory", conf)
		}
		if err := os.MkdirAll(tokens, 0o700); err != nil {
			return err
		}
		body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return err
		}
		os.Setenv("SOFTHSM2_CONF", conf) // before the module is loaded
		pin := envOr(a, "PERSO_HSM_PIN", demoPIN)
		soPIN := envOr(a, "PERSO_HSM_SO_PIN", demoSOPIN)
		module := a.v.GetString("hsm.module")
		if err := hsmpool.InitToken(module, o.label, soPIN, pin); err != nil {
			return err
		}
		cfg = hsmpool.Config{Module: module, TokenLabel: o.label, PIN: pin, Sessions: 1}
		exports = []string{"SOFTHSM2_CONF=" + conf, "PERSO_HSM_MODULE=" + module, "PERSO_HSM_TOKEN=" + o.label}
	}
	p, err := hsmpool.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
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
	var sb strings.Builder
	for _, e := range exports {
		fmt.Fprintf(&sb, "export %s\n", e)
	}
	if err := os.WriteFile(filepath.Join(o.dir, "perso-hsm.env"), []byte(sb.String()), 0o600); err != nil {
		return err
	}
	fmt.Print(sb.String())
	return nil
}

// transportKeyValue returns the transport key to import, or nil to generate.
func transportKeyValue(o hsmInitOptions) ([]byte, error) {
	var h string
	switch {
	case o.transportFile != "":
		b, err := os.ReadFile(o.transportFile)
		if err != nil {
			return nil, err
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
		return nil, errors.New("hsm init: the transport key value is not hex")
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
		return exitError{2, fmt.Errorf("hsm init: --transport-alg %q: want aes or 3des", o.transportAlg)}
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
		curve := hsmpool.P256
		if strings.HasSuffix(k.label, "-brp") {
			curve = hsmpool.BrainpoolP256r1
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
			p, err := openHSM(ctx, a)
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
