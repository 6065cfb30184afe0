package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
)

// These tests run the broker over fakeStore, which can show what a restart
// after kill -9 would find at any instant (crash, durable).

func storeServer(t *testing.T, fs *fakeStore, opts ...func(*broker.Options)) *mqtttest.Server {
	t.Helper()
	return newServer(t, append([]func(*broker.Options){func(o *broker.Options) { o.Store = fs }}, opts...)...)
}

// TestDurableRestart: the state of persistent sessions is kept across a
// broker crash, keyed by client identifier: subscriptions, queued QoS 1 and
// 2 messages, retained messages. Clean sessions are never written.
func TestDurableRestart(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs)

	s1 := connect(t, srv, "s1", false, false)
	s1.subscribe(1, "a/+", 2)
	s1.subscribe(2, "b/#", 1)
	s1.disconnect()
	s2 := connect(t, srv, "s2", false, false)
	s2.subscribe(1, "a/#", 1)
	s2.disconnect()
	c1 := connect(t, srv, "c1", true, false)
	c1.subscribe(1, "a/+", 2)

	p := connect(t, srv, "p", false, false)
	p.publish(pub("a/x", "m1", 1, 1))
	p.publish(pub("a/y", "m2", 2, 2))
	p.publish(pub("b/z", "m3", 1, 3))
	p.publish(&packet.Publish{Topic: []byte("r/t"), Payload: []byte("kept"), QoS: 1, Retain: true, PacketID: 4})
	for range 2 { // a/x and a/y
		c1.ack(c1.expectPublish())
	}

	// Everything acknowledged is durable now: kill -9 keeps it.
	crashed := fs.crash()
	srv.Close()
	if fs.wrote("c1") {
		t.Errorf("the clean session c1 was written to the store")
	}
	srv = storeServer(t, crashed)

	// [MQTT-4.1.0-1] The session state outlives the connection and the
	// broker's process; [MQTT-3.1.3-2] it is found by the client id: s1
	// and s2 each get their own messages at their own subscription's QoS.
	s1 = connect(t, srv, "s1", false, true) // [MQTT-3.2.2-2]
	for _, want := range []struct {
		topic, payload string
		qos            byte
	}{{"a/x", "m1", 1}, {"a/y", "m2", 2}, {"b/z", "m3", 1}} {
		got := s1.expectPublish()
		checkPublish(t, got, want.topic, want.payload, want.qos, false)
		s1.ack(got)
	}
	s1.expectNothing()
	s2 = connect(t, srv, "s2", false, true)
	for _, want := range []string{"m1", "m2"} {
		got := s2.expectPublish()
		checkPublish(t, got, "a/"+map[string]string{"m1": "x", "m2": "y"}[want], want, 1, false)
		s2.ack(got)
	}
	s2.expectNothing()
	// The subscriptions are back too.
	p = connect(t, srv, "p", false, true)
	p.publish(pub("a/w", "m4", 2, 5))
	checkPublish(t, s1.expectPublish(), "a/w", "m4", 2, false)
	checkPublish(t, s2.expectPublish(), "a/w", "m4", 1, false)

	// The clean session left nothing behind; the retained message is back.
	c1 = connect(t, srv, "c1", false, false)
	c1.subscribe(1, "r/#", 1)
	checkPublish(t, c1.expectPublish(), "r/t", "kept", 1, true)
	if st := srv.Broker.Stats(); st.Retained != 1 {
		t.Errorf("Stats.Retained = %d after restart, want 1", st.Retained)
	}
}

