package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/riverqueue/river"
	"golang.org/x/sync/errgroup"

	"github.com/perso-esim/perso/bpp"
	"github.com/perso-esim/perso/hsmpool"
	"github.com/perso-esim/perso/jobs"
	"github.com/perso-esim/perso/perso"
	"github.com/perso-esim/perso/store"
	"github.com/perso-esim/perso/template"
)

// chunk is one chunk job travelling through the stages. Its buffers come
// from the run's free list and go back to it once the chunk is stored: a
// run allocates InFlight chunks' worth of memory whatever the input size.
type chunk struct {
	args   ChunkArgs
	job    *river.Job[ChunkArgs]
	jobCtx context.Context // River's context of the Work call: CompleteTx needs it
	done   chan error      // answers the Work call
	// answered is set by the first answer: the run's count of chunks in
	// flight drops exactly once per chunk.
	answered atomic.Bool
	inFlight *atomic.Int64
	// superseded are earlier requests of the same chunk (its job rescued
	// while they waited in the reader, the new attempt given to this
	// worker): answered with this request's outcome (see reader.request).
	superseded []*chunk
	duplicate  bool // set on a superseded request before it is answered

	rows []arrow.Record   // read: slices of the reader's batches
	w    store.BatchWrite // the store write, its material written (materialWriter)
	*buffers
	free     chan<- *buffers // where the buffers go back
	seg      *arena          // the segments, until their material is written
	arenas   chan<- *arena   // where seg goes back
	rejected int
}

// buffers are a chunk's reusable memory, but for its segments.
type buffers struct {
	recs     []perso.Record
	vals     []template.Values
	bad      []bool // refused by validate or personalise
	segEnd   []int  // protect: where each profile's segments end in seg
	ppks     []byte // protect: the PPKs (bpp.PPKSize each), wiped by seal
	profiles []store.Profile
}

// arena holds every profile of a chunk's `86` segments, back to back
// (13 MB for 1 000 TS.48 profiles, most of a chunk's memory). On SQLite
// it goes back to its pool as soon as the chunk's material is written,
// before the rows are: the chunks waiting for the row writer hold only
// their small buffers, so the CPU stages keep working while the store
// catches up. On PostgreSQL the rows carry the material: it goes back with
// the buffers.
//
// Arenas live outside the Go heap (mapped memory, freed when the run
// ends): on the heap they were most of the live heap (8 × 13 MB of 130), and
// the garbage collector lets the heap grow to twice the live heap before it
// collects, so the arenas' size was counted twice in the resident memory,
// which then rose in steps through a run (+14 % from the first 10 % of a
// 1 000 000-record run to its end) as the heap reached its goal.
type arena struct {
	b      []byte
	mapped []byte // the mapped memory b starts in; nil: b is on the Go heap
}

// free unmaps the arena's memory; nothing may use it afterwards.
func (a *arena) free() {
	if a.mapped != nil {
		unmapArena(a.mapped)
	}
	a.b, a.mapped = nil, nil
}

