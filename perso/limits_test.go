package perso

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// endless is an input that never ends: its bytes repeat b forever. After
// cancelAfter bytes (if set) it calls cancel, as a signal would.
type endless struct {
	b           byte
	n           int64
	cancelAfter int64
	cancel      context.CancelFunc
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e.b
	}
	e.n += int64(len(p))
	if e.cancel != nil && e.n >= e.cancelAfter {
		e.cancel()
	}
	return len(p), nil
}

// Endless input without line ends (/dev/zero, a sparse file) ends with an
// error naming the limit, in the header and in the data, and a cancelled
// context stops the skipping of an overlong line.
func TestEndlessLinesAreBounded(t *testing.T) {
	const header = "iccid,imsi,ki,opc\n"
	for _, c := range []struct {
		name   string
		format Format
		prefix string
		cancel bool
		want   string
	}{
		{"csv header", FormatCSV, "", false, "header row longer than 1 MiB (the line limit; raise it with --max-line)"},
		{"out header", FormatOut, "", false, "header line longer than 1 MiB"},
		{"csv data", FormatCSV, header, false, "no line end within 64 MiB (raise the line limit with --max-line)"},
		{"csv data cancelled", FormatCSV, header, true, "context canceled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src := &endless{b: 0}
			if c.cancel {
				src.cancel, src.cancelAfter = cancel, 8<<20
			}
			in := io.MultiReader(strings.NewReader(c.prefix), src)
			o := Options{MaxLineSetting: "--max-line"}
			var r *Reader
			var err error
			if c.format == FormatOut {
				r, err = NewOutReader(in, o)
			} else {
				r, err = NewCSVReader(in, o)
			}
			if err == nil {
				_, err = r.Next(ctx)
				r.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if c.cancel && !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v is not context.Canceled", err)
			}
			if src.n > 80<<20 {
				t.Fatalf("read %d bytes of endless input", src.n)
			}
		})
	}
}

// A record of many lines holding doubled quotes stays open without the
// reader re-splitting it once per line (which was quadratic).
func TestQuotedFieldOfManyLines(t *testing.T) {
	in := "iccid,imsi,ki,opc\n\"" + strings.Repeat("\"\"\n", 400) + "\n894415000000000001,234150000000001,00,00\n"
	var rejects RejectList
	r, err := NewCSVReader(strings.NewReader(in), Options{Rejects: &rejects})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		var rec interface{ Release() }
		if rec, err = r.Next(context.Background()); err == nil {
			rec.Release()
		}
	}
	if len(rejects.Items) == 0 || !strings.Contains(rejects.Items[0].Reason, "quoted field open over more than 256 lines") {
		t.Fatalf("rejects %v", rejects.Items)
	}
}

// ParseText applies the reader's rules to one record given as text.
func TestParseText(t *testing.T) {
	good := map[string]string{"iccid": "8944150000000000017", "imsi": "234150000000001",
		"ki": "000102030405060708090a0b0c0d0e0f", "opc": "0f0e0d0c0b0a09080706050403020100", "pin1": "1234", "spn": "Op"}
	for _, c := range []struct {
		name    string
		change  map[string]string
		keysOpt bool
		want    string // column of the problem, "" for none
	}{
		{"good", nil, false, ""},
		{"bad Luhn", map[string]string{"iccid": "8944150000000000018"}, false, ColICCID},
		{"SPN not UTF-8", map[string]string{"spn": "\xff\xfe"}, false, ColSPN},
		{"PUK of 7 digits", map[string]string{"puk1": "1234567"}, false, ColPUK1},
		{"no keys", map[string]string{"ki": "", "opc": ""}, false, ColKi},
		{"no keys, optional", map[string]string{"ki": "", "opc": ""}, true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := map[string]string{}
			for k, v := range good {
				f[k] = v
			}
			for k, v := range c.change {
				f[k] = v
			}
			rec, probs, err := ParseText(f, Options{}, c.keysOpt)
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Wipe()
			if c.want == "" {
				if len(probs) > 0 || rec.ICCID != f["iccid"] || rec.SPN != f["spn"] {
					t.Fatalf("problems %v, record %s %q", probs, rec.ICCID, rec.SPN)
				}
				if (len(rec.Ki) == 16) == c.keysOpt {
					t.Fatalf("Ki of %d bytes", len(rec.Ki))
				}
				return
			}
			if len(probs) == 0 || probs[0].Column != c.want {
				t.Fatalf("problems %v, want one on %s", probs, c.want)
			}
		})
	}
}
