package broker

// The messages a bridge carries: out (forward, from the local broker's
// routing) and in (incoming, from the remote broker's), and the retained
// messages sent on each connection.

import (
	"context"
	"errors"
	"time"

	mqttclient "github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/store"
	"github.com/ternmq/mqtt/topic"
)

// forward takes a message routed to the bridge's subscriber. It runs in
// the publisher's router, before the publisher's acknowledgement: a QoS 1
// or 2 message is in the bridge's queue (and its store) when it returns.
func (b *bridge) forward(r *router, p *packet.Publish) bool {
	var rule *bridgeRule
	for i := range b.rules {
		t := &b.rules[i]
		if t.Direction.out() && topic.Match(t.local, p.Topic) {
			rule = t
			break
		}
	}
	if rule == nil {
		return false
	}
	remote := mapTopic(p.Topic, rule.LocalPrefix, rule.RemotePrefix)
	if rule.Pattern == "" {
		remote = rule.RemotePrefix
	}
	retain := r.src != nil && r.src.Retain && !b.cfg.NoOutgoingRetain
	if b.client() == nil {
		// Routed before run made the client, which it does as soon
		// as the store is restored: wait for it, briefly.
		t := time.NewTimer(bridgeStartWait)
		select {
		case <-b.ready:
		case <-t.C:
		case <-b.ctx.Done():
		}
		t.Stop()
		if b.client() == nil {
			b.drop("bridge not started", remote, p.QoS)
			return false
		}
	}
	if p.QoS == 0 && !b.up.Load() {
		b.drop("link down", remote, 0)
		return false
	}
	if !b.marked.Load() {
		b.echo.add(remote, p.Payload)
	}
	// Never a wait for room: the publisher's reader routes this while
	// the store's syncs wait for it (see durable), so a full queue drops
	// the message, counted and logged, as mosquitto's max_queued_messages.
	t := b.c.PublishAsync(doneCtx, remote, p.QoS, retain, p.Payload)
	if err := t.Err(); err != nil {
		why := err.Error()
		if errors.Is(err, context.Canceled) {
			why = "queue full"
		}
		if errors.Is(err, errStoreFailed) {
			b.wake()
		}
		b.drop(why, remote, p.QoS)
		return false
	}
	b.forwarded.Add(1)
	return true
}

// mapTopic maps a topic name from one side of a bridge to the other: prefix
// from is replaced by to. A name that does not start with from, the parent
// level "a" that the filter "a/#" also matches [MQTT-4.7.1-2], keeps its
// name under to, as with mosquitto ("a" under the prefixes "a/" and "b/"
// is "b/a").
func mapTopic[T string | []byte](name T, from, to string) string {
	if len(name) >= len(from) && string(name[:len(from)]) == from {
		name = name[len(from):]
	}
	return to + string(name) // one allocation, a []byte name not copied first
}

// bridgeStateFilter matches the default state topics of bridges, which
// clients may publish even where $SYS is reserved (see sysReserved).
const bridgeStateFilter = "$SYS/broker/connection/+/state"

// bridgeStartWait bounds the wait of a message routed to a bridge before
// its client is made.
const bridgeStartWait = 10 * time.Second

// doneCtx is a context that has ended: PublishAsync with it fails at once
// rather than wait for room.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// drop counts a message lost, and logs the first and every thousandth.
// Echoes are counted apart (see incoming): dropping them is the filter's
// work, and their count must not hold back the first line about a loss.
func (b *bridge) drop(why, remote string, qos byte) {
	b.dropped.Add(1)
	if n := b.lost.Add(1); n == 1 || n%1000 == 0 {
		b.srv.log.Warn("bridge dropped a message", "bridge", b.cfg.Name, "why", why, "topic", remote, "qos", qos, "dropped", n)
	}
}

