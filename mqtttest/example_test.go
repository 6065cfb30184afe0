package mqtttest_test

import (
	"fmt"
	"net"

	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// A Proxy in front of a server cuts the first connection just before the
// server's CONNACK reaches the client, and lets the next one through: the
// situation of a client that must reconnect.
func ExampleProxy() {
	// A server that accepts every CONNECT.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := packet.NewReader(c, 0)
				for {
					p, err := r.ReadPacket()
					if err != nil {
						return
					}
					if p.Type() == packet.CONNECT {
						b, _ := (&packet.Connack{}).Append(nil)
						c.Write(b)
					}
				}
			}()
		}
	}()

	p, err := mqtttest.StartProxy(ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer p.Close()
	p.SetFilter(mqtttest.OnConn(0, mqtttest.OnType(mqtttest.ServerToClient, packet.CONNACK, mqtttest.Cut)))

	connect, _ := (&packet.Connect{CleanSession: true, ClientID: []byte("example")}).Append(nil)
	for range 2 {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			panic(err)
		}
		c.Write(connect)
		reply, err := packet.NewReader(c, 0).ReadPacket()
		if err != nil {
			fmt.Println("connection ended:", err)
		} else {
			fmt.Println("got", reply.Type())
		}
		c.Close()
	}
	for _, f := range p.Frames() {
		fmt.Println(f)
	}
	// Output:
	// connection ended: EOF
	// got CONNACK
	// conn 0 client->server #0 CONNECT (21 bytes)
	// conn 0 server->client #0 CONNACK (4 bytes)
	// conn 1 client->server #0 CONNECT (21 bytes)
	// conn 1 server->client #0 CONNACK (4 bytes)
}
