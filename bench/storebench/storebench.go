// Package storebench is `perso bench store`: bulk PutBatch throughput and
// the ES2+ order path (allocate + link + confirm) on the embedded SQLite
// store and on PostgreSQL, at several concurrency levels, with process CPU
// per profile or order, the store's bytes per profile, and the PostgreSQL /
// SQLite ratios measured in the same run.
package storebench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/perso-esim/perso/bench"
	"github.com/perso-esim/perso/internal/cputime"
	"github.com/perso-esim/perso/store"
)

// Backend is one store to measure. A PostgreSQL backend is measured in
// schemas of its own, created and dropped by the benchmark, so that the
// configured database's tables are never touched.
type Backend struct {
	Driver string // "sqlite" or "postgres"
	DSN    string // postgres only; SQLite stores are made in TempDir
	// Redacted is DSN as it may be printed (no password).
	Redacted string
}

// Config is what to measure.
type Config struct {
	Backends     []Backend
	Profiles     int   // profiles bulk-inserted at each loader count
	Chunk        int   // profiles per PutBatch call (the engine's chunk)
	SegmentBytes int   // protected material per profile (TS.48 ≈ 12 KiB)
	Loaders      []int // concurrent PutBatch callers
	Orders       int   // orders placed at each caller count
	Callers      []int // concurrent order callers
	TempDir      string
	// Progress, if set, is told what is being measured.
	Progress func(string)
}

func (c *Config) defaults() {
	if c.Profiles <= 0 {
		c.Profiles = 40000
	}
	if c.Chunk <= 0 {
		c.Chunk = 1000
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 12 * 1024
	}
	if len(c.Loaders) == 0 {
		c.Loaders = []int{1, 2}
	}
	if c.Orders <= 0 {
		c.Orders = 10000
	}
	if len(c.Callers) == 0 {
		c.Callers = []int{1, 4, 16}
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
}

// bulkRow and orderRow are one measurement each.
type bulkRow struct {
	backend        string
	loaders        int
	profiles       int
	perSec, cpuUS  float64
	bytesPerProf   float64
	wall, cpuTotal time.Duration
}

type orderRow struct {
	backend       string
	callers       int
	orders        int
	perSec, cpuUS float64
}

// Run measures every backend and adds the tables, figures and series to r.
func Run(ctx context.Context, cfg Config, r *bench.Result) error {
	cfg.defaults()
	var bulks []bulkRow
	var orders []orderRow
	var names []string
	for _, b := range cfg.Backends {
		names = append(names, b.Driver)
		for _, n := range cfg.Loaders {
			cfg.Progress(fmt.Sprintf("%s: bulk insert of %d profiles, loaders: %d", b.Driver, cfg.Profiles, n))
			row, err := measureBulk(ctx, cfg, b, n)
			if err != nil {
				return err
			}
			bulks = append(bulks, row)
		}
		for _, n := range cfg.Callers {
			cfg.Progress(fmt.Sprintf("%s: %d orders, callers: %d", b.Driver, cfg.Orders, n))
			row, err := measureOrders(ctx, cfg, b, n)
			if err != nil {
				return err
			}
			orders = append(orders, row)
		}
	}
	r.Store = strings.Join(names, ", ")
	report(r, cfg, bulks, orders)
	return nil
}

// Open makes a fresh, empty store of backend b (SQLite: in a new directory
// under tempDir; PostgreSQL: a scratch schema of b.DSN's database) and
// returns it with its clean-up, which removes it.
func Open(ctx context.Context, tempDir string, b Backend) (*store.DB, func(), error) {
	dsn, drop, err := Scratch(ctx, tempDir, b)
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(ctx, b.Driver, dsn)
	if err != nil {
		drop()
		return nil, nil, fmt.Errorf("bench store: opening the scratch %s store: %w", b.Driver, scrub(err, b))
	}
	return db, func() { db.Close(); drop() }, nil
}

// Scratch makes room for a fresh store of backend b and returns the DSN
// that opens it (other processes may open it too) and the clean-up that
// removes it: SQLite, a new directory under tempDir; PostgreSQL, a new
// schema of b.DSN's database, selected by the returned DSN's search_path.
func Scratch(ctx context.Context, tempDir string, b Backend) (dsn string, drop func(), err error) {
	switch b.Driver {
	case "sqlite":
		dir, err := os.MkdirTemp(tempDir, "perso-bench-store-*")
		if err != nil {
			return "", nil, fmt.Errorf("bench store: a temporary directory for SQLite: %w", err)
		}
		return filepath.Join(dir, "bench.db"), func() { os.RemoveAll(dir) }, nil
	case "postgres":
		schema := fmt.Sprintf("perso_bench_%d", time.Now().UnixNano())
		conn, err := pgx.Connect(ctx, b.DSN)
		if err != nil {
			return "", nil, fmt.Errorf("bench store: connecting to PostgreSQL %s: %w", b.Redacted, scrub(err, b))
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return "", nil, fmt.Errorf("bench store: creating the scratch schema %s in %s (the user needs CREATE on the database): %w",
				schema, b.Redacted, scrub(err, b))
		}
		drop := func() {
			c, err := pgx.Connect(context.WithoutCancel(ctx), b.DSN)
			if err != nil {
				return
			}
			defer c.Close(context.WithoutCancel(ctx))
			c.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+schema+" CASCADE")
		}
		return withSearchPath(b.DSN, schema), drop, nil
	}
	return "", nil, fmt.Errorf("bench store: unknown store driver %q (want sqlite or postgres)", b.Driver)
}

