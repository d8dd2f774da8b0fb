package store

// SQLiteGroupState reports, for a SQLite store, how many calls wait for
// the running group transaction and how many group transactions have
// begun (sqlite_group.go); ok is false for other backends.
func SQLiteGroupState(d *DB) (pending int, runs int64, ok bool) {
	b, ok := d.b.(*sqliteBackend)
	if !ok {
		return 0, 0, false
	}
	b.group.mu.Lock()
	defer b.group.mu.Unlock()
	return len(b.group.pending), b.group.runs.Load(), true
}

// SetSQLiteRowsPerTx sets how many rows one transaction of a chunk write
// holds on a SQLite store (sqliteRowsPerTx); it does nothing on others.
func SetSQLiteRowsPerTx(d *DB, n int) {
	if b, ok := d.b.(*sqliteBackend); ok {
		b.rowsPerTx = n
	}
}
