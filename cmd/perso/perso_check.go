package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/perso"
)

func init() { register(newCheckCmd) }

func newCheckCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check FILE...",
		Short: "validate personalisation input files (CSV, .out, Parquet, Arrow) and report rejects",
		Long: `check streams each input file through the same reader and validation the batch
run uses (Luhn, lengths, hex, digits, MCC/MNC, ranges, duplicate ICCID/IMSI)
and writes every reject — file, line, column, value class, reason, never the
value — to --rejects (CSV or JSON Lines). Transport-encrypted secrets are
checked for shape only; nothing is decrypted.

Exit status: 0 when every record is valid, 2 when some were rejected or the
reject threshold aborted a file, 1 on other errors.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runCheck(cmd, a, args) },
	}
	f := cmd.Flags()
	f.String("format", "", "input format: csv, out, parquet, arrow, arrow-file (default: detected)")
	f.String("delimiter", ",", "CSV delimiter (one ASCII character; \\t for tab)")
	f.String("mcc", "", "every IMSI must start with this MCC")
	f.String("mnc", "", "... followed by this MNC (2 or 3 digits)")
	f.String("iccid-prefix", "", "every ICCID must start with this prefix")
	f.String("iccid-first", "", "ICCID range start (full ICCID or without check digit)")
	f.String("iccid-last", "", "ICCID range end")
	f.String("imsi-first", "", "IMSI range start")
	f.String("imsi-last", "", "IMSI range end")
	f.Int("ki-bytes", 16, "Ki width: 16, or 32 for TUAK-256")
	f.Int("opc-bytes", 16, "OPc width: 16, or 32 for TUAK TOPc")
	f.String("algorithm", "milenage", "algorithm of records without an algorithm column")
	f.String("rejects", "", "write the reject report to this file ('-' for stdout)")
	f.String("reject-format", "csv", "reject report format: csv or json (JSON Lines)")
	f.Int("max-rejects", 0, "abort a file when this many records are rejected (0: no limit)")
	f.Float64("max-reject-rate", 0, "abort a file when more than this fraction of records is rejected (0: no limit)")
	f.Int("batch-size", perso.DefaultBatchSize, "records per Arrow batch")
	f.Int("transport-key", 0, "CSV/Parquet input: secrets are encrypted under transport key N (shape check only)")
	f.String("transport-alg", perso.TransportAES128ECB, "transport algorithm for --transport-key")
	return cmd
}

func runCheck(cmd *cobra.Command, a *app, files []string) error {
	v := a.v
	delim := v.GetString("delimiter")
	if delim == `\t` {
		delim = "\t"
	}
	if len(delim) != 1 {
		return fmt.Errorf("--delimiter must be one ASCII character")
	}
	alg, ok := perso.ParseAlgorithm(v.GetString("algorithm"))
	if !ok {
		return fmt.Errorf("--algorithm: want milenage, tuak or test")
	}
	var sink perso.RejectSink
	var rw *perso.RejectWriter
	if path := v.GetString("rejects"); path != "" {
		var w io.Writer = os.Stdout
		if path != "-" {
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		var err error
		if rw, err = perso.NewRejectWriter(w, perso.RejectFormat(v.GetString("reject-format"))); err != nil {
			return err
		}
		sink = rw
	}
	var format perso.Format
	if s := v.GetString("format"); s != "" {
		var err error
		if format, err = perso.ParseFormat(s); err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	bad := false
	for _, path := range files {
		o := perso.Options{
			BatchSize: v.GetInt("batch-size"), Delimiter: rune(delim[0]),
			Layout: perso.Layout{KiBytes: v.GetInt("ki-bytes"), OPcBytes: v.GetInt("opc-bytes")},
			Rules: perso.Rules{MCC: v.GetString("mcc"), MNC: v.GetString("mnc"), ICCIDPrefix: v.GetString("iccid-prefix"),
				ICCIDFirst: v.GetString("iccid-first"), ICCIDLast: v.GetString("iccid-last"),
				IMSIFirst: v.GetString("imsi-first"), IMSILast: v.GetString("imsi-last")},
			DefaultAlgorithm: alg, Rejects: sink, MaxRejects: v.GetInt("max-rejects"),
			MaxRejectRate: v.GetFloat64("max-reject-rate"), KeepEncrypted: true, Logger: a.log,
		}
		if n := v.GetInt("transport-key"); n != 0 {
			o.Transport = perso.Transport{Key: n, Alg: v.GetString("transport-alg")}
		}
		start := time.Now()
		var r *perso.Reader
		var got perso.Format
		var err error
		if format != "" {
			f, ferr := os.Open(path)
			if ferr != nil {
				return ferr
			}
			o.File = path
			r, err = perso.OpenFormat(f, format, o)
			if err != nil {
				f.Close()
			}
			got = format
		} else {
			r, got, err = perso.Open(path, o)
		}
		if err != nil {
			return exitError{code: 2, err: err}
		}
		for err == nil {
			var rec interface{ Release() }
			rec, err = r.Next(cmd.Context())
			if err == nil {
				rec.Release()
			}
		}
		r.Close()
		st := r.Stats()
		el := time.Since(start)
		fmt.Fprintf(out, "%s (%s): %d rows, %d accepted, %d rejected, %d file-level findings, %d batches, %.0f rows/s\n",
			path, got, st.Rows, st.Records, st.Rejected, st.Notes, st.Batches, float64(st.Rows)/el.Seconds())
		if !errors.Is(err, io.EOF) {
			if errors.Is(err, perso.ErrRejectLimit) {
				fmt.Fprintf(out, "%s: aborted: %v\n", path, err)
				bad = true
				continue
			}
			return err
		}
		if st.Rejected > 0 || st.Notes > 0 {
			bad = true
		}
	}
	if rw != nil {
		if err := rw.Close(); err != nil {
			return err
		}
	}
	if bad {
		return exitError{code: 2, err: errors.New("rejected records (see the reject report)")}
	}
	return nil
}
