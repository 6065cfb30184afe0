package broker_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// readAll acknowledges and collects the PUBLISH packets s receives until
// nothing comes for a while, as "topic payload" with " retained" added for
// RETAIN, sorted.
func readAll(s *script) []string {
	s.t.Helper()
	var got []string
	for {
		b, err := s.next(quiet)
		if err != nil {
			s.r = packet.NewReader(s.c, 0) // a timeout is final for the Reader
			break
		}
		p, err := packet.Decode(b)
		if err != nil {
			s.t.Fatalf("%s: decode: %v", s.name, err)
		}
		pub, ok := p.(*packet.Publish)
		if !ok {
			s.t.Fatalf("%s: got %v, want PUBLISH", s.name, p)
		}
		line := string(pub.Topic) + " " + string(pub.Payload)
		if pub.Retain {
			line += " retained"
		}
		got = append(got, line)
		s.ack(pub.Clone())
	}
	slices.Sort(got)
	return got
}

// TestAuthorizeRead: a subscriber granted "#", "+/+" and "/#" whose
// AuthorizeRead denies one topic receives every message, live and retained,
// except those of that topic; another subscriber, not denied, gets them.
// Retained messages come once per matching subscription [MQTT-3.3.1-6];
// live ones once per client [MQTT-3.3.5-1].
func TestAuthorizeRead(t *testing.T) {
	var mu sync.Mutex
	asked := map[string]int{}
	var srv *mqtttest.Server
	srv = newServer(t, func(o *broker.Options) {
		o.AuthorizeRead = func(c *broker.Client, topic []byte) bool {
			srv.Broker.Stats() // a hook may call the Server
			mu.Lock()
			asked[c.ID+" "+string(topic)]++
			mu.Unlock()
			return c.ID != "s" || string(topic) != "a/denied"
		}
		o.AuthorizePublish = func(c *broker.Client, topic []byte, qos byte, retain bool) bool {
			return !strings.HasPrefix(string(topic), "ro/")
		}
	})
	p := connect(t, srv, "p", true, false)
	for _, topic := range []string{"a/b", "a/denied", "/x", "c"} {
		p.publish(&packet.Publish{Topic: []byte(topic), Payload: []byte("r"), Retain: true})
	}

	s := connect(t, srv, "s", true, false)
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("#"), QoS: 1}, {Filter: []byte("+/+"), QoS: 1}, {Filter: []byte("/#"), QoS: 1},
	}})
	s.expect(&packet.Suback{PacketID: 1, ReturnCodes: []byte{1, 1, 1}})
	o := connect(t, srv, "o", true, false)
	o.subscribe(1, "a/+", 1)
	wantRetained := []string{
		"/x r retained", "/x r retained", "/x r retained", // #, +/+ and /#
		"a/b r retained", "a/b r retained", // # and +/+
		"c r retained", // #
	}
	if got := readAll(s); !slices.Equal(got, wantRetained) {
		t.Errorf("s got the retained messages\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantRetained, "\n"))
	}
	if got, want := readAll(o), []string{"a/b r retained", "a/denied r retained"}; !slices.Equal(got, want) {
		t.Errorf("o got the retained messages %q, want %q", got, want)
	}

	for i, topic := range []string{"a/b", "a/denied", "/x", "c", "a/b/c", "ro/x", "ro/y"} {
		p.publish(pub(topic, "live", byte(i%3), uint16(i+1))) // ro/...: acknowledged and dropped [MQTT-3.3.5-2]
	}
	want := []string{"/x live", "a/b live", "a/b/c live", "c live"}
	if got := readAll(s); !slices.Equal(got, want) {
		t.Errorf("s got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := readAll(o), []string{"a/b live", "a/denied live"}; !slices.Equal(got, want) {
		t.Errorf("o got %q, want %q", got, want)
	}

	mu.Lock()
	defer mu.Unlock()
	// One check per delivery: per client for live messages (after the
	// overlapping subscriptions are merged), per retained message sent.
	for key, n := range map[string]int{"s a/denied": 1 + 2, "s /x": 1 + 3, "o a/denied": 1 + 1, "s ro/x": 0} {
		if asked[key] != n {
			t.Errorf("AuthorizeRead(%s) asked %d times, want %d", key, asked[key], n)
		}
	}
	if st := srv.Broker.Stats(); st.Received != 4+5 || st.Dropped != 0 {
		t.Errorf("Stats: %d received, %d dropped; want 9 (4 retained, 5 live: the two ro/ messages refused), 0", st.Received, st.Dropped)
	}
}

// TestAuthorizeReadShared: a shared subscription's message goes to a member
// that may read it: a member picked in turn that may not passes its turn to
// the next, and the group loses nothing (mosquitto drops it).
func TestAuthorizeReadShared(t *testing.T) {
	var denied atomic.Int32
	srv := newServer(t, func(o *broker.Options) {
		o.AuthorizeRead = func(c *broker.Client, topic []byte) bool {
			if c.ID == "m2" && strings.HasSuffix(string(topic), "/secret") {
				denied.Add(1)
				return false
			}
			return true
		}
	})
	m1 := connect(t, srv, "m1", true, false)
	m1.subscribe(1, "$share/g/t/#", 0)
	m2 := connect(t, srv, "m2", true, false)
	m2.subscribe(1, "$share/g/t/#", 0)
	p := connect(t, srv, "p", true, false)
	var want []string
	for i := range 4 {
		for _, kind := range []string{"open", "secret"} {
			topic := fmt.Sprintf("t/%d/%s", i, kind)
			p.publish(pub(topic, "x", 0, 0))
			want = append(want, topic+" x")
		}
	}
	got1, got2 := readAll(m1), readAll(m2)
	for _, m := range got2 {
		if strings.Contains(m, "secret") {
			t.Errorf("m2 got %q", m)
		}
	}
	// Whichever member's turn comes first, m2 takes some of the open
	// topics: a pass does not take m2 out of the turns.
	if len(got2) == 0 {
		t.Errorf("m2 got nothing (denied %d times): want members taken in turn", denied.Load())
	}
	got := append(got1, got2...)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the group got %q, want each of %q once", got, want)
	}
	if st := srv.Broker.Stats(); st.Dropped != 0 {
		t.Errorf("Stats.Dropped = %d, want 0", st.Dropped)
	}
}
