package peers_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"

	gomqtt "github.com/256dpi/gomqtt/packet"
	paho "github.com/eclipse/paho.mqtt.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2/packets"
	"github.com/ternmq/mqtt/packet"
)

// peerCase is one packet in the form of each library.
type peerCase struct {
	name  string
	tern  packet.Packet
	paho  paho.ControlPacket
	mochi mochi.Packet
	// The mochi codec has one method pair per type, and a validation
	// method for some, which its server calls after decoding; tern's and
	// paho's Decode do their checks themselves.
	mochiEncode   func(*mochi.Packet, *bytes.Buffer) error
	mochiDecode   func(*mochi.Packet, []byte) error
	mochiValidate func(*mochi.Packet) mochi.Code
	// gomqtt encodes into a slice of Len bytes and decodes into a reused
	// value; its Decode does its own checks.
	gomqtt gomqtt.Generic
}

const pubTopic = "sensors/building-1/floor-2/temperature"

func pahoPacket(t byte, fill func(paho.ControlPacket)) paho.ControlPacket {
	p := paho.NewControlPacket(t)
	fill(p)
	return p
}

func publishCase(name string, n int) peerCase {
	payload := bytes.Repeat([]byte("x"), n)
	return peerCase{
		name: name,
		tern: &packet.Publish{QoS: 1, PacketID: 42, Topic: []byte(pubTopic), Payload: payload},
		paho: pahoPacket(paho.Publish, func(p paho.ControlPacket) {
			q := p.(*paho.PublishPacket)
			q.Qos, q.MessageID, q.TopicName, q.Payload = 1, 42, pubTopic, payload
		}),
		mochi: mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Publish, Qos: 1},
			PacketID: 42, TopicName: pubTopic, Payload: payload},
		mochiEncode:   (*mochi.Packet).PublishEncode,
		mochiDecode:   (*mochi.Packet).PublishDecode,
		mochiValidate: func(p *mochi.Packet) mochi.Code { return p.PublishValidate(0) },
		gomqtt:        &gomqtt.Publish{ID: 42, Message: gomqtt.Message{Topic: pubTopic, QOS: 1, Payload: payload}},
	}
}

func ackCase(name string, t byte, tp packet.Packet, gp gomqtt.Generic, enc func(*mochi.Packet, *bytes.Buffer) error, dec func(*mochi.Packet, []byte) error) peerCase {
	var flagQoS byte
	if t == paho.Pubrel {
		flagQoS = 1
	}
	return peerCase{
		name: name,
		tern: tp,
		paho: pahoPacket(t, func(p paho.ControlPacket) {
			switch q := p.(type) {
			case *paho.PubackPacket:
				q.MessageID = 42
			case *paho.PubrecPacket:
				q.MessageID = 42
			case *paho.PubrelPacket:
				q.MessageID = 42
			case *paho.PubcompPacket:
				q.MessageID = 42
			case *paho.UnsubackPacket:
				q.MessageID = 42
			}
		}),
		mochi:       mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: t, Qos: flagQoS}, PacketID: 42},
		mochiEncode: enc,
		mochiDecode: dec,
		gomqtt:      gp,
	}
}

