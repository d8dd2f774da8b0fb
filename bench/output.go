package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteTable prints r for a terminal: a header naming the machine and the
// revision, each of the mode's tables, the figures with their units, and
// the notes.
func WriteTable(w io.Writer, r *Result) error {
	ew := &errWriter{w: w}
	rev := r.Env.GitRevision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if r.Env.GitModified {
		rev += " (modified)"
	}
	fmt.Fprintf(ew, "perso bench %s — %s, %d cores, %s, %s, git %s\n", r.Mode, orDash(r.Env.CPUModel), r.Env.Cores,
		formatBytes(r.Env.MemoryBytes), r.Env.GoVersion, orDash(rev))
	if len(r.Env.Load) > 0 {
		fmt.Fprintf(ew, "load average at start %s\n", joinFloats(r.Env.Load))
	}
	if r.HSM != nil {
		fmt.Fprintf(ew, "hsm %s", r.HSM.Backend)
		if r.HSM.Module != "" {
			fmt.Fprintf(ew, " %s", r.HSM.Module)
		}
		if r.HSM.Token != "" {
			fmt.Fprintf(ew, " token %q", r.HSM.Token)
		}
		fmt.Fprintln(ew)
	}
	if r.Store != "" {
		fmt.Fprintf(ew, "store %s\n", r.Store)
	}
	for _, t := range r.Tables {
		fmt.Fprintln(ew)
		writeOneTable(ew, t)
	}
	if len(r.Figures) > 0 {
		fmt.Fprintln(ew)
		ft := Table{Title: "figures", Columns: []Column{{Name: "figure"}, {Name: "value"}, {Name: "unit"}, {Name: "note"}}}
		for _, f := range r.Figures {
			ft.AddRow(Text(f.Name), Num(f.Value, FigurePrec), Text(f.Unit), Text(f.Note))
		}
		writeOneTable(ew, ft)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(ew, "note: %s\n", n)
	}
	return ew.err
}

func writeOneTable(w io.Writer, t Table) {
	if t.Title != "" {
		fmt.Fprintf(w, "%s\n", t.Title)
	}
	// Columns of numbers are right-aligned, text left-aligned.
	cols := len(t.Columns)
	cells := make([][]string, 0, len(t.Rows)+2)
	head, units := make([]string, cols), make([]string, cols)
	anyUnit := false
	for i, c := range t.Columns {
		head[i] = c.Name
		units[i] = c.Unit
		anyUnit = anyUnit || c.Unit != ""
	}
	cells = append(cells, head)
	if anyUnit {
		cells = append(cells, units)
	}
	numeric := make([]bool, cols)
	for i := range numeric {
		numeric[i] = len(t.Rows) > 0
	}
	for _, row := range t.Rows {
		s := make([]string, cols)
		for i, c := range row {
			s[i] = c.String()
			numeric[i] = numeric[i] && !c.IsText
		}
		cells = append(cells, s)
	}
	width := make([]int, cols)
	for _, row := range cells {
		for i, s := range row {
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	for _, row := range cells {
		var b strings.Builder
		for i, s := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(s))
			if i > 0 {
				b.WriteString("  ")
			}
			if numeric[i] {
				b.WriteString(pad + s)
			} else if i < cols-1 {
				b.WriteString(s + pad)
			} else {
				b.WriteString(s)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// formatFigure prints a value with about four significant digits and
// thousands separated by thin spaces, as the docs write them.
func formatFigure(v float64) string {
	abs := v
	if abs < 0 {
		abs = -abs
	}
	prec := 0
	switch {
	case abs == 0 || abs >= 1000:
	case abs >= 100:
		prec = 1
	case abs >= 1:
		prec = 2
	default:
		prec = 4
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteRune(' ')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

func formatBytes(n uint64) string {
	if n == 0 {
		return "memory unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

func joinFloats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(s, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// JSON is r as an indented JSON document ending in a newline.
func JSON(r *Result) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bench: encoding the %s result: %w", r.Mode, err)
	}
	return append(b, '\n'), nil
}

// ParseJSON reads a document JSON wrote (or one history line).
func ParseJSON(b []byte) (*Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: not a bench result: %w", err)
	}
	if r.Mode == "" {
		return nil, fmt.Errorf("bench: not a bench result: no mode")
	}
	return &r, nil
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
