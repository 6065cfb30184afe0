package peers

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pahomqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
)

// The client benchmarks publish from one client to another of the same
// library through one mosquitto, end to end: one op is one message published
// and received. Both libraries get the same window of messages in flight
// (tern's MaxInflight and queue; for paho, which has no window of its own,
// the benchmark waits for the token of the message window places earlier).
// github.com/256dpi/gomqtt's client is not compared (only its codec, in
// packet_test.go); github.com/soypat/natiu-mqtt, which the module proxy
// does not serve here, not at all.

const window = 100

// startMosquitto runs a mosquitto for the benchmark, with no inflight or
// queue limits (nothing dropped) and TCP_NODELAY, and returns its URL.
func startMosquitto(b *testing.B) (url string, pid int) {
	br := runMosquitto(b, "persistence false\nmax_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\n")
	return "mqtt://" + br.addr, br.pid
}

func BenchmarkClientThroughput(b *testing.B) {
	url, pid := startMosquitto(b)
	brokerPID = pid
	for qos := byte(0); qos <= 2; qos++ {
		for _, size := range []int{64, 1024} {
			name := "qos" + strconv.Itoa(int(qos)) + "/" + strconv.Itoa(size) + "B"
			b.Run("tern/"+name, func(b *testing.B) { ternThroughput(b, url, qos, size) })
			b.Run("paho/"+name, func(b *testing.B) { pahoThroughput(b, url, qos, size) })
		}
	}
}

// BenchmarkClientThroughputTernBroker runs the clients of
// BenchmarkClientThroughput through tern's broker, in this process (its CPU
// time is in cpu-ns/msg), with no inflight or queue limits either: it shares
// the work across both cores, so it shows what the clients can do when a
// single-threaded broker is not the limit.
func BenchmarkClientThroughputTernBroker(b *testing.B) {
	url := serveTernBroker(b, broker.Options{MaxInflight: 65535, MaxQueued: 1 << 20})
	for qos := byte(0); qos <= 2; qos++ {
		for _, size := range []int{64, 1024} {
			name := "qos" + strconv.Itoa(int(qos)) + "/" + strconv.Itoa(size) + "B"
			b.Run("tern/"+name, func(b *testing.B) { ternThroughput(b, url, qos, size) })
			b.Run("paho/"+name, func(b *testing.B) { pahoThroughput(b, url, qos, size) })
		}
	}
}

// serveTernBroker runs tern's broker in the benchmark's process (its CPU
// time counts in cpu-ns/msg) until the benchmark ends, and returns its URL.
func serveTernBroker(b *testing.B, opts broker.Options) string {
	srv := broker.New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	brokerPID = 0
	return "mqtt://" + l.Addr().String()
}

// BenchmarkClientThroughputTernBrokerWindow is the QoS 1 and 2 rows of
// BenchmarkClientThroughputTernBroker with the broker's default window to
// each client (20 messages in flight, as a stock mosquitto's): a subscriber
// that paused its reads would get 20 messages per pause and hold the
// stream up, so tern's read pacer must see that and read at once. Only
// the queue is unbounded, so that nothing is dropped while the subscriber
// catches up.
func BenchmarkClientThroughputTernBrokerWindow(b *testing.B) {
	url := serveTernBroker(b, broker.Options{MaxQueued: 1 << 20, MaxQueuedBytes: 1 << 30})
	for qos := byte(1); qos <= 2; qos++ {
		name := "qos" + strconv.Itoa(int(qos)) + "/64B"
		b.Run("tern/"+name, func(b *testing.B) { ternThroughput(b, url, qos, 64) })
		b.Run("paho/"+name, func(b *testing.B) { pahoThroughput(b, url, qos, 64) })
	}
}

func BenchmarkClientRoundTrip(b *testing.B) {
	url, _ := startMosquitto(b)
	for qos := byte(0); qos <= 2; qos++ {
		name := "qos" + strconv.Itoa(int(qos))
		b.Run("tern/"+name, func(b *testing.B) { ternRoundTrip(b, url, qos) })
		b.Run("paho/"+name, func(b *testing.B) { pahoRoundTrip(b, url, qos) })
	}
}

