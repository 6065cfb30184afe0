package client_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
)

// A handler that does not return holds the delivery queue at MaxPending,
// across any number of lost connections: the reader takes a message only
// once it has a place, so what was still in its buffer when a connection
// ended stays unread, as the network would have lost it. Before, each
// connection lost added up to a read buffer of messages (6,839 held after
// 20 cuts, with MaxPending 10).
func TestPendingBoundedAcrossCuts(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	px := mqtttest.NewProxy(t, srv.Addr)
	ctx := testCtx(t, 30*time.Second)
	block := make(chan struct{})
	defer close(block)
	// The reader, waiting for a place, reads nothing: the keepalive's
	// PINGREQ finds the connection cut.
	sub := connect(t, client.Options{Servers: []string{px.URL()}, MaxPending: 10, KeepAlive: time.Second,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 20 * time.Millisecond,
		DefaultHandler: func(*client.Message) { <-block }})
	subscribe(t, ctx, sub, "flood", 0)
	pub := connect(t, client.Options{Servers: []string{srv.URL}})
	payload := make([]byte, 8)
	for cut := range 5 {
		for range 2000 {
			pub.PublishAsync(ctx, "flood", 0, false, payload)
		}
		waitStats(t, sub, "the subscriber to take MaxPending", func(st client.Stats) bool { return st.Received >= 10 })
		time.Sleep(100 * time.Millisecond) // for the reader to fill its buffer behind them
		if cut < 4 {
			px.CutAll()
			waitStats(t, sub, "the reconnection", func(st client.Stats) bool { return st.Connects >= uint64(cut+2) })
		}
	}
	if st := sub.Stats(); st.Received != 10 {
		t.Errorf("Stats.Received = %d with MaxPending 10 and the handler stuck, after 4 lost connections", st.Received)
	}
}

// While a handler waits in a call of the client, reading goes on past
// MaxPending, since the answer may be behind the messages; QoS 0 messages
// then queue until they hold MaxPacketSize, and the next ones are dropped,
// counted and logged. Before, a broker flooding a client whose handler waited
// for a PUBACK grew it by 262 MB in 4 s.
func TestPendingWhileHandlerWaits(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	px := mqtttest.NewProxy(t, srv.Addr)
	ctx := testCtx(t, 30*time.Second)
	const n, size, limit = 1000, 1 << 10, 64 << 10
	var logs syncBuf
	var sub *client.Client
	handled := make(chan struct{}, n+1)
	published := make(chan error, 1)
	sub = connect(t, client.Options{Servers: []string{px.URL()}, MaxPending: 10, MaxPacketSize: limit,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		DefaultHandler: func(m *client.Message) {
			if m.Topic == "first" {
				published <- sub.Publish(ctx, "answer", 1, false, nil)
			}
			handled <- struct{}{}
		}})
	subscribe(t, ctx, sub, "#", 0)
	pub := connect(t, client.Options{Servers: []string{srv.URL}})
	px.Hold(mqtttest.ClientToServer) // the handler's PUBLISH waits in the proxy
	if err := pub.Publish(ctx, "first", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, size)
	for range n {
		pub.PublishAsync(ctx, "flood", 0, false, payload)
	}
	st := waitStats(t, sub, "the flood read", func(st client.Stats) bool { return st.Received >= n+1 })
	// Queued without a place: at most limit/(size+overhead), about 56.
	if kept := st.Received - st.Discarded; kept > 1+10+limit/size {
		t.Errorf("%d messages held while the handler waits (Received %d, Discarded %d); want at most %d", kept, st.Received, st.Discarded, 1+10+limit/size)
	}
	if !strings.Contains(logs.String(), "QoS 0 message dropped") {
		t.Errorf("no log line of the drop:\n%s", logs.String())
	}
	px.Release(mqtttest.ClientToServer)
	if err := <-published; err != nil {
		t.Fatalf("the handler's Publish: %v", err)
	}
	for range st.Received - st.Discarded {
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("the messages kept were not all handled")
		}
	}
}

// Messages received but not yet handled when the client stops are counted
// (Stats.Discarded) and logged; before, Disconnect dropped them silently.
func TestDisconnectCountsUnhandled(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	ctx := testCtx(t, 30*time.Second)
	var logs syncBuf
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	sub := connect(t, client.Options{Servers: []string{srv.URL}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		DefaultHandler: func(*client.Message) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-release
		}})
	subscribe(t, ctx, sub, "t", 0)
	pub := connect(t, client.Options{Servers: []string{srv.URL}})
	for range 30 {
		pub.PublishAsync(ctx, "t", 0, false, []byte("x"))
	}
	<-started
	waitStats(t, sub, "30 received", func(st client.Stats) bool { return st.Received == 30 })
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(release)
	}()
	if err := sub.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if st := sub.Stats(); st.Discarded != 29 {
		t.Errorf("Stats.Discarded = %d after Disconnect with 29 messages waiting for the handler", st.Discarded)
	}
	if !strings.Contains(logs.String(), "received messages not handled") || !strings.Contains(logs.String(), "count=29") {
		t.Errorf("no log line of the 29 messages:\n%s", logs.String())
	}
}

// Close returns, CloseWait at most after it is called, even while a handler
// never returns: it says so, and the handler is left to end on its own.
// Before, Close waited for it for ever.
func TestCloseWithStuckHandler(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	ctx := testCtx(t, 30*time.Second)
	release := make(chan struct{})
	defer close(release)
	in := make(chan struct{}, 1)
	sub := connect(t, client.Options{Servers: []string{srv.URL}, DefaultHandler: func(*client.Message) {
		in <- struct{}{}
		<-release
	}})
	subscribe(t, ctx, sub, "t", 0)
	pub := connect(t, client.Options{Servers: []string{srv.URL}})
	if err := pub.Publish(ctx, "t", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	<-in
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- sub.Close() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "handler still running: gave up after CloseWait") {
			t.Errorf("Close = %v, want an error saying the handler still runs", err)
		}
		if d := time.Since(start); d < client.CloseWait-100*time.Millisecond {
			t.Errorf("Close returned after %v, before CloseWait", d)
		}
	case <-time.After(client.CloseWait + 5*time.Second):
		t.Fatal("Close did not return while the handler was stuck")
	}
}
