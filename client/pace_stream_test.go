package client_test

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/transport"
)

// readCounter counts the reads on the connections it dials.
type readCounter struct{ reads atomic.Int64 }

func (rc *readCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &rc.reads}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Read(p)
}

// TestPacedStream sends a fast QoS 0 stream with a QoS 1 message every 100
// through mosquitto, which writes every message on its own, to a
// subscriber whose reads are paced and to one whose are not: every message
// arrives, in order on its topic, the QoS 1 ones are acknowledged (the
// publisher's window of 10 would otherwise stall), and the paced subscriber
// reads many messages per system call.
func TestPacedStream(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_queued_messages 0", "set_tcp_nodelay true"}})
	for _, delay := range []time.Duration{5 * time.Millisecond, -1} {
		t.Run("BatchDelay="+delay.String(), func(t *testing.T) {
			reads := pacedStream(t, b.URL, delay, 100)
			// Paced, reads come at most every 5 ms.
			if delay > 0 && reads > pacedStreamLen/10 {
				t.Errorf("%d reads for %d messages: the reads were not paced", reads, pacedStreamLen)
			}
		})
	}
}

// TestPacedQoS1Stream is TestPacedStream with QoS 1 messages only, through
// a mosquitto that does not limit its window to the subscriber: a pause
// does not slow the stream, so the subscriber goes on pausing, and the
// acknowledgements of each read's messages leave together. The pacer
// compares the rate of its paused reads with that of a few quick ones,
// and a burst among those sometimes fails the check and holds pausing
// off for a while (16 delays or more): the paced subscriber made 400 to
// 2,900 reads where an unpaced one made 9,800 to 18,600 in the same
// test, so the check is against the unpaced reads, not a fixed count.
func TestPacedQoS1Stream(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_inflight_messages 0", "max_queued_messages 0", "set_tcp_nodelay true"}})
	unpaced := pacedStream(t, b.URL, -1, 1)
	paced := pacedStream(t, b.URL, 5*time.Millisecond, 1)
	if 2*paced > unpaced {
		t.Errorf("paced: %d reads for %d messages, unpaced: %d; the reads were not paced", paced, pacedStreamLen, unpaced)
	}
}

const pacedStreamLen = 20000

// pacedStream sends pacedStreamLen messages, every qos1Every-th at QoS 1 and
// the others at QoS 0, on one topic per QoS, to a subscriber that reads
// with the given BatchDelay. It checks that each arrives once, in order on
// its topic [MQTT-4.6.0-6], and returns the number of reads the subscriber
// made for them.
func pacedStream(t *testing.T, url string, delay time.Duration, qos1Every int) int64 {
	ctx := testCtx(t, 60*time.Second)
	var rc readCounter
	got := make(chan uint32, pacedStreamLen)
	sub := connect(t, client.Options{
		Servers:    []string{url},
		Transport:  &transport.Options{DialContext: rc.dial},
		BatchDelay: delay,
		MaxPending: pacedStreamLen,
		DefaultHandler: func(m *client.Message) {
			got <- binary.BigEndian.Uint32(m.Payload)
		},
	})
	topic := "stream/" + delay.String() + "/"
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: topic + "#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, client.Options{Servers: []string{url}, MaxInflight: 10})
	before := rc.reads.Load()
	var last *client.Token
	payload := make([]byte, 64)
	isQoS1 := func(seq int) bool { return seq%qos1Every == qos1Every-1 }
	for i := range pacedStreamLen {
		binary.BigEndian.PutUint32(payload, uint32(i))
		qos, name := byte(0), topic+"0"
		if isQoS1(i) {
			qos, name = 1, topic+"1"
		}
		last = pub.PublishAsync(ctx, name, qos, false, payload)
	}
	if err := last.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Each topic's messages arrive in the order sent: increasing, and all
	// of them.
	last1 := [2]int{-1, -1}
	for range pacedStreamLen {
		select {
		case seq := <-got:
			q := 0
			if isQoS1(int(seq)) {
				q = 1
			}
			if int(seq) <= last1[q] || int(seq) >= pacedStreamLen {
				t.Fatalf("QoS %d: message %d arrived after %d", q, seq, last1[q])
			}
			last1[q] = int(seq)
		case <-ctx.Done():
			t.Fatalf("messages lost: last QoS 0 %d, last QoS 1 %d", last1[0], last1[1])
		}
	}
	reads := rc.reads.Load() - before
	t.Logf("%d messages in %d reads", pacedStreamLen, reads)
	return reads
}
