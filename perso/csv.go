package perso

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxLine bounds one input line (and one multi-line quoted record)
// when Options.MaxLine is zero.
const DefaultMaxLine = 1 << 20

// maxHeaderBytes bounds what may precede and make up a header (the CSV
// header row, the whole .out header): a file that has not shown its header
// within it is not a personalisation file.
const maxHeaderBytes = 1 << 20

// lineReader returns lines without their line end, counting them, and
// tells whether the last one was cut short by the end of input. It owns its
// buffer (unlike bufio) so that wipe can clear the input text — hex Ki and
// OPc of plaintext files — when the reader is closed.
//
// Memory is bounded by the line limit: a longer line is skipped, not
// buffered, and skipping gives up (errNoLineEnd) when no line end comes
// within skipLimit bytes, so /dev/zero or a sparse file of zeros ends with
// an error instead of running for as long as the input lasts. The context
// is checked at every buffer refill, so a cancelled caller is never held up
// by skipping.
type lineReader struct {
	r            io.Reader
	ctx          context.Context // nil: not cancellable
	buf          []byte
	start, end   int
	err          error // sticky read error (io.EOF at the end)
	line         int64
	long         []byte
	unterminated bool
	max          int // line limit
	setting      string
	consumed     int64 // bytes returned so far
	noSkip       bool  // an overlong line is reported at once, not skipped (headers)
}

const lineBufSize = 256 << 10

func newLineReader(r io.Reader, o *Options) *lineReader {
	max := o.MaxLine
	if max <= 0 {
		max = DefaultMaxLine
	}
	return &lineReader{r: r, buf: make([]byte, lineBufSize), max: max, setting: o.MaxLineSetting}
}

var errLineTooLong = errors.New("line too long")

// LimitError reports input that exceeds one of the reader's size limits.
// It names the limit and, when the caller said how (Options.MaxLineSetting),
// the setting that raises it.
type LimitError struct {
	Line    int64  // the line where the limit was hit
	What    string // e.g. "no line end"
	Limit   int64  // bytes
	Setting string
}

func (e *LimitError) Error() string {
	s := fmt.Sprintf("line %d: %s within %s", e.Line, e.What, sizeText(e.Limit))
	if e.Setting != "" {
		s += " (raise the line limit with " + e.Setting + ")"
	}
	return s
}

// sizeText prints a byte count for errors.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// skipLimit is how far an overlong line is skipped looking for its end.
func (l *lineReader) skipLimit() int64 {
	return max(64<<20, 4*int64(l.max))
}

// tooLong is the reject reason for a line over the limit.
func (l *lineReader) tooLong(what string) string {
	s := fmt.Sprintf("%s longer than %s (the line limit", what, sizeText(int64(l.max)))
	if l.setting != "" {
		s += "; raise it with " + l.setting
	}
	return s + ")"
}

// readSlice behaves like bufio.Reader.ReadSlice('\n').
func (l *lineReader) readSlice() ([]byte, error) {
	for {
		if i := bytes.IndexByte(l.buf[l.start:l.end], '\n'); i >= 0 {
			b := l.buf[l.start : l.start+i+1]
			l.start += i + 1
			l.consumed += int64(len(b))
			return b, nil
		}
		if l.err != nil {
			b := l.buf[l.start:l.end]
			l.start = l.end
			l.consumed += int64(len(b))
			return b, l.err
		}
		if l.start == 0 && l.end == len(l.buf) {
			l.start = l.end
			l.consumed += int64(len(l.buf))
			return l.buf, bufio.ErrBufferFull
		}
		if l.start > 0 {
			n := copy(l.buf, l.buf[l.start:l.end])
			clear(l.buf[n:l.end])
			l.start, l.end = 0, n
		}
		if l.ctx != nil {
			if err := l.ctx.Err(); err != nil {
				return nil, context.Cause(l.ctx)
			}
		}
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if err != nil {
			l.err = err
		} else if n == 0 {
			continue
		}
	}
}

// wipe clears the buffered input.
func (l *lineReader) wipe() {
	clear(l.buf)
	clear(l.long)
	l.start, l.end = 0, 0
}