func peerCases() []peerCase {
	const client = "tern-bench-client-0001"
	const will = "clients/tern-bench-client-0001/status"
	filters := []string{"sensors/+/floor-2/#", "alerts/#", "$SYS/broker/uptime"}
	return []peerCase{
		{
			name: "Connect",
			tern: &packet.Connect{Level: packet.Level311, CleanSession: true, KeepAlive: 60, ClientID: []byte(client),
				Will: true, WillQoS: 1, WillTopic: []byte(will), WillMessage: []byte("offline"),
				HasUsername: true, Username: []byte("device"), HasPassword: true, Password: []byte("s3cr3t-t0k3n")},
			paho: pahoPacket(paho.Connect, func(p paho.ControlPacket) {
				q := p.(*paho.ConnectPacket)
				q.ProtocolName, q.ProtocolVersion, q.CleanSession, q.Keepalive, q.ClientIdentifier = "MQTT", 4, true, 60, client
				q.WillFlag, q.WillQos, q.WillTopic, q.WillMessage = true, 1, will, []byte("offline")
				q.UsernameFlag, q.Username, q.PasswordFlag, q.Password = true, "device", true, []byte("s3cr3t-t0k3n")
			}),
			mochi: mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Connect},
				Connect: mochi.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60, ClientIdentifier: client,
					WillFlag: true, WillQos: 1, WillTopic: will, WillPayload: []byte("offline"),
					UsernameFlag: true, Username: []byte("device"), PasswordFlag: true, Password: []byte("s3cr3t-t0k3n")}},
			mochiEncode:   (*mochi.Packet).ConnectEncode,
			mochiDecode:   (*mochi.Packet).ConnectDecode,
			mochiValidate: (*mochi.Packet).ConnectValidate,
			gomqtt: &gomqtt.Connect{Version: gomqtt.Version311, CleanSession: true, KeepAlive: 60, ClientID: client,
				Will:     &gomqtt.Message{Topic: will, Payload: []byte("offline"), QOS: 1},
				Username: "device", Password: "s3cr3t-t0k3n"},
		},
		{
			name: "Connack",
			tern: &packet.Connack{SessionPresent: true},
			paho: pahoPacket(paho.Connack, func(p paho.ControlPacket) { p.(*paho.ConnackPacket).SessionPresent = true }),
			mochi: mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Connack},
				SessionPresent: true},
			mochiEncode: (*mochi.Packet).ConnackEncode,
			mochiDecode: (*mochi.Packet).ConnackDecode,
			gomqtt:      &gomqtt.Connack{SessionPresent: true},
		},
		publishCase("Publish16", 16),
		publishCase("Publish1K", 1024),
		publishCase("Publish64K", 65536),
		ackCase("Puback", paho.Puback, &packet.Puback{PacketID: 42}, &gomqtt.Puback{ID: 42}, (*mochi.Packet).PubackEncode, (*mochi.Packet).PubackDecode),
		ackCase("Pubrec", paho.Pubrec, &packet.Pubrec{PacketID: 42}, &gomqtt.Pubrec{ID: 42}, (*mochi.Packet).PubrecEncode, (*mochi.Packet).PubrecDecode),
		ackCase("Pubrel", paho.Pubrel, &packet.Pubrel{PacketID: 42}, &gomqtt.Pubrel{ID: 42}, (*mochi.Packet).PubrelEncode, (*mochi.Packet).PubrelDecode),
		ackCase("Pubcomp", paho.Pubcomp, &packet.Pubcomp{PacketID: 42}, &gomqtt.Pubcomp{ID: 42}, (*mochi.Packet).PubcompEncode, (*mochi.Packet).PubcompDecode),
		{
			name: "Subscribe",
			tern: &packet.Subscribe{PacketID: 7, Subscriptions: []packet.Subscription{
				{Filter: []byte(filters[0]), QoS: 1}, {Filter: []byte(filters[1]), QoS: 2}, {Filter: []byte(filters[2]), QoS: 0}}},
			paho: pahoPacket(paho.Subscribe, func(p paho.ControlPacket) {
				q := p.(*paho.SubscribePacket)
				q.MessageID, q.Topics, q.Qoss = 7, filters, []byte{1, 2, 0}
			}),
			mochi: mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Subscribe, Qos: 1}, PacketID: 7,
				Filters: mochi.Subscriptions{{Filter: filters[0], Qos: 1}, {Filter: filters[1], Qos: 2}, {Filter: filters[2], Qos: 0}}},
			mochiEncode:   (*mochi.Packet).SubscribeEncode,
			mochiDecode:   (*mochi.Packet).SubscribeDecode,
			mochiValidate: (*mochi.Packet).SubscribeValidate,
			gomqtt: &gomqtt.Subscribe{ID: 7, Subscriptions: []gomqtt.Subscription{
				{Topic: filters[0], QOS: 1}, {Topic: filters[1], QOS: 2}, {Topic: filters[2], QOS: 0}}},
		},
		{
			name: "Suback",
			tern: &packet.Suback{PacketID: 7, ReturnCodes: []byte{1, 2, packet.SubackFailure}},
			paho: pahoPacket(paho.Suback, func(p paho.ControlPacket) {
				q := p.(*paho.SubackPacket)
				q.MessageID, q.ReturnCodes = 7, []byte{1, 2, 0x80}
			}),
			mochi: mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Suback}, PacketID: 7,
				ReasonCodes: []byte{1, 2, 0x80}},
			mochiEncode: (*mochi.Packet).SubackEncode,
			mochiDecode: (*mochi.Packet).SubackDecode,
			gomqtt:      &gomqtt.Suback{ID: 7, ReturnCodes: []gomqtt.QOS{1, 2, gomqtt.QOSFailure}},
		},
		{
			name: "Unsubscribe",
			tern: &packet.Unsubscribe{PacketID: 8, Filters: [][]byte{[]byte(filters[0]), []byte(filters[1])}},
			paho: pahoPacket(paho.Unsubscribe, func(p paho.ControlPacket) {
				q := p.(*paho.UnsubscribePacket)
				q.MessageID, q.Topics = 8, filters[:2]
			}),
			mochi: mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Unsubscribe, Qos: 1}, PacketID: 8,
				Filters: mochi.Subscriptions{{Filter: filters[0]}, {Filter: filters[1]}}},
			mochiEncode:   (*mochi.Packet).UnsubscribeEncode,
			mochiDecode:   (*mochi.Packet).UnsubscribeDecode,
			mochiValidate: (*mochi.Packet).UnsubscribeValidate,
			gomqtt:        &gomqtt.Unsubscribe{ID: 8, Topics: filters[:2]},
		},
		ackCase("Unsuback", paho.Unsuback, &packet.Unsuback{PacketID: 42}, &gomqtt.Unsuback{ID: 42}, (*mochi.Packet).UnsubackEncode, (*mochi.Packet).UnsubackDecode),
		{
			name:        "Pingreq",
			tern:        &packet.Pingreq{},
			paho:        paho.NewControlPacket(paho.Pingreq),
			mochi:       mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Pingreq}},
			mochiEncode: (*mochi.Packet).PingreqEncode,
			mochiDecode: (*mochi.Packet).PingreqDecode,
			gomqtt:      &gomqtt.Pingreq{},
		},
		{
			name:        "Pingresp",
			tern:        &packet.Pingresp{},
			paho:        paho.NewControlPacket(paho.Pingresp),
			mochi:       mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Pingresp}},
			mochiEncode: (*mochi.Packet).PingrespEncode,
			mochiDecode: (*mochi.Packet).PingrespDecode,
			gomqtt:      &gomqtt.Pingresp{},
		},
		{
			name:        "Disconnect",
			tern:        &packet.Disconnect{},
			paho:        paho.NewControlPacket(paho.Disconnect),
			mochi:       mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: mochi.Disconnect}},
			mochiEncode: (*mochi.Packet).DisconnectEncode,
			mochiDecode: (*mochi.Packet).DisconnectDecode,
			gomqtt:      &gomqtt.Disconnect{},
		},
	}
}

