package broker_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// lockedBuffer is a log destination shared by connection goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// burstPayload is the payload of message seq of a burst: its number, then
// padding.
func burstPayload(seq uint32, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, seq)
	return b
}

// TestBurstHealthyAndStuck bursts 20,000 QoS 0 then 20,000 QoS 1 messages
// from one publisher, with the default queue bounds, to a subscriber that
// reads at line rate and to one that never reads: the first gets every
// message, in order; the second's queue stays within MaxQueuedBytes. Then
// more messages for the stuck one alone fill its queue: they are dropped,
// counted per client and in Stats, and logged at warn level.
func TestBurstHealthyAndStuck(t *testing.T) {
	const (
		burst   = 20000
		size    = 256
		maxHeld = broker.DefaultMaxQueuedBytes
	)
	began := time.Now()
	logs := new(lockedBuffer)
	srv := newServer(t, func(o *broker.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})

	healthy := connect(t, srv, "healthy", true, false)
	healthy.subscribe(1, "burst/#", 1)
	stuck := connect(t, srv, "stuck", true, false)
	stuck.subscribe(1, "burst/#", 1)
	stuck.subscribe(2, "stuck/#", 0)
	// From here on, nothing reads from stuck's connection.

	// The healthy subscriber reads and acknowledges as fast as it can.
	type result struct {
		q0, q1 int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		var ack [4]byte
		hc := healthy.c
		hc.SetDeadline(time.Now().Add(2 * time.Minute))
		for r.q0+r.q1 < 2*burst {
			p, err := healthy.r.ReadPacket()
			if err != nil {
				r.err = err
				break
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				r.err = fmt.Errorf("got %v", p)
				break
			}
			// QoS 1 messages are numbered from 1,000,000.
			seq := int(binary.BigEndian.Uint32(pub.Payload))
			if pub.QoS == 0 && seq != r.q0 || pub.QoS == 1 && seq != 1000000+r.q1 {
				r.err = fmt.Errorf("QoS %d message %d after %d QoS 0 and %d QoS 1", pub.QoS, seq, r.q0, r.q1)
				break
			}
			if pub.QoS == 1 {
				r.q1++
				out, _ := (&packet.Puback{PacketID: pub.PacketID}).Append(ack[:0])
				if _, err := hc.Write(out); err != nil {
					r.err = err
					break
				}
			} else {
				r.q0++
			}
		}
		done <- r
	}()

	// The publisher writes the whole burst as fast as the broker takes it,
	// reading its PUBACKs on the side.
	pc := connect(t, srv, "pub", true, false)
	go io.Copy(io.Discard, pc.c)
	pc.c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
	w := packet.NewWriter(pc.c)
	for i := range burst {
		w.WritePacket(&packet.Publish{Topic: []byte("burst/0"), Payload: burstPayload(uint32(i), size)})
	}
	for i := range burst {
		w.WritePacket(&packet.Publish{QoS: 1, PacketID: uint16(i%65535 + 1), Topic: []byte("burst/1"), Payload: burstPayload(uint32(1000000+i), size)})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.q0 != burst || r.q1 != burst {
		t.Fatalf("healthy subscriber: %d QoS 0 and %d QoS 1 messages of %d each, %v", r.q0, r.q1, burst, r.err)
	}
	hs, _ := srv.Broker.ClientStats("healthy")
	if hs.Dropped != 0 {
		t.Errorf("healthy subscriber: %d messages dropped", hs.Dropped)
	}
	ss, ok := srv.Broker.ClientStats("stuck")
	if !ok || ss.QueuedBytes > maxHeld {
		t.Fatalf("stuck subscriber after the burst: %+v, bound %d bytes", ss, maxHeld)
	}
	t.Logf("after the burst: healthy %d+%d messages; stuck %+v", r.q0, r.q1, ss)

	// More QoS 0 messages for the stuck one alone, until its queue is full
	// and drops them: its queue stays within the bound meanwhile.
	big := bytes.Repeat([]byte("x"), 1024)
	sent := 0
	for ss.Dropped == 0 && sent < 200000 {
		for range 1000 {
			w.WritePacket(&packet.Publish{Topic: []byte("stuck/x"), Payload: big})
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		sent += 1000
		ss, _ = srv.Broker.ClientStats("stuck")
		if ss.QueuedBytes > maxHeld {
			t.Fatalf("stuck subscriber: %d bytes queued, bound %d", ss.QueuedBytes, maxHeld)
		}
	}
	// Wait until the broker has routed every message sent: the drop
	// count stops moving.
	start := time.Now()
	for prev := int64(-1); ss.Dropped != prev && time.Since(start) < 30*time.Second; {
		prev = ss.Dropped
		time.Sleep(100 * time.Millisecond)
		ss, _ = srv.Broker.ClientStats("stuck")
	}
	if ss.Dropped == 0 {
		t.Fatalf("stuck subscriber: no drop after %d messages of 1 KiB: %+v", sent, ss)
	}
	if ss.QueuedBytes > maxHeld {
		t.Fatalf("stuck subscriber: %d bytes queued, bound %d", ss.QueuedBytes, maxHeld)
	}
	st := srv.Broker.Stats()
	hs, _ = srv.Broker.ClientStats("healthy")
	if st.Dropped != ss.Dropped+hs.Dropped || hs.Dropped != 0 {
		t.Errorf("Stats().Dropped = %d; stuck dropped %d, healthy %d", st.Dropped, ss.Dropped, hs.Dropped)
	}
	if !strings.Contains(logs.String(), "queue full: message dropped") || !strings.Contains(logs.String(), "client=stuck") {
		t.Errorf("no warn line about the drops; log:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "queue full"); n > 1+int(time.Since(began)/time.Second) {
		t.Errorf("%d log lines about drops: not rate-limited", n)
	}
	t.Logf("stuck subscriber after %d more messages: %+v; log lines: %d", sent, ss, strings.Count(logs.String(), "queue full"))
}