// TestDurableSessionLastsWithConnection: a persistent session whose client
// is connected when the broker crashes is restored, with what was queued
// for it and not yet acknowledged, and resent [MQTT-4.1.0-2] [MQTT-4.4.0-1].
func TestDurableSessionLastsWithConnection(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs, func(o *broker.Options) { o.MaxInflight = 2 })
	s := connect(t, srv, "s", false, false)
	s.subscribe(1, "t", 1)
	p := connect(t, srv, "p", true, false)
	for i := range 5 {
		p.publish(pub("t", fmt.Sprint(i), 1, uint16(i+1)))
	}
	first := s.expectPublish() // not acknowledged: in flight at the crash
	checkPublish(t, first, "t", "0", 1, false)
	crashed := fs.crash()
	srv.Close()

	srv = storeServer(t, crashed)
	s = connect(t, srv, "s", false, true)
	for i := range 5 {
		got := s.expectPublish()
		if string(got.Payload) != fmt.Sprint(i) || got.QoS != 1 {
			t.Fatalf("after restart got %v, want payload %d QoS 1", got, i)
		}
		if i == 0 && (!got.Dup || got.PacketID != first.PacketID) {
			t.Errorf("resent %v, want DUP with packet id %d", got, first.PacketID)
		}
		s.ack(got)
	}
	s.expectNothing()
}

// TestDurableAckAfterSync: when a publisher reads its PUBACK or PUBREC, the
// message is durable for every persistent session it is queued for and as
// retained; when a client reads its SUBACK, the subscription is durable.
// The store's state is taken at the instant each acknowledgement is read,
// as kill -9 would find it.
func TestDurableAckAfterSync(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs, func(o *broker.Options) { o.MaxQueued = 10000 })
	filters := map[string]string{"s1": "f/+/x", "s2": "f/#", "s3": "+/a/+"}
	for id, f := range filters {
		s := connect(t, srv, id, false, false)
		s.send(&packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{{Filter: []byte(f), QoS: 2}}})
		s.expect(&packet.Suback{PacketID: 7, ReturnCodes: []byte{2}})
		if q, ok := fs.durable().sessions[id].subs[f]; !ok || q != 2 {
			t.Fatalf("SUBACK read while the subscription of %s to %s is not durable", id, f)
		}
		s.disconnect()
	}

	const n = 300
	done := make(chan error, 2)
	for pi, id := range []string{"p1", "p2"} {
		p := connect(t, srv, id, pi == 0, false)
		go func() {
			done <- publishAll(p, pi, n, fs, filters)
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// publishAll sends n messages at once, then reads their acknowledgements,
// checking at each that the store holds the message durably.
func publishAll(p *script, pi, n int, fs *fakeStore, filters map[string]string) error {
	var buf []byte
	for i := range n {
		m := &packet.Publish{QoS: byte(1 + i%2), PacketID: uint16(i + 1), Payload: []byte(fmt.Sprintf("p%d-%d", pi, i))}
		m.Topic = []byte(fmt.Sprintf("f/a/x%d", i%3))
		if i%3 == 2 {
			m.Topic = []byte(fmt.Sprintf("f/a/r%d-%d", pi, i))
			m.Retain = true
		}
		buf, _ = m.Append(buf)
	}
	p.c.SetWriteDeadline(time.Now().Add(scriptTimeout))
	if _, err := p.c.Write(buf); err != nil {
		return err
	}
	for i := range n {
		b, err := p.next(scriptTimeout)
		if err != nil {
			return fmt.Errorf("p%d: ack %d: %v", pi, i, err)
		}
		st := fs.durable()
		payload := fmt.Sprintf("p%d-%d", pi, i)
		topic := fmt.Sprintf("f/a/x%d", i%3)
		if i%3 == 2 {
			topic = fmt.Sprintf("f/a/r%d-%d", pi, i)
			if r, ok := st.retained[topic]; !ok || string(r.Payload) != payload {
				return fmt.Errorf("p%d: acknowledgement %d (% x) read while the retained message on %s is not durable", pi, i, b, topic)
			}
		}
		for id, f := range filters {
			if !matches(f, topic) {
				continue
			}
			found := false
			for _, m := range st.sessions[id].msgs {
				found = found || string(m.Payload) == payload
			}
			if !found {
				return fmt.Errorf("p%d: acknowledgement %d (% x) read while message %s is not durable for %s", pi, i, b, payload, id)
			}
		}
	}
	return nil
}

// matches is topic matching for the filters of TestDurableAckAfterSync.
func matches(filter, topic string) bool {
	f := bytes.Split([]byte(filter), []byte("/"))
	n := bytes.Split([]byte(topic), []byte("/"))
	for i, l := range f {
		if string(l) == "#" {
			return true
		}
		if i >= len(n) || (string(l) != "+" && !bytes.Equal(l, n[i])) {
			return false
		}
	}
	return len(f) == len(n)
}

// TestDurablePubrelAfterSync: the broker sends PUBREL only once the
// message's released state is durable, so that after a crash it resends the
// PUBREL, never the PUBLISH [MQTT-4.3.3-1].
func TestDurablePubrelAfterSync(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs)
	s := connect(t, srv, "s", false, false)
	s.subscribe(1, "t", 2)
	p := connect(t, srv, "p", true, false)
	p.publish(pub("t", "once", 2, 1))
	got := s.expectPublish()
	s.send(&packet.Pubrec{PacketID: got.PacketID})
	s.expect(&packet.Pubrel{PacketID: got.PacketID})
	st := fs.durable().sessions["s"]
	if ps := st.payloads(); len(ps) != 1 || ps[0] != "once/"+session.StateReleased.String() {
		t.Fatalf("PUBREL read while the store holds %v, want [once/released]", ps)
	}
	crashed := fs.crash()
	srv.Close()

	srv = storeServer(t, crashed)
	s = connect(t, srv, "s", false, true)
	s.expect(&packet.Pubrel{PacketID: got.PacketID})
	s.send(&packet.Pubcomp{PacketID: got.PacketID})
	s.expectNothing()
}

// TestDurableCleanEndsStored: a clean connection deletes the kept session
// from the store before its CONNACK [MQTT-3.1.2-6].
func TestDurableCleanEndsStored(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs)
	s := connect(t, srv, "s", false, false)
	s.subscribe(1, "t", 1)
	s.disconnect()
	s = connect(t, srv, "s", true, false)
	if _, ok := fs.durable().sessions["s"]; ok {
		t.Fatalf("CONNACK of a clean connection read while its kept session is still stored")
	}
	s.disconnect()
	srv.Close()
	srv = storeServer(t, fs.restart())
	connect(t, srv, "s", false, false)
}