// mochiDecode decodes a whole packet as the mochi server does: the fixed
// header byte, the remaining length, the body into a Packet cleared first
// (the server starts from a new one each time), then the validation, if
// the type has one.
func mochiDecode(c *peerCase, pk *mochi.Packet, wire []byte, rd *bytes.Reader) error {
	*pk = mochi.Packet{ProtocolVersion: 4}
	if err := pk.FixedHeader.Decode(wire[0]); err != nil {
		return err
	}
	rd.Reset(wire[1:])
	n, used, err := mochi.DecodeLength(rd)
	if err != nil {
		return err
	}
	pk.FixedHeader.Remaining = n
	if err := c.mochiDecode(pk, wire[1+used:]); err != nil {
		return err
	}
	if c.mochiValidate != nil {
		if code := c.mochiValidate(pk); code != mochi.CodeSuccess {
			return code
		}
	}
	return nil
}

// TestSameBytes checks that the three libraries encode each packet to the
// same bytes, and decode those bytes, so that the benchmarks compare the
// same work.
func TestSameBytes(t *testing.T) {
	for _, c := range peerCases() {
		want, err := c.tern.Append(nil)
		if err != nil {
			t.Fatalf("%s: tern: %v", c.name, err)
		}
		var buf bytes.Buffer
		if err := c.paho.Write(&buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s: paho encodes % x, %v\nwant % x", c.name, head(buf.Bytes()), err, head(want))
		}
		buf.Reset()
		pk := c.mochi
		if err := c.mochiEncode(&pk, &buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s: mochi encodes % x, %v\nwant % x", c.name, head(buf.Bytes()), err, head(want))
		}
		gbuf := make([]byte, c.gomqtt.Len())
		if n, err := c.gomqtt.Encode(gbuf); err != nil || !bytes.Equal(gbuf[:n], want) {
			t.Errorf("%s: gomqtt encodes % x, %v\nwant % x", c.name, head(gbuf[:n]), err, head(want))
		}
		if _, err := gomqttDecoder(c.gomqtt).Decode(want); err != nil {
			t.Errorf("%s: gomqtt decode: %v", c.name, err)
		}
		if _, err := paho.ReadPacket(bytes.NewReader(want)); err != nil {
			t.Errorf("%s: paho decode: %v", c.name, err)
		}
		if err := mochiDecode(&c, new(mochi.Packet), want, new(bytes.Reader)); err != nil {
			t.Errorf("%s: mochi decode: %v", c.name, err)
		}
	}
}

