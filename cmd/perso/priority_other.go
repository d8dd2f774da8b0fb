//go:build !linux

package main

// lowerPriority does nothing outside Linux: run the batch under nice(1).
func lowerPriority(int) error { return nil }
