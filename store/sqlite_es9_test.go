package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/perso-esim/perso/store"
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
