package client_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
)

// TestMosquittoPacketLimit: mosquitto with max_packet_size closes the
// connection on a larger PUBLISH, again on every resend; the client gives
// the message up after MaxCuts connections. With message_size_limit,
// mosquitto 2.0.11 instead acknowledges the message of a 3.1.1 client and
// drops it, so Publish succeeds: nothing tells the client otherwise.
func TestMosquittoPacketLimit(t *testing.T) {
	t.Parallel()
	big := make([]byte, 2<<20)
	t.Run("max_packet_size", func(t *testing.T) {
		b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_packet_size 1048576"}})
		var connects atomic.Int32
		var events syncBuf
		c := connect(t, client.Options{Servers: []string{b.URL}, ReconnectMin: time.Millisecond, ReconnectMax: 50 * time.Millisecond,
			OnEvent: func(e client.Event) {
				fmt.Fprintf(&events, "%v %v\n", e.Kind, e.Err)
				if e.Kind == client.Connected {
					connects.Add(1)
				}
			}})
		ctx := testCtx(t, 20*time.Second)
		for _, qos := range []byte{1, 2} {
			connects.Store(0)
			err := c.Publish(ctx, "big", qos, false, big)
			var me *client.MessageError
			switch {
			case qos == 2:
				// Never sent twice on a clean session: the first cut
				// gives it up, the cause with it.
				if !errors.Is(err, client.ErrSessionEnded) || !errors.Is(err, client.ErrConnectionLost) {
					t.Fatalf("QoS 2: Publish of 2 MiB = %v, want ErrSessionEnded and the loss", err)
				}
			case !errors.As(err, &me) || me.Attempts != client.DefaultMaxCuts:
				t.Fatalf("QoS %d: Publish of 2 MiB = %v, want a *MessageError", qos, err)
			}
			if n := connects.Load(); n > client.DefaultMaxCuts {
				t.Errorf("QoS %d: %d reconnections for %d attempts; events:\n%s", qos, n, client.DefaultMaxCuts, events.String())
			}
			if err := c.Publish(ctx, "small", qos, false, []byte("x")); err != nil {
				t.Fatalf("QoS %d: the next message: %v", qos, err)
			}
		}
	})
	t.Run("message_size_limit", func(t *testing.T) {
		b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"message_size_limit 1048576"}})
		sub := connect(t, client.Options{Servers: []string{b.URL}})
		msgs := sub.Messages()
		ctx := testCtx(t, 20*time.Second)
		subscribe(t, ctx, sub, "big", 1)
		c := connect(t, client.Options{Servers: []string{b.URL}})
		if err := c.Publish(ctx, "big", 1, false, big); err != nil {
			t.Fatalf("Publish of 2 MiB over message_size_limit = %v", err)
		}
		if err := c.Publish(ctx, "big", 1, false, []byte("small")); err != nil {
			t.Fatal(err)
		}
		if m := recv(t, msgs, 5*time.Second); string(m.Payload) != "small" {
			t.Errorf("subscriber got %d bytes first, want the small message (the big one dropped)", len(m.Payload))
		}
		if s := c.Stats(); s.Lost != 0 {
			t.Errorf("%d connections lost", s.Lost)
		}
	})
}
