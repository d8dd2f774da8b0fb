package store_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/perso-esim/perso/store"
)

// TestMigrations: a store opens its own schema again without migrating it
// twice, and refuses a database migrated by a newer binary.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			dsn := bc.dsn(t)
			for i := 0; i < 2; i++ {
				s, err := store.Open(ctx, bc.driver, dsn)
				if err != nil {
					t.Fatalf("open %d: %v", i+1, err)
				}
				if _, err := s.CreateBatch(ctx, store.Batch{ID: "kept"}); err != nil {
					t.Fatalf("open %d: %v", i+1, err)
				}
				s.Close()
			}
			var err error
			switch bc.driver {
			case "sqlite":
				var db *sql.DB
				if db, err = sql.Open("sqlite", dsn); err == nil {
					_, err = db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)`)
					db.Close()
				}
			case "postgres":
				var conn *pgx.Conn
				if conn, err = pgx.Connect(ctx, dsn); err == nil {
					_, err = conn.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES (99)`)
					conn.Close(ctx)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			s, err := store.Open(ctx, bc.driver, dsn)
			if err == nil {
				s.Close()
				t.Fatal("opened a database migrated by a newer binary")
			}
			if !strings.Contains(err.Error(), "newer") {
				t.Fatalf("error %v, want schema version newer", err)
			}
		})
	}
	if _, err := store.Open(ctx, "sqlite", "file:"+filepath.Join(t.TempDir(), "x.db")+"?mode=ro"); err == nil {
		t.Error("sqlite accepted a DSN with options; it takes a plain file path")
	}
	if _, err := store.Open(ctx, "mysql", "x"); err == nil {
		t.Error("unknown driver accepted")
	}
}
