package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/store"
)

func init() { register(newOperatorCmd) }

func newOperatorCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Manage the ES2+ operators allowed to order profiles",
		Long: `An ES2+ operator is identified by its functionRequesterIdentifier and
authenticates with a TLS client certificate that must chain to the
certificates recorded for it (its CA, or its self-signed certificate).
Its callback URL receives HandleDownloadProgressInfo reports.`,
	}
	var trustFile, callback string
	add := &cobra.Command{
		Use:   "add ID --trust FILE [--callback-url URL]",
		Short: "Record an operator: its requester ID, trusted certificates and callback URL",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pemText, certs, err := readTrust(trustFile)
			if err != nil {
				return usageError(fmt.Errorf("operator add: %w", err))
			}
			if callback != "" {
				if u, err := url.Parse(callback); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					return usagef("operator add: --callback-url %q is not an http(s) URL", callback)
				}
			}
			return withStore(cmd.Context(), a, func(db *store.DB) error {
				op, err := db.AddOperator(cmd.Context(), store.Operator{ID: args[0], TrustPEM: pemText, CallbackURL: callback})
				if errors.Is(err, store.ErrConflict) {
					return usagef("operator add: %q is recorded with other certificates or callback URL: perso operator remove %s first", args[0], args[0])
				}
				if err != nil {
					return fmt.Errorf("operator add: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "operator %s: %d trusted certificate(s)%s\n", op.ID, len(certs), callbackNote(op.CallbackURL))
				for _, c := range certs {
					fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", describeCert(c))
				}
				return nil
			})
		},
	}
	add.Flags().StringVar(&trustFile, "trust", "", "PEM file of the operator's CA certificate(s) or self-signed client certificate")
	add.Flags().StringVar(&callback, "callback-url", "", "URL receiving HandleDownloadProgressInfo (empty: no reports)")
	add.MarkFlagRequired("trust")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the operators",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), a, func(db *store.DB) error {
				ops, err := db.ListOperators(cmd.Context())
				if err != nil {
					return fmt.Errorf("operator list: %w", err)
				}
				return printOperators(cmd.OutOrStdout(), ops)
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove an operator (its orders stay; reports not yet delivered to it are dropped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd.Context(), a, func(db *store.DB) error {
				err := db.RemoveOperator(cmd.Context(), args[0])
				if errors.Is(err, store.ErrNotFound) {
					return usagef("operator remove: no operator %q (perso operator list shows them)", args[0])
				}
				if err != nil {
					return fmt.Errorf("operator remove: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "operator %s removed\n", args[0])
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{add, list, remove} {
		c.Flags().String("store.driver", "", "store driver: sqlite or postgres (default from config: store.driver)")
		c.Flags().String("store.dsn", "", "store DSN (default from config: store.dsn)")
		cmd.AddCommand(c)
	}
	return cmd
}

// readTrust reads a PEM file of certificates, refusing anything else (a
// private key in particular: it must not go into the store).
func readTrust(path string) (string, []*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("--trust: %w", err)
	}
	var (
		out   bytes.Buffer
		certs []*x509.Certificate
	)
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return "", nil, fmt.Errorf("--trust %s holds a %q block: give certificates only (never a private key)", path, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return "", nil, fmt.Errorf("--trust %s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
		pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})
	}
	if len(certs) == 0 {
		return "", nil, fmt.Errorf("--trust %s holds no PEM certificate", path)
	}
	return out.String(), certs, nil
}

func describeCert(c *x509.Certificate) string {
	kind := "CA"
	switch {
	case bytes.Equal(c.RawIssuer, c.RawSubject) && !c.IsCA:
		kind = "self-signed client certificate"
	case !c.IsCA:
		kind = "certificate"
	}
	return fmt.Sprintf("%s (%s), valid %s to %s", c.Subject, kind, c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"))
}

func callbackNote(u string) string {
	if u == "" {
		return ", no callback URL"
	}
	return ", callbacks to " + u
}

func printOperators(w io.Writer, ops []store.Operator) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OPERATOR\tTRUSTED CERTIFICATES\tCALLBACK URL\tADDED")
	for _, op := range ops {
		var subjects []string
		rest := []byte(op.TrustPEM)
		for {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if c, err := x509.ParseCertificate(b.Bytes); err == nil {
				subjects = append(subjects, fmt.Sprintf("%s (to %s)", c.Subject, c.NotAfter.Format("2006-01-02")))
			}
		}
		cb := op.CallbackURL
		if cb == "" {
			cb = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", op.ID, strings.Join(subjects, "; "), cb, op.CreatedAt.Format("2006-01-02 15:04:05Z"))
	}
	return tw.Flush()
}
