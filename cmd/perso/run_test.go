package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/store"
)

// crashRecords is the size of the worker and Ctrl-C tests' input: enough
// chunks for a kill or a stop to land mid-batch, few enough to stay well
// within a minute.
const (
	crashRecords = 6000
	crashChunk   = 200
)

// The kill -9 test's input: 6,000 generated lines, of which killBad are
// made bad and killConflicts are stored first by another batch, in chunks
// of 100 (60 chunks), so that several kills land while the batch is
// incomplete.
const (
	killRecords   = 6000
	killChunk     = 100
	killBad       = 5
	killConflicts = 10
)

// crashInput is the kill -9 test's input and what a correct run makes of
// it.
type crashInput struct {
	valid     []string         // ICCIDs of the good lines, conflicts included
	conflicts []string         // ICCIDs the other batch stores first
	bad       map[int64]string // planted bad line number → the column its reject names ("" for the whole line)
}

// plantCrashInput generates in.csv and other.csv in dir: in.csv with
// killBad lines made bad at random places (one of each kind: bad Luhn
// digit, short Ki, short IMSI, OPc not hex, an extra column), other.csv
// with killConflicts good lines of in.csv.
func plantCrashInput(t *testing.T, dir string, env []string) crashInput {
	t.Helper()
	if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", fmt.Sprint(killRecords), "-o", "in.csv"); res.code != 0 {
		t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "in.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	header, rows := lines[0], lines[1:]
	if len(rows) != killRecords {
		t.Fatalf("testdata wrote %d lines, want %d", len(rows), killRecords)
	}
	c0 := rand.IntN(killRecords - killConflicts)
	picked := map[int]bool{}
	for i := c0; i < c0+killConflicts; i++ {
		picked[i] = true
	}
	in := crashInput{bad: map[int64]string{}}
	kinds := []struct {
		column string
		spoil  func(f []string) []string
	}{
		{"iccid", func(f []string) []string {
			f[0] = f[0][:len(f[0])-1] + string('0'+(f[0][len(f[0])-1]-'0'+1)%10)
			return f
		}},
		{"ki", func(f []string) []string { f[2] = "0011"; return f }},
		{"imsi", func(f []string) []string { f[1] = "12"; return f }},
		{"opc", func(f []string) []string { f[3] = strings.Repeat("zz", 16); return f }},
		{"", func(f []string) []string { return append(f, "extra") }},
	}
	for _, k := range kinds[:killBad] {
		i := rand.IntN(killRecords)
		for picked[i] {
			i = rand.IntN(killRecords)
		}
		picked[i] = true
		rows[i] = strings.Join(k.spoil(strings.Split(rows[i], ",")), ",")
		in.bad[int64(i)+2] = k.column // line 1 is the header
	}
	for i, r := range rows {
		if _, isBad := in.bad[int64(i)+2]; !isBad {
			iccid, _, _ := strings.Cut(r, ",")
			in.valid = append(in.valid, iccid)
			if i >= c0 && i < c0+killConflicts {
				in.conflicts = append(in.conflicts, iccid)
			}
		}
	}
	write := func(name string, rows []string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(header+"\n"+strings.Join(rows, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("in.csv", rows)
	write("other.csv", rows[c0:c0+killConflicts])
	return in
}

// killRun starts `perso run` (logging each stored chunk at debug level)
// and kills it with SIGKILL once it has stored k chunks (k > 0), or after
// delay (k == 0), or at its first stored chunk if that comes sooner. It
// returns whether the kill landed (the process was still running) and
// how many chunks the process said it stored.
func killRun(t *testing.T, dir string, env []string, args []string, k int, delay time.Duration) (killed bool, seen int) {
	t.Helper()
	cmd := exec.Command(persoBinary(t), args...)
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), append(env, "PERSO_LOG_LEVEL=debug")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The lines are read as they come, not polled: the kill follows the
	// k-th "chunk stored" line within a scheduling delay.
	chunks, eof := make(chan struct{}, 4096), make(chan struct{})
	var tail []string
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `msg="chunk stored"`) {
				chunks <- struct{}{}
			}
			if tail = append(tail, sc.Text()); len(tail) > 20 {
				tail = tail[1:]
			}
		}
	}()
	var timer <-chan time.Time
	if k == 0 {
		timer, k = time.After(delay), 1
	}
	limit := time.After(2 * time.Minute)