// counter counts received messages, keeps their latency, and signals
// when the expected number arrived.
type counter struct {
	got, want atomic.Int64
	done      chan struct{}
	lat       []int64 // ns from publish to receipt, in the order received
}

func newCounter(want int) *counter {
	c := &counter{done: make(chan struct{}, 1), lat: make([]int64, want)}
	c.want.Store(int64(want))
	return c
}

// add counts a message whose payload starts with the time it was
// published (see stamp).
func (c *counter) add(payload []byte) {
	now := time.Now().UnixNano()
	n := c.got.Add(1)
	if n <= int64(len(c.lat)) && len(payload) >= 8 {
		c.lat[n-1] = now - int64(binary.LittleEndian.Uint64(payload))
	}
	if n == c.want.Load() {
		c.done <- struct{}{}
	}
}

// stamp writes the time into the first bytes of a payload.
func stamp(payload []byte) {
	binary.LittleEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
}

func (c *counter) wait(b *testing.B, cpu cpuMark) {
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		b.Fatalf("%d of %d messages received", c.got.Load(), c.want.Load())
	}
	report(b, cpu)
	slices.Sort(c.lat)
	b.ReportMetric(float64(c.lat[len(c.lat)/2])/1e3, "p50-µs")
	b.ReportMetric(float64(c.lat[len(c.lat)*99/100])/1e3, "p99-µs")
}

// report stops the timer and reports the rate and the CPU time per message
// since cpu.
func report(b *testing.B, cpu cpuMark) {
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	now := markCPU()
	b.ReportMetric(float64(now.self-cpu.self)/float64(b.N), "cpu-ns/msg")
	if brokerPID != 0 {
		b.ReportMetric(float64(now.broker-cpu.broker)/float64(b.N), "broker-cpu-ns/msg")
	}
}

// brokerPID is the mosquitto of BenchmarkClientThroughput. It runs on one
// thread: one second divided by its CPU time per message bounds the
// throughput of any client through it, and that time depends on how the
// clients batch their reads and writes.
var brokerPID int

// cpuMark is the CPU time used so far by this process and by mosquitto.
type cpuMark struct{ self, broker time.Duration }

func markCPU() cpuMark {
	return cpuMark{self: processCPU(), broker: pidCPU(brokerPID)}
}

// pidCPU returns the CPU time (user and system) process pid has used, from
// /proc/pid/stat; 0 where that cannot be read.
func pidCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// the last ')'. utime and stime are fields 14 and 15, in clock ticks
	// (100 per second on Linux).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// processCPU returns the CPU time the process (both clients, the garbage
// collector, everything but mosquitto) has used: on a busy machine it
// measures the clients' cost better than the elapsed time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ternClient(b *testing.B, url string, onMsg func(*client.Message)) *client.Client {
	c, err := client.New(client.Options{Servers: []string{url}, MaxInflight: window, MaxPending: 1000, DefaultHandler: onMsg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func ternThroughput(b *testing.B, url string, qos byte, size int) {
	cnt := newCounter(b.N)
	sub := ternClient(b, url, func(m *client.Message) { cnt.add(m.Payload) })
	ctx := context.Background()
	topic := fmt.Sprintf("tern/%d/%d", qos, size)
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: topic, QoS: qos}); err != nil {
		b.Fatal(err)
	}
	pub := ternClient(b, url, nil)
	cnt.wait(b, ternSend(b, pub, topic, qos, size))
}

// ternSend starts the benchmark's clock and publishes b.N messages, and
// returns when the last one is complete (for QoS 0: queued).
func ternSend(b *testing.B, pub *client.Client, topic string, qos byte, size int) cpuMark {
	ctx := context.Background()
	payload := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := markCPU()
	var last *client.Token
	for range b.N {
		stamp(payload) // PublishAsync copies the payload
		last = pub.PublishAsync(ctx, topic, qos, false, payload)
	}
	if err := last.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	return cpu
}

func ternRoundTrip(b *testing.B, url string, qos byte) {
	got := make(chan struct{}, 1)
	c := ternClient(b, url, func(*client.Message) { got <- struct{}{} })
	ctx := context.Background()
	topic := fmt.Sprintf("tern/rtt/%d", qos)
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: topic, QoS: qos}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Publish(ctx, topic, qos, false, payload); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}

