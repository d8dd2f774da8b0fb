package store

import (
	"context"
	"database/sql/driver"
	"errors"

	"modernc.org/sqlite"
)

// turnConnector opens connections to the inventory that take the writer
// turn for everything they run: a transaction from its BEGIN to its COMMIT
// or ROLLBACK, a statement outside a transaction for as long as it runs
// (a query until its rows are closed).
//
// Why every use and not only the order and row transactions: a writer
// outside the turn (River's fetches and completions, a WAL restart, an
// autocommit statement) takes SQLite's write lock without the others
// knowing, and a turn holder's BEGIN IMMEDIATE then sleeps in SQLite's busy
// handler, 1, 2, 5, 10, 15 … ms between tries, long after the lock is
// free: the server's slowest transactions under a batch took 8, 18, 33 and
// 78 ms, exactly those sums (docs/performance.md § mixed). In the turn,
// every writer waits on the turn's file lock and is woken when it is free.
// Reads on the write connection take the turn too: they are few, and
// telling them apart would mean parsing SQL.
type turnConnector struct {
	dsn  string
	turn *writerTurn
}

func (c turnConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := (&sqlite.Driver{}).Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &turnConn{conn: conn.(sqliteConn), turn: c.turn}, nil
}

func (c turnConnector) Driver() driver.Driver { return &sqlite.Driver{} }

// sqliteConn is what database/sql uses of the driver's connection.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.SessionResetter
	driver.Validator
	driver.Pinger
}

// turnConn is one connection; database/sql uses it from one goroutine at a
// time, so inTx needs no lock.
type turnConn struct {
	conn sqliteConn
	turn *writerTurn
	inTx bool
}

func (c *turnConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *turnConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	st, err := c.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &turnStmt{st: st.(sqliteStmt), c: c}, nil
}

func (c *turnConn) Close() error { return c.conn.Close() }

func (c *turnConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *turnConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.turn.acquire(ctx); err != nil {
		return nil, err
	}
	tx, err := c.conn.BeginTx(ctx, opts)
	if err != nil {
		c.turn.release()
		return nil, err
	}
	c.inTx = true
	return &turnTx{tx: tx, c: c}, nil
}

// outside takes the turn for a statement run outside a transaction and
// returns what gives it back (nothing to do inside one: the transaction
// holds it).
func (c *turnConn) outside(ctx context.Context) (release func(), err error) {
	if c.inTx {
		return func() {}, nil
	}
	if err := c.turn.acquire(ctx); err != nil {
		return nil, err
	}
	return c.turn.release, nil
}

func (c *turnConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	release, err := c.outside(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return c.conn.ExecContext(ctx, q, args)
}

func (c *turnConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	release, err := c.outside(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := c.conn.QueryContext(ctx, q, args)
	if err != nil {
		release()
		return nil, err
	}
	return &turnRows{Rows: rows, release: release}, nil
}

func (c *turnConn) ResetSession(ctx context.Context) error { return c.conn.ResetSession(ctx) }
func (c *turnConn) IsValid() bool                          { return c.conn.IsValid() }
func (c *turnConn) Ping(ctx context.Context) error         { return c.conn.Ping(ctx) }

type turnTx struct {
	tx driver.Tx
	c  *turnConn
}

func (t *turnTx) Commit() error   { return t.end(t.tx.Commit()) }
func (t *turnTx) Rollback() error { return t.end(t.tx.Rollback()) }

func (t *turnTx) end(err error) error {
	t.c.inTx = false
	t.c.turn.release()
	return err
}

// sqliteStmt is what database/sql uses of the driver's statement.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type turnStmt struct {
	st sqliteStmt
	c  *turnConn
}

func (s *turnStmt) Close() error  { return s.st.Close() }
func (s *turnStmt) NumInput() int { return s.st.NumInput() }

func (s *turnStmt) Exec([]driver.Value) (driver.Result, error) {
	return nil, errors.New("store: Stmt.Exec without a context is not supported")
}

func (s *turnStmt) Query([]driver.Value) (driver.Rows, error) {
	return nil, errors.New("store: Stmt.Query without a context is not supported")
}

func (s *turnStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	release, err := s.c.outside(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.st.ExecContext(ctx, args)
}

func (s *turnStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	release, err := s.c.outside(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.st.QueryContext(ctx, args)
	if err != nil {
		release()
		return nil, err
	}
	return &turnRows{Rows: rows, release: release}, nil
}

// turnRows gives the turn back when the rows are closed: SQLite holds the
// statement's locks until then (an UPDATE … RETURNING writes at its first
// step).
type turnRows struct {
	driver.Rows
	release func()
	closed  bool
}

func (r *turnRows) Close() error {
	err := r.Rows.Close()
	if !r.closed {
		r.closed = true
		r.release()
	}
	return err
}
