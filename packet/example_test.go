package packet_test

import (
	"bytes"
	"fmt"
	"io"
	"log"

	"github.com/ternmq/mqtt/packet"
)

func ExamplePublish_Append() {
	p := &packet.Publish{QoS: 1, PacketID: 7, Topic: []byte("sensors/1/temp"), Payload: []byte("21.5")}
	buf := make([]byte, 0, 64) // reused across packets: Append allocates nothing when it has room
	buf, err := p.Append(buf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("% x\n", buf)
	// Output:
	// 32 16 00 0e 73 65 6e 73 6f 72 73 2f 31 2f 74 65 6d 70 00 07 32 31 2e 35
}

func ExampleReader() {
	// A stream as a server might receive it: CONNECT, PUBLISH, DISCONNECT.
	var stream bytes.Buffer
	w := packet.NewWriter(&stream)
	w.WritePacket(&packet.Connect{Level: packet.Level311, CleanSession: true, KeepAlive: 30, ClientID: []byte("dev1")})
	w.WritePacket(&packet.Publish{Topic: []byte("hello"), Payload: []byte("world")})
	w.WritePacket(&packet.Disconnect{})
	w.Flush()

	r := packet.NewReader(&stream, 0)
	for {
		p, err := r.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err) // an *packet.Error says which rule the peer broke
		}
		switch p := p.(type) {
		case *packet.Connect:
			fmt.Printf("client %s, keepalive %ds\n", p.ClientID, p.KeepAlive)
		case *packet.Publish:
			// p.Payload aliases the Reader's buffer: copy it, or p.Clone(),
			// to keep it past the next ReadPacket.
			fmt.Printf("%s: %s\n", p.Topic, p.Payload)
		default:
			fmt.Println(p)
		}
	}
	// Output:
	// client dev1, keepalive 30s
	// hello: world
	// DISCONNECT
}