var pahoIDs atomic.Int64

func pahoClient(b *testing.B, url string) pahomqtt.Client {
	o := pahomqtt.NewClientOptions().AddBroker(url).
		SetClientID("paho-" + strconv.FormatInt(pahoIDs.Add(1), 10)).
		SetCleanSession(true).SetAutoReconnect(false)
	c := pahomqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("paho connect: %v", t.Error())
	}
	b.Cleanup(func() { c.Disconnect(0) })
	return c
}

func pahoThroughput(b *testing.B, url string, qos byte, size int) {
	cnt := newCounter(b.N)
	sub := pahoClient(b, url)
	topic := fmt.Sprintf("paho/%d/%d", qos, size)
	if t := sub.Subscribe(topic, qos, func(_ pahomqtt.Client, m pahomqtt.Message) { cnt.add(m.Payload()) }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("paho subscribe: %v", t.Error())
	}
	pub := pahoClient(b, url)
	cnt.wait(b, pahoSend(b, pub, topic, qos, size))
}

// pahoSend starts the benchmark's clock and publishes b.N messages with at
// most as many in flight as tern's window and queue, and returns when all
// are complete.
func pahoSend(b *testing.B, pub pahomqtt.Client, topic string, qos byte, size int) cpuMark {
	toks := make([]pahomqtt.Token, window+1000)
	// paho keeps the payload it is given until the token completes: one
	// payload per token, reused when the token of its slot is waited for.
	payloads := make([][]byte, len(toks))
	for i := range payloads {
		payloads[i] = make([]byte, size)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := markCPU()
	for i := range b.N {
		k := i % len(toks)
		if t := toks[k]; t != nil {
			t.Wait()
		}
		stamp(payloads[k])
		toks[k] = pub.Publish(topic, qos, false, payloads[k])
	}
	for _, t := range toks {
		if t != nil {
			t.Wait()
			if t.Error() != nil {
				b.Fatal(t.Error())
			}
		}
	}
	return cpu
}

func pahoRoundTrip(b *testing.B, url string, qos byte) {
	got := make(chan struct{}, 1)
	c := pahoClient(b, url)
	topic := fmt.Sprintf("paho/rtt/%d", qos)
	if t := c.Subscribe(topic, qos, func(pahomqtt.Client, pahomqtt.Message) { got <- struct{}{} }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("paho subscribe: %v", t.Error())
	}
	payload := make([]byte, 64)
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if t := c.Publish(topic, qos, false, payload); t.Wait() && t.Error() != nil {
			b.Fatal(t.Error())
		}
		<-got
	}
}

// BenchmarkClientPublish measures publishing alone: no subscriber, one op is
// one message published and, for QoS 1 and 2, acknowledged by mosquitto.
func BenchmarkClientPublish(b *testing.B) {
	url, pid := startMosquitto(b)
	brokerPID = pid
	for qos := byte(0); qos <= 2; qos++ {
		for _, size := range []int{64, 1024} {
			name := "qos" + strconv.Itoa(int(qos)) + "/" + strconv.Itoa(size) + "B"
			b.Run("tern/"+name, func(b *testing.B) { ternPublish(b, url, qos, size) })
			b.Run("paho/"+name, func(b *testing.B) { pahoPublish(b, url, qos, size) })
		}
	}
}

func ternPublish(b *testing.B, url string, qos byte, size int) {
	pub := ternClient(b, url, nil)
	topic := fmt.Sprintf("tern/pub/%d/%d", qos, size)
	cpu := ternSend(b, pub, topic, qos, size)
	if qos == 0 {
		// A QoS 0 token completes when the message is queued: a blocking
		// Publish returns once everything before it is written.
		if err := pub.Publish(context.Background(), topic, 0, false, nil); err != nil {
			b.Fatal(err)
		}
	}
	report(b, cpu)
}

func pahoPublish(b *testing.B, url string, qos byte, size int) {
	pub := pahoClient(b, url)
	report(b, pahoSend(b, pub, fmt.Sprintf("paho/pub/%d/%d", qos, size), qos, size))
}
