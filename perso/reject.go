package perso

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// Reject is one line of the reject report: where the problem is and what
// kind of problem it is. It never holds the offending value, only its
// class (shape), so a report can be shared without leaking secrets.
type Reject struct {
	File   string `json:"file"`
	Line   int64  `json:"line"`   // 1-based line number in the input (record number for Parquet/Arrow)
	Column string `json:"column"` // canonical column (ki, iccid, ...), the .out header key, or "" for the whole line
	Class  string `json:"class"`  // shape of the value: "19 digits", "31 hex chars", "invalid UTF-8", ...
	Reason string `json:"reason"`
}

func (r Reject) String() string {
	s := r.File + ":" + strconv.FormatInt(r.Line, 10) + ": "
	if r.Column != "" {
		s += r.Column + ": "
	}
	s += r.Reason
	if r.Class != "" {
		s += " (value: " + r.Class + ")"
	}
	return s
}

// RejectSink receives rejects as a reader finds them.
type RejectSink interface {
	Reject(Reject) error
}

// RejectList collects rejects in memory (for tests and small inputs).
type RejectList struct {
	mu    sync.Mutex
	Items []Reject
}

// Reject implements RejectSink.
func (l *RejectList) Reject(r Reject) error {
	l.mu.Lock()
	l.Items = append(l.Items, r)
	l.mu.Unlock()
	return nil
}

// RejectFormat selects the encoding of a reject report.
type RejectFormat string

// Reject report formats.
const (
	RejectCSV  RejectFormat = "csv"  // header file,line,column,class,reason
	RejectJSON RejectFormat = "json" // JSON Lines: one object per reject
)

// RejectWriter streams a reject report. Call Close (or Flush) at the end.
type RejectWriter struct {
	mu  sync.Mutex
	bw  *bufio.Writer
	cw  *csv.Writer
	enc *json.Encoder
	n   int64
}

// NewRejectWriter writes a report in the given format to w.
func NewRejectWriter(w io.Writer, f RejectFormat) (*RejectWriter, error) {
	rw := &RejectWriter{bw: bufio.NewWriter(w)}
	switch f {
	case RejectCSV, "":
		rw.cw = csv.NewWriter(rw.bw)
		if err := rw.cw.Write([]string{"file", "line", "column", "class", "reason"}); err != nil {
			return nil, err
		}
	case RejectJSON, "jsonl":
		rw.enc = json.NewEncoder(rw.bw)
	default:
		return nil, fmt.Errorf("reject report format %q: want csv or json", f)
	}
	return rw, nil
}

// Reject implements RejectSink.
func (w *RejectWriter) Reject(r Reject) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if w.cw != nil {
		return w.cw.Write([]string{r.File, strconv.FormatInt(r.Line, 10), r.Column, r.Class, r.Reason})
	}
	return w.enc.Encode(r)
}

// Count returns the number of rejects written.
func (w *RejectWriter) Count() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Flush writes buffered rejects out.
func (w *RejectWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cw != nil {
		w.cw.Flush()
		if err := w.cw.Error(); err != nil {
			return err
		}
	}
	return w.bw.Flush()
}

// Close flushes the report; it does not close the underlying writer.
func (w *RejectWriter) Close() error { return w.Flush() }
