package bench_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// BenchmarkBroker compares tern's broker with mosquitto on this machine,
// driven by the same client code in the same run: a minimal client written
// with packet.Reader and packet.Writer over TCP, so that neither broker is
// measured through a client library.
//
// mosquitto runs with max_inflight_messages 0 and max_queued_messages 0, and
// tern with a window and queue large enough, so that neither drops a message:
// every benchmark waits until every message has arrived.
//
//	fanin:  8 publishers, 1 subscriber; ns/op per message received
//	fanout: 1 publisher, 16 subscribers; ns/op per message published, received 16 times
//	idle:   1,000 connected clients doing nothing; B/conn of broker memory
//
// Each iteration of idle connects 1,000 clients: run it with -benchtime=1x
// (the fan benchmarks take counts such as -benchtime=100000x).
func BenchmarkBroker(b *testing.B) {
	brokers := []struct {
		name  string
		start func(b *testing.B) (addr string, memory func() uint64)
	}{
		{"tern", startTernBroker},
		{"mosquitto", startMosquittoBroker},
	}
	for _, qos := range []byte{0, 1} {
		for _, br := range brokers {
			b.Run(fmt.Sprintf("fanin/qos%d/%s", qos, br.name), func(b *testing.B) {
				addr, _ := br.start(b)
				brokerFanIn(b, addr, 8, qos)
			})
		}
		for _, br := range brokers {
			b.Run(fmt.Sprintf("fanout/qos%d/%s", qos, br.name), func(b *testing.B) {
				addr, _ := br.start(b)
				brokerFanOut(b, addr, 16, qos)
			})
		}
	}
	for _, br := range brokers {
		b.Run("idle/"+br.name, func(b *testing.B) {
			addr, memory := br.start(b)
			brokerIdle(b, addr, memory, 1000)
		})
	}
}

const brokerPayload = 64

// startTernBroker starts tern's broker in this process; memory is the heap and
// stacks in use after a GC.
func startTernBroker(b *testing.B) (string, func() uint64) {
	srv := mqtttest.NewServer(b, func(o *broker.Options) {
		o.MaxInflight = 65535
		o.MaxQueued = 1 << 22
	})
	return srv.Addr, func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
}

// startMosquittoBroker starts mosquitto (or skips when it is missing); memory is
// its resident set size.
func startMosquittoBroker(b *testing.B) (string, func() uint64) {
	m := mosquitto.Start(b, mosquitto.Config{Extra: []string{
		"max_inflight_messages 0",
		"max_queued_messages 0",
		"max_connections -1",
		// Go sets TCP_NODELAY on every connection; mosquitto does not by
		// default, and Nagle's algorithm would then hold its small
		// packets back for the peer's delayed ACK.
		"set_tcp_nodelay true",
	}})
	pid := mosquittoPID(b, m.ConfigFile)
	return m.Addr, func() uint64 {
		st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				return kb << 10
			}
		}
		b.Fatal("no VmRSS")
		return 0
	}
}

// mosquittoPID finds the mosquitto process started with config file cfg.
func mosquittoPID(b *testing.B, cfg string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err == nil && bytes.Contains(cmd, []byte(cfg)) && bytes.Contains(cmd, []byte("mosquitto")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	if _, err := exec.LookPath("mosquitto"); err == nil {
		b.Fatal("mosquitto process not found")
	}
	return 0
}

// rawClient is the driver: one TCP connection, raw packets.
type rawClient struct {
	c net.Conn
	r *packet.Reader
	w *packet.Writer
}

func dialRaw(b *testing.B, addr, id string) *rawClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	bc := &rawClient{c: c, r: packet.NewReader(c, 0), w: packet.NewWriter(c)}
	bc.write(&packet.Connect{ClientID: []byte(id), CleanSession: true})
	bc.flush()
	if p, err := bc.r.ReadPacket(); err != nil || p.Type() != packet.CONNACK || p.(*packet.Connack).ReturnCode != 0 {
		b.Fatalf("%s: CONNACK: %v %v", id, p, err)
	}
	return bc
}

func (c *rawClient) write(p packet.Packet) {
	if err := c.w.WritePacket(p); err != nil {
		panic(err) // only valid packets are written
	}
}

func (c *rawClient) flush() error { return c.w.Flush() }

