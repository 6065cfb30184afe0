package session

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// t0 is the clock of the tests; sessions never read the real one.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness drives one session as its peer would: it feeds packets in and
// reads what the session sends, rendered as short strings.
type harness struct {
	t   *testing.T
	s   *Session
	now time.Time
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, s: s, now: t0}
}

// connected returns a harness whose session has a connection up: a client
// that has sent CONNECT and got CONNACK, or a server that accepted one.
func connected(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := newHarness(t, cfg)
	h.connect(false, false)
	return h
}

// connect starts a connection with keepalive 0. For a client it answers the
// CONNECT with a CONNACK carrying present, and returns the packets sent
// after the CONNECT; for a server the packets after the CONNACK.
func (h *harness) connect(clean, present bool) []string {
	h.t.Helper()
	return h.connectKA(clean, present, 0)
}

func (h *harness) connectKA(clean, present bool, keepAlive uint16) []string {
	h.t.Helper()
	c := &packet.Connect{ClientID: []byte("c1"), CleanSession: clean, KeepAlive: keepAlive}
	if h.s.Role() == Client {
		if err := h.s.Connect(c, h.now); err != nil {
			h.t.Fatal(err)
		}
		if out := h.out(); len(out) != 1 || !strings.HasPrefix(out[0], "CONNECT ") {
			h.t.Fatalf("client sent %q, want one CONNECT [MQTT-3.1.0-1]", out)
		}
		h.recv(&packet.Connack{SessionPresent: present})
		return h.out()
	}
	if err := h.s.Accept(c, present, h.now); err != nil {
		h.t.Fatal(err)
	}
	out := h.out()
	if len(out) == 0 || !strings.HasPrefix(out[0], "CONNACK") {
		h.t.Fatalf("server sent %q, want CONNACK first [MQTT-3.2.0-1]", out)
	}
	return out[1:]
}

// recv feeds p to the session, fails on error, and returns the events.
func (h *harness) recv(p packet.Packet) []Event {
	h.t.Helper()
	if err := h.s.Receive(p, h.now); err != nil {
		h.t.Fatalf("Receive(%v): %v", p, err)
	}
	return h.events()
}

func (h *harness) events() []Event {
	var evs []Event
	for e, ok := h.s.NextEvent(); ok; e, ok = h.s.NextEvent() {
		evs = append(evs, e)
	}
	return evs
}

// violation feeds p and checks that it is refused citing rule.
func (h *harness) violation(p packet.Packet, rule string) {
	h.t.Helper()
	err := h.s.Receive(p, h.now)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrProtocol) || e.Rule != rule {
		h.t.Fatalf("Receive(%v) = %v, want a protocol violation of [%s]", p, err, rule)
	}
}

// publish publishes an application message and returns its handle.
func (h *harness) publish(qos byte, payload string) Handle {
	h.t.Helper()
	hd, err := h.s.Publish(&packet.Publish{QoS: qos, Topic: []byte("t"), Payload: []byte(payload)})
	if err != nil {
		h.t.Fatalf("Publish(%d, %q): %v", qos, payload, err)
	}
	return hd
}

// out drains the outbox through Next, checks that AppendOutgoing would
// have produced the same bytes, and renders each packet.
func (h *harness) out() []string {
	h.t.Helper()
	var got []string
	for {
		p, err := h.s.Next(h.now)
		if err != nil {
			h.t.Fatal(err)
		}
		if p == nil {
			return got
		}
		if _, err := p.Append(nil); err != nil {
			h.t.Fatalf("session handed out an invalid packet %v: %v", p, err)
		}
		got = append(got, render(p))
	}
}

// render describes a packet in a few words, for comparisons.
func render(p packet.Packet) string {
	switch p := p.(type) {
	case *packet.Publish:
		dup := ""
		if p.Dup {
			dup = " dup"
		}
		if p.QoS == 0 {
			return fmt.Sprintf("PUBLISH q0 %s", p.Payload)
		}
		return fmt.Sprintf("PUBLISH q%d id%d%s %s", p.QoS, p.PacketID, dup, p.Payload)
	case *packet.Puback:
		return fmt.Sprintf("PUBACK %d", p.PacketID)
	case *packet.Pubrec:
		return fmt.Sprintf("PUBREC %d", p.PacketID)
	case *packet.Pubrel:
		return fmt.Sprintf("PUBREL %d", p.PacketID)
	case *packet.Pubcomp:
		return fmt.Sprintf("PUBCOMP %d", p.PacketID)
	case *packet.Subscribe:
		return fmt.Sprintf("SUBSCRIBE %d %s", p.PacketID, p.Subscriptions[0].Filter)
	case *packet.Unsubscribe:
		return fmt.Sprintf("UNSUBSCRIBE %d %s", p.PacketID, p.Filters[0])
	case *packet.Suback:
		return fmt.Sprintf("SUBACK %d %v", p.PacketID, p.ReturnCodes)
	case *packet.Unsuback:
		return fmt.Sprintf("UNSUBACK %d", p.PacketID)
	case *packet.Connack:
		return fmt.Sprintf("CONNACK present=%v", p.SessionPresent)
	case *packet.Connect:
		return fmt.Sprintf("CONNECT %s clean=%v", p.ClientID, p.CleanSession)
	}
	return p.Type().String()
}

// kinds renders events as their kinds and handles or tags.
func kinds(evs []Event) string {
	var b strings.Builder
	for i, e := range evs {
		if i > 0 {
			b.WriteString(" ")
		}
		switch e.Kind {
		case EventMessage:
			fmt.Fprintf(&b, "msg(%s,tag%d)", e.Publish.Payload, e.Tag)
		case EventPublished:
			fmt.Fprintf(&b, "done(%d)", e.Handle)
		case EventDropped:
			fmt.Fprintf(&b, "dropped(%d)", e.Handle)
		default:
			b.WriteString(e.Kind.String())
		}
	}
	return b.String()
}

func eq(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func pub(qos byte, id uint16, dup bool, payload string) *packet.Publish {
	return &packet.Publish{QoS: qos, PacketID: id, Dup: dup, Topic: []byte("t"), Payload: []byte(payload)}
}

// roles runs f for a client and for a server session, for the flows the
// two share.
func roles(t *testing.T, f func(t *testing.T, role Role)) {
	for _, r := range []Role{Client, Server} {
		t.Run(r.String(), func(t *testing.T) { f(t, r) })
	}
}
