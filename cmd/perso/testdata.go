package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/perso"
)

func init() { register(newTestdataCmd) }

// testdataSubcommands lets other files add `perso testdata <kind>` generators.
var testdataSubcommands []func(*app) *cobra.Command

func newTestdataCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testdata",
		Short: "generate realistic test data",
	}
	cmd.AddCommand(newTestdataPersoCmd(a))
	for _, f := range testdataSubcommands {
		cmd.AddCommand(f(a))
	}
	return cmd
}

// envTransportKey names the environment variable holding the software
// transport key used by `perso testdata perso --transport-key N`.
const envTransportKey = "PERSO_TESTDATA_TRANSPORT_KEY"

func newTestdataPersoCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "perso --count N -o FILE",
		Short: "generate personalisation records (CSV, .out, Parquet or Arrow)",
		Long: `perso writes N realistic personalisation records: consecutive ICCIDs with
correct Luhn check digits, consecutive IMSIs, Ki from crypto/rand, OPc derived
from a random operator OP (AES_Ki(OP) xor OP), random PIN/PUK/ADM digits and,
with --ota-kvn, random KIc/KID/KIK key sets.

With --transport-key N the ki/opc/op columns are encrypted under transport key
N with --transport-alg, the way operators deliver them. The key value (hex) is
read from $` + envTransportKey + ` — never from the command line. This is a
development tool: in production the transport key lives only in the HSM
(import the same value there as "transport-N" to read the file back).

The format defaults from the output name: .csv, .out, .parquet, .arrow
(Arrow IPC stream); use --format arrow-file for the Arrow IPC file format.
Any other name needs --format. The file (it holds Ki and OPc) is written with
mode 0600 under a temporary name and renamed when complete; an existing file
is replaced only with --force. ICCID, IMSI and MSISDN ranges that would carry
into the issuer number, the MCC/MNC or an extra digit are refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTestdataPerso(cmd, a) },
	}
	f := cmd.Flags()
	f.Int64("count", 1000, "number of records")
	f.String("iccid-start", "8944150000000000017", "first ICCID (18-20 digits with a valid Luhn digit)")
	f.String("imsi-start", "234150000000001", "first IMSI")
	f.String("msisdn-start", "", "first MSISDN (consecutive; empty: none)")
	f.String("format", "", "csv, out, parquet, arrow or arrow-file (default: from the output name)")
	f.StringP("output", "o", "", "output file ('-' for stdout)")
	f.Int("transport-key", 0, "encrypt ki/opc under transport key N (key value from $"+envTransportKey+")")
	f.String("transport-alg", perso.TransportAES128ECB, "AES-128-ECB, AES-128-CBC, 3DES-ECB or 3DES-CBC")
	f.String("algorithm", "milenage", "milenage, tuak or test")
	f.Int("ki-bytes", 16, "Ki length: 16, or 32 for TUAK-256")
	f.Bool("op-only", false, "write op instead of opc (readers derive OPc)")
	f.IntSlice("ota-kvn", nil, "OTA key versions to fill with KIc/KID/KIK (e.g. 1,2)")
	f.String("smsc", "", "SMSC address for every record")
	f.String("spn", "", "service provider name for every record")
	f.String("profile-name", "", "profile name metadata")
	f.String("service-provider", "", "service provider metadata")
	f.String("profile-type", "", "profile type metadata")
	f.String("profile-class", "", "profile class metadata")
	f.String("customer", "Test Operator", ".out header Customer")
	f.String("batch", "", ".out header Batch (default: derived from the time)")
	f.Int("batch-size", perso.DefaultBatchSize, "records per Arrow batch")
	f.Bool("force", false, "replace an existing output file")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func runTestdataPerso(cmd *cobra.Command, a *app) error {
	v := a.v
	out := v.GetString("output")
	var format perso.Format
	var err error
	if s := v.GetString("format"); s != "" {
		if format, err = perso.ParseFormat(s); err != nil {
			return usagef("--format: %w", err)
		}
	} else if format, err = formatFromName(out); err != nil {
		return err
	}
	alg, err := esim.ParseAlgorithm(v.GetString("algorithm"))
	if err != nil {
		return usagef("--algorithm %q: %s", v.GetString("algorithm"), esim.Reason(err))
	}
	layout := perso.Layout{KiBytes: v.GetInt("ki-bytes")}
	if alg == esim.AlgorithmTUAK {
		layout.OPcBytes = 32
	}
	for _, k := range v.GetIntSlice("ota-kvn") {
		if k < 1 || k > 255 {
			return usagef("--ota-kvn: %d is not a key version number (1-255)", k)
		}
		layout.OTAKVNs = append(layout.OTAKVNs, uint8(k))
	}
	o := perso.GenOptions{
		Count: v.GetInt64("count"), ICCIDStart: v.GetString("iccid-start"), IMSIStart: v.GetString("imsi-start"),
		MSISDNStart: v.GetString("msisdn-start"), Layout: layout, Algorithm: alg, OmitOPc: v.GetBool("op-only"),
		SMSC: v.GetString("smsc"), SPN: v.GetString("spn"), ProfileName: v.GetString("profile-name"),
		ServiceProvider: v.GetString("service-provider"), ProfileType: v.GetString("profile-type"),
		ProfileClass: v.GetString("profile-class"), BatchSize: v.GetInt("batch-size"),
	}
	if err := checkRanges(o); err != nil {
		return err
	}
	if n := v.GetInt("transport-key"); n != 0 {
		keyHex := os.Getenv(envTransportKey)
		if keyHex == "" {
			return usagef("--transport-key %d: set $%s to the key value (32 or 48 hex digits)", n, envTransportKey)
		}
		key, err := hex.DecodeString(strings.TrimSpace(keyHex))
		if err != nil {
			return usagef("$%s is not hex", envTransportKey)
		}
		defer clear(key)
		o.Transport = perso.Transport{Key: n, Alg: v.GetString("transport-alg")}
		o.TransportKey = key
	}
	g, err := perso.NewGenerator(o)
	if err != nil {
		return usageError(err)
	}
	defer g.Close()

	// The file holds Ki and OPc: it is written 0600, beside its final name,
	// and renamed into place only when complete.
	var w io.Writer
	var file *atomicFile
	if out == "-" {
		if format == perso.FormatArrowFile {
			return usagef("the Arrow file format cannot go to stdout; use --format arrow")
		}
		w = os.Stdout
	} else {
		if file, err = createOutput(out, outputOptions{force: v.GetBool("force"), secret: true, flag: "-o"}); err != nil {
			return err
		}
		defer file.Abort() // after Commit, a no-op
		w = file
	}
	var bw *bufio.Writer
	if format != perso.FormatArrowFile {
		bw = bufio.NewWriterSize(w, 1<<20)
		w = bw
	}
	batch := v.GetString("batch")
	if batch == "" {
		batch = "TD" + time.Now().UTC().Format("060102150405")
	}
	h := perso.OutFileHeader{Customer: v.GetString("customer"), Quantity: o.Count, Type: "eSIM",
		Profile: o.ProfileName, Batch: batch, IMSI: o.IMSIStart, SerNb: o.ICCIDStart[:len(o.ICCIDStart)-1]}
	if o.Transport.Key != 0 {
		h.Transport = perso.Transport{Key: o.Transport.Key, Alg: o.Transport.Alg}
		if h.Transport.Alg, err = perso.ParseTransportAlg(o.Transport.Alg); err != nil {
			return usageError(err)
		}
	}
	if format == perso.FormatArrowFile {
		w = file.File
	}
	pw, err := perso.NewWriter(w, format, g.Schema(), h)
	if err != nil {
		return err
	}
	start := time.Now()
	// Generation and encoding overlap: the generator fills the next batches
	// while this goroutine formats and writes the current one.
	type item struct {
		rec arrow.Record
		err error
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	ch := make(chan item, 2)
	go func() {
		defer close(ch)
		for {
			rec, err := g.Next()
			if err == io.EOF {
				return
			}
			select {
			case ch <- item{rec, err}:
			case <-ctx.Done():
				if rec != nil {
					rec.Release()
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	drain := func() {
		cancel()
		for it := range ch {
			if it.rec != nil {
				it.rec.Release()
			}
		}
	}
	var n int64
	for it := range ch {
		if it.err != nil {
			drain()
			return it.err
		}
		n += it.rec.NumRows()
		err := pw.Write(it.rec)
		it.rec.Release()
		if err != nil {
			drain()
			return err
		}
		if cmd.Context().Err() != nil {
			drain()
			if file != nil {
				return fmt.Errorf("testdata: stopped after %d of %d records; %s was not written", n, o.Count, out)
			}
			return fmt.Errorf("testdata: stopped after %d of %d records on stdout", n, o.Count)
		}
	}
	if err := pw.Close(); err != nil {
		return err
	}
	if bw != nil {
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	if file != nil {
		if err := file.Commit(); err != nil {
			return err
		}
	}
	el := time.Since(start)
	a.log.Info("test data written", "file", out, "format", format, "records", n,
		"seconds", fmt.Sprintf("%.2f", el.Seconds()), "records_per_s", int64(float64(n)/el.Seconds()))
	return nil
}

// formatFromName chooses the output format from the file name; a name
// that names no format is refused rather than silently written as CSV.
func formatFromName(name string) (perso.Format, error) {
	if name == "-" {
		return perso.FormatCSV, nil
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv", ".tsv":
		return perso.FormatCSV, nil
	case ".out", ".inp":
		return perso.FormatOut, nil
	case ".parquet", ".pq":
		return perso.FormatParquet, nil
	case ".arrow", ".arrows", ".ipc":
		return perso.FormatArrow, nil
	}
	return "", usagef("-o %s: cannot tell the format from the name; use a .csv, .out, .parquet or .arrow name, or --format", name)
}

// checkRanges refuses counts whose last ICCID, IMSI or MSISDN would no
// longer be a number of the same series: one more digit, or a carry into
// the ICCID's issuer identification number (its first 7 digits: 89,
// country code, issuer; ITU-T E.118) or the IMSI's MCC and MNC (its first 5
// digits). The generator would otherwise wrap 8999… into 9000….
func checkRanges(o perso.GenOptions) error {
	if o.Count < 0 {
		return usagef("--count %d: want 0 or more", o.Count)
	}
	if o.Count == 0 {
		return nil
	}
	last := func(start string, drop int) (string, bool) {
		if len(start) <= drop || strings.Trim(start, "0123456789") != "" {
			return "", false // the generator reports malformed starts itself
		}
		n, _ := new(big.Int).SetString(start[:len(start)-drop], 10)
		n.Add(n, big.NewInt(o.Count-1))
		s := n.String()
		for len(s) < len(start)-drop {
			s = "0" + s
		}
		return s, true
	}
	for _, c := range []struct {
		flag, start string
		drop, fixed int
		what        string
	}{
		{"--iccid-start", o.ICCIDStart, 1, 7, "the issuer identification number (first 7 digits)"},
		{"--imsi-start", o.IMSIStart, 0, 5, "the MCC and MNC (first 5 digits)"},
		{"--msisdn-start", o.MSISDNStart, 0, 0, ""},
	} {
		end, ok := last(c.start, c.drop)
		if !ok {
			continue
		}
		width := len(c.start) - c.drop
		switch {
		case len(end) > width:
			return usagef("%s %s with --count %d overflows %d digits", c.flag, c.start, o.Count, width)
		case c.fixed > 0 && width > c.fixed && end[:c.fixed] != c.start[:c.fixed]:
			return usagef("%s %s with --count %d would change %s: %s… to %s…", c.flag, c.start, o.Count, c.what, c.start[:c.fixed], end[:c.fixed])
		}
	}
	return nil
}
