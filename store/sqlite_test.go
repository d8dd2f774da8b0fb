package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

func openSQLite(t *testing.T, opts ...store.Option) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite", filepath.Join(t.TempDir(), "perso.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, openSQLite)
}
