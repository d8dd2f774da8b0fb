package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/perso-esim/perso/esim"
	"github.com/perso-esim/perso/perso"
)

func init() { register(newCheckCmd) }

func newCheckCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check FILE...",
		Short: "validate personalisation input files (CSV, .out, Parquet, Arrow) and report rejects",
		Long: `check streams each input file through the same reader and validation the batch
run uses (Luhn, lengths, hex, digits, MCC/MNC, ranges, duplicate ICCID/IMSI)
and reports every reject — file, line, column, value class, reason, never the
value. Transport-encrypted secrets are checked for shape only; nothing is
decrypted. FILE "-" reads standard input (CSV, .out or an Arrow stream).

Rejects go to --rejects (CSV or JSON Lines, '-' for stdout); by default to
FILE.rejects.csv beside each input (written only when there are rejects,
never over an existing file without --force), or, for standard input and
other non-files, in full to standard error.

Lines are limited to --max-line bytes (default 1 MiB): a longer line is
rejected, and an input without a line end in 64 MiB is refused as a whole.

Exit status: 0 when every record is valid; 3 when some records were
rejected and others passed; 2 when every record was rejected or an input was
refused as a whole (unreadable, wrong format, reject threshold); 1 on other
errors; 130/143 when stopped by SIGINT/SIGTERM.`,
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
	f.String("rejects", "", "write the reject report of every input to this file ('-' for stdout; default: FILE.rejects.csv)")
	f.String("reject-format", "csv", "reject report format: csv or json (JSON Lines)")
	f.Bool("force", false, "replace an existing reject report")
	f.Int("max-rejects", 0, "abort a file when this many records are rejected (0: no limit)")
	f.Float64("max-reject-rate", 0, "abort a file when more than this fraction of records is rejected (0: no limit)")
	f.Int("batch-size", perso.DefaultBatchSize, "records per Arrow batch")
	f.String("max-line", "1MiB", "longest input line accepted (CSV, .out)")
	f.Int("transport-key", 0, "CSV/Parquet input: secrets are encrypted under transport key N (shape check only)")
	f.String("transport-alg", perso.TransportAES128ECB, "transport algorithm for --transport-key")
	return cmd
}

// checkTally adds up what check found over all its inputs.
type checkTally struct {
	accepted int64 // records accepted in inputs that were not refused as a whole
	rejected int64 // records rejected, plus file-level findings
	refused  int   // inputs refused as a whole
	refusals []error
	reports  []string
}

