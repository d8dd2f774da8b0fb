package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/perso-esim/perso/engine"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/store"
)

// crashRecords is the size of the crash test's input: enough chunks for
// kills to land mid-batch, few enough to stay well within a minute.
const (
	crashRecords = 6000
	crashChunk   = 200
)

// TestRunSurvivesKill9: `perso run` killed with SIGKILL at random points
// (several times, both stores), then run again with the same command,
// stores every record exactly once: the final report adds up (stored +
// rejected + conflicts = records_read), the store holds each ICCID once,
// no chunk was stored twice (no duplicates), and every chunk job completed.
func TestRunSurvivesKill9(t *testing.T) {
	tok := testenv.SoftHSM(t)
	pool, err := hsmpool.Open(context.Background(), hsmpool.Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.GenerateSecretKey(context.Background(), "kek-1", hsmpool.KindKEK); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	tmpl := testenv.Path(t, "ts48", "TS48v5_SAIP2.3_NoBERTLV.der")
	hsmEnv := []string{"PERSO_HSM_MODULE=" + tok.Module, "PERSO_HSM_TOKEN=" + tok.Label, "PERSO_HSM_PIN=" + tok.PIN}

	for _, bc := range []struct{ driver, dsn string }{
		{"sqlite", filepath.Join(t.TempDir(), "perso.db")},
		{"postgres", testenv.PostgresSchemaDSN(t)},
	} {
		t.Run(bc.driver, func(t *testing.T) {
			dir := t.TempDir()
			env := append(hsmEnv[:len(hsmEnv):len(hsmEnv)], "PERSO_STORE_DRIVER="+bc.driver, "PERSO_STORE_DSN="+bc.dsn)
			if res := runChild(t, dir, env, nil, time.Minute, "testdata", "perso", "--count", "6000", "-o", "in.csv"); res.code != 0 {
				t.Fatalf("testdata: %d\n%s", res.code, res.stderr)
			}
			args := []string{"run", "--template", tmpl, "--input", "in.csv", "--batch", "crash", "--chunk-size", "200",
				"--progress", "none", "--report", "report.json", "--force"}
			kills := 0
			for i := 0; i < 5; i++ {
				cmd := exec.Command(persoBinary(t), args...)
				cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done: // finished before the kill: nothing left to crash
				// Start-up (survey, migrations, HSM login) takes about a
				// second; the chunks follow for a few more.
				case <-time.After(time.Duration(300+rand.IntN(3000)) * time.Millisecond):
					cmd.Process.Signal(syscall.SIGKILL)
					<-done
					kills++
				}
			}
			res := runChild(t, dir, env, nil, time.Minute, args...)
			if res.code != 0 {
				t.Fatalf("re-run after %d kills: exit %d\n%s", kills, res.code, res.stderr)
			}
			var rep engine.Report
			data, err := os.ReadFile(filepath.Join(dir, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &rep); err != nil {
				t.Fatal(err)
			}
			if !rep.Complete || rep.RecordsRead != crashRecords || rep.Stored+rep.Rejected+rep.Conflicts != rep.RecordsRead ||
				rep.Stored != crashRecords || rep.Duplicates != 0 || rep.Chunks != crashRecords/crashChunk {
				t.Fatalf("after %d kills: report %+v", kills, rep)
			}
			if !strings.Contains(res.stdout, "6000 stored") {
				t.Errorf("summary lacks the stored count:\n%s", res.stdout)
			}
			checkStoredOnce(t, bc.driver, bc.dsn, rep)
			t.Logf("%d kills, then complete: %+v", kills, rep.Workers)
		})
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
