// Package rawio reads and writes a socket with raw system calls, waiting in
// the Go runtime's poller when the socket is not ready, as net.Conn does.
//
// Why: a net.Conn's Read and Write enter the runtime's system call state
// around each call, and while every thread is idle the first such call
// wakes the runtime's monitor thread (sysmon), which then polls every 20
// µs for a millisecond. A server whose connections each bring a packet
// at a time goes idle between packets, so it pays that wake-up and those
// polls per packet: about a seventh of a broker's CPU time at QoS 1
// fan-in on a 2-core virtual machine, where a thread switch is dear. A
// read or write of a non-blocking socket does not block, so it may be
// made as a raw system call, which the runtime does not track.
//
// Reader and Writer hold the state of one call at a time, so that a call
// allocates nothing; a connection read by one goroutine and written by
// another needs one of each. Only Linux makes raw calls; elsewhere Read
// and Write report errors.ErrUnsupported, and the caller uses its
// net.Conn.
package rawio
