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
	if l.Cur >= n {
		return nil
	}
	l.Cur = n
	l.Max = max(l.Max, n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}
