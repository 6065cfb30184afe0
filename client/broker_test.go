package client_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/transport"
)

// TestTernBroker runs the QoS flows, retained messages and wills against
// tern's own broker, over TCP and over its in-memory pipes.
func TestTernBroker(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	pipe := func(o client.Options) client.Options {
		o.Transport = &transport.Options{DialContext: srv.Dial}
		return o
	}
	ctx := testCtx(t, 20*time.Second)
	sub := connect(t, client.Options{Servers: []string{srv.URL}})
	msgs := sub.Messages()
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "q/+", QoS: 2}, client.Subscription{Filter: "will", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, pipe(client.Options{Servers: []string{"mqtt://pipe"}}))
	for qos := byte(0); qos <= 2; qos++ {
		name := "q/" + strconv.Itoa(int(qos))
		for i := range 50 {
			if err := pub.Publish(ctx, name, qos, false, []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 50 {
			m := recv(t, msgs, 5*time.Second)
			if m.Topic != name || m.QoS != qos || string(m.Payload) != strconv.Itoa(i) {
				t.Fatalf("got %q %q QoS %d, want %q %d QoS %d", m.Topic, m.Payload, m.QoS, name, i, qos)
			}
		}
	}
	w := connect(t, pipe(client.Options{Servers: []string{"mqtt://pipe"}, Will: &client.Will{Topic: "will", Payload: []byte("gone"), QoS: 1}}))
	w.Close()
	if m := recv(t, msgs, 5*time.Second); m.Topic != "will" || string(m.Payload) != "gone" {
		t.Fatalf("got %q %q, want the will", m.Topic, m.Payload)
	}
	if err := pub.Publish(ctx, "r", 1, true, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	late := connect(t, client.Options{Servers: []string{srv.URL}})
	lm := late.Messages()
	if _, err := late.Subscribe(ctx, client.Subscription{Filter: "r", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, lm, 5*time.Second); !m.Retain || string(m.Payload) != "kept" {
		t.Fatalf("retained: %q retain %v", m.Payload, m.Retain)
	}
}