// gomqttDecoder returns a new empty packet of the type of p.
func gomqttDecoder(p gomqtt.Generic) gomqtt.Generic {
	g, err := p.Type().New()
	if err != nil {
		panic(err)
	}
	return g
}

func head(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}

// cpuStart locks the benchmark to its thread and returns the thread's CPU
// time; cpuStop reports the CPU time per operation since then as the metric
// cpu-ns/op. It leaves out work the runtime does on other threads, such as
// most of the garbage collection that allocating codecs cause.
func cpuStart() int64 {
	runtime.LockOSThread()
	return threadCPU()
}

func cpuStop(b *testing.B, start int64) {
	end := threadCPU()
	runtime.UnlockOSThread()
	if start >= 0 && end >= 0 && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, c := range peerCases() {
		size := int64(c.tern.Size())
		b.Run(c.name+"/lib=tern", func(b *testing.B) {
			buf := make([]byte, 0, size)
			b.SetBytes(size)
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				var err error
				if buf, err = c.tern.Append(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
		b.Run(c.name+"/lib=paho", func(b *testing.B) {
			var buf bytes.Buffer
			b.SetBytes(size)
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				buf.Reset()
				if err := c.paho.Write(&buf); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
		b.Run(c.name+"/lib=gomqtt", func(b *testing.B) {
			buf := make([]byte, c.gomqtt.Len())
			b.SetBytes(size)
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				if _, err := c.gomqtt.Encode(buf); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
		b.Run(c.name+"/lib=mochi", func(b *testing.B) {
			var buf bytes.Buffer
			pk := c.mochi
			b.SetBytes(size)
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				buf.Reset()
				if err := c.mochiEncode(&pk, &buf); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, c := range peerCases() {
		wire, err := c.tern.Append(nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/lib=tern", func(b *testing.B) {
			p := packet.New(c.tern.Type())
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				if err := p.Decode(wire); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
		b.Run(c.name+"/lib=paho", func(b *testing.B) {
			// paho decodes only from a stream.
			rd := bytes.NewReader(wire)
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				rd.Reset(wire)
				if _, err := paho.ReadPacket(rd); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
		b.Run(c.name+"/lib=gomqtt", func(b *testing.B) {
			p := gomqttDecoder(c.gomqtt)
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				if _, err := p.Decode(wire); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
		b.Run(c.name+"/lib=mochi", func(b *testing.B) {
			rd := new(bytes.Reader)
			pk := new(mochi.Packet)
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			cpu := cpuStart()
			for b.Loop() {
				if err := mochiDecode(&c, pk, wire, rd); err != nil {
					b.Fatal(err)
				}
			}
			cpuStop(b, cpu)
		})
	}
}

// invalidPackets break one rule of MQTT 3.1.1 each.
var invalidPackets = []struct {
	rule string
	what string
	wire []byte
}{
	{"MQTT-3.3.1-4", "PUBLISH with QoS 3", []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}},
	{"MQTT-3.3.1-2", "PUBLISH QoS 0 with DUP", []byte{0x38, 0x03, 0x00, 0x01, 'a'}},
	{"MQTT-3.3.2-2", "PUBLISH topic with a wildcard", []byte{0x30, 0x05, 0x00, 0x03, 'a', '/', '+'}},
	{"MQTT-4.7.3-1", "PUBLISH with an empty topic", []byte{0x30, 0x03, 0x00, 0x00, 'x'}},
	{"MQTT-1.5.3-1", "PUBLISH topic not UTF-8", []byte{0x30, 0x03, 0x00, 0x01, 0xff}},
	{"MQTT-1.5.3-1", "PUBLISH topic with a surrogate", []byte{0x30, 0x05, 0x00, 0x03, 0xed, 0xa0, 0x80}},
	{"MQTT-1.5.3-2", "PUBLISH topic with U+0000", []byte{0x30, 0x04, 0x00, 0x02, 'a', 0x00}},
	{"MQTT-2.3.1-1", "PUBLISH QoS 1 with packet id 0", []byte{0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00}},
	{"MQTT-2.3.1-1", "PUBACK with packet id 0", []byte{0x40, 0x02, 0x00, 0x00}},
	{"2.2.3", "PUBACK with remaining length 3", []byte{0x40, 0x03, 0x00, 0x01, 0x00}},
	{"MQTT-3.6.1-1", "PUBREL with flags 0000", []byte{0x60, 0x02, 0x00, 0x01}},
	{"MQTT-3.8.3-3", "SUBSCRIBE with no filter", []byte{0x82, 0x02, 0x00, 0x01}},
	{"MQTT-3.8.3-4", "SUBSCRIBE with reserved QoS bits", []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x04}},
	{"MQTT-3.8.3-1", "SUBSCRIBE filter not UTF-8", []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0xc0, 0x00}},
	{"MQTT-3.10.3-2", "UNSUBSCRIBE with no filter", []byte{0xa2, 0x02, 0x00, 0x01}},
	{"MQTT-3.9.3-2", "SUBACK with return code 3", []byte{0x90, 0x03, 0x00, 0x01, 0x03}},
	{"3.2.2.1", "CONNACK with reserved flags", []byte{0x20, 0x02, 0x02, 0x00}},
	{"MQTT-3.2.2-4", "CONNACK session present with a refusal", []byte{0x20, 0x02, 0x01, 0x05}},
	{"MQTT-3.1.2-3", "CONNECT with the reserved flag", []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x00, 0x00, 0x01, 'c'}},
	{"MQTT-3.1.2-22", "CONNECT password without user name", []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x42, 0x00, 0x00, 0x00, 0x01, 'c', 0x00, 0x01, 'p'}},
	{"MQTT-3.1.2-14", "CONNECT with will QoS 3", []byte{0x10, 0x13, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x1e, 0x00, 0x00, 0x00, 0x01, 'c', 0x00, 0x01, 't', 0x00, 0x01, 'm'}},
	{"MQTT-3.1.2-1", "CONNECT with protocol name MQTX", []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'X', 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 'c'}},
	{"MQTT-3.14.1-1", "DISCONNECT with flags 0001", []byte{0xe1, 0x00}},
	{"2.2.3", "PINGREQ with remaining length 1", []byte{0xc0, 0x01, 0x00}},
	{"2.2.3", "remaining length not in its shortest form", []byte{0xc0, 0x80, 0x00}},
	{"2.2.3", "remaining length of five bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}},
}

// TestStrictness decodes packets that each break a rule with the three
// libraries, and logs which accept them (go test -v -run Strictness shows
// the table in README.md). tern must refuse them all.
func TestStrictness(t *testing.T) {
	accepts := func(err error) string {
		if err != nil {
			return "refuses"
		}
		return "ACCEPTS"
	}
	counts := map[string]int{}
	t.Logf("| rule | packet | tern | paho | mochi | gomqtt |")
	for _, c := range invalidPackets {
		_, terr := packet.Decode(c.wire)
		if terr == nil {
			t.Errorf("tern accepts %s", c.what)
		}
		_, perr := paho.ReadPacket(bytes.NewReader(c.wire))
		merr := mochiDecodeAny(c.wire)
		gerr := gomqttDecodeAny(c.wire)
		for lib, err := range map[string]error{"tern": terr, "paho": perr, "mochi": merr, "gomqtt": gerr} {
			if err == nil {
				counts[lib]++
			}
		}
		t.Logf("| %s | %s | %s | %s | %s | %s |", c.rule, c.what, accepts(terr), accepts(perr), accepts(merr), accepts(gerr))
	}
	t.Logf("accepted of %d: tern %d, paho %d, mochi %d, gomqtt %d", len(invalidPackets),
		counts["tern"], counts["paho"], counts["mochi"], counts["gomqtt"])
}

// gomqttDecodeAny decodes any packet with gomqtt, as its stream decoder does:
// DetectPacket finds the type and length, then Decode reads the packet,
// which must use all of its bytes.
func gomqttDecodeAny(wire []byte) error {
	n, t := gomqtt.DetectPacket(wire)
	if n == 0 {
		return errors.New("gomqtt: no packet detected")
	}
	p, err := t.New()
	if err != nil {
		return err
	}
	used, err := p.Decode(wire)
	if err == nil && (used != len(wire) || n != len(wire)) {
		return fmt.Errorf("gomqtt: decoded %d of %d bytes", used, len(wire))
	}
	return err
}

// mochiDecodeAny decodes any packet as the mochi server does, choosing the
// methods by the type in the first byte.
func mochiDecodeAny(wire []byte) error {
	t := wire[0] >> 4
	for _, c := range peerCases() {
		if c.tern.Type() == packet.Type(t) {
			return mochiDecode(&c, new(mochi.Packet), wire, new(bytes.Reader))
		}
	}
	return nil
}