// TestSessionExpiry: a persistent session not connected for
// Options.SessionExpiry is deleted, in memory and in the store, and
// counted; one that expired while the broker was stopped is not restored.
func TestSessionExpiry(t *testing.T) {
	fs := newFakeStore(t)
	const expiry = 60 * time.Millisecond
	srv := storeServer(t, fs, func(o *broker.Options) { o.SessionExpiry = expiry })
	s := connect(t, srv, "gone", false, false)
	s.subscribe(1, "t", 1)
	s.disconnect()
	keep := connect(t, srv, "kept", false, false)
	keep.subscribe(1, "t", 1)
	waitFor(t, "the session to expire", func() bool {
		st := srv.Broker.Stats()
		return st.Expired == 1 && st.Sessions == 1
	})
	if _, ok := fs.all().sessions["gone"]; ok {
		t.Errorf("the expired session is still in the store")
	}
	if _, ok := fs.all().sessions["kept"]; !ok {
		t.Errorf("the connected session was deleted from the store")
	}
	connect(t, srv, "gone", false, false).disconnect()
	keep.disconnect()
	srv.Close()

	time.Sleep(expiry)
	srv = storeServer(t, fs.restart(), func(o *broker.Options) { o.SessionExpiry = expiry })
	connect(t, srv, "kept", false, false) // expired while stopped: not restored
	if st := srv.Broker.Stats(); st.Expired != 2 {
		t.Errorf("Stats.Expired = %d after restart, want 2 (both expired while stopped)", st.Expired)
	}

	// Without a store too.
	srv = newServer(t, func(o *broker.Options) { o.SessionExpiry = expiry })
	s = connect(t, srv, "m", false, false)
	s.disconnect()
	waitFor(t, "the session to expire", func() bool { return srv.Broker.Stats().Expired == 1 })
	connect(t, srv, "m", false, false)
}

