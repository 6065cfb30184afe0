package peers

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pahomqtt "github.com/eclipse/paho.mqtt.golang"
)

// BenchmarkBroker drives three brokers with the same load generator, paho
// clients in this process, so that no broker is paired with a client of
// its own: tern's broker (cmd/tern, `tern broker` with its defaults: 20
// messages in flight and 16 MiB queued per client; TERN_BIN runs a
// prebuilt tern instead of building one), mosquitto, and mochi-mqtt's broker
// (cmd/mochibroker, its defaults). Each runs in a process of its own,
// started here, so that its CPU time can be read from /proc.
//
// mosquitto keeps its stock limits (20 messages in flight to each client)
// but for max_queued_messages 0, no limit on the queue behind them, since
// the stock 1000 drops messages silently; and set_tcp_nodelay true, which
// the Go brokers have by default.
//
// Shapes: fan-in (8 publishers, 1 subscriber), fan-out (1 publisher, 8
// subscribers) and 4x4 (4 publishers, 4 subscribers); every subscriber
// receives every message, at QoS 0 or 1, 64 bytes. Each publisher keeps at
// most window messages not yet delivered to every subscriber, end to end,
// so that no broker queues more than that for a subscriber that is slower
// than the publishers (BenchmarkBrokerOverload drops that limit). One op is
// one message published; the metrics count deliveries, one per message and
// subscriber:
//
//	msg/s                deliveries per second, first publish to last delivery
//	p50-µs, p99-µs       latency from publish to delivery
//	broker-cpu-ns/msg    the broker process's CPU time per delivery
//	driver-cpu-ns/msg    this process's (the paho clients') CPU time per delivery
//	broker-rw-calls/msg  the broker's read and write system calls per delivery
//	lost                 deliveries that never came (after 5 s without any)
//
// Run with a fixed count so that the brokers carry the same load, and
// repeat the whole benchmark rather than use -count, which would run each
// broker's repeats back to back instead of in turn:
//
//	go test -c -o peers.test .
//	for i in 1 2 3 4 5 6; do ROTATE=$i ./peers.test -test.run '^$' -test.bench '^BenchmarkBroker$' -test.benchtime 20000x; done
func BenchmarkBroker(b *testing.B) { benchBrokers(b, true) }

// BenchmarkBrokerOverload is BenchmarkBroker with publishers that wait
// only for the broker (paho's tokens: written for QoS 0, PUBACK for QoS
// 1), at most window at a time each, as an application that publishes
// faster than its subscribers read does: the brokers queue what the
// subscribers cannot take yet, and drop what their limits do not allow.
func BenchmarkBrokerOverload(b *testing.B) { benchBrokers(b, false) }

func benchBrokers(b *testing.B, endToEnd bool) {
	brokers := []brokerProc{startTernBroker(b, "tern"), startMosquittoBroker(b), startMochiBroker(b)}
	// The broker that runs first in a round does a little worse (about 5%
	// on fan-in QoS 0, where they are level otherwise): ROTATE=n starts
	// each round at broker n mod 3, so that a loop over runs can give each
	// broker each place.
	if n, err := strconv.Atoi(os.Getenv("ROTATE")); err == nil && n > 0 {
		n %= len(brokers)
		brokers = append(brokers[n:], brokers[:n]...)
	}
	shapes := []struct {
		name       string
		pubs, subs int
	}{{"fanin", 8, 1}, {"fanout", 1, 8}, {"4x4", 4, 4}}
	for _, s := range shapes {
		for qos := byte(0); qos <= 1; qos++ {
			for _, br := range brokers {
				name := fmt.Sprintf("%s/qos%d/broker=%s", s.name, qos, br.name)
				b.Run(name, func(b *testing.B) { brokerLoad(b, br, s.pubs, s.subs, qos, endToEnd) })
			}
		}
	}
}

// brokerProc is a broker running in a child process.
type brokerProc struct {
	name string
	addr string // host:port
	pid  int
}

