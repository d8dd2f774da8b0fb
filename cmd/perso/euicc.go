package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/euiccsim"
	"github.com/perso-esim/perso/template"
)

func init() { register(newEUICCCmd) }

func newEUICCCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "euicc",
		Short: "a virtual eUICC with the SGP.26 test certificates (a test tool)",
	}
	cmd.AddCommand(newEUICCDownloadCmd(a))
	return cmd
}

// defaultTLSRoot is the SGP.26 DPtls certificate that `perso serve`
// presents by default, relative to --sgp26.
const defaultTLSRoot = "DPtls/CERT_S_SM_DP_VARO_TLS_NIST.der"

func newEUICCDownloadCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "download 'LPA:1$<SM-DP+ address>$<matching ID>' [-o UPP.der]",
		Short: "download a profile from an SM-DP+ over ES9+ with the virtual eUICC",
		Long: `download runs a complete SGP.22 download with a virtual eUICC holding the
SGP.26 test eUICC certificate and key (EID 89049032123451234512345678901235)
of --curve: initiateAuthentication, authenticateClient (the eUICC verifies the
SM-DP+'s DPauth chain and signature), getBoundProfilePackage (the eUICC
verifies DPpb, makes its one-time key, and opens the BPP: smdpSign, every MAC,
decryption) and handleNotification with the signed installation result.

The activation code is SGP.22's LPA:1$<address>$<matching ID>[$<OID>[$1]],
quoted against the shell's $. The SM-DP+ is reached at https://<address>; its
TLS certificate must chain to --tls-root (default: the SGP.26 DPtls certificate
for testsmdpplus1.example.com, which perso serve presents by default; "system"
for the system roots). --resolve HOST:ADDR dials ADDR (an IP, or IP:PORT)
for HOST, as curl's --resolve does, so that testsmdpplus1.example.com can be
served from 127.0.0.1 without editing /etc/hosts.

The recovered profile package (UPP) holds the profile's secrets (Ki, OPc,
PINs): -o writes it with mode 0600 under a temporary name renamed when
complete; an existing file is replaced only with --force. Without -o only a
summary is printed. A refusal prints the SGP.22 status code (subject/reason)
the SM-DP+ returned or the eUICC's error code; exit status 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runEUICCDownload(cmd, a, args[0]) },
	}
	f := cmd.Flags()
	f.String("curve", "nist", "the SGP.26 eUICC to be: nist (P-256) or brainpool (brainpoolP256r1)")
	f.String("cc", "", "confirmation code, if the SM-DP+ asks for one (or $PERSO_CC)")
	f.String("tls-root", "", `certificate (PEM or DER) the SM-DP+'s TLS certificate must chain to; "system" for the system roots (default: the SGP.26 DPtls certificate under --sgp26)`)
	f.StringArray("resolve", nil, "HOST:ADDR: dial ADDR (IP or IP:PORT) for HOST (repeatable)")
	f.String("binding", "json", "ES9+ binding: json or asn1")
	f.String("sgp26", "testdata/sgp26", "directory of the SGP.26 test PKI (eUICC/, EUM/, CertificateIssuer/, DPtls/)")
	f.StringP("output", "o", "", "write the recovered UPP (DER) to this file")
	f.Bool("force", false, "replace an existing output file")
	return cmd
}

func runEUICCDownload(cmd *cobra.Command, a *app, code string) error {
	v := a.v
	if _, err := activation.Parse(code); err != nil {
		return usageError(err)
	}
	curve, err := esim.ParseCurve(v.GetString("curve"))
	if err != nil {
		return usagef("--curve %q: %s", v.GetString("curve"), esim.Reason(err))
	}
	binding, err := euiccsim.ParseBinding(v.GetString("binding"))
	if err != nil {
		return usagef("--binding: %w", err)
	}
	resolve := map[string]string{}
	for _, r := range v.GetStringSlice("resolve") {
		host, addr, ok := strings.Cut(r, ":")
		if !ok || host == "" || addr == "" {
			return usagef("--resolve %q: want HOST:ADDR (e.g. testsmdpplus1.example.com:127.0.0.1:8443)", r)
		}
		resolve[strings.ToLower(host)] = addr
	}
	dir := v.GetString("sgp26")
	var roots *x509.CertPool
	switch root := v.GetString("tls-root"); root {
	case "system":
	case "":
		if roots, err = euiccsim.LoadTLSRoots(filepath.Join(dir, defaultTLSRoot)); err != nil {
			return usagef("%w (the default TLS root is under --sgp26 %s: point --sgp26 at the SGP.26 test PKI, or give --tls-root FILE or --tls-root system)", err, dir)
		}
	default:
		if roots, err = euiccsim.LoadTLSRoots(root); err != nil {
			return usagef("--tls-root: %w", err)
		}
	}
	out := v.GetString("output")
	outOpts := outputOptions{force: v.GetBool("force"), secret: true, flag: "-o"}
	if out != "" {
		if err := checkOutputPath(out, outOpts); err != nil {
			return err
		}
	}
	creds, err := euiccsim.LoadSGP26(dir, curve)
	if err != nil {
		return usageError(err)
	}
	e, err := euiccsim.New(creds)
	if err != nil {
		return err
	}
	lpa := euiccsim.NewLPA(e, euiccsim.LPAConfig{Binding: binding, RootCAs: roots, Resolve: resolve,
		ConfirmationCode: v.GetString("cc"), Logger: a.log})
	upp, err := lpa.Download(cmd.Context(), code)
	if err != nil {
		return describeDownloadError(err)
	}
	defer clear(upp)
	summary := fmt.Sprintf("%d bytes", len(upp))
	if p, derr := template.Decode(upp); derr == nil {
		summary = fmt.Sprintf("ICCID %s, IMSI %s, %d bytes", p.ICCID(), p.IMSI(), len(upp))
	}
	if out != "" {
		if err := writeAtomic(out, upp, outOpts); err != nil {
			return err
		}
		summary += ", written to " + out
	}
	fmt.Fprintf(cmd.OutOrStdout(), "installed on the virtual eUICC (%s): %s\n", curve, summary)
	return nil
}

// describeDownloadError adds what to do to the failures a user can fix.
func describeDownloadError(err error) error {
	switch {
	case errors.Is(err, euiccsim.ErrConfirmationCodeRequired):
		return usageError(err)
	case errors.As(err, new(x509.UnknownAuthorityError)), errors.As(err, new(x509.HostnameError)):
		return fmt.Errorf("%w (check --tls-root and that the SM-DP+ address is the name in its TLS certificate)", err)
	}
	return err
}