// TestDurableIncomingAfterRouting: the packet id of an incoming QoS 2
// message is written after the copies routed to the persistent sessions,
// so that a crash between them cannot make the publisher's resend look
// like a duplicate of a message that is not stored for every subscriber.
func TestDurableIncomingAfterRouting(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs)
	s := connect(t, srv, "s", false, false)
	s.subscribe(1, "t/#", 2)
	s.disconnect()
	p := connect(t, srv, "p", false, false)
	p.publish(pub("t/1", "m", 2, 9))

	fs.mu.Lock()
	defer fs.mu.Unlock()
	saved, incoming := -1, -1
	for i, op := range fs.ops {
		switch {
		case op.kind == opSaveMessage && op.id == "s" && string(op.msg.Payload) == "m":
			saved = i
		case op.kind == opSaveIncoming && op.id == "p" && op.in.PacketID == 9:
			incoming = i
		}
	}
	if saved < 0 || incoming < 0 || incoming < saved {
		t.Fatalf("the subscriber's copy is write %d, the publisher's incoming id write %d: want the copy first", saved, incoming)
	}
}

// TestDurableSyncOutsideLocks: while the store's Sync is stuck (a slow
// fsync), routers still deliver to the clients whose writer waits for it,
// and clients whose packets do not depend on it still get them: the sync
// runs in the writer, outside every lock.
func TestDurableSyncOutsideLocks(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs)
	q0 := connect(t, srv, "q0", true, false)
	q0.subscribe(1, "t", 0)
	ps := connect(t, srv, "ps", false, false)
	ps.subscribe(1, "t", 1)

	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	fs.mu.Lock()
	fs.beforeSync = func() {
		once.Do(func() {
			entered <- struct{}{}
			<-release
		})
	}
	fs.mu.Unlock()
	defer once.Do(func() {}) // a Sync after the test does not wait
	defer close(release)

	p1 := connect(t, srv, "p1", true, false)
	p1.send(pub("t", "first", 1, 1)) // stored for ps: its PUBACK waits for the Sync
	select {
	case <-entered:
	case <-time.After(scriptTimeout):
		t.Fatal("no Sync before the PUBACK")
	}
	// The Sync is stuck. Another publisher's messages are still routed
	// to ps (stored, under its lock) and to q0, which gets them.
	p2 := connect(t, srv, "p2", true, false)
	for i := range 3 {
		p2.send(pub("t", fmt.Sprint(i), 0, 0))
	}
	checkPublish(t, q0.expectPublish(), "t", "first", 0, false)
	for i := range 3 {
		checkPublish(t, q0.expectPublish(), "t", fmt.Sprint(i), 0, false)
	}
	p1.expectNothing() // its PUBACK waits for the Sync
	release <- struct{}{}
	p1.expect(&packet.Puback{PacketID: 1})
}

// TestDurableLog: the same restart with store.Log on disk, stopped cleanly
// (Shutdown, then the Log's Close) and opened again.
func TestDurableLog(t *testing.T) {
	dir := t.TempDir()
	open := func() *store.Log {
		lg, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return lg
	}
	lg := open()
	srv := newServer(t, func(o *broker.Options) { o.Store = lg })
	s := connect(t, srv, "s", false, false)
	s.subscribe(1, "a/#", 2)
	s.disconnect()
	p := connect(t, srv, "p", true, false)
	p.publish(pub("a/1", "one", 1, 1))
	p.publish(pub("a/2", "two", 2, 2))
	p.publish(&packet.Publish{Topic: []byte("a/r"), Payload: []byte("kept"), QoS: 1, Retain: true, PacketID: 3})
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	if err := srv.Broker.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}

	lg = open()
	defer lg.Close()
	srv = newServer(t, func(o *broker.Options) { o.Store = lg })
	s = connect(t, srv, "s", false, true)
	for _, want := range []struct {
		topic, payload string
		qos            byte
	}{{"a/1", "one", 1}, {"a/2", "two", 2}, {"a/r", "kept", 1}} {
		got := s.expectPublish()
		checkPublish(t, got, want.topic, want.payload, want.qos, false)
		s.ack(got)
	}
	s.expectNothing()
	if st := srv.Broker.Stats(); st.Retained != 1 || st.Sessions != 1 {
		t.Errorf("Stats after restart: %d retained, %d sessions; want 1 and 1", st.Retained, st.Sessions)
	}
}

