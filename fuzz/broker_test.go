package fuzz_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// FuzzBroker sends arbitrary bytes on a connection after a valid CONNECT.
// Whatever they are, the broker must not crash, and must go on serving other
// clients: after each input, a message published by another client still
// reaches a subscriber connected since the start.
func FuzzBroker(f *testing.F) {
	enc := func(ps ...packet.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			if b, err = p.Append(b); err != nil {
				f.Fatal(err)
			}
		}
		return b
	}
	sub := func(id uint16, filter string, qos byte) *packet.Subscribe {
		return &packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte(filter), QoS: qos}}}
	}
	f.Add([]byte{})
	f.Add(enc(&packet.Pingreq{}, &packet.Disconnect{}))
	f.Add(enc(sub(1, "#", 2), &packet.Publish{Topic: []byte("a/b"), Payload: []byte("x"), QoS: 2, PacketID: 7}, &packet.Pubrel{PacketID: 7}))
	f.Add(enc(&packet.Publish{Topic: []byte("check/r"), Payload: []byte("r"), Retain: true, QoS: 1, PacketID: 1}))
	f.Add(enc(sub(2, "$share/g/check/#", 1), &packet.Puback{PacketID: 1}, &packet.Pubrec{PacketID: 1}, &packet.Pubcomp{PacketID: 9}))
	f.Add(enc(&packet.Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("#"), []byte("x")}}, &packet.Connect{ClientID: []byte("again")}))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x03}) // QoS 3 request
	f.Add([]byte{0x32, 0x05, 0x00, 0x01, '#', 0x00, 0x01})  // wildcard topic
	f.Add(enc(sub(4, "$SYS/#", 2), &packet.Publish{Topic: []byte(broker.SysUptime), Payload: []byte("0 seconds"), Retain: true},
		sub(5, "check/+", 1), &packet.Publish{Topic: []byte("check/denied"), Payload: []byte("d"), Retain: true, QoS: 1, PacketID: 2}))

	srv := mqtttest.NewServer(f, func(o *broker.Options) {
		o.MaxPacketSize = 64 << 10
		o.MaxQueued = 100
		o.ConnectTimeout = time.Second
		// The read check and $SYS run under the fuzzed client too.
		o.AuthorizeRead = func(c *broker.Client, topic []byte) bool { return !bytes.HasSuffix(topic, []byte("/denied")) }
		o.SysInterval = 20 * time.Millisecond
	})
	ctx := context.Background()

	// The watcher and the publisher stay connected through the whole run.
	open := func(id string) (net.Conn, *packet.Reader) {
		c, err := srv.Dial(ctx, "", "")
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(enc(&packet.Connect{ClientID: []byte(id), CleanSession: true})); err != nil {
			f.Fatal(err)
		}
		r := packet.NewReader(c, 0)
		if p, err := r.ReadPacket(); err != nil || p.Type() != packet.CONNACK {
			f.Fatalf("%s: CONNACK: %v %v", id, p, err)
		}
		return c, r
	}
	watcher, wr := open("fuzz-watcher")
	watcher.Write(enc(sub(1, "check/#", 1)))
	if p, err := wr.ReadPacket(); err != nil || p.Type() != packet.SUBACK {
		f.Fatalf("SUBACK: %v %v", p, err)
	}
	publisher, _ := open("fuzz-publisher")
	connect := enc(&packet.Connect{ClientID: []byte("fuzzed"), CleanSession: true, KeepAlive: 60,
		Will: true, WillTopic: []byte("check/will"), WillMessage: []byte("w")})
	seq := 0

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := srv.Dial(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, c)
			close(drained)
		}()
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(connect); err == nil {
			c.Write(data) // the broker may close the connection part way: fine
		}
		c.Close()
		<-drained

		// Another client's message still reaches the watcher.
		seq++
		marker := []byte("marker-" + strconv.Itoa(seq))
		deadline := time.Now().Add(5 * time.Second)
		publisher.SetDeadline(deadline)
		watcher.SetDeadline(deadline)
		if _, err := publisher.Write(enc(&packet.Publish{Topic: []byte("check/ok"), Payload: marker})); err != nil {
			t.Fatalf("publisher: %v", err)
		}
		for {
			p, err := wr.ReadPacket()
			if err != nil {
				t.Fatalf("watcher: %v (broker stats %+v)", err, srv.Broker.Stats())
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				continue
			}
			if pub.QoS == 1 {
				// The fuzzed client's own messages come at QoS 1
				// too: acknowledge them so the window stays open.
				watcher.Write(enc(&packet.Puback{PacketID: pub.PacketID}))
			}
			if string(pub.Topic) == "check/ok" && bytes.Equal(pub.Payload, marker) {
				break
			}
		}
	})
}