// reset sizes b for n records.
func (b *buffers) reset(n int) {
	b.recs = resize(b.recs, n)
	b.vals = resize(b.vals, n)
	b.bad = resize(b.bad, n)
	clear(b.bad)
	b.segEnd = b.segEnd[:0]
	if cap(b.ppks) < n*bpp.PPKSize {
		b.ppks = make([]byte, n*bpp.PPKSize)
	}
	b.ppks = b.ppks[:n*bpp.PPKSize]
	b.profiles = b.profiles[:0]
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// release wipes every secret the chunk may still hold and returns its
// buffers to the pool.
func (c *chunk) release() {
	for _, r := range c.rows {
		r.Release()
	}
	c.rows = nil
	c.w = store.BatchWrite{}
	if c.buffers == nil {
		return
	}
	for i := range c.recs {
		c.recs[i].Wipe()
		c.vals[i] = template.Values{}
	}
	clear(c.ppks)
	for i := range c.profiles {
		c.profiles[i] = store.Profile{}
	}
	c.dropArena()
	select {
	case c.free <- c.buffers:
	default:
	}
	c.buffers = nil
}

// takeArena gives the chunk a segment arena from pool, sized for n
// profiles of a template of tlen bytes.
func (c *chunk) takeArena(ctx context.Context, pool chan *arena, n, tlen int) error {
	select {
	case c.seg = <-pool:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.arenas = pool
	// Sized for every profile up front: AppendProtected grows its
	// destination by what one profile needs, which for one arena would
	// copy it over and over (quadratic).
	seg, _ := bpp.ProtectedSize(tlen + 512) // + room for re-encoded SMSC/SPN/MSISDN
	if cap(c.seg.b) < n*seg {
		c.seg.free()
		if m := mapArena(n * seg); m != nil {
			c.seg.b, c.seg.mapped = m[:0], m
		} else {
			c.seg.b = make([]byte, 0, n*seg)
		}
	}
	// A profile larger than foreseen may have moved b to the heap
	// (AppendProtected grows it): back to the mapped memory.
	if c.seg.mapped != nil && cap(c.seg.mapped) >= n*seg {
		c.seg.b = c.seg.mapped[:0]
	}
	c.seg.b = c.seg.b[:0]
	return nil
}

// dropArena returns the segment arena (the material is written, or the
// chunk is done): the profiles no longer point into it.
func (c *chunk) dropArena() {
	if c.seg == nil {
		return
	}
	if c.buffers != nil {
		for i := range c.profiles {
			c.profiles[i].Segments = nil
		}
	}
	for i := range c.w.Profiles {
		c.w.Profiles[i].Segments = nil
	}
	select {
	case c.arenas <- c.seg:
	default:
	}
	c.seg = nil
}

// pipeline wires the stages of one run.
type pipeline struct {
	cfg   Config
	spec  Spec
	plan  *template.Plan
	keep  bool
	db    *store.DB
	bk    *hsmpool.BatchKey
	batch store.Batch
	log   *slog.Logger
	start time.Time
	stats *runStats

	requests chan *chunk   // from the River worker
	stopped  chan struct{} // closed when the pipeline ends
}

// errFinished ends the stages once every chunk of the batch is stored.
var errFinished = errors.New("engine: batch finished")

// run starts River on the batch's queue and the stages, and returns when
// the batch is complete, ctx ends or a stage fails. The data flows top to
// bottom:
//
//	read → validate → personalise+protect → seal → material → rows → sync → checkpoint
func (p *pipeline) run(parent context.Context, jc *jobs.Client) error {
	// The stages run on their own context: when parent ends they drain
	// (worker.go) rather than drop the chunks in flight.
	work, end := context.WithCancelCause(context.WithoutCancel(parent))
	defer end(nil)
	g, ctx := errgroup.WithContext(work)
	n := p.cfg.Workers
	read, valid, protected, sealed, stored :=
		make(chan *chunk, 1), make(chan *chunk, n), make(chan *chunk, n), make(chan *chunk, 1), make(chan *chunk, 1)

	stage(g, ctx, 1, &reader{p: p}, p.requests, read)
	// One set of small buffers per chunk River may have in flight, and
	// InFlight segment arenas (most of the memory): the validator waits for
	// both, which bounds memory.
	free := make(chan *buffers, 2*p.cfg.InFlight)
	for range cap(free) {
		free <- new(buffers)
	}
	arenas := make(chan *arena, p.cfg.InFlight)
	all := make([]*arena, cap(arenas))
	for i := range all {
		all[i] = new(arena)
		arenas <- all[i]
	}

	// The CPU-bound stages run at p.cfg.Nice; those that write the store
	// keep the process's priority (Config.Nice).
	p.cpuStage(g, ctx, 1, func() runner {
		return &validator{plan: p.plan, keep: p.keep, file: fileName(p.spec), free: free, arenas: arenas}
	}, read, valid)
	p.cpuStage(g, ctx, n, func() runner { return newPersonaliser(p.plan, p.db) }, valid, protected)
	p.cpuStage(g, ctx, 1, func() runner {
		return &sealer{bk: p.bk, profileType: p.batch.ProfileType, templateID: p.batch.TemplateID, batchID: p.batch.ID}
	}, protected, sealed)
	written := make(chan []*chunk, 1)
	mw := &materialWriter{db: p.db, batchID: p.batch.ID, worker: p.cfg.WorkerID, maxGroup: max(1, p.cfg.InFlight/4)}
	g.Go(func() error { defer close(written); return mw.run(ctx, sealed, written) })
	rw := &storer{db: p.db, batchID: p.batch.ID, rejects: p.spec.Rejects}
	committed := make(chan []*chunk, 1)
	g.Go(func() error { defer close(committed); return rw.run(ctx, written, committed) })
	g.Go(func() error { defer close(stored); return syncer(ctx, p.db, committed, stored) })
	stage(g, ctx, 1, &checkpoint{p: p}, stored, nil)

	// River last: the stages are ready for its first Work call.
	if err := jc.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("engine: starting the job client: %w", err)
	}
	go p.drain(parent, ctx, end, jc)
	if !p.cfg.Exclusive {
		g.Go(func() error { return p.rescue(ctx, jc) })
	}
	err := g.Wait()
	// Every stage has returned: nothing reads an arena any more (the chunks
	// left in channels are never read), their memory goes. (Not on the
	// early return above: no chunk has run, the stages are ending.)
	for _, a := range all {
		a.free()
	}
	close(p.stopped)
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := jc.Stop(stopCtx); serr != nil && err == nil {
		err = fmt.Errorf("engine: stopping the job client: %w", serr)
	}
	if errors.Is(err, errFinished) {
		return nil
	}
	if parent.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, errDrained) || errors.Is(err, errGraceOver)) {
		return context.Cause(parent) // stopped: the caller's reason, not the stages'
	}
	return err
}