// incoming publishes a message from the remote broker on the local one.
func (b *bridge) incoming(m *mqttclient.Message) {
	// A QoS 2 message's exchange is written once it is published here
	// (or dropped), exactly once: from then on a resend is answered, not
	// published again.
	// Its local copies and its exchange are written in one group of the
	// store's, kept whole or not at all by a crash (see durable).
	written := m.QoS != 2 || b.store == nil
	var g store.Group
	if !written {
		g = b.srv.dur.st.Begin()
	}
	grouped := !written
	defer func() {
		if !written {
			b.store.published()
		}
		if grouped {
			b.srv.dur.st.End(g)
		}
		b.ack(m)
	}()
	if !b.marked.Load() && b.echo.take(m.Topic, m.Payload) {
		b.dropped.Add(1)
		return
	}
	var rule *bridgeRule
	for i := range b.rules {
		t := &b.rules[i]
		if t.Direction.in() && topic.Match(t.remote, m.Topic) {
			rule = t
			break
		}
	}
	if rule == nil {
		return // a subscription the remote session kept from an older configuration
	}
	local := mapTopic(m.Topic, rule.RemotePrefix, rule.LocalPrefix)
	if rule.Pattern == "" {
		local = rule.LocalPrefix
	}
	if err := topic.ValidName([]byte(local)); err != nil {
		b.drop("bad local topic: "+err.Error(), local, m.QoS)
		return
	}
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: []byte(local), Payload: m.Payload}
	b.publishLocal(&p)
	b.received.Add(1)
	if !written {
		b.store.published() // before the sync, after the local copies
		written = true
	}
}

// ack acknowledges an incoming message to the remote broker: at once
// without a store, or through acker.
func (b *bridge) ack(m *mqttclient.Message) {
	if m.QoS == 0 || b.store == nil {
		m.Ack()
		return
	}
	b.ackMu.Lock()
	b.toAck = append(b.toAck, m)
	b.ackMu.Unlock()
	select {
	case b.ackWake <- struct{}{}:
	default:
	}
}

// acker acknowledges the incoming messages once their local copies are
// durable, many per sync, in the order they came (the client keeps that
// order on the wire anyway [MQTT-4.6.0-2] [MQTT-4.6.0-3]). A message it
// has not acknowledged when the bridge stops is sent again by the remote.
func (b *bridge) acker() {
	defer close(b.ackerEnd)
	var batch []*mqttclient.Message
	for {
		select {
		case <-b.ackWake:
		case <-b.ctx.Done():
			return
		}
		b.ackMu.Lock()
		batch, b.toAck = b.toAck, batch[:0]
		b.ackMu.Unlock()
		if err := b.srv.dur.syncAll(); err != nil {
			// Not acknowledged: the remote sends them again, once
			// the broker runs on a store that works; the bridge
			// stops (see storeFailed).
			b.wake()
			clear(batch)
			continue
		}
		for _, m := range batch {
			m.Ack()
		}
		clear(batch)
	}
}

// publishLocal routes p on the local broker as from the bridge: it does
// not go back out through it.
func (b *bridge) publishLocal(p *packet.Publish) {
	s := b.srv
	r := getRouter()
	r.noLocal = b.local
	r.route(s, p)
	r.noLocal = nil
	r.flushWakes(nil)
	putRouter(r)
}

// sendRetained forwards the local retained messages of the outgoing
// topics, with RETAIN set, as mosquitto's bridge does on every connection:
// the remote broker then holds what was retained here while the link was
// down.
func (b *bridge) sendRetained() {
	var r router
	for i := range b.rules {
		t := &b.rules[i]
		if !t.Direction.out() {
			continue
		}
		r.rets = b.srv.retained.Match(t.local, r.rets[:0])
		for _, m := range r.rets {
			p := packet.Publish{QoS: min(m.qos, t.QoS), Retain: true, Topic: m.topic(), Payload: m.payload()}
			r.src = &p
			b.forward(&r, &p)
		}
	}
}
