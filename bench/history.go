package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultHistory is the results history inside the repository.
const DefaultHistory = "bench/results/history.jsonl"

// maxHistoryLine bounds one history line when reading: a result is a few
// tens of KB; a longer line is not one of ours.
const maxHistoryLine = 16 << 20

// AppendHistory appends r as one line to the JSON Lines file at path,
// creating it and its directory if needed.
//
// Existing lines are never rewritten: the file is opened O_APPEND and the
// line goes out in one write(2), under an exclusive flock so that two
// concurrent runs (make bench in two shells, a CI job beside a developer)
// interleave whole lines only. If the file does not end in a newline (a
// run killed mid-write on a filesystem that tore the write), a newline is
// written first so that the torn line stays one bad line and the new one
// starts clean; ReadHistory skips bad lines and counts them.
func AppendHistory(path string, r *Result) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("bench: encoding the %s result for the history: %w", r.Mode, err)
	}
	if bytes.IndexByte(line, '\n') >= 0 { // json.Marshal escapes newlines; guard the invariant anyway
		return errors.New("bench: a history line must not contain a newline")
	}
	line = append(line, '\n')
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bench: history %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("bench: history %s: %w (choose another file with --history)", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("bench: locking the history %s: %w", path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("bench: history %s: %w", path, err)
	}
	if fi.Size() > 0 {
		last := make([]byte, 1)
		rf, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("bench: history %s: %w", path, err)
		}
		_, err = rf.ReadAt(last, fi.Size()-1)
		rf.Close()
		if err != nil {
			return fmt.Errorf("bench: history %s: %w", path, err)
		}
		if last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	n, err := f.Write(line)
	if err == nil && n != len(line) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("bench: appending to the history %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("bench: history %s: %w", path, err)
	}
	return nil
}

// History is what ReadHistory found.
type History struct {
	Results []*Result
	// Bad lists the 1-based numbers of lines that are not results (torn
	// or foreign lines), which are skipped.
	Bad []int
}

// ReadHistory reads every result of a JSON Lines history, oldest first.
// A missing file is an empty history.
func ReadHistory(path string) (History, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return History{}, nil
	}
	if err != nil {
		return History{}, fmt.Errorf("bench: history %s: %w", path, err)
	}
	defer f.Close()
	return parseHistory(f)
}

func parseHistory(rd io.Reader) (History, error) {
	var h History
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), maxHistoryLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		r, err := ParseJSON(line)
		if err != nil {
			h.Bad = append(h.Bad, n)
			continue
		}
		h.Results = append(h.Results, r)
	}
	if err := sc.Err(); err != nil {
		return h, fmt.Errorf("bench: reading the history: %w", err)
	}
	return h, nil
}