// runner is a stage: it consumes chunks from in and passes them to out
// (nil for the last stage) until in closes or ctx ends.
type runner interface {
	run(ctx context.Context, in <-chan *chunk, out chan<- *chunk) error
}

// stage runs n copies of one runner (runners safe for concurrent use) at
// the process's priority.
func stage(g *errgroup.Group, ctx context.Context, n int, r runner, in <-chan *chunk, out chan<- *chunk) {
	stageEach(g, ctx, n, 0, nil, func() runner { return r }, in, out)
}

// cpuStage runs a CPU-bound stage: its goroutines run on threads of their
// own at the configured nice value.
func (p *pipeline) cpuStage(g *errgroup.Group, ctx context.Context, n int, mk func() runner, in <-chan *chunk, out chan<- *chunk) {
	stageEach(g, ctx, n, p.cfg.Nice, p.log, mk, in, out)
}

// stageEach runs n runners made by mk (for runners with per-goroutine
// state), each on a thread lowered to nice (0: as the process; log says
// when that fails), closing out when all of them returned.
func stageEach(g *errgroup.Group, ctx context.Context, n, nice int, log *slog.Logger, mk func() runner, in <-chan *chunk, out chan<- *chunk) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		r := mk()
		g.Go(func() error {
			defer wg.Done()
			if err := lowerThread(nice); err != nil {
				log.Warn("engine: the stage keeps the process's CPU priority", "err", err)
			}
			return r.run(ctx, in, out)
		})
	}
	if out != nil {
		go func() { wg.Wait(); close(out) }()
	}
}

// forEach is the loop of a simple stage: f on every chunk, then on to out.
// A chunk that fails is answered (and released) here.
func forEach(ctx context.Context, in <-chan *chunk, out chan<- *chunk, f func(*chunk) error) error {
	for {
		c, ok, err := receive(ctx, in)
		if !ok {
			return err
		}
		if err := f(c); err != nil {
			c.fail(err)
			return err
		}
		if out != nil {
			if err := pass(ctx, out, c); err != nil {
				return err
			}
		}
	}
}

// receive waits for the next chunk (or group) from in. ok is false when in
// is closed (err nil: the stage ends) or ctx ended first (err set).
func receive[T any](ctx context.Context, in <-chan T) (x T, ok bool, err error) {
	select {
	case <-ctx.Done():
		return x, false, ctx.Err()
	case x, ok = <-in:
		return x, ok, nil
	}
}

// pass hands cs on to out in order; if ctx ends first, the chunks not
// handed on are answered with its error, which pass returns.
func pass(ctx context.Context, out chan<- *chunk, cs ...*chunk) error {
	for i, c := range cs {
		select {
		case out <- c:
		case <-ctx.Done():
			failAll(cs[i:], ctx.Err())
			return ctx.Err()
		}
	}
	return nil
}