// TestDurableStatsAfterRestart: the restored sessions and subscriptions are
// counted like the others.
func TestDurableStatsAfterRestart(t *testing.T) {
	fs := newFakeStore(t)
	srv := storeServer(t, fs)
	s := connect(t, srv, "s", false, false)
	s.subscribe(1, "a", 1)
	s.subscribe(2, "b", 1)
	s.disconnect()
	srv.Close()
	srv = storeServer(t, fs.restart())
	connect(t, srv, "other", true, false)
	if st := srv.Broker.Stats(); st.Sessions != 2 || st.Subscriptions != 2 {
		t.Fatalf("after restart: %d sessions, %d subscriptions; want 2 and 2", st.Sessions, st.Subscriptions)
	}
	s = connect(t, srv, "s", true, false) // ends the kept session
	s.disconnect()
	waitFor(t, "the clean session to end", func() bool {
		st := srv.Broker.Stats()
		return st.Sessions == 1 && st.Subscriptions == 0
	})
}

// TestDurableStoreFailed: once the store fails, nothing that depends on it
// is acknowledged or sent, and the rest goes on: clean sessions connect and
// get their messages; a persistent session is refused (CONNACK 0x03); the
// failure is logged once.
func TestDurableStoreFailed(t *testing.T) {
	fs := newFakeStore(t)
	logs := new(lockedBuffer)
	srv := storeServer(t, fs, func(o *broker.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))
	})
	cs := connect(t, srv, "cs", true, false)
	cs.subscribe(1, "t", 1)
	ps := connect(t, srv, "ps", false, false)
	ps.subscribe(1, "t", 1)
	p1 := connect(t, srv, "p1", true, false)

	fs.breakWith(errors.New("disk gone"))
	// ps's copy cannot be stored: no PUBACK, and the publisher is cut off
	// (it sends the message again elsewhere or later).
	p1.send(pub("t", "lost", 1, 1))
	p1.expectClose()
	// Clean sessions depend on nothing stored.
	p2 := connect(t, srv, "p2", true, false)
	p2.publish(pub("t", "after", 0, 0))
	for {
		got := cs.expectPublish() // "lost" may come first: cs does not depend on the store
		if string(got.Payload) == "after" {
			break
		}
		cs.ack(got)
	}
	// ps's session made a write that failed: its connection ends, at the
	// latest when it has something to send ("after").
	for {
		b, err := ps.next(scriptTimeout)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
				t.Fatalf("ps: want the connection closed, got %v", err)
			}
			break
		}
		if p := describe(b); packet.Type(b[0]>>4) != packet.PUBLISH || strings.Contains(p, "after") {
			t.Fatalf("ps: got %s, want the connection closed", p)
		}
	}

	// [MQTT-3.2.2-4] [MQTT-3.2.2-5] A persistent session, new or kept, is
	// refused, with Session Present 0, and the connection closed.
	for _, id := range []string{"ps", "new"} {
		c := dial(t, srv, id)
		c.send(&packet.Connect{ClientID: []byte(id)})
		c.expect(&packet.Connack{ReturnCode: packet.RefusedServerUnavailable})
		c.expectClose()
	}

	if n := strings.Count(logs.String(), `msg="store failed`); n != 1 {
		t.Errorf("%d error lines about the store's failure, want 1; log:\n%s", n, logs.String())
	}
}
