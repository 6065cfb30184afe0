//go:build !linux

package peers_test

// threadCPU is only measured on Linux.
func threadCPU() int64 { return -1 }