// fail answers the chunk's Work call with err and releases the chunk.
func (c *chunk) fail(err error) {
	c.release()
	c.answer(err)
}

// answer answers the chunk's Work call (once; later answers are dropped)
// and counts the chunk out of the run's chunks in flight.
func (c *chunk) answer(err error) {
	if c.answered.Swap(true) {
		return
	}
	if c.inFlight != nil {
		c.inFlight.Add(-1)
	}
	c.done <- err // buffered: never blocks
	for _, o := range c.superseded {
		o.answer(err)
	}
}

// --- validate ---

// validator turns a chunk's rows into records and template values.
type validator struct {
	plan    *template.Plan
	keep    bool
	file    string
	rejects perso.RejectSink // survey only
	free    chan *buffers    // pipeline only
	arenas  chan *arena      // pipeline only
}

func newValidator(plan *template.Plan, keep bool, file string, rejects perso.RejectSink) *validator {
	return &validator{plan: plan, keep: keep, file: file, rejects: rejects}
}

// values reads row i of batch. The values alias the record's secrets.
func (v *validator) values(batch arrow.Record, i int) (perso.Record, template.Values, error) {
	rec, err := perso.RecordAt(batch, i)
	if err != nil {
		return rec, template.Values{}, err
	}
	vals, err := Values(&rec, v.keep)
	return rec, vals, err
}

// reject reports good record number ordinal (0-based) refused by the
// template. perso knows input lines only for the rows it refuses itself,
// so the record is named by its position among the good ones and its
// ICCID (an identifier, not a secret); errors never carry secrets.
func (v *validator) reject(ordinal int64, iccid string, err error) error {
	if v.rejects == nil {
		return nil
	}
	return v.rejects.Reject(perso.Reject{File: v.file, Column: perso.ColICCID, Class: "record",
		Reason: fmt.Sprintf("good record %d (ICCID %s) does not fit the template: %v", ordinal+1, iccid, err)})
}

