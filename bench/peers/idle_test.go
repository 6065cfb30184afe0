package peers

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/idleconn"
	"github.com/ternmq/mqtt/packet"
)

// BenchmarkIdleConnections compares the memory per idle connection of
// tern's broker, mosquitto and mochi-mqtt in one run: each runs in a process
// of its own (tern and mochi as this test binary run again as
// TestIdleChild), and its RSS growth is read while 10,000 clients connect
// (connect), or connect and subscribe to a filter of their own (subscribe),
// then wait. TERN_IDLE_CONNS sets another count.
//
//	go test -run '^$' -bench IdleConnections -benchtime 1x
func BenchmarkIdleConnections(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("TERN_IDLE_CONNS")); err == nil && v > 0 {
		n = v
	}
	if err := idleconn.RaiseFileLimit(uint64(n) + 1000); err != nil {
		b.Skipf("cannot raise the file limit for %d connections: %v", n, err)
	}
	for _, sub := range []bool{false, true} {
		name := "connect"
		if sub {
			name = "subscribe"
		}
		for _, br := range []string{"tern", "mosquitto", "mochi"} {
			b.Run(name+"/"+br, func(b *testing.B) {
				for range b.N {
					addr, pid, stop := startIdleBroker(b, br)
					perConn, conns, err := idleconn.Measure(addr, pid, n, sub, 2*time.Second)
					if err != nil {
						stop()
						b.Fatal(err)
					}
					rss, _ := idleconn.RSS(pid)
					b.ReportMetric(perConn, "B/conn")
					b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
					stop()
					conns.Close()
				}
			})
		}
	}
}

// startIdleBroker starts broker br in a process of its own.
func startIdleBroker(b *testing.B, br string) (addr string, pid int, stop func()) {
	if br == "mosquitto" {
		url, pid := startMosquittoIdle(b)
		return url, pid, func() {}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TERN_IDLE_CHILD="+br)
	cmd.Stderr = os.Stderr
	child, err := idleconn.StartChild(cmd)
	if err != nil {
		b.Fatal(err)
	}
	return child.Addr, child.Pid, child.Stop
}

// startMosquittoIdle runs mosquitto with its defaults on a free port.
func startMosquittoIdle(b *testing.B) (addr string, pid int) {
	br := runMosquitto(b, "persistence false\nmax_connections -1\n")
	return br.addr, br.pid
}

// TestIdleChild is the broker process of BenchmarkIdleConnections for tern
// and mochi-mqtt; it does nothing unless TERN_IDLE_CHILD names one. It prints
// its address, then serves until its standard input closes. Each broker runs
// with its defaults and a hook that lets every client in.
func TestIdleChild(t *testing.T) {
	which := os.Getenv("TERN_IDLE_CHILD")
	if which == "" {
		t.Skip("the broker process of BenchmarkIdleConnections")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	var addr string
	var stop func()
	switch which {
	case "tern":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := broker.New(broker.Options{
			Logger:       quiet,
			Authenticate: func(*broker.Client, []byte) packet.ReturnCode { return packet.Accepted },
		})
		go srv.Serve(l)
		addr, stop = l.Addr().String(), func() { srv.Close() }
	case "mochi":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
		srv := mochi.New(&mochi.Options{Logger: quiet})
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			t.Fatal(err)
		}
		if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(); err != nil {
			t.Fatal(err)
		}
		stop = func() { srv.Close() }
	default:
		t.Fatalf("TERN_IDLE_CHILD=%s: tern or mochi", which)
	}
	fmt.Println(addr)
	bufio.NewReader(os.Stdin).ReadString('\n') // until stdin closes
	stop()
}