// withSearchPath makes every connection of dsn use schema.
func withSearchPath(dsn, schema string) string {
	switch {
	case !strings.Contains(dsn, "://"):
		return dsn + " search_path=" + schema
	case strings.Contains(dsn, "?"):
		return dsn + "&search_path=" + schema
	default:
		return dsn + "?search_path=" + schema
	}
}

// scrub keeps a DSN's password out of a driver error that quotes it.
func scrub(err error, b Backend) error {
	if b.DSN == "" || b.Redacted == b.DSN || !strings.Contains(err.Error(), b.DSN) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), b.DSN, b.Redacted))
}

// profiles returns n profiles of a profile type with segBytes of material,
// ICCIDs from first on (valid Luhn is not needed by the store).
func profiles(profileType string, first, n, segBytes int) []store.Profile {
	seg := make([]byte, segBytes)
	for i := range seg {
		seg[i] = byte(i * 7) // not zeros: no backend may compress its way to a better figure
	}
	ppk := make([]byte, 100)
	for i := range ppk {
		ppk[i] = byte(255 - i)
	}
	out := make([]store.Profile, n)
	for i := range out {
		k := first + i
		out[i] = store.Profile{ICCID: fmt.Sprintf("8988%016d", k), IMSI: fmt.Sprintf("00101%010d", k), ProfileType: profileType,
			TemplateID: "bench", Segments: seg, ProtectedPPK: ppk, PPKKeyRef: "batch-key/kek-1",
			Metadata: store.Metadata{ServiceProviderName: "perso", ProfileName: "bench", ProfileClass: 2}}
	}
	return out
}

