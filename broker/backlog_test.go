package broker_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
)

// publishRetained publishes n retained messages at qos on prefix/0 to
// prefix/n-1, each payload size bytes long and ending with its number.
func publishRetained(p *script, prefix string, n, size int, qos byte) {
	for i := range n {
		body := bytes.Repeat([]byte{'x'}, size)
		copy(body[size-4:], fmt.Sprintf("%04d", i))
		m := &packet.Publish{Topic: []byte(fmt.Sprintf("%s/%d", prefix, i)), Payload: body, QoS: qos, Retain: true}
		if qos > 0 {
			m.PacketID = uint16(i + 1)
		}
		p.publish(m)
	}
}

// retainedServer starts a server whose sessions hold one message in flight
// and one queued, and publishes n retained messages at qos on t/0 to t/n-1
// (see publishRetained) with the client it returns.
func retainedServer(t *testing.T, n, size int, qos byte) (*mqtttest.Server, *script) {
	srv := newServer(t, func(o *broker.Options) {
		o.MaxInflight = 1
		o.MaxQueued = 1
	})
	p := connect(t, srv, "p", true, false)
	publishRetained(p, "t", n, size, qos)
	return srv, p
}

// [MQTT-3.3.1-6] A new subscription gets every matching retained message,
// however many more than its queue holds: those that do not fit wait, and
// join the queue as the subscriber takes what is in it. None is dropped.
func TestRetainedBacklog(t *testing.T) {
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			const n, size = 60, 4 << 10
			srv := newServer(t, func(o *broker.Options) {
				o.MaxQueuedBytes = 16 << 10 // three or four of them
			})
			p := connect(t, srv, "p", true, false)
			publishRetained(p, "r", n, size, qos)
			sub := connect(t, srv, "sub", true, false)
			sub.subscribe(1, "r/#", 2)
			seen := make(map[string]bool)
			for range n {
				got := sub.expectPublish()
				if !got.Retain || got.QoS != qos || len(got.Payload) != size {
					t.Fatalf("got %s retain=%v qos %d, %d bytes; want retained at QoS %d of %d bytes", got.Topic, got.Retain, got.QoS, len(got.Payload), qos, size)
				}
				if want := fmt.Sprintf("%04s", strings.TrimPrefix(string(got.Topic), "r/")); string(got.Payload[size-4:]) != want {
					t.Fatalf("%s carries %q, want %q", got.Topic, got.Payload[size-4:], want)
				}
				if seen[string(got.Topic)] {
					t.Fatalf("%s came twice", got.Topic)
				}
				seen[string(got.Topic)] = true
				sub.ack(got)
			}
			sub.expectNothing()
			if st := srv.Broker.Stats(); st.Dropped != 0 {
				t.Errorf("Stats.Dropped = %d, want 0", st.Dropped)
			}
		})
	}
}

// [MQTT-4.6.0-6] A retained message waiting in the backlog is not sent after
// a newer message to its topic: the newer one, queued live, takes its place.
// One retained since the subscription is sent as retained now.
func TestRetainedBacklogSuperseded(t *testing.T) {
	const n, size = 30, 4 << 10
	srv := newServer(t, func(o *broker.Options) {
		o.MaxInflight = 1
		// One retained message and about forty small ones.
		o.MaxQueuedBytes = size + 40*(session.QueuedOverhead+16)
	})
	p := connect(t, srv, "p", true, false)
	publishRetained(p, "t", n, size, 1)
	sub := connect(t, srv, "sub", true, false)
	sub.subscribe(1, "t/#", 1)
	// Nothing is acknowledged yet: one in flight, one queued, the rest
	// wait in the backlog as the live messages come.
	for i := range n {
		p.publish(&packet.Publish{Topic: []byte(fmt.Sprintf("t/%d", i)), Payload: []byte("live"), QoS: 1, PacketID: uint16(i + 1)})
	}
	live := make(map[string]bool)
	retained := make(map[string]bool)
	for len(live) < n {
		got := sub.expectPublish()
		tp := string(got.Topic)
		switch {
		case got.Retain && live[tp]:
			t.Fatalf("retained %s came after the live message to it", tp)
		case got.Retain && retained[tp]:
			t.Fatalf("retained %s came twice", tp)
		case got.Retain:
			retained[tp] = true
		case string(got.Payload) != "live" || live[tp]:
			t.Fatalf("got %s %q retain=%v", tp, got.Payload, got.Retain)
		default:
			live[tp] = true
		}
		sub.ack(got)
	}
	sub.expectNothing()
	if len(retained) == n {
		t.Errorf("every retained message came before the live ones: the backlog was never used")
	}
	if st := srv.Broker.Stats(); st.Dropped != 0 {
		t.Errorf("Stats.Dropped = %d, want 0", st.Dropped)
	}
}

