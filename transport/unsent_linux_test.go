package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// dialUnsent dials a listener that accepts and never reads, with limit as
// Options.UnsentLimit.
func dialUnsent(t *testing.T, limit int) *net.TCPConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	c, err := Dial(context.Background(), "mqtt://"+l.Addr().String(), &Options{UnsentLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func notSentLowat(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotSentLowat)
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func TestUnsentLimitSet(t *testing.T) {
	if got := notSentLowat(t, dialUnsent(t, 0)); got != DefaultUnsentLimit {
		t.Errorf("default: TCP_NOTSENT_LOWAT %d, want %d", got, DefaultUnsentLimit)
	}
	if got := notSentLowat(t, dialUnsent(t, 4096)); got != 4096 {
		t.Errorf("4096: TCP_NOTSENT_LOWAT %d, want 4096", got)
	}
	// Negative: not set, which reads 0 (the sysctl
	// net.ipv4.tcp_notsent_lowat applies, by default no limit).
	if got := notSentLowat(t, dialUnsent(t, -1)); got != 0 {
		t.Errorf("-1: TCP_NOTSENT_LOWAT %d, want 0 (not set)", got)
	}
}

// TestUnsentLimitBoundsBacklog writes to a peer that never reads until a
// write waits: with the limit, the kernel takes the peer's receive buffer
// and about the limit, not megabytes.
func TestUnsentLimitBoundsBacklog(t *testing.T) {
	fill := func(c *net.TCPConn) int {
		buf := make([]byte, 4096)
		total := 0
		for total < 64<<20 {
			c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Write(buf)
			total += n
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return total
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		t.Fatal("64 MiB written to a peer that does not read")
		return 0
	}
	bounded := fill(dialUnsent(t, 16<<10))
	unbounded := fill(dialUnsent(t, -1))
	t.Logf("taken before a write waits: %d bytes with a 16 KiB limit, %d without", bounded, unbounded)
	if bounded >= unbounded {
		t.Errorf("with the limit the kernel took %d bytes, without %d", bounded, unbounded)
	}
	// What is in flight fills the peer's receive buffer, which does not
	// grow while nothing is read: its initial size (tcp_rmem's second
	// field), twice that for the kernel's accounting, plus the limit and
	// a write.
	f, err := os.ReadFile("/proc/sys/net/ipv4/tcp_rmem")
	if err != nil {
		t.Skip(err)
	}
	var rmem [3]int
	if _, err := fmt.Sscan(string(f), &rmem[0], &rmem[1], &rmem[2]); err != nil {
		t.Fatalf("tcp_rmem %q: %v", f, err)
	}
	if max := 2*rmem[1] + 16<<10 + 4096; bounded > max {
		t.Errorf("with a 16 KiB limit the kernel took %d bytes, more than %d (tcp_rmem %v)", bounded, max, rmem)
	}
}
