//go:build !linux

package engine

// lowerThread does nothing outside Linux, where the nice value is the
// process's: run the batch under nice(1).
func lowerThread(int) error { return nil }
