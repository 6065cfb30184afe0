//go:build !unix

package bench_test

import "time"

// processCPU is not measured outside Unix systems: cpu-ns/msg reads 0.
func processCPU() time.Duration { return 0 }
