//go:build !unix

package dirlock

import "os"

// Lock opens the lock file without locking it: this system has no flock
// in the standard library, and a lock file created exclusively would
// outlive a process killed while holding it, and keep the directory closed
// until removed by hand. Here the caller must make sure that one process
// at a time opens a directory.
func Lock(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
}

// Unlock closes the lock file.
func Unlock(f *os.File) error { return f.Close() }
