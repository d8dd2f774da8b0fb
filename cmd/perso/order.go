package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
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
	resolve                                            []string
	qrSize                                             int
	timeout                                            time.Duration
	// bulk (order_bulk.go)
	from, outDir string
	qrPNG        bool
	concurrency  int
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

--resolve HOST:PORT:ADDR dials ADDR for HOST:PORT, as curl's --resolve does,
while the SM-DP+'s TLS certificate is still checked for HOST: so
--server https://testsmdpplus1.example.com:8443 --resolve
testsmdpplus1.example.com:8443:127.0.0.1 --server-ca <SGP.26 DPtls cert> reaches a
local perso serve presenting its default certificate. HOST:ADDR (any port)
and HOST:ADDR:PORT (as perso euicc download takes it) work too.

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
	f.StringVar(&o.serverCA, "server-ca", "", "CA certificate(s) (PEM, or one DER certificate) to verify the SM-DP+'s TLS certificate (default: system roots)")
	f.StringArrayVar(&o.resolve, "resolve", nil, "HOST:PORT:ADDR (as curl) or HOST:ADDR[:PORT]: dial ADDR for HOST, still verifying the TLS certificate for HOST (repeatable)")
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
	f.StringVar(&o.from, "from", "", "bulk: order every row of this CSV (columns iccid, eid, profile_type; or one ICCID per line)")
	f.StringVar(&o.outDir, "out-dir", "", "bulk: folder for activation-codes.csv, errors.csv and the QR PNGs")
	f.BoolVar(&o.qrPNG, "qr-png", false, "bulk: also write <iccid>.png per order into --out-dir")
	f.IntVar(&o.concurrency, "concurrency", 8, "bulk: orders in flight")
	for _, name := range []string{"server", "requester", "client-cert", "client-key"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runOrder(cmd *cobra.Command, o orderFlags) error {
	bulk := o.from != ""
	switch {
	case bulk && (o.iccid != "" || o.profileType != "" || o.qr != "" || o.cc != "" || o.matchingID != ""):
		return usagef("order: --from takes no --iccid, --profile-type, --qr, --confirmation-code or --matching-id (they are per order)")
	case bulk && o.outDir == "":
		return usagef("order: --from needs --out-dir for the activation codes")
	case !bulk && (o.iccid == "") == (o.profileType == ""):
		return usagef("order: give exactly one of --iccid and --profile-type (or --from FILE)")
	}
	if u, err := url.Parse(o.server); err != nil || u.Scheme != "https" || u.Host == "" {
		return usagef("order: --server %q is not an https URL (ES2+ runs over mutual TLS)", o.server)
	}
	if o.qrSize < 64 || o.qrSize > 8192 {
		return usagef("order: --qr-size %d is outside 64..8192", o.qrSize)
	}
	if o.concurrency < 1 || o.concurrency > 256 {
		return usagef("order: --concurrency %d is outside 1..256", o.concurrency)
	}
	if o.qr != "" {
		if err := checkOutputPath(o.qr, outputOptions{force: o.force, flag: "--qr"}); err != nil {
			return err
		}
	}
	c, err := orderClient(o)
	if err != nil {
		return err
	}
	if bulk {
		return runBulkOrder(cmd, o, c)
	}
	var mid *string
	if cmd.Flags().Changed("matching-id") {
		mid = &o.matchingID
	}
	d, co, err := placeOrder(cmd.Context(), c, rsp.DownloadOrderRequest{ICCID: o.iccid, ProfileType: o.profileType, EID: o.eid},
		o.cc, o.release, mid)
	if err != nil {
		return err
	}
	code := activation.Code{SMDPAddress: orderAddress(co, o.server), MatchingID: co.MatchingID, SMDPOID: o.oid, CCRequired: o.cc != ""}
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

// orderAddress is the SM-DP+ address of the activation code: the one the
// SM-DP+ answered, else the --server host.
func orderAddress(co *rsp.ConfirmOrderResponse, server string) string {
	if co.SMDPAddress != "" {
		return co.SMDPAddress
	}
	return mustParse(server).Host
}

// placeOrder runs DownloadOrder then ConfirmOrder. A failed ConfirmOrder
// leaves the ICCID reserved; ordering that ICCID again resumes (a resent
// DownloadOrder succeeds).
func placeOrder(ctx context.Context, c *smdp.ES2Client, r rsp.DownloadOrderRequest, cc string, release bool, matchingID *string) (*rsp.DownloadOrderResponse, *rsp.ConfirmOrderResponse, error) {
	d, err := c.DownloadOrder(ctx, r)
	if err != nil {
		return nil, nil, orderError("DownloadOrder", err)
	}
	co, err := c.ConfirmOrder(ctx, rsp.ConfirmOrderRequest{ICCID: d.ICCID, EID: r.EID, ConfirmationCode: cc, ReleaseFlag: release, MatchingID: matchingID})
	if err != nil {
		return nil, nil, orderError(fmt.Sprintf("ConfirmOrder of ICCID %s (reserved; ordering --iccid %s again resumes)", d.ICCID, d.ICCID), err)
	}
	return d, co, nil
}

// orderClient is the ES2+ client of the --server, --requester and TLS flags.
func orderClient(o orderFlags) (*smdp.ES2Client, error) {
	cert, err := tls.LoadX509KeyPair(o.clientCert, o.clientKey)
	if err != nil {
		return nil, usageError(fmt.Errorf("order: loading --client-cert/--client-key: %w", err))
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		// A BSS places many orders: resumed sessions skip the handshake's
		// signatures when a connection is replaced.
		ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	if o.serverCA != "" {
		data, err := os.ReadFile(o.serverCA)
		if err != nil {
			return nil, usageError(fmt.Errorf("order: --server-ca: %w", err))
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(data) {
			// One DER certificate, as the SGP.26 DPtls files are.
			c, err := x509.ParseCertificate(data)
			if err != nil {
				return nil, usagef("order: --server-ca %s holds no PEM certificate and is no DER certificate", o.serverCA)
			}
			tc.RootCAs.AddCert(c)
		}
	}
	resolve, err := parseResolve(o.resolve)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: o.concurrency}
	if len(resolve) > 0 {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, resolve.dialAddr(addr))
		}
	}
	return &smdp.ES2Client{BaseURL: o.server, RequesterID: o.requester,
		HTTP: &http.Client{Timeout: o.timeout, Transport: tr}}, nil
}

// resolveMap is --resolve: "host:port" or "host" (any port) → the address
// to dial instead (with or without a port).
type resolveMap map[string]string

// parseResolve reads curl's HOST:PORT:ADDR and perso euicc download's
// HOST:ADDR[:PORT]; ADDR is an IP address (IPv6 in brackets).
func parseResolve(entries []string) (resolveMap, error) {
	m := resolveMap{}
	for _, e := range entries {
		host, rest, ok := strings.Cut(e, ":")
		bad := usagef("order: --resolve %q: want HOST:PORT:ADDR (e.g. testsmdpplus1.example.com:8443:127.0.0.1) or HOST:ADDR[:PORT]", e)
		if !ok || host == "" || rest == "" {
			return nil, bad
		}
		host = strings.ToLower(host)
		if port, addr, ok := strings.Cut(rest, ":"); ok && isPort(port) && isIP(addr) {
			m[net.JoinHostPort(host, port)] = net.JoinHostPort(strings.Trim(addr, "[]"), port)
			continue
		}
		if isIP(rest) {
			m[host] = strings.Trim(rest, "[]")
			continue
		}
		if ip, port, err := net.SplitHostPort(rest); err == nil && isIP(ip) && isPort(port) {
			m[host] = rest
			continue
		}
		return nil, bad
	}
	return m, nil
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

func isIP(s string) bool { return net.ParseIP(strings.Trim(s, "[]")) != nil }

// dialAddr is the address to dial for addr (host:port): the entry for
// host:port, else the one for host (keeping addr's port unless it names
// one), else addr.
func (m resolveMap) dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	host = strings.ToLower(host)
	if to, ok := m[net.JoinHostPort(host, port)]; ok {
		return to
	}
	if to, ok := m[host]; ok {
		if _, _, err := net.SplitHostPort(to); err == nil {
			return to
		}
		return net.JoinHostPort(to, port)
	}
	return addr
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
