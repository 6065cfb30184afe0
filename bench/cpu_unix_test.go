//go:build unix

package bench_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process (both clients, and tern's
// broker when it is the one used) has used: on a busy machine it measures
// cost better than the elapsed time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
