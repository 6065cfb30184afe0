package rawio

import (
	"errors"
	"io"
	"os"
	"syscall"
	"unsafe"
)

// Reader reads a socket. The zero Reader is ready; it must not be copied
// after first use, nor used by two goroutines at once.
type Reader struct {
	p     []byte
	n     int
	errno syscall.Errno
	now   bool                  // ReadNow: never wait
	fn    func(fd uintptr) bool // r.read, bound once
}

// Read reads into p from the socket of rc, waiting in the runtime's poller
// while the socket is empty, until rc's read deadline. It returns io.EOF
// when the peer has closed its side.
func (r *Reader) Read(rc syscall.RawConn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.fn == nil {
		r.fn = r.read
	}
	r.p, r.n, r.errno = p, 0, 0
	err := rc.Read(r.fn)
	n, errno := r.n, r.errno
	r.p = nil
	switch {
	case err != nil:
		return 0, err // a closed connection or a passed deadline
	case errno == syscall.EAGAIN:
		return 0, errEmpty // only for ReadNow
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// errEmpty is Read's report to ReadNow of a socket that holds nothing.
var errEmpty = errors.New("rawio: nothing to read")

// read is the call under rc.Read: false asks the poller to wait.
func (r *Reader) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.p[0])), uintptr(len(r.p)))
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN && !r.now:
			return false
		}
		r.n, r.errno = int(n), e
		return true
	}
}

// ReadNow reads what the socket of rc holds into p without waiting in the
// runtime's poller; empty reports that it holds nothing, or that the read
// deadline has passed (a read that may wait reports it).
func (r *Reader) ReadNow(rc syscall.RawConn, p []byte) (n int, err error, empty bool) {
	if len(p) == 0 {
		return 0, nil, false
	}
	r.now = true
	n, err = r.Read(rc, p)
	r.now = false
	if err == errEmpty || errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil, true
	}
	return n, err, false
}

// GetsockoptInt is syscall.GetsockoptInt as a raw call.
func GetsockoptInt(fd uintptr, level, opt int) (int, error) {
	var v int32
	size := uint32(4)
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return 0, e
	}
	return int(v), nil
}

// SetsockoptInt is syscall.SetsockoptInt as a raw call.
func SetsockoptInt(fd uintptr, level, opt, value int) error {
	v := int32(value)
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), 4, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Writer writes a socket. The zero Writer is ready; it must not be copied
// after first use, nor used by two goroutines at once.
type Writer struct {
	p     []byte
	n     int
	errno syscall.Errno
	stuck bool                  // a write took nothing without an error
	fn    func(fd uintptr) bool // w.write, bound once
}

// Write writes all of p to the socket of rc, waiting in the runtime's
// poller while the socket's buffer is full, until rc's write deadline. It
// returns how much was written and, if not all of p, why.
func (w *Writer) Write(rc syscall.RawConn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if w.fn == nil {
		w.fn = w.write
	}
	w.p, w.n, w.errno, w.stuck = p, 0, 0, false
	err := rc.Write(w.fn)
	n, errno := w.n, w.errno
	w.p = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, os.NewSyscallError("write", errno)
	case w.stuck:
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// write is the call under rc.Write: false asks the poller to wait until
// the socket takes more.
func (w *Writer) write(fd uintptr) bool {
	for w.n < len(w.p) {
		rest := w.p[w.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			if n == 0 {
				w.stuck = true // as internal/poll does: never spin on it
				return true
			}
			w.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			w.errno = e
			return true
		}
	}
	return true
}
