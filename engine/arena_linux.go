//go:build linux

package engine

import "golang.org/x/sys/unix"

// mapArena returns n bytes of anonymous memory outside the Go heap
// (page-aligned, which direct I/O wants too), or nil if the kernel refuses.
func mapArena(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	return b
}

func unmapArena(b []byte) { unix.Munmap(b) }
