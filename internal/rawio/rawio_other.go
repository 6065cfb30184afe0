//go:build !linux

package rawio

import (
	"errors"
	"syscall"
)

// Reader reads a socket; not here.
type Reader struct{}

// Read reports errors.ErrUnsupported.
func (r *Reader) Read(rc syscall.RawConn, p []byte) (int, error) { return 0, errors.ErrUnsupported }

// Writer writes a socket; not here.
type Writer struct{}

// Write reports errors.ErrUnsupported.
func (w *Writer) Write(rc syscall.RawConn, p []byte) (int, error) { return 0, errors.ErrUnsupported }

// ReadNow reports every socket empty: the caller waits with its net.Conn.
func (r *Reader) ReadNow(rc syscall.RawConn, p []byte) (n int, err error, empty bool) {
	return 0, nil, true
}
