//go:build unix

package idleconn

import "syscall"

// RaiseFileLimit raises this process's limit of open files to at least n,
// the hard limit too if it must (which needs CAP_SYS_RESOURCE). Child
// processes inherit it.
func RaiseFileLimit(n uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if uint64(l.Cur) >= n {
		return nil
	}
	setLimit(&l.Cur, n)
	if uint64(l.Max) < n {
		setLimit(&l.Max, n)
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// setLimit sets a field of syscall.Rlimit, uint64 on most systems but
// int64 on some BSDs.
func setLimit[T int64 | uint64](f *T, n uint64) { *f = T(n) }
