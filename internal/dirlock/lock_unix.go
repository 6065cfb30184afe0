//go:build unix

package dirlock

import (
	"errors"
	"os"
	"syscall"
)

// Lock takes an exclusive advisory lock on the file at p, creating it, so
// that a second process (or a second opener in this one) cannot use the
// same directory: it gets ErrLocked. The lock goes with the process.
func Lock(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, err
	}
	return f, nil
}

// Unlock releases the lock Lock took.
func Unlock(f *os.File) error {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return f.Close()
}
