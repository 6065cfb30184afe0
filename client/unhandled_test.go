package client_test

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// waitStats waits until cond holds for the client's Stats.
func waitStats(t *testing.T, c *client.Client, what string, cond func(client.Stats) bool) client.Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := c.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeptUntilMessagesIsRead: messages no handler takes, arriving before
// Messages is called, are acknowledged [MQTT-4.5.0-2] and kept for the
// reader, in order.
func TestKeptUntilMessagesIsRead(t *testing.T) {
	t.Parallel()
	c, _, p := startScripted(t, client.Options{})
	defer c.Close()
	for i := uint16(1); i <= 3; i++ {
		p.send(&packet.Publish{QoS: 1, PacketID: i, Topic: []byte("t"), Payload: []byte(strconv.Itoa(int(i)))})
		if ack := p.expect(packet.PUBACK).(*packet.Puback); ack.PacketID != i {
			t.Fatalf("PUBACK %d, want %d", ack.PacketID, i)
		}
	}
	waitStats(t, c, "three kept", func(s client.Stats) bool { return s.Kept == 3 && s.Received == 3 && s.Dropped == 0 })
	msgs := c.Messages()
	for i := 1; i <= 3; i++ {
		if m := recv(t, msgs, 5*time.Second); string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("message %d: %q", i, m.Payload)
		}
	}
	// Later messages follow on the channel.
	p.send(&packet.Publish{Topic: []byte("t"), Payload: []byte("4")})
	if m := recv(t, msgs, 5*time.Second); string(m.Payload) != "4" {
		t.Fatalf("message 4: %q", m.Payload)
	}
	if s := c.Stats(); s.Kept != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestDroppedBeyondMaxPending: beyond MaxPending kept messages, the oldest
// is discarded, with a warning and a count, and still acknowledged
// [MQTT-4.5.0-2], also with ManualAck; with DiscardUnhandled, every one is.
func TestDroppedBeyondMaxPending(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    client.Options
		dropped uint64
		first   string // the first message Messages gives
	}{
		{"kept", client.Options{MaxPending: 2}, 2, "3"},
		{"kept, manual ack", client.Options{MaxPending: 2, ManualAck: true}, 2, "3"},
		{"discarded", client.Options{MaxPending: 2, DiscardUnhandled: true}, 4, "5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log syncBuf
			tc.opts.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
			c, _, p := startScripted(t, tc.opts)
			defer c.Close()
			for i := uint16(1); i <= 4; i++ {
				p.send(&packet.Publish{QoS: 2, PacketID: i, Topic: []byte("t"), Payload: []byte(strconv.Itoa(int(i)))})
			}
			// The two discarded are acknowledged even with ManualAck,
			// which holds the kept ones' until the application's Ack.
			n := 4
			if tc.opts.ManualAck && !tc.opts.DiscardUnhandled {
				n = 2
			}
			for i := 1; i <= n; i++ {
				if rec := p.expect(packet.PUBREC).(*packet.Pubrec); rec.PacketID != uint16(i) {
					t.Fatalf("PUBREC %d, want %d", rec.PacketID, i)
				}
			}
			waitStats(t, c, "drops", func(s client.Stats) bool { return s.Dropped == tc.dropped })
			if !strings.Contains(log.String(), "message without handler discarded") {
				t.Errorf("no log line for the drops:\n%s", log.String())
			}
			msgs := c.Messages()
			p.send(&packet.Publish{QoS: 0, Topic: []byte("t"), Payload: []byte("5")})
			m := recv(t, msgs, 5*time.Second)
			if string(m.Payload) != tc.first {
				t.Errorf("first message read %q, want %q", m.Payload, tc.first)
			}
		})
	}
}

// TestSubscribeWithHandler: the handler given with the subscription gets
// the retained message, which arrives with or right after the SUBACK.
func TestSubscribeWithHandler(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	ctx := testCtx(t, 10*time.Second)
	pub := connect(t, client.Options{Servers: []string{srv.URL}})
	if err := pub.Publish(ctx, "prop/colour", 1, true, []byte("blue")); err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // the race this closes is narrow: run it a few times
		c := connect(t, client.Options{Servers: []string{srv.URL}, DiscardUnhandled: true})
		got := make(chan *client.Message, 1)
		if _, err := c.Subscribe(ctx, client.Subscription{Filter: "prop/+", QoS: 1, Handler: func(m *client.Message) { got <- m }}); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if !m.Retain || string(m.Payload) != "blue" {
				t.Fatalf("run %d: handler got %q retain %v", i, m.Payload, m.Retain)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d: the handler got nothing (stats %+v)", i, c.Stats())
		}
		if s := c.Stats(); s.Dropped != 0 {
			t.Fatalf("run %d: %d dropped", i, s.Dropped)
		}
		c.Close()
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
