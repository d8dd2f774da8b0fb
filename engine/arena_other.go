//go:build !linux

package engine

// mapArena: the segment arenas live on the Go heap elsewhere than Linux.
func mapArena(int) []byte { return nil }

func unmapArena([]byte) {}
