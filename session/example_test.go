package session_test

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
)

// A client session and a server session exchange a QoS 2 message through a
// buffer standing in for the network.
func Example() {
	now := time.Now()
	client, _ := session.New(session.Config{Role: session.Client})
	server, _ := session.New(session.Config{Role: session.Server})

	// carry writes what one side has to send and feeds it to the other.
	var buf []byte
	carry := func(from, to *session.Session) {
		buf, _ = from.AppendOutgoing(buf[:0], now)
		r := packet.NewReader(bytes.NewReader(buf), 0)
		for {
			p, err := r.ReadPacket()
			if err == io.EOF {
				return
			}
			if c, ok := p.(*packet.Connect); ok {
				// A broker checks the CONNECT, finds the session by client id,
				// and accepts.
				server.Accept(c, false, now)
				continue
			}
			if err := to.Receive(p, now); err != nil {
				fmt.Println("protocol violation:", err)
				return
			}
			for ev, ok := to.NextEvent(); ok; ev, ok = to.NextEvent() {
				switch ev.Kind {
				case session.EventConnack:
					fmt.Println("client: connected, session present:", ev.SessionPresent)
				case session.EventMessage:
					fmt.Printf("%v: message %q on %q\n", to.Role(), ev.Publish.Payload, ev.Publish.Topic)
				case session.EventPublished:
					fmt.Printf("%v: message %d complete\n", to.Role(), ev.Handle)
				}
			}
		}
	}

	client.Connect(&packet.Connect{ClientID: []byte("sensor-1"), KeepAlive: 30}, now)
	// Taken while the connection is being set up: it waits for the CONNACK.
	h, _ := client.Publish(&packet.Publish{QoS: 2, Topic: []byte("sensors/1/temp"), Payload: []byte("21.5")})
	fmt.Println("client: published message", h)
	carry(client, server) // CONNECT
	carry(server, client) // CONNACK
	carry(client, server) // PUBLISH
	carry(server, client) // PUBREC
	carry(client, server) // PUBREL
	carry(server, client) // PUBCOMP
	// Output:
	// client: published message 1
	// client: connected, session present: false
	// server: message "21.5" on "sensors/1/temp"
	// client: message 1 complete
}