func runCheck(cmd *cobra.Command, a *app, files []string) error {
	ctx := cmd.Context()
	v := a.v
	delim := v.GetString("delimiter")
	if delim == `\t` {
		delim = "\t"
	}
	if len(delim) != 1 {
		return usagef("--delimiter %q: want one ASCII character", delim)
	}
	alg, err := esim.ParseAlgorithm(v.GetString("algorithm"))
	if err != nil {
		return usagef("--algorithm %q: %s", v.GetString("algorithm"), esim.Reason(err))
	}
	maxLine, err := parseSize(v.GetString("max-line"))
	if err != nil || maxLine > 1<<30 {
		return usagef("--max-line %q: want a size from 1 byte to 1GiB, e.g. 4MiB", v.GetString("max-line"))
	}
	rfmt := perso.RejectFormat(v.GetString("reject-format"))
	if rfmt != perso.RejectCSV && rfmt != perso.RejectJSON {
		return usagef("--reject-format %q: want csv or json", rfmt)
	}
	var format perso.Format
	if s := v.GetString("format"); s != "" {
		if format, err = perso.ParseFormat(s); err != nil {
			return usagef("--format: %w", err)
		}
	}
	stdin := 0
	for _, f := range files {
		if f == "-" {
			stdin++
		}
	}
	if stdin > 1 {
		return usagef("standard input (-) can be read only once")
	}
	force := v.GetBool("force")

	// One report for every input (--rejects), else one per input.
	var shared *rejectReport
	if path := v.GetString("rejects"); path != "" {
		if path == "-" && stdin > 0 {
			// Both are fine together, but say where the report goes.
			a.log.Debug("reject report on stdout while reading stdin")
		}
		if shared, err = newRejectReport(path, rfmt, outputOptions{force: force, inputs: files, flag: "--rejects"}); err != nil {
			return err
		}
		defer shared.abort()
	} else {
		// Refuse before reading anything if a default report would be refused.
		for _, f := range files {
			if f != "-" && isRegular(f) {
				if err := checkOutputPath(defaultRejectsPath(f, rfmt), outputOptions{force: force, flag: "reject report"}); err != nil {
					return err
				}
			}
		}
	}

	out := cmd.OutOrStdout()
	var t checkTally
	for _, path := range files {
		o := perso.Options{
			BatchSize: v.GetInt("batch-size"), Delimiter: rune(delim[0]),
			Layout: perso.Layout{KiBytes: v.GetInt("ki-bytes"), OPcBytes: v.GetInt("opc-bytes")},
			Rules: perso.Rules{MCC: v.GetString("mcc"), MNC: v.GetString("mnc"), ICCIDPrefix: v.GetString("iccid-prefix"),
				ICCIDFirst: v.GetString("iccid-first"), ICCIDLast: v.GetString("iccid-last"),
				IMSIFirst: v.GetString("imsi-first"), IMSILast: v.GetString("imsi-last")},
			DefaultAlgorithm: alg, MaxRejects: v.GetInt("max-rejects"),
			MaxRejectRate: v.GetFloat64("max-reject-rate"), KeepEncrypted: true, Logger: a.log,
			MaxLine: int(maxLine), MaxLineSetting: "--max-line",
		}
		if n := v.GetInt("transport-key"); n != 0 {
			o.Transport = perso.Transport{Key: n, Alg: v.GetString("transport-alg")}
		}
		report := shared
		if report == nil {
			if report, err = defaultRejectReport(path, rfmt, force, cmd.ErrOrStderr()); err != nil {
				return err
			}
		}
		o.Rejects = report.sink
		if err := checkOne(ctx, path, format, o, out, &t); err != nil {
			report.abort()
			return err
		}
		if report != shared {
			if err := report.finish(&t); err != nil {
				return err
			}
		}
	}
	if shared != nil {
		if err := shared.finish(&t); err != nil {
			return err
		}
	}
	if t.rejected == 0 && t.refused == 0 {
		return nil
	}
	if t.refused == 1 && t.rejected == 0 && t.accepted == 0 {
		return usageError(t.refusals[0]) // the one problem, on one line
	}
	for _, err := range t.refusals {
		fmt.Fprintf(cmd.ErrOrStderr(), "perso: %v\n", err)
	}
	where := "the messages above"
	if len(t.reports) > 0 {
		where = strings.Join(t.reports, ", ")
	}
	msg := fmt.Errorf("%d record(s) rejected, %d accepted, %d input(s) refused as a whole (see %s)", t.rejected, t.accepted, t.refused, where)
	if t.accepted > 0 {
		return partialError(msg)
	}
	return usageError(msg)
}

// checkOne reads one input to its end, printing a summary line. Problems
// with the input itself are counted in t (the next input is still
// checked); only operational errors and cancellation are returned.
func checkOne(ctx context.Context, path string, format perso.Format, o perso.Options, out io.Writer, t *checkTally) error {
	start := time.Now()
	o.File = path
	if path == "-" {
		o.File = "stdin"
	}
	refuse := func(err error) error {
		if ctx.Err() != nil {
			return err
		}
		var ee exitError
		if errors.As(err, &ee) && ee.code != exitUsage {
			return err
		}
		if isIOError(err) {
			return err
		}
		if !strings.HasPrefix(err.Error(), path) && !strings.HasPrefix(err.Error(), o.File) {
			err = fmt.Errorf("%s: %w", o.File, err)
		}
		t.refused++
		t.refusals = append(t.refusals, err)
		return nil
	}
	f, err := openInput(ctx, path)
	if err != nil {
		return refuse(err)
	}
	defer f.Close()
	r, got, err := openRecords(f, path, format, o)
	if err != nil {
		return refuse(err)
	}
	for err == nil {
		var rec interface{ Release() }
		rec, err = r.Next(ctx)
		if err == nil {
			rec.Release()
		}
	}
	r.Close()
	st := r.Stats()
	el := time.Since(start)
	fmt.Fprintf(out, "%s (%s): %d rows, %d accepted, %d rejected, %d file-level findings, %d batches, %.0f rows/s\n",
		o.File, got, st.Rows, st.Records, st.Rejected, st.Notes, st.Batches, float64(st.Rows)/el.Seconds())
	t.rejected += st.Rejected + st.Notes
	switch {
	case errors.Is(err, io.EOF):
		t.accepted += st.Records
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: stopped after %d rows; the reject report of this run was discarded: %w", o.File, st.Rows, context.Cause(ctx))
	case errors.Is(err, perso.ErrRejectLimit):
		t.refused++
		t.refusals = append(t.refusals, fmt.Errorf("aborted: %w", err))
		return nil
	}
	return refuse(err)
}