// next returns the next line (valid until the following call). A line
// longer than the limit is skipped and reported as errLineTooLong; one
// without a line end within skipLimit ends the input with a *LimitError.
func (l *lineReader) next() ([]byte, error) {
	b, err := l.readSlice()
	if err == bufio.ErrBufferFull {
		l.long = append(l.long[:0], b...)
		for err == bufio.ErrBufferFull && len(l.long) <= l.max {
			b, err = l.readSlice()
			l.long = append(l.long, b...)
		}
		if n := len(bytes.TrimSuffix(l.long, []byte{'\n'})); n > l.max {
			l.line++
			skipped := int64(len(l.long))
			clear(l.long)
			l.long = l.long[:0]
			if l.noSkip {
				return nil, errLineTooLong
			}
			for err == bufio.ErrBufferFull {
				if skipped > l.skipLimit() {
					return nil, &LimitError{Line: l.line, What: "no line end", Limit: l.skipLimit(), Setting: l.setting}
				}
				b, err = l.readSlice()
				skipped += int64(len(b))
				clear(b)
			}
			if err == io.EOF {
				l.unterminated = true
				err = nil
			}
			if err != nil {
				return nil, err
			}
			return nil, errLineTooLong
		}
		b = l.long
	}
	if err == io.EOF {
		if len(b) == 0 {
			return nil, io.EOF
		}
		l.unterminated = true
	} else if err != nil {
		return nil, err
	}
	l.line++
	if l.line == 1 {
		b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF")) // UTF-8 BOM
	}
	b = bytes.TrimSuffix(b, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})
	return b, nil
}

// csvSource reads RFC 4180 CSV with a header row. Quoted fields may hold
// the delimiter, doubled quotes and line ends. Unquoted fields are trimmed
// of surrounding blanks. Blank lines are skipped.
type csvSource struct {
	lr      *lineReader
	delim   byte
	cols    *columnMap
	fields  [][]byte
	scratch []byte
	pending []byte
	closer  io.Closer
}

// NewCSVReader reads CSV with a header row from r. Column names are matched
// case-insensitively (see the Col* constants; "KI", "Ki" and "k" all name
// ki; kic1/kid1/kik1... name OTA keys). Unknown columns are ignored and
// listed by IgnoredColumns.
func NewCSVReader(r io.Reader, o Options) (*Reader, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	s := &csvSource{lr: newLineReader(r, &o), delim: byte(o.Delimiter)}
	if c, ok := r.(io.Closer); ok {
		s.closer = c
	}
	var header [][]byte
	s.lr.noSkip = true
	for {
		if s.lr.consumed > maxHeaderBytes {
			return nil, fmt.Errorf("%s: no header row in the first %s", o.File, sizeText(maxHeaderBytes))
		}
		line, err := s.lr.next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: no header row", o.File)
		}
		if err == errLineTooLong {
			return nil, fmt.Errorf("%s: header: %s", o.File, s.lr.tooLong("header row"))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: header: %w", o.File, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		complete := s.split(line)
		if !complete {
			return nil, fmt.Errorf("%s: header: unterminated quote", o.File)
		}
		header = s.fields
		break
	}
	s.lr.noSkip = false
	names := make([]string, len(header))
	for i, h := range header {
		names[i] = string(h)
	}
	cm, err := mapColumns(names)
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", o.File, err)
	}
	s.cols = cm
	rd, err := newReader(s, o, cm.kvns, cm.present)
	if err != nil {
		return nil, err
	}
	rd.ignored = cm.ignored
	return rd, nil
}

