package broker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// The conformance tests are scripted conversations: raw packets written with
// the packet package over a real TCP connection to the broker, and the exact
// bytes of the expected answers read back.

const scriptTimeout = 5 * time.Second

// quiet is how long expectNothing waits for a packet that must not come.
const quiet = 150 * time.Millisecond

func newServer(t *testing.T, opts ...func(*broker.Options)) *mqtttest.Server {
	t.Helper()
	return mqtttest.NewServer(t, opts...)
}

// script is one client connection driven by a test.
type script struct {
	t    testing.TB
	name string
	c    net.Conn
	r    *packet.Reader

	// held are PUBLISH packets read while ack waited for a PUBREL; the
	// next expectPublish calls return them first.
	held []*packet.Publish
}

// dial opens a TCP connection to srv.
func dial(t testing.TB, srv *mqtttest.Server, name string) *script {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &script{t: t, name: name, c: c, r: packet.NewReader(c, 0)}
}

// connect dials and completes a CONNECT with the client id and CleanSession,
// expecting CONNACK 0 with sessionPresent.
func connect(t testing.TB, srv *mqtttest.Server, id string, clean, sessionPresent bool) *script {
	t.Helper()
	s := dial(t, srv, id)
	s.send(&packet.Connect{ClientID: []byte(id), CleanSession: clean})
	s.expect(&packet.Connack{SessionPresent: sessionPresent})
	return s
}

// connectPipe is connect (clean, no session present) over an in-memory
// pipe, which takes nothing that is not read: no kernel buffer.
func connectPipe(t testing.TB, srv *mqtttest.Server, id string) *script {
	t.Helper()
	nc, err := srv.Dial(context.Background(), "", "")
	if err != nil {
		t.Fatalf("%s: dial: %v", id, err)
	}
	t.Cleanup(func() { nc.Close() })
	s := &script{t: t, name: id, c: nc, r: packet.NewReader(nc, 0)}
	s.send(&packet.Connect{ClientID: []byte(id), CleanSession: true})
	s.expect(&packet.Connack{})
	return s
}

// send writes p.
func (s *script) send(p packet.Packet) {
	s.t.Helper()
	b, err := p.Append(nil)
	if err != nil {
		s.t.Fatalf("%s: encode %v: %v", s.name, p, err)
	}
	s.sendRaw(b)
}

// sendRaw writes bytes as they are.
func (s *script) sendRaw(b []byte) {
	s.t.Helper()
	s.c.SetWriteDeadline(time.Now().Add(scriptTimeout))
	if _, err := s.c.Write(b); err != nil {
		s.t.Fatalf("%s: write: %v", s.name, err)
	}
}

// next reads the next packet's bytes.
func (s *script) next(timeout time.Duration) ([]byte, error) {
	s.c.SetReadDeadline(time.Now().Add(timeout))
	return s.r.Next()
}

// expect reads the next packet and checks that its bytes are exactly those
// of want.
func (s *script) expect(want packet.Packet) {
	s.t.Helper()
	wb, err := want.Append(nil)
	if err != nil {
		s.t.Fatalf("%s: encode %v: %v", s.name, want, err)
	}
	got, err := s.next(scriptTimeout)
	if err != nil {
		s.t.Fatalf("%s: want %v, read error: %v", s.name, want, err)
	}
	if !bytes.Equal(got, wb) {
		s.t.Fatalf("%s: got %s (% x), want %v (% x)", s.name, describe(got), got, want, wb)
	}
}

// expectPacket reads the next packet and returns it decoded (a copy).
func (s *script) expectPacket() packet.Packet {
	s.t.Helper()
	got, err := s.next(scriptTimeout)
	if err != nil {
		s.t.Fatalf("%s: read: %v", s.name, err)
	}
	p, err := packet.Decode(bytes.Clone(got))
	if err != nil {
		s.t.Fatalf("%s: decode % x: %v", s.name, got, err)
	}
	return p
}

// expectPublish reads the next packet, which must be a PUBLISH, and returns
// it.
func (s *script) expectPublish() *packet.Publish {
	s.t.Helper()
	if len(s.held) > 0 {
		p := s.held[0]
		s.held = s.held[1:]
		return p
	}
	p := s.expectPacket()
	pub, ok := p.(*packet.Publish)
	if !ok {
		s.t.Fatalf("%s: got %v, want a PUBLISH", s.name, p)
	}
	return pub
}

