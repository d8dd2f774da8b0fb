//go:build !linux || !cgo

package main

// setUpMalloc: without cgo on Linux there is no glibc to configure.
func setUpMalloc(int) string { return "malloc arenas not limited (no cgo/glibc)" }