func (s *csvSource) read(row *rawRow) error {
	for {
		line, err := s.lr.next()
		if err == errLineTooLong {
			row.line = s.lr.line
			row.bad = &Problem{Reason: s.lr.tooLong("line")}
			row.unterminated = s.lr.unterminated
			return nil
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		row.line = s.lr.line
		if !s.split(line) {
			// A quoted field continues on the next line(s).
			// Only a line holding a quote can close the field, so only
			// such lines trigger a new split of the whole record, and at
			// most maxQuotedSplits times: re-splitting a growing record
			// per line would make a file of "" lines quadratic.
			acc := append(s.pending[:0], line...)
			for splits := 0; ; {
				if len(acc) > s.lr.max || splits > maxQuotedSplits {
					row.bad = &Problem{Reason: s.lr.tooLong("quoted field")}
					if splits > maxQuotedSplits {
						row.bad = &Problem{Reason: fmt.Sprintf("quoted field open over more than %d lines with quotes", maxQuotedSplits)}
					}
					s.pending = acc[:0]
					return nil
				}
				next, err := s.lr.next()
				if err == io.EOF {
					row.bad = &Problem{Reason: "unterminated quoted field at end of input"}
					row.unterminated = true
					s.pending = acc[:0]
					return nil
				}
				if err == errLineTooLong {
					next = nil
				} else if err != nil {
					return err
				}
				acc = append(append(acc, '\n'), next...)
				if bytes.IndexByte(next, '"') >= 0 {
					splits++
					if s.split(acc) {
						break
					}
				}
			}
			s.pending = acc[:0]
		}
		row.unterminated = s.lr.unterminated
		if len(s.fields) != len(s.cols.idx) {
			row.bad = &Problem{Reason: fmt.Sprintf("wrong column count: %d, header has %d", len(s.fields), len(s.cols.idx))}
			return nil
		}
		for i, c := range s.cols.idx {
			if c >= 0 {
				row.vals[c] = s.fields[i]
			}
		}
		return nil
	}
}

// maxQuotedSplits bounds the lines with quotes in one multi-line record.
const maxQuotedSplits = 256

// split splits one line into s.fields. It returns false when a quoted
// field is still open at the end of the line.
func (s *csvSource) split(line []byte) bool {
	s.fields = s.fields[:0]
	if bytes.IndexByte(line, '"') < 0 {
		for {
			i := bytes.IndexByte(line, s.delim)
			if i < 0 {
				s.fields = append(s.fields, trimBlank(line))
				return true
			}
			s.fields = append(s.fields, trimBlank(line[:i]))
			line = line[i+1:]
		}
	}
	// Slow path: quotes. Unquoted text never grows, so one scratch buffer
	// of the line's size holds every field without reallocation.
	if cap(s.scratch) < len(line) {
		s.scratch = make([]byte, 0, len(line))
	}
	buf := s.scratch[:0]
	for {
		f := trimLeftBlank(line)
		if len(f) > 0 && f[0] == '"' {
			start := len(buf)
			f = f[1:]
			for {
				i := bytes.IndexByte(f, '"')
				if i < 0 {
					return false
				}
				buf = append(buf, f[:i]...)
				f = f[i+1:]
				if len(f) > 0 && f[0] == '"' {
					buf = append(buf, '"')
					f = f[1:]
					continue
				}
				break
			}
			s.fields = append(s.fields, buf[start:len(buf):len(buf)])
			// anything between the closing quote and the delimiter is kept
			// (trimmed), as lenient readers do
			i := bytes.IndexByte(f, s.delim)
			rest := f
			if i >= 0 {
				rest = f[:i]
			}
			if t := trimBlank(rest); len(t) > 0 {
				last := len(s.fields) - 1
				s.fields[last] = append(s.fields[last][:len(s.fields[last]):len(s.fields[last])], t...)
			}
			if i < 0 {
				return true
			}
			line = f[i+1:]
			continue
		}
		i := bytes.IndexByte(line, s.delim)
		if i < 0 {
			s.fields = append(s.fields, trimBlank(line))
			return true
		}
		s.fields = append(s.fields, trimBlank(line[:i]))
		line = line[i+1:]
	}
}

func trimBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func trimLeftBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func (s *csvSource) finish() []Reject { return nil }

func (s *csvSource) setContext(ctx context.Context) { s.lr.ctx = ctx }

func (s *csvSource) close() error {
	s.lr.wipe()
	wipe(s.scratch[:cap(s.scratch)], s.pending[:cap(s.pending)])
	if s.closer != nil {
		return s.closer.Close()
	}
	return nil
}