func measureBulk(ctx context.Context, cfg Config, b Backend, loaders int) (bulkRow, error) {
	db, done, err := Open(ctx, cfg.TempDir, b)
	if err != nil {
		return bulkRow{}, err
	}
	defer done()
	if _, err := db.CreateBatch(ctx, store.Batch{ID: "bench"}); err != nil {
		return bulkRow{}, fmt.Errorf("bench store: %s: %w", b.Driver, err)
	}
	chunks := (cfg.Profiles + cfg.Chunk - 1) / cfg.Chunk
	var next atomic.Int64
	var inserted atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	cpu0, t0 := cputime.Process(), time.Now()
	for range loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chunk := profiles("bench", 0, cfg.Chunk, cfg.SegmentBytes)
			for ctx.Err() == nil {
				c := int(next.Add(1) - 1)
				if c >= chunks {
					return
				}
				n := min(cfg.Chunk, cfg.Profiles-c*cfg.Chunk)
				for j := range n {
					k := c*cfg.Chunk + j
					chunk[j].ICCID = fmt.Sprintf("8988%016d", k)
					chunk[j].IMSI = fmt.Sprintf("00101%010d", k)
				}
				res, err := db.PutBatch(ctx, "bench", chunk[:n])
				if err == nil && res.Inserted != n {
					err = fmt.Errorf("PutBatch inserted %d of %d profiles (%d duplicates, %d conflicts)", res.Inserted, n, res.Duplicates, len(res.Conflicts))
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				inserted.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	wall, cpu := time.Since(t0), cputime.Process()-cpu0
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return bulkRow{}, fmt.Errorf("bench store: %s bulk insert: %w", b.Driver, scrub(firstErr, b))
	}
	n := int(inserted.Load())
	row := bulkRow{backend: b.Driver, loaders: loaders, profiles: n, wall: wall, cpuTotal: cpu,
		perSec: float64(n) / wall.Seconds(), cpuUS: float64(cpu.Microseconds()) / float64(n)}
	if bytes, count, err := db.Footprint(ctx); err == nil && count > 0 {
		row.bytesPerProf = float64(bytes) / float64(count)
	}
	return row, nil
}

func measureOrders(ctx context.Context, cfg Config, b Backend, callers int) (orderRow, error) {
	db, done, err := Open(ctx, cfg.TempDir, b)
	if err != nil {
		return orderRow{}, err
	}
	defer done()
	if _, err := db.CreateBatch(ctx, store.Batch{ID: "bench"}); err != nil {
		return orderRow{}, fmt.Errorf("bench store: %s: %w", b.Driver, err)
	}
	// Small profiles: the order path reads and writes rows, not material.
	for first := 0; first < cfg.Orders; first += 5000 {
		if _, err := db.PutBatch(ctx, "bench", profiles("pool", first, min(5000, cfg.Orders-first), 64)); err != nil {
			return orderRow{}, fmt.Errorf("bench store: %s: filling the pool: %w", b.Driver, scrub(err, b))
		}
	}
	var left atomic.Int64
	left.Store(int64(cfg.Orders))
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	const eid = "89049032000000000000000000000001"
	cpu0, t0 := cputime.Process(), time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				p, err := db.DownloadOrder(ctx, store.DownloadOrderRequest{ProfileType: "pool", EID: eid})
				if err == nil {
					_, err = db.ConfirmOrder(ctx, store.ConfirmOrderRequest{ICCID: p.ICCID, EID: eid, ReleaseFlag: true})
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	wall, cpu := time.Since(t0), cputime.Process()-cpu0
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return orderRow{}, fmt.Errorf("bench store: %s orders: %w", b.Driver, scrub(firstErr, b))
	}
	return orderRow{backend: b.Driver, callers: callers, orders: cfg.Orders,
		perSec: float64(cfg.Orders) / wall.Seconds(), cpuUS: float64(cpu.Microseconds()) / float64(cfg.Orders)}, nil
}

func report(r *bench.Result, cfg Config, bulks []bulkRow, orders []orderRow) {
	bt := bench.Table{Title: fmt.Sprintf("bulk insert: PutBatch of %d-profile chunks, %d B of protected material + a 100 B protected PPK each",
		cfg.Chunk, cfg.SegmentBytes),
		Columns: []bench.Column{{Name: "backend"}, {Name: "loaders"}, {Name: "profiles"}, {Name: "throughput", Unit: "profiles/s"},
			{Name: "process CPU", Unit: "µs/profile"}, {Name: "store size", Unit: "bytes/profile"}}}
	bulkSeries := map[string]*bench.Series{}
	var bulkOrder []string
	best := map[string]float64{}
	for _, b := range bulks {
		bt.AddRow(bench.Text(b.backend), bench.Num(float64(b.loaders), 0), bench.Num(float64(b.profiles), 0),
			bench.Num(b.perSec, 0), bench.Num(b.cpuUS, 1), bench.Num(b.bytesPerProf, 0))
		name := fmt.Sprintf("%s bulk insert, %d loader", b.backend, b.loaders)
		if b.loaders > 1 {
			name += "s"
		}
		r.Add(name, b.perSec, "profiles/s", bench.Higher, "")
		r.Add(name+" cpu", b.cpuUS, "cpu-µs/profile", bench.Lower, "this process only (PostgreSQL's server CPU is not in it)")
		s := bulkSeries[b.backend]
		if s == nil {
			s = &bench.Series{Plot: "store-bulk-insert-by-loaders", Title: "Store bulk insert (PutBatch) by concurrent loaders",
				Name: b.backend, XLabel: "concurrent loaders", YLabel: "throughput", YUnit: "profiles/s", Group: b.backend}
			bulkSeries[b.backend] = s
			bulkOrder = append(bulkOrder, b.backend)
		}
		s.Points = append(s.Points, bench.Point{X: float64(b.loaders), Y: b.perSec})
		best[b.backend] = max(best[b.backend], b.perSec)
	}
	for _, be := range bulkOrder {
		var bpp float64
		for _, b := range bulks {
			if b.backend == be && b.bytesPerProf > 0 {
				bpp = b.bytesPerProf
			}
		}
		r.Add(be+" store size", bpp, "bytes/profile", bench.Lower, "on disk (SQLite) or in relations (PostgreSQL) after the bulk insert")
	}
	ot := bench.Table{Title: "orders: DownloadOrder from a profile-type pool with an EID, then ConfirmOrder (matching ID generated, released)",
		Columns: []bench.Column{{Name: "backend"}, {Name: "callers"}, {Name: "orders"}, {Name: "throughput", Unit: "orders/s"},
			{Name: "process CPU", Unit: "µs/order"}}}
	orderSeries := map[string]*bench.Series{}
	var orderOrder []string
	bestOrders := map[string]float64{}
	for _, o := range orders {
		ot.AddRow(bench.Text(o.backend), bench.Num(float64(o.callers), 0), bench.Num(float64(o.orders), 0), bench.Num(o.perSec, 0), bench.Num(o.cpuUS, 1))
		name := fmt.Sprintf("%s orders, %d caller", o.backend, o.callers)
		if o.callers > 1 {
			name += "s"
		}
		r.Add(name, o.perSec, "orders/s", bench.Higher, "allocate + link + confirm")
		r.Add(name+" cpu", o.cpuUS, "cpu-µs/order", bench.Lower, "this process only")
		s := orderSeries[o.backend]
		if s == nil {
			s = &bench.Series{Plot: "store-orders-by-callers", Title: "Store order path (allocate + link + confirm) by concurrent callers",
				Name: o.backend, XLabel: "concurrent callers", YLabel: "throughput", YUnit: "orders/s", Group: o.backend}
			orderSeries[o.backend] = s
			orderOrder = append(orderOrder, o.backend)
		}
		s.Points = append(s.Points, bench.Point{X: float64(o.callers), Y: o.perSec})
		bestOrders[o.backend] = max(bestOrders[o.backend], o.perSec)
	}
	if best["sqlite"] > 0 && best["postgres"] > 0 {
		r.Add("postgres vs sqlite bulk insert", 100*best["postgres"]/best["sqlite"], "%", bench.Higher, "best of each, same run")
	}
	if bestOrders["sqlite"] > 0 && bestOrders["postgres"] > 0 {
		r.Add("postgres vs sqlite orders", 100*bestOrders["postgres"]/bestOrders["sqlite"], "%", bench.Higher, "best of each, same run")
	}
	r.Tables = append(r.Tables, bt, ot)
	for _, k := range bulkOrder {
		r.Series = append(r.Series, *bulkSeries[k])
	}
	for _, k := range orderOrder {
		r.Series = append(r.Series, *orderSeries[k])
	}
}
