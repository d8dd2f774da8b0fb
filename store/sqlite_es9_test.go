package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

// TestSQLiteMigrationSessionsExpires: migration 4 drops sessions_expires
// from an inventory of migration 3, keeps its sessions, and expired
// sessions are still swept (by a table scan) while live ones stay.
func TestSQLiteMigrationSessionsExpires(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inv.db")
	s, err := store.Open(ctx, "sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for tid, exp := range map[string]time.Time{"live": now.Add(time.Hour), "old": now.Add(-time.Minute)} {
		if _, err := s.PutSession(ctx, store.Session{TransactionID: tid, Phase: "x", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	// Back to migration 3's schema, as an older binary left it.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE INDEX sessions_expires ON sessions(expires_at); DELETE FROM schema_migrations WHERE version = 4`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if n := indexCount(t, path, "sessions_expires"); n != 1 {
		t.Fatalf("setup: %d sessions_expires indexes", n)
	}

	s, err = store.Open(ctx, "sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := indexCount(t, path, "sessions_expires"); n != 0 {
		t.Fatalf("after migration 4: %d sessions_expires indexes, want 0", n)
	}
	if _, err := s.GetSession(ctx, "live"); err != nil {
		t.Fatalf("live session after the migration: %v", err)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1 (the expired session)", n, err)
	}
	if _, err := s.GetSession(ctx, "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired session after the sweep: %v, want not found", err)
	}
	if _, err := s.GetSession(ctx, "live"); err != nil {
		t.Fatalf("live session after the sweep: %v", err)
	}
}

func indexCount(t *testing.T, path, name string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSQLiteHookOwnerReadWithOrder: the transition hook of each ES9+ event
// sees the owner of the order written (read with the order, not a
// statement of its own): two operators' orders and one without an owner,
// interleaved, each event reporting its own order's owner.
func TestSQLiteHookOwnerReadWithOrder(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, "sqlite", filepath.Join(t.TempDir(), "inv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateBatch(ctx, store.Batch{ID: "b1", ProfileType: "t", KeyBlob: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, "b1", storetest.Profiles("t", 0, 3, 64)); err != nil {
		t.Fatal(err)
	}
	owners := []string{"op-a", "op-b", ""}
	for i, op := range owners {
		if _, err := s.DownloadOrder(ctx, store.DownloadOrderRequest{ICCID: storetest.ICCID(i), Operator: op}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: storetest.ICCID(i), ReleaseFlag: true}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string][]string{}
	s.SetTransitionHook(func(_ context.Context, _ store.Tx, tr store.Transition) error {
		seen[tr.Profile.ICCID] = append(seen[tr.Profile.ICCID], tr.Operator)
		return nil
	})
	const eid = "89049032123451234512345678901235"
	for _, step := range []func(iccid string) error{
		func(iccid string) error { _, err := s.AuthenticateClientWith(ctx, iccid, eid, nil, nil); return err },
		func(iccid string) error { _, err := s.BPPDeliveredWith(ctx, iccid, nil); return err },
		func(iccid string) error { _, err := s.InstallResultWith(ctx, iccid, true, nil); return err },
	} {
		for _, i := range []int{1, 0, 2} {
			if err := step(storetest.ICCID(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, op := range owners {
		got := seen[storetest.ICCID(i)]
		if len(got) != 3 || got[0] != op || got[1] != op || got[2] != op {
			t.Errorf("order %d (owner %q): the hook saw owners %q", i, op, got)
		}
	}
}