// expectClose checks that the server closes the connection without sending
// anything more.
func (s *script) expectClose() {
	s.t.Helper()
	got, err := s.next(scriptTimeout)
	switch {
	case err == nil:
		s.t.Fatalf("%s: got %s, want the connection closed", s.name, describe(got))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err):
	default:
		s.t.Fatalf("%s: want the connection closed, got %v", s.name, err)
	}
}

// expectNothing checks that no packet arrives for a short while and the
// connection stays open.
func (s *script) expectNothing() {
	s.t.Helper()
	got, err := s.next(quiet)
	if err == nil {
		s.t.Fatalf("%s: got %s, want nothing", s.name, describe(got))
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		s.t.Fatalf("%s: want nothing, got %v", s.name, err)
	}
	// The Reader's errors are final: start a new one. Nothing was
	// buffered, since nothing arrived.
	s.r = packet.NewReader(s.c, 0)
}

// subscribe sends a SUBSCRIBE of one filter and expects the SUBACK granting
// qos.
func (s *script) subscribe(id uint16, filter string, qos byte) {
	s.t.Helper()
	s.send(&packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: qos}}})
	s.expect(&packet.Suback{PacketID: id, ReturnCodes: []byte{qos}})
}

// publish sends a PUBLISH and completes its flow as a well-behaved client.
// It returns once the server has routed the message: after a PINGREQ sent
// behind it is answered, since the server handles a connection's packets in
// order (an acknowledgement may leave before the message is routed).
func (s *script) publish(p *packet.Publish) {
	s.t.Helper()
	s.send(p)
	defer func() {
		s.send(&packet.Pingreq{})
		s.expect(&packet.Pingresp{})
	}()
	switch p.QoS {
	case 1:
		s.expect(&packet.Puback{PacketID: p.PacketID})
	case 2:
		s.expect(&packet.Pubrec{PacketID: p.PacketID})
		s.send(&packet.Pubrel{PacketID: p.PacketID})
		s.expect(&packet.Pubcomp{PacketID: p.PacketID})
	}
}

// ack acknowledges a received PUBLISH as a well-behaved client.
func (s *script) ack(p *packet.Publish) {
	s.t.Helper()
	switch p.QoS {
	case 1:
		s.send(&packet.Puback{PacketID: p.PacketID})
	case 2:
		// The PUBREL may come behind other PUBLISH packets already on
		// their way: keep those for expectPublish.
		s.send(&packet.Pubrec{PacketID: p.PacketID})
		for {
			got := s.expectPacket()
			if pub, ok := got.(*packet.Publish); ok {
				s.held = append(s.held, pub)
				continue
			}
			if rel, ok := got.(*packet.Pubrel); !ok || rel.PacketID != p.PacketID {
				s.t.Fatalf("%s: got %v, want PUBREL id=%d", s.name, got, p.PacketID)
			}
			break
		}
		s.send(&packet.Pubcomp{PacketID: p.PacketID})
	}
}

// disconnect sends DISCONNECT and waits for the server to close.
func (s *script) disconnect() {
	s.t.Helper()
	s.send(&packet.Disconnect{})
	s.expectClose()
}

// checkPublish checks the fields of a received PUBLISH (not the packet id,
// which the server chooses).
func checkPublish(t testing.TB, got *packet.Publish, topic, payload string, qos byte, retain bool) {
	t.Helper()
	if string(got.Topic) != topic || string(got.Payload) != payload || got.QoS != qos || got.Retain != retain || got.Dup {
		t.Fatalf("got %v, want PUBLISH topic %q payload %q QoS %d retain %v dup false", got, topic, payload, qos, retain)
	}
	if (qos > 0) != (got.PacketID != 0) {
		t.Fatalf("got packet id %d with QoS %d", got.PacketID, qos)
	}
}

func describe(b []byte) string {
	p, err := packet.Decode(bytes.Clone(b))
	if err != nil {
		return "undecodable packet"
	}
	return p.String()
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

func pub(topic, payload string, qos byte, id uint16) *packet.Publish {
	if qos == 0 {
		id = 0
	}
	return &packet.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, PacketID: id}
}

// waitFor polls cond until it holds or the script timeout passes: for states
// of the server a test cannot observe through a packet (a connection's cleanup
// after close, for instance).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(scriptTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
