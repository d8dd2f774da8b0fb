package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/activation"
	"github.com/perso-esim/perso/rsp"
	"github.com/perso-esim/perso/smdp"
)

func init() { register(newOrderCmd) }

type orderFlags struct {
	server, requester, clientCert, clientKey, serverCA string
	iccid, profileType, eid, matchingID, cc, oid       string
	release, force                                     bool
	qr                                                 string
	qrSize                                             int
	timeout                                            time.Duration
}

func newOrderCmd(a *app) *cobra.Command {
	var o orderFlags
	cmd := &cobra.Command{
		Use:   "order --server URL (--iccid ICCID | --profile-type TYPE) --requester ID --client-cert FILE --client-key FILE",
		Short: "Order a profile over ES2+ (DownloadOrder + ConfirmOrder) and print its activation code",
		Long: `Runs ES2+ DownloadOrder and ConfirmOrder against an SM-DP+ as an operator
(mutual TLS with the operator's client certificate; --requester is the
functionRequesterIdentifier the SM-DP+ has recorded for it, see perso operator)
and prints the activation code LPA:1$<SM-DP+ address>$<matching ID>[$<OID>$1].
With --qr it also writes the code as a QR code PNG.

A confirmation code (--confirmation-code) is not printed: give it to the
subscriber separately from the activation code.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOrder(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "", "SM-DP+ base URL, e.g. https://testsmdpplus1.example.com:8443")
	f.StringVar(&o.requester, "requester", "", "functionRequesterIdentifier: the operator's ID at the SM-DP+")
	f.StringVar(&o.clientCert, "client-cert", "", "operator TLS client certificate (PEM, may include intermediates)")
	f.StringVar(&o.clientKey, "client-key", "", "its private key (PEM)")
	f.StringVar(&o.serverCA, "server-ca", "", "CA certificate(s) (PEM) to verify the SM-DP+'s TLS certificate (default: system roots)")
	f.StringVar(&o.iccid, "iccid", "", "order this ICCID (18–20 digits)")
	f.StringVar(&o.profileType, "profile-type", "", "order a free profile of this type")
	f.StringVar(&o.eid, "eid", "", "bind the order to this EID (32 digits)")
	f.StringVar(&o.matchingID, "matching-id", "", "use this matching ID (default: the SM-DP+ generates one)")
	f.StringVar(&o.cc, "confirmation-code", "", "require this confirmation code at download")
	f.StringVar(&o.oid, "smdp-oid", "", "SM-DP+ OID to put into the activation code (optional)")
	f.BoolVar(&o.release, "release", true, "release the order for download now (false: later, by ReleaseProfile)")
	f.StringVar(&o.qr, "qr", "", "write the activation code as a QR code PNG to this file")
	f.IntVar(&o.qrSize, "qr-size", 512, "QR code PNG size in pixels")
	f.BoolVar(&o.force, "force", false, "replace an existing --qr file")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "per ES2+ call")
	for _, name := range []string{"server", "requester", "client-cert", "client-key"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runOrder(cmd *cobra.Command, o orderFlags) error {
	if (o.iccid == "") == (o.profileType == "") {
		return usagef("order: give exactly one of --iccid and --profile-type")
	}
	if u, err := url.Parse(o.server); err != nil || u.Scheme != "https" || u.Host == "" {
		return usagef("order: --server %q is not an https URL (ES2+ runs over mutual TLS)", o.server)
	}
	if o.qrSize < 64 || o.qrSize > 8192 {
		return usagef("order: --qr-size %d is outside 64..8192", o.qrSize)
	}
	if o.qr != "" {
		if err := checkOutputPath(o.qr, outputOptions{force: o.force, flag: "--qr"}); err != nil {
			return err
		}
	}
	cert, err := tls.LoadX509KeyPair(o.clientCert, o.clientKey)
	if err != nil {
		return usageError(fmt.Errorf("order: loading --client-cert/--client-key: %w", err))
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.serverCA != "" {
		data, err := os.ReadFile(o.serverCA)
		if err != nil {
			return usageError(fmt.Errorf("order: --server-ca: %w", err))
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(data) {
			return usagef("order: --server-ca %s holds no PEM certificate", o.serverCA)
		}
	}
	c := &smdp.ES2Client{BaseURL: o.server, RequesterID: o.requester,
		HTTP: &http.Client{Timeout: o.timeout, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}}
	ctx := cmd.Context()
	d, err := c.DownloadOrder(ctx, rsp.DownloadOrderRequest{ICCID: o.iccid, ProfileType: o.profileType, EID: o.eid})
	if err != nil {
		return orderError("DownloadOrder", err)
	}
	req := rsp.ConfirmOrderRequest{ICCID: d.ICCID, EID: o.eid, ConfirmationCode: o.cc, ReleaseFlag: o.release}
	if cmd.Flags().Changed("matching-id") {
		req.MatchingID = &o.matchingID
	}
	co, err := c.ConfirmOrder(ctx, req)
	if err != nil {
		return orderError(fmt.Sprintf("ConfirmOrder of ICCID %s (reserved; perso order again with --iccid %s resumes)", d.ICCID, d.ICCID), err)
	}
	address := co.SMDPAddress
	if address == "" {
		address = mustParse(o.server).Host
	}
	code := activation.Code{SMDPAddress: address, MatchingID: co.MatchingID, SMDPOID: o.oid, CCRequired: o.cc != ""}
	if err := code.Validate(); err != nil {
		return fmt.Errorf("order: the SM-DP+'s answer makes no activation code: %w", err)
	}
	text := code.String()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "iccid: %s\n", d.ICCID)
	if co.EID != "" {
		fmt.Fprintf(out, "eid: %s\n", co.EID)
	}
	if co.MatchingID == "" {
		fmt.Fprintln(out, "no matching ID: the eUICC finds the order by its EID (default SM-DP+ address or SM-DS)")
	}
	fmt.Fprintf(out, "activation code: %s\n", text)
	if o.qr != "" {
		png, err := activation.QRPNG(text, o.qrSize)
		if err != nil {
			return err
		}
		if err := writeAtomic(o.qr, png, outputOptions{force: o.force, flag: "--qr"}); err != nil {
			return err
		}
		fmt.Fprintf(out, "QR code: %s\n", o.qr)
	}
	return nil
}

func mustParse(s string) *url.URL { u, _ := url.Parse(s); return u }

// orderError says which call failed and, for an SGP.22 status, its code.
func orderError(call string, err error) error {
	var st rsp.Status
	if errors.As(err, &st) {
		return fmt.Errorf("order: %s failed with SGP.22 status %s (%s)", call, st.Code(), st.Message)
	}
	return fmt.Errorf("order: %s: %w", call, err)
}
