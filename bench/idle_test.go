package bench_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/idleconn"
	"github.com/ternmq/mqtt/packet"
)

// BenchmarkIdleConnections reports the memory of tern's broker per idle
// connection: the RSS growth of a broker process (this test binary, run
// again as TestIdleBrokerChild) while 10,000 clients connect (connect), or
// connect and subscribe to a filter of their own (subscribe), then wait. The broker has every hook on (authenticate,
// authorize, events, a logger at warn); TLS aside. Set TERN_IDLE_CONNS for
// another count: beyond the hard limit of open files the benchmark raises it,
// which needs CAP_SYS_RESOURCE, and skips if it cannot; connections beyond
// 20,000 come from 127.0.0.2 and up.
// bench/peers measures mosquitto and mochi-mqtt the same way in one run.
//
//	go test ./bench -run '^$' -bench IdleConnections -benchtime 1x
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
		b.Run(name, func(b *testing.B) { idleTern(b, n, sub) })
	}
}

func idleTern(b *testing.B, n int, subscribe bool) {
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleBrokerChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TERN_IDLE_CHILD=1")
		cmd.Stderr = os.Stderr
		child, err := idleconn.StartChild(cmd)
		if err != nil {
			b.Fatal(err)
		}
		perConn, conns, err := idleconn.Measure(child.Addr, child.Pid, n, subscribe, 2*time.Second)
		if err != nil {
			child.Stop()
			b.Fatal(err)
		}
		rss, _ := idleconn.RSS(child.Pid)
		b.ReportMetric(perConn, "B/conn")
		b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
		child.Stop()
		conns.Close()
	}
}

// TestIdleBrokerChild is the broker process of BenchmarkIdleConnections; it
// does nothing unless TERN_IDLE_CHILD=1. It prints its address, then serves
// until its standard input closes.
func TestIdleBrokerChild(t *testing.T) {
	if os.Getenv("TERN_IDLE_CHILD") != "1" {
		t.Skip("the broker process of BenchmarkIdleConnections")
	}
	if os.Getenv("TERN_IDLE_HEAPPROFILE") == "exact" {
		runtime.MemProfileRate = 1
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := broker.New(broker.Options{
		Logger:             slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Authenticate:       func(*broker.Client, []byte) packet.ReturnCode { return packet.Accepted },
		AuthorizePublish:   func(*broker.Client, []byte, byte, bool) bool { return true },
		AuthorizeSubscribe: func(_ *broker.Client, _ []byte, qos byte) byte { return qos },
		OnEvent:            func(*broker.Event) {},
	})
	go srv.Serve(l)
	fmt.Println(l.Addr())
	bufio.NewReader(os.Stdin).ReadString('\n') // until stdin closes
	if path := os.Getenv("TERN_IDLE_HEAPPROFILE"); path != "" {
		// What the idle connections hold, for go tool pprof.
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "broker: %d goroutines, heap in use %d, stacks %d, mspan %d, gc %d, other %d, buckets %d\n",
			runtime.NumGoroutine(), ms.HeapInuse, ms.StackInuse, ms.MSpanSys, ms.GCSys, ms.OtherSys, ms.BuckHashSys)
		for _, d := range rtmetrics.All() {
			if strings.HasPrefix(d.Name, "/memory/classes/") {
				sm := []rtmetrics.Sample{{Name: d.Name}}
				rtmetrics.Read(sm)
				fmt.Fprintf(os.Stderr, "broker: %s %d\n", d.Name, sm[0].Value.Uint64())
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "broker after GC: heap in use %d, stacks %d\n", ms.HeapInuse, ms.StackInuse)
		if f, err := os.Create(path); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	srv.Close()
}
