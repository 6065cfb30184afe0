package mqtttest_test

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

// roundTrip connects c as id, subscribes to "t", publishes to it and checks
// that the message comes back.
func roundTrip(t *testing.T, c net.Conn, id string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := packet.NewReader(c, 0)
	w := packet.NewWriter(c)
	for _, p := range []packet.Packet{
		&packet.Connect{ClientID: []byte(id), CleanSession: true},
		&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("t")}}},
		&packet.Publish{Topic: []byte("t"), Payload: []byte(id)},
	} {
		if err := w.WritePacket(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []packet.Packet{
		&packet.Connack{},
		&packet.Suback{PacketID: 1, ReturnCodes: []byte{0}},
		&packet.Publish{Topic: []byte("t"), Payload: []byte(id)},
	} {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("%s: want %v: %v", id, want, err)
		}
		wb, _ := want.Append(nil)
		if !bytes.Equal(got, wb) {
			t.Fatalf("%s: got % x, want %v", id, got, want)
		}
	}
}

func TestNewServer(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("serve", func(t *testing.T) {
		srv := mqtttest.NewServer(t, func(o *broker.Options) { o.MaxQueued = 5 })
		if srv.URL != "mqtt://"+srv.Addr || srv.Broker == nil {
			t.Fatalf("URL %q, Addr %q, Broker %v", srv.URL, srv.Addr, srv.Broker)
		}
		host, _, _ := net.SplitHostPort(srv.Addr)
		if host != "127.0.0.1" {
			t.Errorf("listening on %s, want loopback", srv.Addr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := transport.Dial(ctx, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "tcp")

		// Through a pipe, with transport's dialer hook: the URL's address
		// is not used.
		p, err := transport.Dial(ctx, "mqtt://pipe.invalid:1", &transport.Options{DialContext: srv.Dial})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		roundTrip(t, p, "pipe")
		if n := srv.Broker.Stats().Connections; n != 2 {
			t.Errorf("Stats.Connections = %d, want 2", n)
		}
	})
	// The cleanup closed the server and its connections.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the test, %d before", n, before)
	}
}

// Close may be called by the test itself; Dial then fails.
func TestServerClose(t *testing.T) {
	srv := mqtttest.NewServer(t)
	srv.Close()
	if _, err := srv.Dial(context.Background(), "", ""); err == nil {
		t.Error("Dial after Close succeeded")
	}
	if _, err := net.DialTimeout("tcp", srv.Addr, time.Second); err == nil {
		t.Error("TCP dial after Close succeeded")
	}
}
