package broker_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// deep returns a topic of n levels.
func deep(n int) string {
	return strings.Repeat("a/", n-1) + "a"
}

// Topics are bounded to broker.MaxTopicLevels levels, as in mosquitto: a
// deeper filter is refused with the failure code, a PUBLISH or will to a
// deeper topic closes the connection, and Server.Publish returns an error.
func TestMaxTopicLevels(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	ok, over := deep(broker.MaxTopicLevels), deep(broker.MaxTopicLevels+1)
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(ok), QoS: 1}, {Filter: []byte(over + "/#"), QoS: 1}, {Filter: []byte("+/" + over), QoS: 0}}})
	s.expect(&packet.Suback{PacketID: 1, ReturnCodes: []byte{1, packet.SubackFailure, packet.SubackFailure}})

	p := connect(t, srv, "p", true, false)
	p.publish(&packet.Publish{Topic: []byte(ok), Payload: []byte("x"), QoS: 1, PacketID: 1, Retain: true})
	got := s.expectPublish()
	checkPublish(t, got, ok, "x", 1, false)
	s.ack(got)
	if st := srv.Broker.Stats(); st.Retained != 1 {
		t.Errorf("Stats.Retained = %d, want 1", st.Retained)
	}
	p.send(&packet.Publish{Topic: []byte(over), Payload: []byte("x"), Retain: true})
	p.expectClose()
	s.expectNothing()

	w := dial(t, srv, "w")
	w.send(&packet.Connect{ClientID: []byte("w"), CleanSession: true, Will: true, WillTopic: []byte(over), WillMessage: []byte("x")})
	w.expectClose()

	if err := srv.Broker.Publish(&packet.Publish{Topic: []byte(over)}); err == nil {
		t.Error("Server.Publish to a topic too deep succeeded")
	}
	if st := srv.Broker.Stats(); st.Retained != 1 {
		t.Errorf("Stats.Retained = %d after the refusals, want 1", st.Retained)
	}
}

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A large QoS 1 message in flight to several subscribers that do not
// acknowledge it is held once, shared by their sessions, not once per
// session: 8 MiB messages to 5 such subscribers took the broker to 4 times
// mosquitto's memory.
func TestLargeMessageShared(t *testing.T) {
	const subs, msgs, size = 5, 10, 128 << 10
	srv := newServer(t)
	var ss []*script
	for i := range subs {
		s := connect(t, srv, fmt.Sprint("s", i), true, false)
		s.subscribe(1, "big", 1)
		ss = append(ss, s)
	}
	p := connect(t, srv, "p", true, false)
	payload := make([]byte, size)
	send := func(id uint16) {
		p.publish(&packet.Publish{Topic: []byte("big"), Payload: payload, QoS: 1, PacketID: id})
		for _, s := range ss {
			s.expectPublish() // read, never acknowledged
		}
	}
	send(1) // the readers' buffers grow to a message
	before := heapInUse()
	for i := range msgs {
		send(uint16(i + 2))
	}
	grew := heapInUse() - before
	t.Logf("heap grew by %.1f MiB for %d messages of %d KiB in flight to %d subscribers", float64(grew)/(1<<20), msgs, size>>10, subs)
	if grew > 3*msgs*size {
		t.Errorf("heap grew by %d KiB: the sessions hold a copy each", grew>>10)
	}
	runtime.KeepAlive(ss)
}

// A writer holds one bounded batch of its session's messages at a time:
// subscribers that stop reading, each with 10 messages of 128 KiB in
// flight, cost the broker about one message each besides the shared
// copies, not the rest again in a write buffer each (1,280 MB for 25
// messages of 8 MiB to 5 slow subscribers, against mosquitto's 240 MB).
func TestWriterBatchBounded(t *testing.T) {
	const subs, msgs, size = 5, 10, 128 << 10
	srv := newServer(t)
	var ss []*script
	for i := range subs {
		s := connectPipe(t, srv, fmt.Sprint("s", i)) // no kernel buffer: the writer blocks
		s.subscribe(1, "big", 1)
		ss = append(ss, s)
	}
	p := connect(t, srv, "p", true, false)
	payload := make([]byte, size)
	for _, s := range ss {
		s.r = packet.NewReader(s.c, 2*size) // large enough for the messages
	}
	before := heapInUse()
	for i := range msgs {
		p.publish(&packet.Publish{Topic: []byte("big"), Payload: payload, QoS: 1, PacketID: uint16(i + 1)})
	}
	// Each writer is blocked on its first message, the others waiting:
	// take it, and the writer takes its next batch and blocks again.
	for _, s := range ss {
		s.expectPublish()
	}
	time.Sleep(50 * time.Millisecond)
	grew := heapInUse() - before
	t.Logf("heap grew by %.1f MiB for %d messages of %d KiB to %d subscribers that stopped reading", float64(grew)/(1<<20), msgs, size>>10, subs)
	// The shared messages, and a message's worth per writer.
	if limit := uint64(msgs*size + 3*subs*size + 1<<20); grew > limit {
		t.Errorf("heap grew by %d KiB, more than %d KiB: the writers hold all their messages again", grew>>10, limit>>10)
	}
	runtime.KeepAlive(ss)
}

// A persistent session whose client has gone keeps what the session needs,
// not its last connection: it kept the connection through the client's
// description, and with it the socket and its read buffer, 6.9 KB per
// offline session with one subscription (mosquitto: about 1 KB).
func TestOfflineSessionCost(t *testing.T) {
	const n = 2000
	srv := newServer(t)
	before := heapInUse()
	for i := range n {
		s := connect(t, srv, fmt.Sprint("s", i), false, false)
		s.subscribe(1, fmt.Sprint("sess/", i), 1)
		s.disconnect()
		s.c.Close()
	}
	waitFor(t, "the connections to end", func() bool { return srv.Broker.Stats().Connections == 0 })
	per := (heapInUse() - before) / n
	t.Logf("%d bytes per offline session, this test's own connections included", per)
	if per > 3500 {
		t.Errorf("%d bytes per offline session", per)
	}
}

// The levels of a shared subscription's filter are counted after
// "$share/{group}/".
func TestMaxTopicLevelsShared(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	ok, over := "$share/g/"+deep(broker.MaxTopicLevels), "$share/g/"+deep(broker.MaxTopicLevels+1)
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(ok), QoS: 1}, {Filter: []byte(over), QoS: 1}}})
	s.expect(&packet.Suback{PacketID: 1, ReturnCodes: []byte{1, packet.SubackFailure}})
}
