package store

import (
	"context"
	"errors"
)

func openPostgres(ctx context.Context, dsn string, o options) (backend, error) {
	return nil, errors.New("store: postgres not built yet")
}
