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

	"github.com/ternmq/mqtt/internal/testcert"
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

// wrappedConn is a connection a DialContext returns around a TCP one.
type wrappedConn struct{ net.Conn }

func (c wrappedConn) NetConn() net.Conn { return c.Conn }

// TestUnsentLimitWrapped: the limit reaches the TCP connection under one
// that Options.DialContext wraps and unwraps with NetConn; without NetConn
// there is none to reach.
func TestUnsentLimitWrapped(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, unwrap := range []bool{true, false} {
		var raw *net.TCPConn
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			raw = c.(*net.TCPConn)
			if unwrap {
				return wrappedConn{c}, nil
			}
			return struct{ net.Conn }{c}, nil
		}
		c, err := Dial(context.Background(), "mqtt://"+l.Addr().String(), &Options{UnsentLimit: 4096, DialContext: dial})
		if err != nil {
			t.Fatal(err)
		}
		want := 4096
		if !unwrap {
			want = 0
		}
		if got := notSentLowat(t, raw); got != want {
			t.Errorf("NetConn %v: TCP_NOTSENT_LOWAT %d, want %d", unwrap, got, want)
		}
		c.Close()
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

// TestListenUnsentLimit checks that Listen sets the limit on the TCP
// connection under every kind of connection it accepts.
func TestListenUnsentLimit(t *testing.T) {
	certs := testcert.Must(t)
	for _, scheme := range []string{"mqtt", "mqtts", "ws", "wss"} {
		// Not set (-1) reads 0 or, on an accepted socket, -1: the sysctl
		// net.ipv4.tcp_notsent_lowat applies.
		for _, tc := range []struct{ limit, want int }{{0, DefaultUnsentLimit}, {4096, 4096}, {-1, -1}} {
			t.Run(fmt.Sprintf("%s/%d", scheme, tc.limit), func(t *testing.T) {
				ln, err := Listen(scheme+"://127.0.0.1:0", &Options{UnsentLimit: tc.limit, TLSConfig: certs.ServerConfig(false)})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				dialed := make(chan error, 1)
				go func() {
					c, err := Dial(context.Background(), scheme+"://"+ln.Addr().String(), &Options{TLSConfig: certs.ClientConfig()})
					if err == nil {
						t.Cleanup(func() { c.Close() })
					}
					dialed <- err
				}()
				c, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if h, ok := c.(interface{ Handshake() error }); ok {
					if err := h.Handshake(); err != nil { // Dial returns after it
						t.Fatal(err)
					}
				}
				if err := <-dialed; err != nil {
					t.Fatal(err)
				}
				for {
					if tcp, ok := c.(*net.TCPConn); ok {
						if got := notSentLowat(t, tcp); got != tc.want && !(tc.want == -1 && got == 0) {
							t.Errorf("TCP_NOTSENT_LOWAT %d, want %d", got, tc.want)
						}
						return
					}
					u, ok := c.(interface{ NetConn() net.Conn })
					if !ok {
						t.Fatalf("accepted %T, with no TCP connection under it", c)
					}
					c = u.NetConn()
				}
			})
		}
	}
}
