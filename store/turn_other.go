//go:build !linux

package store

// openTurnFile: no cross-process turn on this platform (writers in one
// process still take turns; across processes SQLite's busy handler
// decides).
func openTurnFile(string) (turnFile, error) { return nil, nil }