// freeAddr returns a 127.0.0.1 address with a port that was free just now.
func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProc runs a broker and waits until addr accepts connections.
func startProc(b *testing.B, name, addr string, bin string, args ...string) brokerProc {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return brokerProc{name: name, addr: addr, pid: cmd.Process.Pid}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not start: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goBuild builds a command of this module or of tern into the test's
// temporary directory.
func goBuild(b *testing.B, pkg string) string {
	out := filepath.Join(b.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	return out
}

func startTernBroker(b *testing.B, name string, flags ...string) brokerProc {
	bin := os.Getenv("TERN_BIN")
	if bin == "" {
		bin = goBuild(b, "github.com/ternmq/mqtt/cmd/tern")
	}
	addr := freeAddr(b)
	args := append([]string{"broker", "-listen", "mqtt://" + addr, "-log", "warn"}, flags...)
	return startProc(b, name, addr, bin, args...)
}

func startMochiBroker(b *testing.B) brokerProc {
	bin := goBuild(b, "./cmd/mochibroker")
	addr := freeAddr(b)
	return startProc(b, "mochi", addr, bin, "-addr", addr)
}

func startMosquittoBroker(b *testing.B) brokerProc {
	return runMosquitto(b, "persistence false\nmax_queued_messages 0\nset_tcp_nodelay true\n")
}

var brokerRuns atomic.Int64

// brokerLoad publishes b.N messages from pubs publishers, spread evenly, to
// topics that each of subs subscribers matches with one wildcard filter.
// With endToEnd, each publisher waits for the deliveries of its messages
// before it has more than window outstanding.
func brokerLoad(b *testing.B, br brokerProc, pubs, subs int, qos byte, endToEnd bool) {
	run := brokerRuns.Add(1)
	// credit holds one token per delivery a publisher may still wait
	// for; each delivery gives one back.
	var credit chan struct{}
	if endToEnd {
		credit = make(chan struct{}, pubs*window*subs)
		for range cap(credit) {
			credit <- struct{}{}
		}
	}
	prefix := fmt.Sprintf("bench/%d/", run)
	want := int64(b.N) * int64(subs)
	var got atomic.Int64
	var last atomic.Int64 // time of the latest delivery, UnixNano
	lat := make([][]int64, subs)
	var latMu sync.Mutex
	for i := range subs {
		lat[i] = make([]int64, 0, b.N)
		c := brokerClient(b, br, fmt.Sprintf("sub-%d-%d", run, i))
		rec := &lat[i]
		handler := func(_ pahomqtt.Client, m pahomqtt.Message) {
			now := time.Now().UnixNano()
			if p := m.Payload(); len(p) >= 8 {
				latMu.Lock() // a late delivery may come while the results are read
				*rec = append(*rec, now-int64(binary.LittleEndian.Uint64(p)))
				latMu.Unlock()
			}
			last.Store(now)
			got.Add(1)
			if credit != nil {
				credit <- struct{}{}
			}
		}
		if t := c.Subscribe(prefix+"+", qos, handler); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
			b.Fatalf("subscribe: %v", t.Error())
		}
	}
	clients := make([]pahomqtt.Client, pubs)
	for i := range clients {
		clients[i] = brokerClient(b, br, fmt.Sprintf("pub-%d-%d", run, i))
	}

	b.SetBytes(64)
	b.ResetTimer()
	start := time.Now()
	cpu0, broker0, rw0 := processCPU(), threadsCPU(br.pid), ioCalls(br.pid)
	var wg sync.WaitGroup
	for i, c := range clients {
		n := b.N / pubs
		if i < b.N%pubs {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			brokerPublish(b, c, prefix+strconv.Itoa(i), qos, n, credit, subs)
		}()
	}
	wg.Wait()
	// Wait for every delivery, or for 5 s without any.
	for seen, idle := got.Load(), time.Now(); got.Load() < want; {
		time.Sleep(time.Millisecond)
		if g := got.Load(); g != seen {
			seen, idle = g, time.Now()
		} else if time.Since(idle) > 5*time.Second {
			break
		}
	}
	b.StopTimer()
	cpu1, broker1, rw1 := processCPU(), threadsCPU(br.pid), ioCalls(br.pid)
	received := got.Load()
	end := time.Unix(0, last.Load())
	if received == 0 {
		b.Fatalf("%s: no message delivered", br.name)
	}
	var all []int64
	latMu.Lock()
	for _, l := range lat {
		all = append(all, l...)
	}
	latMu.Unlock()
	slices.Sort(all)
	b.ReportMetric(float64(received)/end.Sub(start).Seconds(), "msg/s")
	b.ReportMetric(float64(all[len(all)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100])/1e3, "p99-µs")
	b.ReportMetric(float64(broker1-broker0)/float64(received), "broker-cpu-ns/msg")
	b.ReportMetric(float64(cpu1-cpu0)/float64(received), "driver-cpu-ns/msg")
	if rw0 >= 0 && rw1 >= 0 {
		b.ReportMetric(float64(rw1-rw0)/float64(received), "broker-rw-calls/msg")
	}
	b.ReportMetric(float64(want-received), "lost")
}

// ioCalls returns the read and write system calls process pid has made
// (syscr and syscw of /proc/pid/io: read, recv, write, send and their
// kin; not epoll or futex), or -1 where the file cannot be read.
func ioCalls(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return -1
	}
	var n int64
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			c, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			n += c
		}
	}
	return n
}

// threadsCPU returns the CPU time the threads of process pid have used,
// in nanoseconds from /proc/pid/task/*/schedstat, where /proc/pid/stat
// counts in ticks of 10 ms, too coarse for a run of a second. It misses
// threads that have exited; a broker's threads live as long as it does.
// It falls back to pidCPU where schedstat cannot be read.
func threadsCPU(pid int) time.Duration {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return pidCPU(pid)
	}
	var sum time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			return pidCPU(pid)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return pidCPU(pid)
		}
		sum += time.Duration(ns)
	}
	return sum
}

// brokerClient connects a paho client that is disconnected at the end.
func brokerClient(b *testing.B, br brokerProc, id string) pahomqtt.Client {
	o := pahomqtt.NewClientOptions().AddBroker("tcp://" + br.addr).SetClientID(id).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true)
	c := pahomqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("%s: connect: %v", br.name, t.Error())
	}
	b.Cleanup(func() { c.Disconnect(50) })
	return c
}

// brokerPublish publishes n messages of 64 bytes, each stamped with the
// time it is published, with at most window of them unfinished; with a
// credit channel, it takes subs tokens from it first for each, and stops
// if they do not come in 5 s (a lost message never gives them back).
func brokerPublish(b *testing.B, c pahomqtt.Client, topic string, qos byte, n int, credit chan struct{}, subs int) {
	toks := make([]pahomqtt.Token, window)
	timeout := time.NewTimer(0)
	for i := range n {
		if credit != nil {
			timeout.Reset(5 * time.Second)
			for range subs {
				select {
				case <-credit:
				case <-timeout.C:
					return
				}
			}
		}
		k := i % window
		if t := toks[k]; t != nil {
			t.Wait()
			if t.Error() != nil {
				b.Error(t.Error())
				return
			}
		}
		payload := make([]byte, 64) // paho may still hold the one before
		binary.LittleEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		toks[k] = c.Publish(topic, qos, false, payload)
	}
	for _, t := range toks {
		if t != nil {
			t.Wait()
			if t.Error() != nil {
				b.Error(t.Error())
			}
		}
	}
}