func (c *rawClient) subscribe(b *testing.B, filter string, qos byte) {
	c.write(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: qos}}})
	c.flush()
	if p, err := c.r.ReadPacket(); err != nil || p.Type() != packet.SUBACK {
		b.Fatalf("SUBACK: %v %v", p, err)
	}
}

// publishN publishes n messages to topic at qos; at QoS 1 it keeps at most
// window unacknowledged, reading PUBACKs in a goroutine of its own.
func (c *rawClient) publishN(topic []byte, n int, qos byte, window int) error {
	p := &packet.Publish{Topic: topic, Payload: make([]byte, brokerPayload), QoS: qos}
	if qos == 0 {
		for range n {
			c.write(p)
		}
		return c.flush()
	}
	sem := make(chan struct{}, window)
	acks := make(chan error, 1)
	go func() {
		for range n {
			pk, err := c.r.ReadPacket()
			if err != nil {
				acks <- err
				return
			}
			if pk.Type() != packet.PUBACK {
				acks <- fmt.Errorf("got %v, want PUBACK", pk)
				return
			}
			<-sem
		}
		acks <- nil
	}()
	for i := range n {
		select {
		case sem <- struct{}{}:
		default:
			if err := c.flush(); err != nil {
				return err
			}
			sem <- struct{}{}
		}
		p.PacketID = uint16(i%65535 + 1)
		c.write(p)
	}
	if err := c.flush(); err != nil {
		return err
	}
	return <-acks
}

// receiveN reads n PUBLISH packets, acknowledging them at QoS 1 (flushing
// the acknowledgements whenever the read buffer runs dry).
func (c *rawClient) receiveN(n int) error {
	ack := new(packet.Puback) // one for all, so the driver allocates nothing per message
	for got := 0; got < n; {
		if c.r.Buffered() == 0 && c.w.Buffered() > 0 {
			if err := c.flush(); err != nil {
				return err
			}
		}
		pk, err := c.r.ReadPacket()
		if err != nil {
			return fmt.Errorf("after %d of %d messages: %w", got, n, err)
		}
		p, ok := pk.(*packet.Publish)
		if !ok {
			continue
		}
		got++
		if p.QoS == 1 {
			ack.PacketID = p.PacketID
			c.write(ack)
		}
	}
	return c.flush()
}

func brokerFanIn(b *testing.B, addr string, pubs int, qos byte) {
	sub := dialRaw(b, addr, "sub")
	sub.subscribe(b, "bench/#", qos)
	clients := make([]*rawClient, pubs)
	for i := range clients {
		clients[i] = dialRaw(b, addr, fmt.Sprint("pub", i))
	}
	b.SetBytes(brokerPayload)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, pubs+1)
	for i, c := range clients {
		n := b.N / pubs
		if i < b.N%pubs {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.publishN([]byte(fmt.Sprint("bench/", i)), n, qos, 100); err != nil {
				errs <- err
			}
		}()
	}
	if err := sub.receiveN(b.N); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func brokerFanOut(b *testing.B, addr string, subs int, qos byte) {
	clients := make([]*rawClient, subs)
	for i := range clients {
		clients[i] = dialRaw(b, addr, fmt.Sprint("sub", i))
		clients[i].subscribe(b, "bench/t", qos)
	}
	p := dialRaw(b, addr, "pub")
	b.SetBytes(brokerPayload * int64(subs))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, subs+1)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.receiveN(b.N); err != nil {
				errs <- err
			}
		}()
	}
	if err := p.publishN([]byte("bench/t"), b.N, qos, 100); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// idle connects n clients that then do nothing, and reports the broker's
// memory per connection. For tern the figure includes the client side of the
// connections, which lives in the same process (a socket each, no buffers).
func brokerIdle(b *testing.B, addr string, memory func() uint64, n int) {
	for range b.N {
		before := memory()
		conns := make([]net.Conn, 0, n)
		for i := range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			pkt, _ := (&packet.Connect{ClientID: fmt.Appendf(nil, "idle%d", i), CleanSession: true, KeepAlive: 600}).Append(nil)
			if _, err := c.Write(pkt); err != nil {
				b.Fatal(err)
			}
		}
		var ack [4]byte
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
				b.Fatalf("CONNACK: % x %v", ack, err)
			}
		}
		after := memory()
		b.ReportMetric(float64(int64(after)-int64(before))/float64(n), "B/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}
