package session

import (
	"errors"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// TestAbandon drops the message a broker keeps cutting the connection for:
// OldestSent names it, Abandon frees its packet id, removes it from the
// Store and lets the queue move up.
func TestAbandon(t *testing.T) {
	store := NewMemoryStore()
	h := connected(t, Config{Role: Client, MaxInflight: 1, Store: store})
	big := h.publish(1, "big")
	next := h.publish(1, "next")
	eq(t, "first connection", h.out(), "PUBLISH q1 id1 big")
	got, tp, size, ok := h.s.OldestSent()
	if !ok || got != big || string(tp) != "t" || size != len("t")+len("big") {
		t.Fatalf("OldestSent = %d, %d, %v; want %d", got, size, ok, big)
	}
	h.s.Disconnected()
	if _, _, _, ok := h.s.OldestSent(); ok {
		t.Error("OldestSent after Disconnected: nothing was sent on this connection")
	}
	if err := h.s.Abandon(big); err != nil {
		t.Fatal(err)
	}
	if k := kinds(h.events()); k != "dropped(1)" {
		t.Errorf("events %s, want dropped(1)", k)
	}
	if err := h.s.Abandon(big); !errors.Is(err, ErrUnknownHandle) {
		t.Errorf("second Abandon: %v", err)
	}
	// The next message takes the freed slot and id on reconnection.
	eq(t, "second connection", h.connect(false, true), "PUBLISH q1 id2 next")
	if k := kinds(h.recv(&packet.Puback{PacketID: 2})); k != "done(2)" {
		t.Errorf("events %s", k)
	}
	n := 0
	store.Load(func(*Message) error { n++; return nil }, func(Incoming) error { return nil })
	if n != 0 || next != 2 {
		t.Errorf("%d messages left in the store", n)
	}
}

// TestAbandonReleased: a QoS 2 message whose PUBREC arrived is the
// receiver's; it cannot be abandoned.
func TestAbandonReleased(t *testing.T) {
	h := connected(t, Config{Role: Client})
	m := h.publish(2, "x")
	h.out()
	h.recv(&packet.Pubrec{PacketID: 1})
	if err := h.s.Abandon(m); !errors.Is(err, ErrUnknownHandle) {
		t.Errorf("Abandon after PUBREC: %v", err)
	}
	if _, _, _, ok := h.s.OldestSent(); ok {
		t.Error("OldestSent names a message whose PUBREC arrived")
	}
}
