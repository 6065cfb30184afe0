package client_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// leaked returns the stacks of the goroutines running code of the client
// or transport packages.
func leaked() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ternmq/mqtt/client.") || strings.Contains(g, "ternmq/mqtt/transport.") {
			out = append(out, g)
		}
	}
	return out
}

// noLeaks fails the test if goroutines of the client are alive a second
// after the call. Tests that use it are not parallel, so the only client
// goroutines are theirs.
func noLeaks(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		g := leaked()
		if len(g) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines alive after Disconnect:\n%s", len(g), strings.Join(g, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHandlerReentrancy(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := testCtx(t, 20*time.Second)
	c, err := client.New(client.Options{Servers: []string{b.URL}})
	if err != nil {
		t.Fatal(err)
	}
	var extra atomic.Int32
	disconnected := make(chan error, 1)
	c.Handle("req/+", func(m *client.Message) {
		// Blocking calls from a handler: their answers are read by the
		// reader goroutine, not this one.
		if err := c.Publish(ctx, "resp/"+m.Topic[4:], 2, false, m.Payload); err != nil {
			t.Errorf("Publish in handler: %v", err)
		}
		if _, err := c.Subscribe(ctx, client.Subscription{Filter: "extra/" + m.Topic[4:], QoS: 1}); err != nil {
			t.Errorf("Subscribe in handler: %v", err)
		}
		if err := c.Publish(ctx, "extra/"+m.Topic[4:], 1, false, nil); err != nil {
			t.Errorf("Publish in handler: %v", err)
		}
	})
	c.Handle("extra/#", func(*client.Message) { extra.Add(1) })
	c.Handle("stop", func(*client.Message) { disconnected <- c.Disconnect(ctx) })
	resp := make(chan string, 10)
	c.Handle("resp/+", func(m *client.Message) { resp <- string(m.Payload) })
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "req/+", QoS: 1}, client.Subscription{Filter: "resp/+", QoS: 1}, client.Subscription{Filter: "stop", QoS: 0}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := c.Publish(ctx, "req/"+strconv.Itoa(i), 1, false, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		select {
		case p := <-resp:
			if p != strconv.Itoa(i) {
				t.Fatalf("response %d = %q", i, p)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no response %d", i)
		}
	}
	if err := c.Publish(ctx, "stop", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-disconnected:
		if err != nil {
			t.Fatalf("Disconnect in handler: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Disconnect in a handler did not return")
	}
	if extra.Load() != 5 {
		t.Errorf("%d messages on the subscriptions made by handlers, want 5", extra.Load())
	}
	noLeaks(t)
}

func TestSlowConsumerKeepsConnection(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	p := mqtttest.NewProxy(t, b.URL)
	ctx := testCtx(t, 20*time.Second)
	events := make(chan client.Event, 10)
	sub := connect(t, client.Options{Servers: []string{p.URL()}, KeepAlive: time.Second, MaxPending: 2,
		OnEvent: func(e client.Event) { events <- e }})
	msgs := sub.Messages()
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "slow/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, client.Options{Servers: []string{b.URL}})
	const n = 200
	for i := range n {
		qos := byte(i % 2) // QoS 0 and 1 interleaved
		if err := pub.Publish(ctx, "slow/"+strconv.Itoa(int(qos)), qos, false, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Stop reading for three times the keepalive.
	time.Sleep(3 * time.Second)
	next := [2]int{0, 1}
	for range n {
		m := recv(t, msgs, 5*time.Second)
		q := m.QoS
		if string(m.Payload) != strconv.Itoa(next[q]) {
			t.Fatalf("QoS %d message %q, want %d", q, m.Payload, next[q])
		}
		next[q] += 2
	}
	if p.Accepted() != 1 {
		t.Errorf("%d connections; the first was lost", p.Accepted())
	}
	// The client went on talking to the broker while its reader waited
	// [MQTT-3.1.2-23]: never silent for 1.5 keepalive periods.
	pings := 0
	var last time.Time
	for _, f := range p.Frames() {
		if f.Dir != mqtttest.ClientToServer {
			continue
		}
		if f.Type == packet.PINGREQ {
			pings++
		}
		if !last.IsZero() && f.Time.Sub(last) > 1500*time.Millisecond {
			t.Errorf("client silent for %v", f.Time.Sub(last))
		}
		last = f.Time
	}
	if pings < 2 {
		t.Errorf("%d PINGREQ while the consumer was stalled for 3 s", pings)
	}
	for len(events) > 0 {
		if e := <-events; e.Kind != client.Connected {
			t.Errorf("event %v: %v", e.Kind, e.Err)
		}
	}
}

func TestNoConnack(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the CONNECT and never answer.
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	url := "mqtt://" + ln.Addr().String()
	for _, tc := range []struct {
		name string
		ctx  time.Duration
		opt  time.Duration
		want error
	}{
		{"context", 200 * time.Millisecond, 0, context.DeadlineExceeded},
		{"ConnectTimeout", 10 * time.Second, 200 * time.Millisecond, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(client.Options{Servers: []string{url}, ConnectTimeout: tc.opt})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			err = c.Connect(ctx)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Connect = %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Connect returned after %v", d)
			}
			if c.IsConnected() {
				t.Fatal("connected")
			}
		})
	}
}

func TestDeadBrokerDetected(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	p := mqtttest.NewProxy(t, b.URL)
	// The first connection loses every PINGRESP: the broker looks dead.
	p.SetFilter(mqtttest.OnConn(0, mqtttest.OnType(mqtttest.ServerToClient, packet.PINGRESP, mqtttest.Drop)))
	events := make(chan client.Event, 10)
	ctx := testCtx(t, 20*time.Second)
	c := connect(t, client.Options{Servers: []string{p.URL()}, KeepAlive: time.Second, ReconnectMin: 10 * time.Millisecond,
		OnEvent: func(e client.Event) { events <- e }})
	var lostAt time.Time
	for lostAt.IsZero() {
		select {
		case e := <-events:
			if e.Kind == client.ConnectionLost {
				lostAt = time.Now()
				if !strings.Contains(e.Err.Error(), "keepalive") {
					t.Errorf("lost for %v, want a keepalive timeout", e.Err)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatal("dead broker not noticed")
		}
	}
	// The last packet the client received on connection 0 was the
	// CONNACK; it must give up 1.5 keepalive periods later.
	var last time.Time
	for _, f := range p.Frames() {
		if f.Conn == 0 && f.Dir == mqtttest.ServerToClient && f.Type != packet.PINGRESP {
			last = f.Time
		}
	}
	if d := lostAt.Sub(last); d > 2500*time.Millisecond {
		t.Errorf("noticed %v after the last packet, want about 1.5 s", d)
	}
	// It reconnects, and the new connection works.
	for {
		e := <-events
		if e.Kind == client.Connected {
			break
		}
	}
	if err := c.Publish(ctx, "alive", 1, false, nil); err != nil {
		t.Fatal(err)
	}
}

func TestDisconnectWithManyInFlight(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{
		{"drain", 30 * time.Second},
		{"abort", time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(client.Options{Servers: []string{b.URL}, MaxQueued: 10000})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Connect(testCtx(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t, 30*time.Second)
			toks := make([]*client.Token, 10000)
			for i := range toks {
				toks[i] = c.PublishAsync(ctx, "many", byte(1+i%2), false, []byte(strconv.Itoa(i)))
			}
			dctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err = c.Disconnect(dctx)
			if tc.name == "drain" && err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
			if tc.name == "abort" && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Disconnect = %v, want the deadline", err)
			}
			ok, closed := 0, 0
			for i, tok := range toks {
				select {
				case <-tok.Done():
				default:
					t.Fatalf("token %d not done after Disconnect", i)
				}
				switch err := tok.Err(); {
				case err == nil:
					ok++
				case errors.Is(err, client.ErrClosed):
					closed++
				default:
					t.Fatalf("token %d: %v", i, err)
				}
			}
			if tc.name == "drain" && ok != len(toks) {
				t.Errorf("%d of %d complete after a patient Disconnect", ok, len(toks))
			}
			t.Logf("%d complete, %d closed", ok, closed)
			if err := c.Publish(ctx, "late", 1, false, nil); !errors.Is(err, client.ErrClosed) {
				t.Errorf("Publish after Disconnect = %v", err)
			}
			noLeaks(t)
		})
	}
}

// TestHandlerCallsUnderLoad: a handler that waits for acknowledgements
// while messages keep arriving past MaxPending must not deadlock: the reader
// goes on reading, so that the answers the handler waits for can arrive.
func TestHandlerCallsUnderLoad(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := testCtx(t, 30*time.Second)
	var handled atomic.Int32
	done := make(chan struct{})
	var c *client.Client
	c = connect(t, client.Options{Servers: []string{b.URL}, MaxPending: 1, DefaultHandler: func(m *client.Message) {
		call, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := c.Publish(call, "echo/"+m.Topic, 1, false, m.Payload); err != nil {
			t.Errorf("Publish in handler: %v", err)
		}
		tok := c.PublishAsync(call, "echo/async", 2, false, nil)
		if err := tok.Wait(call); err != nil {
			t.Errorf("Token.Wait in handler: %v", err)
		}
		if handled.Add(1) == 200 {
			close(done)
		}
	}})
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "flood/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, client.Options{Servers: []string{b.URL}})
	for i := range 200 {
		pub.PublishAsync(ctx, "flood/"+strconv.Itoa(i%3), byte(i%2), false, []byte(strconv.Itoa(i)))
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("%d of 200 messages handled", handled.Load())
	}
}

// TestHandlerPublishOnFullWindow: a handler's Publish that waits for room
// in a full window (MaxInflight 1, MaxQueued 1) while messages flood in.
func TestHandlerPublishOnFullWindow(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := testCtx(t, 30*time.Second)
	var handled atomic.Int32
	done := make(chan struct{})
	var c *client.Client
	c = connect(t, client.Options{Servers: []string{b.URL}, MaxPending: 1, MaxInflight: 1, MaxQueued: 1, DefaultHandler: func(m *client.Message) {
		// The third waits for room, in PublishAsync; the last one
		// waits for room inside Publish.
		var toks []*client.Token
		for range 3 {
			toks = append(toks, c.PublishAsync(ctx, "echo", 1, false, m.Payload))
		}
		if err := c.Publish(ctx, "echo", 1, false, m.Payload); err != nil {
			t.Errorf("Publish in handler: %v", err)
		}
		for _, tok := range toks {
			if err := tok.Wait(ctx); err != nil {
				t.Errorf("PublishAsync in handler: %v", err)
			}
		}
		if handled.Add(1) == 100 {
			close(done)
		}
	}})
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "flood", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, client.Options{Servers: []string{b.URL}})
	for i := range 100 {
		pub.PublishAsync(ctx, "flood", 1, false, []byte(strconv.Itoa(i)))
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("%d of 100 messages handled", handled.Load())
	}
}
