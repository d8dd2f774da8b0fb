package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/perso-esim/perso/engine"
)

// TestRunProgressBar: the bar of `perso run --progress bar` shows the
// records done, this run's records/s, the ETA and the rejects. A resumed
// batch: an earlier run stored 2,000 of 13,000 records; this run's first
// chunk comes after 3 s of start-up, the next ones every 0.5 s (the
// engine's Elapsed), so the rate is 2,000 records/s, neither the earlier
// run's records nor the start-up counted as this run's speed, and the
// 6,000 records left take 3 s.
func TestRunProgressBar(t *testing.T) {
	var buf lockedBuffer
	pr := newProgress("bar", &buf, nil)
	for i := int64(1); i <= 5; i++ {
		pr.update(engine.Progress{BatchID: "b1", Records: 13000, Done: 2000 + i*1000, Stored: 2000 + i*1000 - 9,
			Rejected: 7, Conflicts: 2, Chunks: 13, ChunksDone: 2 + int(i), Elapsed: 3*time.Second + time.Duration(i-1)*500*time.Millisecond,
			RunStored: i * 1000})
	}
	pr.done(nil)
	out := buf.String()
	// The last frame: the bar is redrawn in place (escape sequences).
	i := strings.LastIndex(out, "batch b1 ")
	if i < 0 {
		t.Fatalf("no bar drawn:\n%q", out)
	}
	frame := regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`).ReplaceAllString(out[i:], "")
	frame, _, _ = strings.Cut(frame, "\n")
	for _, want := range []string{"7000 / 13000", "54 %", "2000 records/s", "ETA 3s", "rejects 9"} {
		if !strings.Contains(frame, want) {
			t.Errorf("the bar lacks %q: %q", want, frame)
		}
	}
	t.Logf("%s", frame)
}