// openRecords detects the format (unless given) and opens a Reader on f.
// Parquet and the Arrow file format need a regular file (they seek);
// anything else is read as a stream, so pipes and standard input work.
func openRecords(f *os.File, path string, format perso.Format, o perso.Options) (*perso.Reader, perso.Format, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	regular := fi.Mode().IsRegular()
	var in io.Reader = f
	if format == "" {
		// Peek at the head through a buffer, so that a pipe loses nothing.
		br := bufio.NewReaderSize(f, 64<<10)
		head, _ := br.Peek(64)
		format = perso.DetectFormat(path, head)
		in = br
	}
	if strings.EqualFold(filepath.Ext(path), ".tsv") && o.Delimiter == ',' {
		o.Delimiter = '\t'
	}
	var r *perso.Reader
	switch format {
	case perso.FormatCSV:
		r, err = perso.NewCSVReader(in, o)
	case perso.FormatOut:
		r, err = perso.NewOutReader(in, o)
	case perso.FormatArrow:
		r, err = perso.NewArrowReader(in, o)
	case perso.FormatParquet, perso.FormatArrowFile:
		if !regular {
			return nil, "", fmt.Errorf("%s input must be a regular file (it is read at offsets), not a pipe or device", format)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, "", err
		}
		r, err = perso.OpenFormat(f, format, o)
	default:
		return nil, "", fmt.Errorf("unknown format %q", format)
	}
	return r, format, err
}

// isIOError reports an operating-system error reading an input (EIO, ...),
// as opposed to content the readers refused.
func isIOError(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}

func isRegular(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func defaultRejectsPath(input string, f perso.RejectFormat) string {
	if f == perso.RejectJSON {
		return input + ".rejects.jsonl"
	}
	return input + ".rejects.csv"
}

// rejectReport is where one run's (or one input's) rejects go: a file
// written atomically, stdout, or the terminal in full.
type rejectReport struct {
	sink  perso.RejectSink
	rw    *perso.RejectWriter
	file  *atomicFile // nil: stdout or terminal
	name  string
	count *countingSink
}

func newRejectReport(path string, f perso.RejectFormat, o outputOptions) (*rejectReport, error) {
	r := &rejectReport{name: path}
	var w io.Writer = os.Stdout
	if path != "-" {
		af, err := createOutput(path, o)
		if err != nil {
			return nil, err
		}
		r.file, w = af, af
	} else {
		r.name = "stdout"
	}
	rw, err := perso.NewRejectWriter(w, f)
	if err != nil {
		r.abort()
		return nil, err
	}
	r.rw = rw
	r.count = &countingSink{next: rw}
	r.sink = r.count
	return r, nil
}

// defaultRejectReport is FILE.rejects.csv beside a regular input, else the
// terminal (stderr), every reject in full.
func defaultRejectReport(input string, f perso.RejectFormat, force bool, stderr io.Writer) (*rejectReport, error) {
	if input != "-" && isRegular(input) {
		r, err := newRejectReport(defaultRejectsPath(input, f), f, outputOptions{force: force, inputs: []string{input}, flag: "reject report"})
		if err == nil || !errors.Is(err, fs.ErrPermission) {
			return r, err
		}
		fmt.Fprintf(stderr, "perso: cannot write a reject report beside %s (%v); rejects follow here\n", input, err)
	}
	c := &countingSink{next: terminalSink{stderr}}
	return &rejectReport{sink: c, count: c, name: "standard error"}, nil
}

// finish commits the report if it holds rejects, and discards it if not.
func (r *rejectReport) finish(t *checkTally) error {
	if r.rw != nil {
		if err := r.rw.Close(); err != nil {
			r.abort()
			return fmt.Errorf("reject report %s: %w", r.name, err)
		}
	}
	if r.count.n == 0 {
		r.abort()
		return nil
	}
	if r.file != nil {
		if err := r.file.Commit(); err != nil {
			return err
		}
		r.file = nil
	}
	t.reports = append(t.reports, r.name)
	return nil
}

func (r *rejectReport) abort() {
	if r != nil && r.file != nil {
		r.file.Abort()
		r.file = nil
	}
}

type countingSink struct {
	next perso.RejectSink
	n    int64
}

func (c *countingSink) Reject(r perso.Reject) error {
	c.n++
	return c.next.Reject(r)
}

// terminalSink prints every reject as one line (never a value: a Reject
// holds only the value's class).
type terminalSink struct{ w io.Writer }

func (s terminalSink) Reject(r perso.Reject) error {
	_, err := fmt.Fprintf(s.w, "reject: %s\n", r)
	return err
}
