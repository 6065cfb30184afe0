package client_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
)

// TestLargeMessageFromBroker: a message as large as tern's broker lets
// through by default (here 2 MiB and 15 MiB) reaches a subscriber with the
// client's defaults, once, on its first connection: the client takes what
// the broker does. (With the 1 MiB limit of before, the 2 MiB message ended
// the subscriber's connection, came again on the next, and never arrived.)
func TestLargeMessageFromBroker(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	ctx := testCtx(t, 30*time.Second)
	got := make(chan *client.Message, 4)
	var connects atomic.Int32
	sub := connect(t, client.Options{Servers: []string{srv.URL}, ClientID: "large-sub", KeepSession: true,
		DefaultHandler: func(m *client.Message) { got <- m },
		OnEvent: func(e client.Event) {
			if e.Kind == client.Connected {
				connects.Add(1)
			}
		}})
	subscribe(t, ctx, sub, "large", 1)
	pub := connect(t, client.Options{Servers: []string{srv.URL}})
	for _, size := range []int{2 << 20, 15 << 20} {
		payload := bytes.Repeat([]byte{'x'}, size)
		if err := pub.Publish(ctx, "large", 1, false, payload); err != nil {
			t.Fatalf("publish %d bytes: %v", size, err)
		}
		select {
		case m := <-got:
			if len(m.Payload) != size {
				t.Fatalf("got %d bytes, want %d", len(m.Payload), size)
			}
		case <-ctx.Done():
			t.Fatalf("%d bytes: not received", size)
		}
	}
	select {
	case m := <-got:
		t.Fatalf("a second delivery of %d bytes", len(m.Payload))
	case <-time.After(200 * time.Millisecond):
	}
	if n := connects.Load(); n != 1 {
		t.Errorf("%d connections for the subscriber, want 1", n)
	}
}

// TestTooLargeMessageLogged: a message over the subscriber's MaxPacketSize
// cannot be received; the client says so at error level, naming the option.
func TestTooLargeMessageLogged(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	ctx := testCtx(t, 30*time.Second)
	var log syncBuf
	sub := connect(t, client.Options{Servers: []string{srv.URL}, MaxPacketSize: 1 << 20, ReconnectMin: 10 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelError})),
		DefaultHandler: func(*client.Message) {}})
	subscribe(t, ctx, sub, "toolarge", 0)
	pub := connect(t, client.Options{Servers: []string{srv.URL}})
	if err := pub.Publish(ctx, "toolarge", 0, false, make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(log.String(), "Options.MaxPacketSize") {
		select {
		case <-ctx.Done():
			t.Fatalf("no error logged for a 2 MiB message over a 1 MiB limit; log:\n%s", log.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "limit=1048576") {
		t.Errorf("log line without its level or limit:\n%s", log.String())
	}
}
