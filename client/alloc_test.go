package client_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

// ackServer is a server over net.Pipe that accepts the connection and
// acknowledges every QoS 1 PUBLISH, allocating nothing per packet.
func ackServer(t *testing.T) *transport.Options {
	return &transport.Options{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, srv := net.Pipe()
		t.Cleanup(func() { srv.Close() })
		go func() {
			r := packet.NewReader(srv, 0)
			if _, err := r.Next(); err != nil {
				return
			}
			srv.Write([]byte{0x20, 2, 0, 0})
			ack := []byte{0x40, 2, 0, 0}
			for {
				b, err := r.Next()
				if err != nil {
					return
				}
				if b[0]>>4 == byte(packet.PUBLISH) && b[0]&0x06 == 0x02 {
					// The packet id follows the topic.
					n := 2 // fixed header: type byte and a one-byte length in these tests
					tl := int(b[n])<<8 | int(b[n+1])
					ack[2], ack[3] = b[n+2+tl], b[n+3+tl]
					if _, err := srv.Write(ack); err != nil {
						return
					}
				}
			}
		}()
		return c, nil
	}}
}

// TestPublishAllocs holds the publish path to its allocation budget: the
// message is encoded straight into the write buffer.
func TestPublishAllocs(t *testing.T) {
	c, err := client.New(client.Options{Servers: []string{"mqtt://pipe"}, Transport: ackServer(t), KeepAlive: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 64)
	for _, tc := range []struct {
		name string
		max  float64
		f    func()
	}{
		{"PublishAsync QoS 0", 0, func() { c.PublishAsync(ctx, "a/b", 0, false, payload) }},
		{"Publish QoS 0", 0, func() { c.Publish(ctx, "a/b", 0, false, payload) }},
		{"Publish QoS 1", 0, func() { c.Publish(ctx, "a/b", 1, false, payload) }},
		{"PublishAsync QoS 1 waited", 2, func() { c.PublishAsync(ctx, "a/b", 1, false, payload).Wait(ctx) }}, // the Token and its channel
		{"10 PublishAsync QoS 1", 11, func() { // a Token each, the last one's channel
			var tok *client.Token
			for range 10 {
				tok = c.PublishAsync(ctx, "a/b", 1, false, payload)
			}
			tok.Wait(ctx)
		}},
	} {
		tc.f() // warm up buffers
		if got := testing.AllocsPerRun(1000, tc.f); got > tc.max {
			t.Errorf("%s: %.1f allocations, want at most %.0f", tc.name, got, tc.max)
		}
	}
}

// TestReceiveAllocs: a received message costs two allocations, the Message
// and one buffer for its topic and payload.
func TestReceiveAllocs(t *testing.T) {
	srvc := make(chan net.Conn, 1)
	topts := &transport.Options{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, srv := net.Pipe()
		t.Cleanup(func() { srv.Close() })
		srvc <- srv
		return c, nil
	}}
	got := make(chan struct{}, 1)
	c, err := client.New(client.Options{Servers: []string{"mqtt://pipe"}, Transport: topts, KeepAlive: -1,
		DefaultHandler: func(*client.Message) { got <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Connect(ctx) }()
	srv := <-srvc
	r := packet.NewReader(srv, 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	srv.Write([]byte{0x20, 2, 0, 0})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { // drain whatever the client sends
		for {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	}()
	pub, _ := (&packet.Publish{Topic: []byte("a/b"), Payload: make([]byte, 64)}).Append(nil)
	f := func() {
		srv.Write(pub)
		<-got
	}
	f()
	if n := testing.AllocsPerRun(1000, f); n > 2 {
		t.Errorf("%.1f allocations per received message, want at most 2", n)
	}
}