// A retained message replaced while it waits in the backlog goes out with
// its new value; one cleared goes out not at all. The live copies of these
// changes are dropped here, the queue being full, so only the backlog can
// carry them.
func TestRetainedBacklogChanged(t *testing.T) {
	const n, size = 10, 4 << 10
	srv, p := retainedServer(t, n, size, 1)
	sub := connect(t, srv, "sub", true, false)
	sub.subscribe(1, "t/#", 1)
	first := sub.expectPublish() // in flight; one more queued, eight waiting
	replaced := make(map[string]string)
	for i := range n {
		tp := fmt.Sprintf("t/%d", i)
		if tp == string(first.Topic) {
			continue
		}
		if i%2 == 0 {
			replaced[tp] = fmt.Sprint("new", i)
			p.publish(&packet.Publish{Topic: []byte(tp), Payload: []byte(replaced[tp]), QoS: 1, PacketID: 1, Retain: true})
		} else {
			p.publish(&packet.Publish{Topic: []byte(tp), QoS: 1, PacketID: 1, Retain: true}) // cleared
		}
	}
	if st := srv.Broker.Stats(); st.Dropped != n-1 {
		t.Fatalf("Stats.Dropped = %d, want the %d live copies dropped", st.Dropped, n-1)
	}
	sub.ack(first)
	queued := sub.expectPublish() // taken before the changes
	if len(queued.Payload) != size {
		t.Fatalf("the queued %s came with %q, want its value before the changes", queued.Topic, queued.Payload)
	}
	sub.ack(queued)
	delete(replaced, string(queued.Topic))
	for len(replaced) > 0 {
		m := sub.expectPublish()
		sub.ack(m)
		want, ok := replaced[string(m.Topic)]
		if !ok || !m.Retain || string(m.Payload) != want {
			t.Fatalf("got %s %.10q retain=%v, want one of %v", m.Topic, m.Payload, m.Retain, replaced)
		}
		delete(replaced, string(m.Topic))
	}
	sub.expectNothing() // nothing for the cleared ones
}

