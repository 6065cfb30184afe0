package fuzz_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

// FuzzClient connects a client through net.Pipe to a scripted server that
// reads the CONNECT, answers CONNACK (session present or not) and then sends
// the fuzzed bytes, while the client publishes, subscribes and finally
// disconnects. The client must not panic, must return from every call by
// its context's deadline, and must leave no goroutine behind.
func FuzzClient(f *testing.F) {
	enc := func(ps ...packet.Packet) []byte {
		var b []byte
		for _, p := range ps {
			b, _ = p.Append(b)
		}
		return b
	}
	f.Add(false, []byte{})
	f.Add(true, enc(&packet.Pingresp{}))
	f.Add(false, enc(&packet.Publish{Topic: []byte("a/b"), Payload: []byte("x")}))
	f.Add(false, enc(&packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("a"), Payload: []byte("x")},
		&packet.Publish{QoS: 2, PacketID: 2, Topic: []byte("a"), Payload: []byte("y")},
		&packet.Pubrel{PacketID: 2}, &packet.Publish{QoS: 2, Dup: true, PacketID: 2, Topic: []byte("a")}))
	f.Add(true, enc(&packet.Puback{PacketID: 1}, &packet.Pubrec{PacketID: 2}, &packet.Pubcomp{PacketID: 2},
		&packet.Suback{PacketID: 3, ReturnCodes: []byte{1, 0x80}}, &packet.Unsuback{PacketID: 4}))
	f.Add(false, enc(&packet.Suback{PacketID: 1, ReturnCodes: []byte{0}}, &packet.Connack{}))
	f.Add(false, []byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	f.Add(false, []byte{0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00})
	f.Add(false, enc(&packet.Pubrel{PacketID: 9}, &packet.Pubrec{PacketID: 7}, &packet.Puback{PacketID: 77}))

	f.Fuzz(func(t *testing.T, present bool, script []byte) {
		runScript(t, present, script)
		// Leaks: every goroutine of the client ends with Disconnect.
		deadline := time.Now().Add(2 * time.Second)
		for {
			g := clientGoroutines()
			if g == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("goroutines alive after Disconnect:\n%s", g)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func runScript(t *testing.T, present bool, script []byte) {
	srv, cli := net.Pipe()
	defer srv.Close()
	dialed := false
	opts := &transport.Options{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dialed {
			return nil, errors.New("no second connection")
		}
		dialed = true
		return cli, nil
	}}
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		defer srv.Close()
		r := packet.NewReader(srv, 0)
		if _, err := r.ReadPacket(); err != nil {
			return
		}
		ack := packet.Connack{SessionPresent: present}
		b, _ := ack.Append(nil)
		if _, err := srv.Write(append(b, script...)); err != nil {
			return
		}
		// Drain the client's packets until it closes.
		for {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	}()
	c, err := client.New(client.Options{
		Servers:       []string{"tcp://fuzz:1883"},
		ClientID:      "fuzz",
		KeepSession:   true,
		Transport:     opts,
		NoReconnect:   true,
		MaxPending:    4,
		MaxPacketSize: 1 << 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Handle("#", func(m *client.Message) {})
	// Short deadlines: the script rarely answers, and every call then
	// waits for its context.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Connect(ctx); err == nil {
		toks := []*client.Token{
			c.PublishAsync(ctx, "t", 1, false, []byte("1")),
			c.PublishAsync(ctx, "t", 2, true, []byte("2")),
			c.PublishAsync(ctx, "t", 0, false, nil),
		}
		c.Subscribe(ctx, client.Subscription{Filter: "a/#", QoS: 2}, client.Subscription{Filter: "b", QoS: 1})
		c.Unsubscribe(ctx, "b")
		for _, tok := range toks {
			tok.Wait(ctx)
		}
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	c.Disconnect(dctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("calls bounded by 40 ms of contexts took %v", d)
	}
	srv.Close()
	select {
	case <-serverDone:
	case <-time.After(2 * time.Second):
		t.Fatal("scripted server stuck")
	}
}

// clientGoroutines returns the stacks of goroutines running client code.
func clientGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ternmq/mqtt/client.") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
