package broker_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

// A broker on a loopback port, with a password check and a rule that keeps
// clients out of each other's topics.
func Example() {
	srv := broker.New(broker.Options{
		Authenticate: func(c *broker.Client, password []byte) packet.ReturnCode {
			if c.Username == "" || string(password) != "secret" {
				return packet.RefusedBadUsernameOrPassword
			}
			return packet.Accepted
		},
		AuthorizeSubscribe: func(c *broker.Client, filter []byte, qos byte) byte {
			if !strings.HasPrefix(string(filter), "users/"+c.Username+"/") {
				return packet.SubackFailure
			}
			return qos
		},
	})
	l, err := transport.Listen("mqtt://127.0.0.1:0", nil)
	if err != nil {
		panic(err)
	}
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	// A client, written with the packet package for the example's sake;
	// applications use tern's client package.
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	w := packet.NewWriter(conn)
	w.WritePacket(&packet.Connect{ClientID: []byte("ann-1"), CleanSession: true,
		HasUsername: true, Username: []byte("ann"), HasPassword: true, Password: []byte("secret")})
	w.WritePacket(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{
		{Filter: []byte("users/ann/#"), QoS: 1},
		{Filter: []byte("users/bob/#"), QoS: 1},
	}})
	w.WritePacket(&packet.Publish{Topic: []byte("users/ann/inbox"), Payload: []byte("hello"), QoS: 1, PacketID: 7})
	w.Flush()

	r := packet.NewReader(conn, 0)
	for range 4 {
		p, err := r.ReadPacket()
		if err != nil {
			panic(err)
		}
		fmt.Println(p)
	}
	// Output:
	// CONNACK session=false code=0 (connection accepted)
	// SUBACK id=1 codes=1,failure
	// PUBACK id=7
	// PUBLISH topic="users/ann/inbox" qos=1 id=1 payload=5B "hello"
}