func (v *validator) run(ctx context.Context, in <-chan *chunk, out chan<- *chunk) error {
	tlen := len(v.plan.Template())
	return forEach(ctx, in, out, func(c *chunk) error {
		select {
		case c.buffers = <-v.free:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.free = v.free
		c.reset(c.args.Count)
		if err := c.takeArena(ctx, v.arenas, c.args.Count, tlen); err != nil {
			return err
		}
		i := 0
		for _, rows := range c.rows {
			for r := 0; r < int(rows.NumRows()); r++ {
				var err error
				c.recs[i], c.vals[i], err = v.values(rows, r)
				if err != nil {
					c.bad[i] = true
				}
				i++
			}
			rows.Release()
		}
		c.rows = nil
		if i != c.args.Count {
			return fmt.Errorf("engine: chunk %d: read %d records, want %d (did the input change?)", c.args.Chunk, i, c.args.Count)
		}
		return nil
	})
}

// --- personalise and protect ---

// personaliser applies the template to every record of a chunk and
// protects each UPP at once under a fresh PPK (bpp), appending the segments
// to the chunk's segment buffer; it wipes the records' secrets. The UPP is
// built in the goroutine's own buffer and protected while it is still in
// the CPU's cache: two stages with a UPP arena per chunk (12 MB for 1 000
// TS.48 profiles) cost that much memory per chunk in flight, and the store
// needs more chunks in flight to overlap its disk and database work. One
// per goroutine: a bpp.Protector is not safe for concurrent use.
type personaliser struct {
	plan *template.Plan
	db   *store.DB
	bp   *bpp.Protector
	upp  []byte // the UPP being protected, reused
}

func newPersonaliser(plan *template.Plan, db *store.DB) *personaliser {
	return &personaliser{plan: plan, db: db, bp: bpp.NewProtector(rand.Reader), upp: make([]byte, 0, len(plan.Template())+512)}
}

func (s *personaliser) run(ctx context.Context, in <-chan *chunk, out chan<- *chunk) error {
	return forEach(ctx, in, out, func(c *chunk) error {
		var ppk bpp.PPK
		defer ppk.Zero()
		for i := range c.recs {
			// A live server waits for this process's store transaction:
			// let it have the CPUs (store.DB.WaitWriter).
			s.db.WaitWriter()
			if !c.bad[i] {
				// Apply appends to upp[:0]; a UPP longer than the buffer
				// (re-encoded SMSC/SPN/MSISDN) moves to a larger one, kept.
				upp, err := s.plan.Apply(&c.vals[i], s.upp[:0])
				if err != nil {
					c.bad[i] = true // the survey reported it
				} else if cap(upp) > cap(s.upp) {
					clear(s.upp[:cap(s.upp)])
					s.upp = upp[:0]
				}
				if err == nil {
					if err := s.protect(c, i, upp, &ppk); err != nil {
						clear(upp)
						return err
					}
				}
				clear(upp)
			}
			if c.bad[i] {
				c.segEnd = append(c.segEnd, len(c.seg.b))
			}
			c.recs[i].Wipe()
			c.vals[i] = template.Values{}
		}
		return nil
	})
}

// protect protects record i's UPP into the chunk's segment buffer and
// keeps its PPK for the sealer.
func (s *personaliser) protect(c *chunk, i int, upp []byte, ppk *bpp.PPK) error {
	if err := s.bp.NewPPK(ppk); err != nil {
		return fmt.Errorf("engine: PPK: %w", err)
	}
	segs, _, err := s.bp.AppendProtected(c.seg.b, upp, ppk)
	if err != nil {
		return fmt.Errorf("engine: protecting %s: %w", c.recs[i].ICCID, err)
	}
	c.seg.b = segs
	c.segEnd = append(c.segEnd, len(segs))
	ppk.Put((*[bpp.PPKSize]byte)(c.ppks[i*bpp.PPKSize:]))
	return nil
}

// --- seal ---

// sealer seals a chunk's PPKs under the batch's data key: the HSM unwrapped
// (or generated) that key once for the whole batch, the records are sealed
// in software (AES-256-GCM bound to the ICCID). It builds the profiles.
type sealer struct {
	bk                               *hsmpool.BatchKey
	profileType, templateID, batchID string
}

func (s *sealer) run(ctx context.Context, in <-chan *chunk, out chan<- *chunk) error {
	return forEach(ctx, in, out, func(c *chunk) error {
		from := 0
		for i := range c.recs {
			to := c.segEnd[i]
			if c.bad[i] {
				c.rejected++
				from = to
				continue
			}
			iccid := c.recs[i].ICCID
			ppk := c.ppks[i*bpp.PPKSize : (i+1)*bpp.PPKSize]
			sealed, err := s.bk.Protect(iccid, ppk)
			clear(ppk)
			if err != nil {
				return fmt.Errorf("engine: sealing the PPK of %s: %w", iccid, err)
			}
			r := &c.recs[i]
			// Segments keep the arena's capacity: it shows the store that a
			// chunk's profiles are one array, which it writes to disk as it
			// is (the store never appends to them).
			c.profiles = append(c.profiles, store.Profile{ICCID: iccid, IMSI: r.IMSI, ProfileType: s.profileType,
				TemplateID: s.templateID, BatchID: s.batchID, Segments: c.seg.b[from:to], ProtectedPPK: sealed,
				PPKKeyRef: s.bk.KeyRef(), Metadata: store.Metadata{ServiceProviderName: r.ServiceProvider,
					ProfileName: r.ProfileName}})
			from = to
		}
		return nil
	})
}

// --- store ---

// Storing is two stages, so that the disk and the database work at the
// same time: the material writer writes a group's protected material
// (store.WriteMaterial: on SQLite the segment file, flushed, and the blobs
// index, committed with synchronous=FULL) while the row writer commits the
// previous group's rows and completes its jobs (store.WriteBatches). A
// row still commits only after its material is durable: the row writer
// takes a group only once the material writer is done with it. Before,
// one goroutine did both in turn, and it was the pipeline's bottleneck
// (busy all the time while the CPU stages waited for chunk buffers).
//
// Every commit pays fixed costs (a flush to disk, SQLite's commit, River's
// completion), so each stage takes every chunk (or group) that is ready
// when it turns to its work: the slower the disk, the larger the groups.
// The material writer's groups are capped at maxGroup (a quarter of the
// chunk buffers, InFlight): a group holding most of them would leave the
// CPU stages idle while it is written, and the store idle while they work
// (measured on PostgreSQL: a fifth fewer profiles/s).

// materialWriter writes the material of groups of ready chunks and hands
// each group on to the row writer.
type materialWriter struct {
	db       *store.DB
	batchID  string
	worker   string
	maxGroup int
}

func (s *materialWriter) run(ctx context.Context, in <-chan *chunk, out chan<- []*chunk) error {
	for {
		c, ok, err := receive(ctx, in)
		if !ok {
			return err
		}
		group := append(make([]*chunk, 0, max(1, s.maxGroup)), c)
	ready:
		for len(group) < cap(group) {
			select {
			case c, ok := <-in:
				if !ok {
					break ready
				}
				group = append(group, c)
			default:
				break ready
			}
		}
		ws := make([]store.BatchWrite, len(group))
		for i, c := range group {
			ws[i] = s.write(c)
		}
		if err := s.db.WriteMaterial(ctx, s.batchID, ws); err != nil {
			err = fmt.Errorf("engine: storing the material of chunks %d to %d: %w", group[0].args.Chunk, group[len(group)-1].args.Chunk, err)
			failAll(group, err)
			return err
		}
		for i, c := range group {
			c.w = ws[i] // marked: the row writer adds the rows only
			if c.w.MaterialWritten() {
				c.dropArena() // the rows do not need the segments
			}
		}
		select {
		case out <- group:
		case <-ctx.Done():
			failAll(group, ctx.Err())
			return ctx.Err()
		}
	}
}

// write is the store write of one chunk, completing its job.
func (s *materialWriter) write(c *chunk) store.BatchWrite {
	return store.BatchWrite{Profiles: c.profiles, Rejected: c.rejected, ChunkDone: true, Chunk: c.args.Chunk + 1, Worker: s.worker,
		InTx: func(_ context.Context, tx store.Tx) error { return jobs.CompleteTx(c.jobCtx, tx, c.job) }}
}

func failAll(group []*chunk, err error) {
	for _, c := range group {
		c.fail(err)
	}
}

// storer writes the rows of chunks whose material is written and
// completes their jobs in the same transaction: every group that is ready
// when it turns to the store, in one transaction.
type storer struct {
	db      *store.DB
	batchID string
	rejects perso.RejectSink
}

func (s *storer) run(ctx context.Context, in <-chan []*chunk, out chan<- []*chunk) error {
	for {
		g, ok, err := receive(ctx, in)
		if !ok {
			return err
		}
		group := append([]*chunk(nil), g...) // travels on to the syncer
	ready:
		for {
			select {
			case g, ok := <-in:
				if !ok {
					break ready
				}
				group = append(group, g...)
			default:
				break ready
			}
		}
		if err := s.store(ctx, group); err != nil {
			failAll(group, err)
			return err
		}
		select {
		case out <- group:
		case <-ctx.Done():
			failAll(group, ctx.Err())
			return ctx.Err()
		}
	}
}

// syncer makes each committed group durable (store.DB.Sync: on SQLite the
// flush of the inventory's WAL) before its chunks are reported stored,
// while the storer commits the next group: the flush waits for the disk,
// the next transaction for the CPU. One flush covers every commit before
// it, so a group that arrives while one is under way waits for the next.
func syncer(ctx context.Context, db *store.DB, in <-chan []*chunk, out chan<- *chunk) error {
	for {
		group, ok, err := receive(ctx, in)
		if !ok {
			return err
		}
		if err := db.Sync(ctx); err != nil {
			err = fmt.Errorf("engine: flushing the store: %w", err)
			failAll(group, err)
			return err
		}
		if err := pass(ctx, out, group...); err != nil {
			return err
		}
	}
}

// store commits a group of chunks, each with its job's completion. A
// group one of whose jobs another worker took (jobs.ErrLost) rolled back
// as a whole: its chunks are then written one by one, so that only the
// lost one is dropped.
func (s *storer) store(ctx context.Context, group []*chunk) error {
	ws := make([]store.BatchWrite, len(group))
	for i, c := range group {
		ws[i] = c.w
	}
	// Durable later: the syncer flushes before the chunks are reported.
	res, err := s.db.WriteBatchesUnsynced(ctx, s.batchID, ws)
	if err == nil {
		for _, r := range res {
			if err := s.conflicts(r); err != nil {
				return err
			}
		}
		return nil
	}
	if !errors.Is(err, jobs.ErrLost) {
		return fmt.Errorf("engine: storing chunks %d to %d: %w", group[0].args.Chunk, group[len(group)-1].args.Chunk, err)
	}
	for _, c := range group {
		res, err := s.db.WriteBatch(ctx, s.batchID, c.w)
		if errors.Is(err, jobs.ErrLost) {
			// Another worker owns the chunk now: nothing of ours was
			// stored; it is not an error of the run.
			c.fail(err)
			continue
		}
		if err != nil {
			return fmt.Errorf("engine: storing chunk %d: %w", c.args.Chunk, err)
		}
		if err := s.conflicts(res); err != nil {
			return err
		}
	}
	return nil
}

// conflicts reports the ICCIDs another batch holds.
func (s *storer) conflicts(res store.PutResult) error {
	if s.rejects == nil {
		return nil
	}
	for _, cf := range res.Conflicts {
		if err := s.rejects.Reject(perso.Reject{Column: perso.ColICCID, Class: "conflict",
			Reason: fmt.Sprintf("ICCID %s is held by batch %s: not overwritten", cf.ICCID, cf.BatchID)}); err != nil {
			return err
		}
	}
	return nil
}

// --- checkpoint ---

// checkpoint answers the chunk's Work call, counts, reports progress and
// ends the run when the batch is complete.
type checkpoint struct{ p *pipeline }

func (s *checkpoint) run(ctx context.Context, in <-chan *chunk, _ chan<- *chunk) error {
	p := s.p
	poll := time.NewTicker(500 * time.Millisecond) // other workers may finish the batch
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll.C:
			// Another worker may have stored the last chunks; but a chunk
			// of ours in flight may be committed and still being reported
			// (its conflicts go to the reject report after the commit):
			// finishing now would cancel that and lose its rejects.
			if p.stats.inFlight.Load() > 0 {
				continue
			}
		case c, ok := <-in:
			if !ok {
				return nil
			}
			if c.buffers == nil { // lost to another worker: answered already
				continue
			}
			p.stats.stored.Add(int64(len(c.profiles)))
			p.stats.chunks.Add(1)
			c.release()
			c.answer(nil)
		}
		b, err := p.db.GetBatch(ctx, p.batch.ID)
		if err != nil {
			return err
		}
		if p.cfg.Progress != nil {
			p.cfg.Progress(Progress{BatchID: b.ID, Records: b.Records, Done: b.Profiles + b.Rejected + b.Conflicts,
				Stored: b.Profiles, Rejected: b.Rejected, Conflicts: b.Conflicts, Chunks: b.Chunks,
				ChunksDone: b.ChunksDone, Elapsed: time.Since(p.start), RunStored: p.stats.stored.Load()})
		}
		// The batch may be complete while chunks of ours that the same
		// group committed are still on their way here: wait for them, so
		// that they are counted as this run's and their Work calls are
		// answered as stored, not as stopped.
		if b.ChunksDone >= b.Chunks && p.stats.inFlight.Load() == 0 {
			return errFinished
		}
	}
}

// --- River ---

// chunkWorker is the River worker of chunk jobs: each Work call hands its
// chunk to the pipeline and waits until the chunk is stored (its job then
// completed in the storing transaction) or failed.
type chunkWorker struct {
	river.WorkerDefaults[ChunkArgs]
	requests chan<- *chunk
	stopped  <-chan struct{}
	stats    *runStats
}

// errStopped answers the chunks still in flight when the run stops: their
// jobs stay unfinished and are worked again.
var errStopped = errors.New("engine: the run stopped before this chunk was stored")

func (w *chunkWorker) Work(ctx context.Context, job *river.Job[ChunkArgs]) error {
	c := &chunk{args: job.Args, job: job, jobCtx: ctx, done: make(chan error, 1), inFlight: &w.stats.inFlight}
	w.stats.inFlight.Add(1)
	select {
	case w.requests <- c:
	case <-w.stopped:
		c.answer(errStopped)
		return errStopped
	case <-ctx.Done():
		c.answer(ctx.Err())
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		if err != nil && !errors.Is(err, jobs.ErrLost) && !c.duplicate {
			w.stats.rolledBack.Add(1)
		}
		return err
	case <-w.stopped:
		w.stats.rolledBack.Add(1)
		return errStopped
	}
}
