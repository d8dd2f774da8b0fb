// Package bench is the output model shared by every `perso bench` mode: a
// Result (the mode's figures with their units, its tables, the series its
// plots draw, and where and how it was measured), printed as a table on the
// terminal, written as one JSON document and appended as one line to a
// results history (JSON Lines) from which regressions are plotted.
//
// A mode reports CPU time per unit of work (internal/cputime) and ratios
// measured in the same run next to any wall-clock throughput: on a shared
// machine a lone absolute time says more about the neighbours than about
// the code.
package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Better says which way a figure improves, for regression plots and for
// readers of the history.
type Better string

const (
	Higher Better = "higher"
	Lower  Better = "lower"
)

// Figure is one scalar result with its unit. Name is stable across runs
// (the history groups by mode, name and unit), so it names the workload,
// not the value: "sign pool 4 sessions", "sqlite bulk insert".
type Figure struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Better Better  `json:"better,omitempty"`
	// Note says what the figure is relative to (for a ratio) or how it was
	// taken, where the name cannot.
	Note string `json:"note,omitempty"`
}

// Point is one (x, y) measurement of a Series.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Series is a line of a plot: every Series with the same Plot is drawn on
// one chart (one PNG), named by Plot, with the axes of its first series.
type Series struct {
	Plot   string `json:"plot"`  // file stem of the chart, e.g. "hsm-throughput-by-sessions"
	Title  string `json:"title"` // chart title
	Name   string `json:"name"`  // legend entry
	XLabel string `json:"x_label"`
	XUnit  string `json:"x_unit,omitempty"`
	YLabel string `json:"y_label"`
	YUnit  string `json:"y_unit,omitempty"`
	Dashed bool   `json:"dashed,omitempty"` // a baseline rather than the subject
	// Group gives series that belong together (an operation's pool line
	// and its baseline) one colour; empty: a colour of its own.
	Group  string  `json:"group,omitempty"`
	Points []Point `json:"points"`
}

// Column heads a Table column; Unit is printed under the name.
type Column struct {
	Name string `json:"name"`
	Unit string `json:"unit,omitempty"`
}

// Cell is a table value: a number or a text. It is a number in JSON when it
// is one, so a reader can compute with the tables too.
type Cell struct {
	Num    float64
	Text   string
	IsText bool
	// Prec is the number of decimals printed on the terminal (-1: as
	// few as needed; FigurePrec: about four significant digits, thousands
	// grouped). Not part of the JSON.
	Prec int
}

// FigurePrec prints a number cell the way figures are printed.
const FigurePrec = -2

// Num and Text build cells.
func Num(v float64, prec int) Cell { return Cell{Num: v, Prec: prec} }
func Text(s string) Cell           { return Cell{Text: s, IsText: true} }

func (c Cell) String() string {
	if c.IsText {
		return c.Text
	}
	if math.IsNaN(c.Num) || math.IsInf(c.Num, 0) {
		return "-"
	}
	if c.Prec == FigurePrec {
		return formatFigure(c.Num)
	}
	return strconv.FormatFloat(c.Num, 'f', c.Prec, 64)
}

func (c Cell) MarshalJSON() ([]byte, error) {
	if c.IsText {
		return json.Marshal(c.Text)
	}
	if math.IsNaN(c.Num) || math.IsInf(c.Num, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(c.Num)
}

func (c *Cell) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*c = Cell{Num: math.NaN(), Prec: -1}
		return nil
	case len(b) > 0 && b[0] == '"':
		*c = Cell{IsText: true}
		return json.Unmarshal(b, &c.Text)
	}
	*c = Cell{Prec: -1}
	if err := json.Unmarshal(b, &c.Num); err != nil {
		return fmt.Errorf("bench: a table cell must be a number, a string or null, not %s", b)
	}
	return nil
}

// Table is a block of rows printed on the terminal and kept in the JSON.
type Table struct {
	Title   string   `json:"title,omitempty"`
	Columns []Column `json:"columns"`
	Rows    [][]Cell `json:"rows"`
}

// AddRow appends a row; it panics on a row of the wrong width, a
// programming error of the mode.
func (t *Table) AddRow(cells ...Cell) {
	if len(cells) != len(t.Columns) {
		panic(fmt.Sprintf("bench: table %q has %d columns, row has %d", t.Title, len(t.Columns), len(cells)))
	}
	t.Rows = append(t.Rows, cells)
}

// HSMInfo says which HSM a run measured. Never a PIN.
type HSMInfo struct {
	Backend string `json:"backend"`
	Module  string `json:"module,omitempty"`
	Token   string `json:"token,omitempty"`
}

// Result is one run of one mode.
type Result struct {
	Mode string    `json:"mode"`
	Time time.Time `json:"time"`
	// WallSeconds is how long the whole run took, for the reader's sense of
	// scale; it is not a figure.
	WallSeconds float64  `json:"wall_seconds"`
	Env         Env      `json:"env"`
	HSM         *HSMInfo `json:"hsm,omitempty"`
	// Store names the store backend(s) measured or written to.
	Store string `json:"store,omitempty"`
	// Config holds the settings and flags the run used, redacted: no PIN,
	// no passphrase, no DSN password (the caller redacts; Redact helps).
	Config  map[string]string `json:"config,omitempty"`
	Figures []Figure          `json:"figures"`
	Tables  []Table           `json:"tables,omitempty"`
	Series  []Series          `json:"series,omitempty"`
	Notes   []string          `json:"notes,omitempty"`
	// Details is the mode's own report (e.g. hsmpool's rows), for readers
	// who want every number; plots and history use Figures and Series.
	Details json.RawMessage `json:"details,omitempty"`
}

// Add appends a figure. A value that is not a finite number (a ratio over
// nothing) is left out: the history holds only what was measured.
func (r *Result) Add(name string, value float64, unit string, better Better, note string) {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return
	}
	r.Figures = append(r.Figures, Figure{Name: name, Value: value, Unit: unit, Better: better, Note: note})
}

// Figure returns the named figure.
func (r *Result) Figure(name string) (Figure, bool) {
	for _, f := range r.Figures {
		if f.Name == name {
			return f, true
		}
	}
	return Figure{}, false
}

// SetDetails stores v as the mode's own report.
func (r *Result) SetDetails(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bench: encoding the %s details: %w", r.Mode, err)
	}
	r.Details = b
	return nil
}

// Ratio is a/b, or NaN when b is not positive (a ratio over nothing is not
// zero; the table prints it as "-").
func Ratio(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}
