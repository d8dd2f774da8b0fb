package store_test

import (
	"context"
	"testing"

	"github.com/perso-esim/perso/internal/testenv"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/store/storetest"
)

func openPG(t *testing.T, opts ...store.Option) *store.DB {
	t.Helper()
	s, err := store.Open(context.Background(), "postgres", testenv.PostgresSchemaDSN(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, openPG)
}
