//go:build !linux || !cgo

package main

// limitMallocArenas: without cgo on Linux there is no glibc to configure.
func limitMallocArenas(int) string { return "malloc arenas not limited (no cgo/glibc)" }