wait:
	for {
		select {
		case <-chunks:
			if seen++; seen >= k {
				break wait
			}
		case <-timer:
			break wait
		case <-eof:
			break wait
		case <-limit:
			cmd.Process.Kill()
			<-eof
			cmd.Wait()
			t.Fatalf("perso run: no kill point within 2 minutes\n%s", strings.Join(tail, "\n"))
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-eof
	cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	// Finished before the kill: complete, with the input's rejects (3).
	if !ws.Signaled() && ws.ExitStatus() != exitOK && ws.ExitStatus() != exitPartial {
		t.Fatalf("perso run failed on its own (exit %d)\n%s", ws.ExitStatus(), strings.Join(tail, "\n"))
	}
	return ws.Signaled() && ws.Signal() == syscall.SIGKILL, seen
}

// batchState reads a batch's chunk counters from the store (exists false:
// not created yet).
func batchState(t *testing.T, driver, dsn, id string) (done, chunks int, exists bool) {
	t.Helper()
	db, err := store.Open(context.Background(), driver, dsn)
	if err != nil {
		t.Fatalf("opening the store after a kill: %v", err)
	}
	defer db.Close()
	b, err := db.GetBatch(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.ChunksDone, b.Chunks, true
}

// TestRunSurvivesKill9: `perso run` killed with SIGKILL at random points,
// on both stores: at random times during start-up (survey, migrations,
// HSM login, batch creation) or at the first chunk, and after the k-th
// stored chunk for a random k; at least killMin kills land while the
// batch is incomplete, among them killMin-1 after chunks were stored. The
// input has bad lines and ICCIDs another batch holds. Run again to
// completion with the same command, the batch holds every good ICCID
// exactly once (read back from the store's tables), nothing is lost, and
// the final report adds up (stored + rejected + conflicts = records_read),
// equals the batch's counts (perso batch show), names every bad line with
// its column, and its workers' chunks cover every chunk once.
func TestRunSurvivesKill9(t *testing.T) {
	const killMin = 4
	hsmEnv := batchToken(t)
	persoBinary(t) // built before the children's time limits start
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")

	for _, bc := range []struct{ driver, dsn string }{
		{"sqlite", filepath.Join(t.TempDir(), "perso.db")},
		{"postgres", testenv.PostgresSchemaDSN(t)},
	} {
		t.Run(bc.driver, func(t *testing.T) {
			dir := t.TempDir()
			env := append(hsmEnv[:len(hsmEnv):len(hsmEnv)], "PERSO_STORE_DRIVER="+bc.driver, "PERSO_STORE_DSN="+bc.dsn)
			in := plantCrashInput(t, dir, env)
			if res := runChild(t, dir, env, nil, time.Minute, "run", "--template", tmpl, "--input", "other.csv", "--batch", "other",
				"--progress", "none"); res.code != 0 {
				t.Fatalf("the other batch: exit %d\n%s", res.code, res.stderr)
			}
			args := []string{"run", "--template", tmpl, "--input", "in.csv", "--batch", "crash", "--chunk-size", fmt.Sprint(killChunk),
				"--progress", "log", "--report", "report.json", "--force"}
			// Two kills at random times of start-up and first chunk, then
			// kills after random chunk counts, until killMin landed while
			// the batch was incomplete, with chunks stored by some.
			var kills, chunkKills int
			for round := 0; round < 10 && (kills < killMin || chunkKills < killMin-1); round++ {
				k, delay := 0, time.Duration(rand.IntN(1500))*time.Millisecond
				if round != 0 && round != 2 {
					left := killRecords / killChunk
					if done, chunks, ok := batchState(t, bc.driver, bc.dsn, "crash"); ok {
						left = chunks - done
					}
					// A quarter of what is left at most: the batch stays
					// incomplete however many chunks commit while the
					// kill is on its way.
					k = 1 + rand.IntN(max(left/4, 1))
				}
				killed, seen := killRun(t, dir, env, args, k, delay)
				done, chunks, exists := batchState(t, bc.driver, bc.dsn, "crash")
				point := fmt.Sprintf("after %s or the first chunk", delay)
				if k > 0 {
					point = fmt.Sprintf("after the %d-th chunk", k)
				}
				t.Logf("round %d: kill %s: killed %v, %d chunks stored by this run, batch %d/%d chunks (created %v)",
					round, point, killed, seen, done, chunks, exists)
				if !killed || exists && done >= chunks {
					continue // finished first: not a crash
				}
				kills++
				if seen > 0 {
					chunkKills++
				}
			}
			if kills < killMin || chunkKills < killMin-1 {
				t.Fatalf("%d kills while the batch was incomplete (%d after stored chunks), want %d (%d)", kills, chunkKills, killMin, killMin-1)
			}

			res := runChild(t, dir, env, nil, 2*time.Minute, args...)
			if res.code != exitPartial {
				t.Fatalf("re-run after %d kills: exit %d, want %d (rejects)\n%s", kills, res.code, exitPartial, res.stderr)
			}
			rep := readReport(t, filepath.Join(dir, "report.json"))
			stored := int64(len(in.valid) - killConflicts)
			chunks := (len(in.valid) + killChunk - 1) / killChunk
			if !rep.Complete || !rep.Resumed || rep.RecordsRead != killRecords || rep.Rejected != killBad ||
				rep.Conflicts != killConflicts || rep.Stored != stored || rep.Duplicates != 0 ||
				rep.Stored+rep.Rejected+rep.Conflicts != rep.RecordsRead || rep.Chunks != chunks || rep.ChunksDone != chunks {
				t.Fatalf("after %d kills: report %+v; want %d records, %d stored, %d rejected, %d conflicts, %d chunks",
					kills, rep, killRecords, stored, killBad, killConflicts, chunks)
			}
			// The report covers the whole batch: earlier runs stored some.
			if rep.RunStored >= rep.Stored {
				t.Errorf("the last run stored %d of %d: the killed runs stored nothing?", rep.RunStored, rep.Stored)
			}
			if want := fmt.Sprintf("%d stored, %d rejected, %d conflicts", stored, killBad, killConflicts); !strings.Contains(res.stdout, want) {
				t.Errorf("summary lacks %q:\n%s", want, res.stdout)
			}
			checkChunksOnce(t, rep)
			checkRejectLines(t, filepath.Join(dir, "in.csv.rejects.csv"), in.bad)
			checkHeldOnce(t, bc.driver, bc.dsn, rep, in)
			checkBatchShow(t, dir, env, filepath.Join(dir, "report.json"))
			t.Logf("%d kills (%d after stored chunks), then complete: %+v", kills, chunkKills, rep.Workers)
		})
	}
}

// checkChunksOnce: the report's workers (one per process that stored
// chunks) list every chunk of the batch exactly once, and their profiles
// add up to the batch's.
func checkChunksOnce(t *testing.T, rep engine.Report) {
	t.Helper()
	seen := map[int]string{}
	var profiles int64
	for _, w := range rep.Workers {
		ids := chunkSet(t, w.ChunkIDs)
		if len(ids) != w.Chunks {
			t.Errorf("worker %s: %d chunks tallied, chunk_ids %q lists %d", w.Worker, w.Chunks, w.ChunkIDs, len(ids))
		}
		for _, id := range ids {
			if other, dup := seen[id]; dup {
				t.Errorf("chunk %d stored by %s and by %s", id, other, w.Worker)
			}
			seen[id] = w.Worker
		}
		profiles += w.Profiles
	}
	if len(seen) != rep.Chunks || profiles != rep.Stored {
		t.Errorf("workers stored %d distinct chunks and %d profiles; the batch has %d chunks, %d profiles: %+v",
			len(seen), profiles, rep.Chunks, rep.Stored, rep.Workers)
	}
}

// checkRejectLines: the reject report names each planted bad line with
// its column, and nothing else but conflicts.
func checkRejectLines(t *testing.T, path string, bad map[int64]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]string{}
	for _, r := range rows[1:] { // file,line,column,class,reason
		var line int64
		fmt.Sscan(r[1], &line)
		if strings.Contains(r[4], "held by batch other") {
			continue
		}
		got[line] = r[2]
	}
	if fmt.Sprint(got) != fmt.Sprint(bad) {
		t.Errorf("rejects (line: column) %v, want the planted %v", got, bad)
	}
}

// checkHeldOnce reads the store's tables: the batch holds exactly the good
// ICCIDs less the conflicts, the other batch still holds those, the batch's
// counter equals its rows (a chunk stored twice would count twice), and
// (SQLite) the protected material is there once per stored profile.
func checkHeldOnce(t *testing.T, driver, dsn string, rep engine.Report, in crashInput) {
	t.Helper()
	ctx := context.Background()
	held := map[string]string{}
	scan := func(next func() bool, scan func(...any) error) {
		for next() {
			var iccid, batch string
			if err := scan(&iccid, &batch); err != nil {
				t.Fatal(err)
			}
			if b, dup := held[iccid]; dup {
				t.Errorf("ICCID %s stored twice (batches %s, %s)", iccid, b, batch)
			}
			held[iccid] = batch
		}
	}
	const q = `SELECT iccid, batch_id FROM profiles`
	var material int64
	if driver == "postgres" {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		scan(rows.Next, rows.Scan)
		rows.Close()
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM profiles WHERE batch_id = $1 AND protected_ppk IS NOT NULL
			AND COALESCE(length(segments), 0) + COALESCE(length(segments_tail), 0) > 0`,
			rep.BatchID).Scan(&material); err != nil {
			t.Fatal(err)
		}
	} else {
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		scan(rows.Next, rows.Scan)
		rows.Close()
		blobs, err := sql.Open("sqlite", dsn+".blobs")
		if err != nil {
			t.Fatal(err)
		}
		defer blobs.Close()
		if err := blobs.QueryRow(`SELECT COUNT(*) FROM blobs WHERE batch_id = ?`, rep.BatchID).Scan(&material); err != nil {
			t.Fatal(err)
		}
	}
	conflict := map[string]bool{}
	for _, id := range in.conflicts {
		conflict[id] = true
	}
	var lost []string
	for _, id := range in.valid {
		want := rep.BatchID
		if conflict[id] {
			want = "other"
		}
		if held[id] != want {
			lost = append(lost, fmt.Sprintf("%s (held by %q, want %q)", id, held[id], want))
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d good ICCIDs not where they belong, e.g. %v", len(lost), lost[:min(len(lost), 5)])
	}
	var mine int64
	for _, b := range held {
		if b == rep.BatchID {
			mine++
		}
	}
	if mine != rep.Stored || material != rep.Stored || len(held) != len(in.valid) {
		t.Errorf("the store holds %d profiles of batch %s (%d with their protected material), %d in all; the batch counts %d stored, the input has %d good ICCIDs",
			mine, rep.BatchID, material, len(held), rep.Stored, len(in.valid))
	}
}

// checkStoredOnce reads the store back: every profile once, every chunk
// job completed, and (SQLite) protected material for exactly the stored
// profiles.
func checkStoredOnce(t *testing.T, driver, dsn string, rep engine.Report) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counts, err := db.CountByState(ctx, rep.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	if counts[store.StateAvailable] != crashRecords || len(counts) != 1 {
		t.Errorf("profiles by state %v, want %d Available", counts, crashRecords)
	}
	b, err := db.GetBatch(ctx, rep.BatchID)
	if err != nil {
		t.Fatal(err)
	}
	if b.ChunksDone != b.Chunks || b.Profiles != crashRecords {
		t.Errorf("batch %+v", b)
	}
	if driver == "sqlite" {
		blobs, err := sql.Open("sqlite", dsn+".blobs")
		if err != nil {
			t.Fatal(err)
		}
		defer blobs.Close()
		var n int
		if err := blobs.QueryRow(`SELECT COUNT(*) FROM blobs WHERE batch_id = ?`, rep.BatchID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != crashRecords {
			t.Errorf("%d pieces of protected material, want %d (one per stored profile)", n, crashRecords)
		}
	}
}