// A clean session that ends with retained messages still waiting counts
// them as discarded; a persistent one keeps them for its next connection,
// and a Server with a Store that closes counts and logs those it keeps.
func TestRetainedBacklogEnds(t *testing.T) {
	const n, size = 10, 4 << 10
	logs := new(lockedBuffer)
	fs := newFakeStore(t)
	srv := storeServer(t, fs, func(o *broker.Options) {
		o.MaxInflight = 1
		o.MaxQueued = 1
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	p := connect(t, srv, "p", true, false)
	publishRetained(p, "t", n, size, 1)

	c := connect(t, srv, "clean", true, false)
	c.subscribe(1, "t/#", 1)
	c.expectPublish()
	c.disconnect()
	waitFor(t, "the clean session's end", func() bool { return srv.Broker.Stats().Discarded == n })

	k := connect(t, srv, "kept", false, false)
	k.subscribe(1, "t/#", 1)
	m := k.expectPublish()
	k.c.Close()
	waitFor(t, "kept to go away", func() bool { return srv.Broker.Stats().Connections == 1 })
	k = connect(t, srv, "kept", false, true)
	for i := range 3 { // the one in flight again, then from the queue and the backlog
		got := k.expectPublish()
		if i == 0 && (!bytes.Equal(got.Topic, m.Topic) || !got.Dup) {
			t.Fatalf("got %s dup=%v first, want %s again", got.Topic, got.Dup, m.Topic)
		}
		k.ack(got)
	}
	k.c.Close()
	waitFor(t, "kept to go away", func() bool { return srv.Broker.Stats().Connections == 1 })
	srv.Close()
	// In flight: 1, queued: 1, waiting: 10-3-2.
	if got := srv.Broker.Stats().Discarded; got != n+n-5 {
		t.Errorf("Stats.Discarded = %d, want %d", got, n+n-5)
	}
	if !strings.Contains(logs.String(), "retained messages not yet queued") || !strings.Contains(logs.String(), fmt.Sprintf("messages=%d", n-5)) {
		t.Errorf("no log line of the %d retained messages discarded at Close:\n%s", n-5, logs.String())
	}
}

// [MQTT-3.10.4-2] Once a subscription is removed, the retained messages it
// matched that still wait in the backlog are not sent: before, a client that
// had unsubscribed got the values published after its UNSUBACK.
func TestRetainedBacklogUnsubscribed(t *testing.T) {
	const n, size = 10, 4 << 10
	srv, p := retainedServer(t, n, size, 1)
	sub := connect(t, srv, "sub", true, false)
	sub.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("t/#"), QoS: 1}, {Filter: []byte("t/1"), QoS: 1}}}) // t/1 stays
	sub.expect(&packet.Suback{PacketID: 1, ReturnCodes: []byte{1, 1}})
	first := sub.expectPublish() // in flight; one more queued, the rest waiting
	sub.send(&packet.Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("t/#")}})
	got := map[string]bool{string(first.Topic): true}
	for {
		pk := sub.expectPacket()
		if _, ok := pk.(*packet.Unsuback); ok {
			break
		}
		m := pk.(*packet.Publish) // t/1's copy for its own subscription, maybe
		got[string(m.Topic)] = true
	}
	for i := range n {
		p.publish(&packet.Publish{Topic: []byte(fmt.Sprintf("t/%d", i)), Payload: []byte("new"), QoS: 1, PacketID: 1, Retain: true})
	}
	sub.ack(first)
	for {
		m, err := sub.next(quiet)
		if err != nil {
			break
		}
		pk, _ := packet.Decode(m)
		pub, ok := pk.(*packet.Publish)
		if !ok {
			t.Fatalf("got %v", pk)
		}
		if string(pub.Topic) != "t/1" && string(pub.Payload) == "new" {
			t.Fatalf("got %s %q, published after the UNSUBACK", pub.Topic, pub.Payload)
		}
		got[string(pub.Topic)] = true
		sub.ack(pub)
	}
	if !got["t/1"] {
		t.Errorf("t/1, still subscribed, did not come: %v", got)
	}
}

// Retained messages on topics starting with '$' that clients published
// wait in the backlog like the others: they were looked up among the
// broker's $SYS topics, not found, and lost without a count.
func TestRetainedBacklogDollar(t *testing.T) {
	const n, size = 60, 4 << 10
	srv := newServer(t, func(o *broker.Options) {
		o.MaxQueuedBytes = 16 << 10
	})
	p := connect(t, srv, "p", true, false)
	publishRetained(p, "$app", n, size, 1)
	sub := connect(t, srv, "sub", true, false)
	sub.subscribe(1, "$app/#", 1)
	seen := make(map[string]bool)
	for range n {
		m := sub.expectPublish()
		seen[string(m.Topic)] = true
		sub.ack(m)
	}
	sub.expectNothing()
	if len(seen) != n {
		t.Errorf("%d distinct topics of %d", len(seen), n)
	}
}

// [MQTT-3.8.4-3] [MQTT-3.8.4-6] A SUBSCRIBE that replaces a subscription at
// a lower QoS sends the retained messages again at that QoS, those waiting
// in the backlog included: they went out at the QoS of the replaced one.
func TestRetainedBacklogResubscribed(t *testing.T) {
	const n, size = 10, 4 << 10
	srv, _ := retainedServer(t, n, size, 2)
	sub := connect(t, srv, "sub", true, false)
	sub.subscribe(1, "t/#", 2)
	first := sub.expectPublish() // in flight; one more queued, the rest waiting
	sub.subscribe(2, "t/#", 0)
	sub.ack(first)
	atQoS0 := make(map[string]bool)
	qos2 := 0
	for len(atQoS0) < n {
		m := sub.expectPublish()
		if m.QoS == 0 {
			atQoS0[string(m.Topic)] = true
		} else if qos2++; qos2 > 1 {
			t.Fatalf("got %s at QoS %d after the SUBACK granting 0: only the message queued before may", m.Topic, m.QoS)
		}
		sub.ack(m)
	}
	sub.expectNothing()
}
