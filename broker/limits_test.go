package broker_test

import (
	"strings"
	"testing"

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
