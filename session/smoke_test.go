package session

import (
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

func TestSmoke(t *testing.T) {
	now := time.Unix(0, 0)
	c, _ := New(Config{Role: Client})
	sv, _ := New(Config{Role: Server})
	conn := &packet.Connect{ClientID: []byte("a"), KeepAlive: 30}
	if err := c.Connect(conn, now); err != nil {
		t.Fatal(err)
	}
	pump := func(from, to *Session) {
		for {
			p, err := from.Next(now)
			if err != nil {
				t.Fatal(err)
			}
			if p == nil {
				return
			}
			b, _ := p.Append(nil)
			q, err := packet.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := q.(*packet.Connect); ok {
				if err := to.Accept(q.(*packet.Connect), false, now); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := to.Receive(q, now); err != nil {
				t.Fatal(err)
			}
			for e, ok := to.NextEvent(); ok; e, ok = to.NextEvent() {
				t.Logf("%v %+v", to.role, e.Kind)
			}
		}
	}
	pump(c, sv)
	pump(sv, c)
	for qos := byte(0); qos < 3; qos++ {
		if _, err := c.Publish(&packet.Publish{QoS: qos, Topic: []byte("t"), Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		pump(c, sv)
		pump(sv, c)
	}
	if c.Inflight() != 0 {
		t.Fatal(c.Inflight())
	}
}
