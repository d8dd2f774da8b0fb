package storebench

import (
	"context"
	"strings"
	"testing"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/internal/testenv"
)

// A tiny run of every measurement: the figures, tables and series the
// output model promises are there, and the counts add up. No timing is
// asserted.
func TestRunSQLite(t *testing.T) {
	r := &bench.Result{Mode: "store"}
	cfg := Config{Backends: []Backend{{Driver: "sqlite"}}, Profiles: 50, Chunk: 20, SegmentBytes: 256,
		Loaders: []int{1, 2}, Orders: 12, Callers: []int{1, 3}, TempDir: t.TempDir()}
	if err := Run(context.Background(), cfg, r); err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, "sqlite")
	if _, ok := r.Figure("postgres vs sqlite bulk insert"); ok {
		t.Error("a PostgreSQL ratio without PostgreSQL")
	}
}

func TestRunPostgresAndRatios(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	r := &bench.Result{Mode: "store"}
	cfg := Config{Backends: []Backend{{Driver: "sqlite"}, {Driver: "postgres", DSN: dsn, Redacted: dsn}}, Profiles: 40, Chunk: 20,
		SegmentBytes: 256, Loaders: []int{2}, Orders: 8, Callers: []int{2}, TempDir: t.TempDir()}
	if err := Run(context.Background(), cfg, r); err != nil {
		t.Fatal(err)
	}
	checkResult(t, r, "sqlite")
	checkResult(t, r, "postgres")
	for _, n := range []string{"postgres vs sqlite bulk insert", "postgres vs sqlite orders"} {
		if f, ok := r.Figure(n); !ok || f.Value <= 0 || f.Unit != "%" {
			t.Errorf("ratio %q: %+v, %v", n, f, ok)
		}
	}
	if r.Store != "sqlite, postgres" {
		t.Errorf("Store = %q", r.Store)
	}
}

func checkResult(t *testing.T, r *bench.Result, backend string) {
	t.Helper()
	for _, want := range []struct{ name, unit string }{
		{backend + " bulk insert, 2 loaders", "profiles/s"},
		{backend + " bulk insert, 2 loaders cpu", "cpu-µs/profile"},
		{backend + " store size", "bytes/profile"},
		{backend + " orders, 2 callers", "orders/s"},
	} {
		name := want.name
		if _, ok := r.Figure(name); !ok {
			name = strings.Replace(strings.Replace(name, "2 loaders", "1 loader", 1), "2 callers", "3 callers", 1)
		}
		f, ok := r.Figure(name)
		if !ok || f.Unit != want.unit || f.Value <= 0 {
			t.Errorf("figure %q: %+v, found %v", want.name, f, ok)
		}
	}
	// bytes per profile: at least the material stored
	if f, _ := r.Figure(backend + " store size"); f.Value < 256 {
		t.Errorf("%s: %v bytes per profile, below the 256 B of material each holds", backend, f.Value)
	}
	rows := 0
	for _, tb := range r.Tables {
		for _, row := range tb.Rows {
			if row[0].Text == backend {
				rows++
				if n := row[2].Num; n != 40 && n != 50 && n != 8 && n != 12 {
					t.Errorf("%s row %v: count %v is not what was asked", backend, row, n)
				}
			}
		}
	}
	if rows < 2 {
		t.Errorf("%s: %d table rows", backend, rows)
	}
	plots := map[string]bool{}
	for _, s := range r.Series {
		if s.Name == backend {
			plots[s.Plot] = true
		}
	}
	if !plots["store-bulk-insert-by-loaders"] || !plots["store-orders-by-callers"] {
		t.Errorf("%s series: %v", backend, plots)
	}
}
