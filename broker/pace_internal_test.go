//go:build linux

package broker

import (
	"encoding/binary"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// readCounting is a listener whose connections count the broker's reads.
type readCounting struct {
	net.Listener
	mu    sync.Mutex
	reads []*atomic.Int64 // per connection, in the order accepted
}

func (l *readCounting) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := new(atomic.Int64)
	l.mu.Lock()
	l.reads = append(l.reads, n)
	l.mu.Unlock()
	return &countedConn{Conn: c, n: n}, nil
}

func (l *readCounting) conn(i int) *atomic.Int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reads[i]
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Read(p)
}

// processReads returns the read system calls this process has made.
func processReads(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// pacedStream sends n messages at qos from a publisher that writes each on
// its own, as paho and mosquitto do (gap apart, if not 0), through a broker
// with batchDelay to a subscriber that acknowledges them at once, and checks
// that every one arrives in order and, at QoS 1, that the publisher gets
// every PUBACK, in order. With counted, the
// broker's connections are wrapped (so they cannot park) and it returns the
// broker's reads on the publisher's connection; without, the connections
// are plain TCP ones and it returns the read system calls of the whole
// process (the subscriber's included).
func pacedStream(t *testing.T, batchDelay time.Duration, n int, gap time.Duration, counted bool, qos byte) int64 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &readCounting{Listener: l}
	s := New(Options{BatchDelay: batchDelay})
	if counted {
		go s.Serve(rl)
	} else {
		go s.Serve(l)
	}
	defer s.Close()

	sub := rawConnect(t, l.Addr().String(), "sub", true) // subscribes to sub/cmd
	pub := rawConnect(t, l.Addr().String(), "pub", false)
	reads := func() int64 { return processReads(t) }
	if counted {
		reads = rl.conn(1).Load
	}
	before := reads()

	got := make(chan error, 1)
	go func() {
		r := packet.NewReader(sub, 0)
		sub.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := range n {
			p, err := r.ReadPacket()
			if err != nil {
				got <- err
				return
			}
			pp, ok := p.(*packet.Publish)
			if !ok || len(pp.Payload) < 4 || pp.QoS != qos {
				t.Errorf("message %d: got %v", i, p)
				got <- nil
				return
			}
			if pp.QoS == 1 {
				b, _ := (&packet.Puback{PacketID: pp.PacketID}).Append(nil)
				if _, err := sub.Write(b); err != nil {
					got <- err
					return
				}
			}
			// [MQTT-4.6.0-6] in the order published.
			if seq := binary.BigEndian.Uint32(pp.Payload); seq != uint32(i) {
				t.Errorf("message %d arrived as number %d", seq, i)
				got <- nil
				return
			}
		}
		got <- nil
	}()
	acked := make(chan error, 1)
	go func() {
		if qos == 0 {
			acked <- nil
			return
		}
		r := packet.NewReader(pub, 0)
		pub.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := range n {
			p, err := r.ReadPacket()
			if err != nil {
				acked <- err
				return
			}
			// [MQTT-4.6.0-2] PUBACKs in the order the PUBLISHes came.
			if a, ok := p.(*packet.Puback); !ok || a.PacketID != packetID(i) {
				t.Errorf("acknowledgement %d: got %v, want PUBACK %d", i, p, packetID(i))
				acked <- nil
				return
			}
		}
		acked <- nil
	}()
	payload := make([]byte, 64)
	for i := range n {
		binary.BigEndian.PutUint32(payload, uint32(i))
		m := &packet.Publish{Topic: []byte("sub/cmd"), Payload: payload, QoS: qos}
		if qos > 0 {
			m.PacketID = packetID(i)
		}
		b, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Write(b); err != nil {
			t.Fatal(err)
		}
		// A busy wait: a timer would round the gap up to a millisecond
		// on an idle machine.
		for start := time.Now(); time.Since(start) < gap; {
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	return reads() - before
}

// packetID is the id of the i-th QoS 1 message of pacedStream: 1 to 65535,
// and round again.
func packetID(i int) uint16 { return uint16(i%65535 + 1) }

// TestPacedPublisher: the broker reads a fast QoS 0 publisher's messages
// many at a time (Options.BatchDelay), and delivers every one in order.
func TestPacedPublisher(t *testing.T) {
	const n = 20000
	t.Run("wrapped", func(t *testing.T) {
		paced := pacedStream(t, 5*time.Millisecond, n, 0, true, 0)
		unpaced := pacedStream(t, -1, n, 0, true, 0)
		t.Logf("%d messages: %d reads paced, %d unpaced", n, paced, unpaced)
		// Paced, a read comes at most every 5 ms once the stream is
		// fast, and takes everything that arrived meanwhile (in 4 KiB
		// reads: at least 362 for 1.5 MB).
		if paced > n/10 {
			t.Errorf("%d reads for %d messages: the reads were not paced", paced, n)
		}
	})
	t.Run("TCP", func(t *testing.T) {
		// The connections that can park wait for their next packet in
		// another way (see linger); they are paced the same. Here the
		// publisher is slower than the broker's reads, so that without
		// pacing each read takes one message: the broker reads, and
		// the subscriber reads what it writes, once per message.
		const n = 4000
		paced := pacedStream(t, 5*time.Millisecond, n, 100*time.Microsecond, false, 0)
		unpaced := pacedStream(t, -1, n, 100*time.Microsecond, false, 0)
		t.Logf("%d messages: %d read system calls in the process paced, %d unpaced", n, paced, unpaced)
		if paced > unpaced/2 {
			t.Errorf("%d read system calls paced, %d unpaced: the reads were not paced", paced, unpaced)
		}
	})
}

// TestPacedQoS1Publisher: a fast QoS 1 publisher is read many messages at a
// time too, its PUBACKs leave together, in order, and every message
// arrives once, in order: the publisher sends without waiting for its
// acknowledgements, so pausing does not slow it.
func TestPacedQoS1Publisher(t *testing.T) {
	const n = 20000
	paced := pacedStream(t, 5*time.Millisecond, n, 0, true, 1)
	unpaced := pacedStream(t, -1, n, 0, true, 1)
	t.Logf("%d messages: %d reads paced, %d unpaced", n, paced, unpaced)
	if paced > n/10 {
		t.Errorf("%d reads for %d messages: the reads were not paced", paced, n)
	}
}
