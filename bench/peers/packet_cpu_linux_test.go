package peers_test

import "syscall"

// threadCPU returns the CPU time the calling thread has used, in
// nanoseconds, or -1 if it cannot tell. With the goroutine locked to its
// thread, it measures a benchmark's own work and not the time other
// processes hold the CPU, which on a shared machine is most of the noise
// in ns/op.
func threadCPU() int64 {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
