// Package idleconn holds many idle MQTT connections open to a broker and
// reads a process's resident memory, for the idle-connection measurements
// of bench and bench/peers: a broker's memory per idle connection is its
// RSS growth divided by the connections.
package idleconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// RSS returns the resident set size of process pid in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("idleconn: no VmRSS")
}

// Conns are idle MQTT connections.
type Conns struct {
	cs []net.Conn
}

// Len returns the number of connections.
func (c *Conns) Len() int { return len(c.cs) }

// Close closes every connection.
func (c *Conns) Close() {
	for _, nc := range c.cs {
		nc.Close()
	}
	c.cs = nil
}

// perSource is the number of connections made from one source address: the
// ephemeral ports of one (source, destination) pair run out near 28,000.
const perSource = 20000

// Dial opens n connections to addr (a 127.0.0.1 address), each a clean
// session with client identifier prefix+i and keepalive keepAlive seconds,
// subscribed to prefix+i+"/cmd" at QoS 1 if subscribe is set, like a device
// waiting for commands. Connections beyond the first 20,000 come from
// 127.0.0.2, 127.0.0.3 and so on. It returns once every CONNACK (and
// SUBACK) has arrived.
func Dial(addr string, n int, prefix string, keepAlive uint16, subscribe bool) (*Conns, error) {
	c := &Conns{cs: make([]net.Conn, 0, n)}
	const batch = 500 // dialled, then answered: the accept backlog stays short
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		for i := start; i < end; i++ {
			d := net.Dialer{Timeout: 10 * time.Second}
			if src := i / perSource; src > 0 {
				d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+src))}
			}
			nc, err := d.Dial("tcp", addr)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("idleconn: connection %d: %w", i, err)
			}
			c.cs = append(c.cs, nc)
			id := fmt.Appendf(nil, "%s%d", prefix, i)
			b, _ := (&packet.Connect{ClientID: id, CleanSession: true, KeepAlive: keepAlive}).Append(nil)
			if subscribe {
				f := append(id, "/cmd"...)
				b, _ = (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: f, QoS: 1}}}).Append(b)
			}
			if _, err := nc.Write(b); err != nil {
				c.Close()
				return nil, fmt.Errorf("idleconn: connection %d: %w", i, err)
			}
		}
		want := []byte{0x20, 0x02, 0x00, 0x00}
		if subscribe {
			want = append(want, 0x90, 0x03, 0x00, 0x01, 0x01)
		}
		got := make([]byte, len(want))
		for i := start; i < end; i++ {
			nc := c.cs[i]
			nc.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(nc, got); err != nil || !bytes.Equal(got, want) {
				c.Close()
				return nil, fmt.Errorf("idleconn: connection %d: answer % x, %v", i, got, err)
			}
			nc.SetReadDeadline(time.Time{})
		}
	}
	return c, nil
}

// Child is a broker run in a process of its own, so that its memory is
// measured apart from the clients'.
type Child struct {
	Addr string
	Pid  int
	cmd  *exec.Cmd
	in   io.WriteCloser
}

// StartChild runs cmd, which must print the broker's address on the first
// line of its standard output and stop when its standard input closes.
func StartChild(cmd *exec.Cmd) (*Child, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("idleconn: child: %w", err)
	}
	go io.Copy(io.Discard, out)
	return &Child{Addr: strings.TrimSpace(line), Pid: cmd.Process.Pid, cmd: cmd, in: in}, nil
}

// Stop ends the child.
func (c *Child) Stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// Measure connects n idle clients to the broker of process pid at addr and
// returns its RSS growth per connection in bytes, read after settle.
func Measure(addr string, pid, n int, subscribe bool, settle time.Duration) (float64, *Conns, error) {
	time.Sleep(settle)
	before, err := RSS(pid)
	if err != nil {
		return 0, nil, err
	}
	c, err := Dial(addr, n, "idle", 600, subscribe)
	if err != nil {
		return 0, nil, err
	}
	time.Sleep(settle)
	after, err := RSS(pid)
	if err != nil {
		c.Close()
		return 0, nil, err
	}
	return float64(after-before) / float64(n), c, nil
}
