package session

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// MaxQueuedBytes bounds the messages waiting behind the inflight window, in
// bytes, and the QoS 0 messages not yet handed out; one message larger than
// the bound may wait when nothing else does.
func TestMaxQueuedBytes(t *testing.T) {
	const bound = 2000
	payload := strings.Repeat("x", 100)
	cost := 1 + len(payload) + QueuedOverhead // topic "t"
	for _, qos := range []byte{0, 1} {
		h := connected(t, Config{Role: Server, MaxInflight: 1, MaxQueuedBytes: bound})
		h.out()
		if qos == 1 {
			h.publish(1, "fills the window")
			h.out()
		}
		n := 0
		for {
			_, err := h.s.Publish(pub(qos, 0, false, payload))
			if errors.Is(err, ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			if got := h.s.QueuedBytes(); got > bound {
				t.Fatalf("QoS %d: %d bytes queued, bound %d", qos, got, bound)
			}
		}
		c := cost
		if qos == 0 {
			c += 4 // waiting encoded: fixed header and topic length
		}
		if n != bound/c {
			t.Errorf("QoS %d: %d messages of %d bytes taken, want %d", qos, n, c, bound/c)
		}
		if qos == 0 {
			// Handing them out frees the bound.
			if len(h.out()) != n || h.s.QueuedBytes() != 0 {
				t.Fatalf("QoS 0: after AppendOutgoing, %d bytes queued", h.s.QueuedBytes())
			}
			continue
		}
		// Acknowledging moves one into the window and frees room for one.
		h.recv(&packet.Puback{PacketID: 1})
		if _, err := h.s.Publish(pub(1, 0, false, payload)); err != nil {
			t.Fatalf("after a PUBACK: %v", err)
		}
		if _, err := h.s.Publish(pub(1, 0, false, payload)); !errors.Is(err, ErrFull) {
			t.Fatalf("past the bound again: %v", err)
		}
	}

	// One message over the bound passes when nothing waits, and only then.
	h := connected(t, Config{Role: Server, MaxInflight: 1, MaxQueuedBytes: bound})
	h.publish(1, "fills the window")
	big := strings.Repeat("y", 3*bound)
	if _, err := h.s.Publish(pub(1, 0, false, big)); err != nil {
		t.Fatalf("large message with nothing queued: %v", err)
	}
	if _, err := h.s.Publish(pub(1, 0, false, "z")); !errors.Is(err, ErrFull) {
		t.Fatalf("behind the large message: %v", err)
	}
	// Without a bound in bytes, the count alone decides.
	h = connected(t, Config{Role: Server, MaxInflight: 1, MaxQueued: 3})
	h.publish(1, "fills the window")
	for range 3 {
		if _, err := h.s.Publish(pub(1, 0, false, big)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.s.Publish(pub(1, 0, false, big)); !errors.Is(err, ErrFull) {
		t.Fatalf("past MaxQueued: %v", err)
	}
}

// Shrink keeps what is not yet handed out and the state of the flows; the
// session goes on as before after it.
func TestShrink(t *testing.T) {
	h := connected(t, Config{Role: Server})
	h.out()
	h.publish(0, "a")
	h.publish(1, "b")
	h.s.Shrink() // nothing handed out yet: all kept
	eq(t, "sent", h.out(), "PUBLISH q0 a", "PUBLISH q1 id1 b")
	h.s.Shrink()
	h.publish(1, "c")
	eq(t, "sent", h.out(), "PUBLISH q1 id2 c")
	h.s.Shrink()
	if evs := h.recv(&packet.Puback{PacketID: 1}); len(evs) != 1 || evs[0].Kind != EventPublished {
		t.Fatalf("PUBACK 1: %v", kinds(evs))
	}
	h.s.Shrink()
	if evs := h.recv(&packet.Publish{QoS: 2, PacketID: 7, Topic: []byte("t"), Payload: []byte("in")}); len(evs) != 1 || evs[0].Kind != EventMessage {
		t.Fatalf("incoming QoS 2: %v", kinds(evs))
	}
	h.s.Shrink()
	eq(t, "sent", h.out(), "PUBREC 7")
	if h.s.Inflight() != 1 || h.s.QueuedBytes() != 0 {
		t.Fatalf("inflight %d, queued bytes %d", h.s.Inflight(), h.s.QueuedBytes())
	}
}

// Shrink drops the bitmap of the packet ids in use; it is remade from the
// inflight messages, so a new message never takes the id of one in flight
// [MQTT-2.3.1-2].
func TestShrinkPacketIDs(t *testing.T) {
	h := connected(t, Config{Role: Server, MaxInflight: 1000})
	h.out()
	inflight := map[uint16]bool{}
	send := func(n int) {
		for range n {
			h.publish(1, "m")
		}
		for _, p := range h.out() {
			var id uint16
			if _, err := fmt.Sscanf(p, "PUBLISH q1 id%d", &id); err != nil {
				t.Fatalf("sent %q", p)
			}
			if inflight[id] {
				t.Fatalf("id %d given to a second message in flight", id)
			}
			inflight[id] = true
		}
	}
	send(300) // past bitsThreshold: the bitmap is made
	h.s.Shrink()
	for id := range uint16(100) {
		h.recv(&packet.Puback{PacketID: id + 1})
		delete(inflight, id+1)
	}
	send(300)
	h.s.Shrink()
	send(300)
	if h.s.Inflight() != len(inflight) || len(inflight) != 800 {
		t.Fatalf("%d in flight, %d ids seen; want 800", h.s.Inflight(), len(inflight))
	}
}
