package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// testCtx returns a context that ends with the test, or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connect returns a connected client for opts, closed at the end of the
// test.
func connect(t testing.TB, opts client.Options) *client.Client {
	t.Helper()
	c, err := client.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Connect(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return c
}

// recv returns the next message of ch, failing the test after d.
func recv(t testing.TB, ch <-chan *client.Message, d time.Duration) *client.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("Messages closed")
		}
		return m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
	}
	return nil
}

func TestMosquittoQoS(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	for qos := byte(0); qos <= 2; qos++ {
		t.Run("qos"+strconv.Itoa(int(qos)), func(t *testing.T) {
			ctx := testCtx(t, 20*time.Second)
			sub := connect(t, client.Options{Servers: []string{b.URL}})
			pub := connect(t, client.Options{Servers: []string{b.URL}})
			name := "qos/" + strconv.Itoa(int(qos))
			msgs := sub.Messages()
			codes, err := sub.Subscribe(ctx, client.Subscription{Filter: name, QoS: qos})
			if err != nil || len(codes) != 1 || codes[0] != qos {
				t.Fatalf("Subscribe = %v, %v; want [%d]", codes, err, qos)
			}
			const n = 100
			for i := range n {
				if err := pub.Publish(ctx, name, qos, false, []byte(strconv.Itoa(i))); err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			// [MQTT-4.6.0-6] one publisher's messages on a topic and QoS
			// arrive in order.
			for i := range n {
				m := recv(t, msgs, 5*time.Second)
				if m.Topic != name || string(m.Payload) != strconv.Itoa(i) || m.QoS != qos || m.Retain {
					t.Fatalf("message %d = %q %q qos %d retain %v", i, m.Topic, m.Payload, m.QoS, m.Retain)
				}
			}
		})
	}
}

func TestMosquittoAsyncWindow(t *testing.T) {
	t.Parallel()
	// A stock mosquitto drops QoS 1 and 2 messages for a subscriber more
	// than 1000 behind, which a loaded test machine can make this one.
	b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_queued_messages 0"}})
	ctx := testCtx(t, 30*time.Second)
	sub := connect(t, client.Options{Servers: []string{b.URL}, MaxPending: 1000})
	pub := connect(t, client.Options{Servers: []string{b.URL}, MaxQueued: 5000})
	for _, qos := range []byte{1, 2} {
		name := fmt.Sprintf("async/%d", qos)
		msgs := make(chan *client.Message, 3000)
		sub.Handle(name, func(m *client.Message) { msgs <- m })
		if _, err := sub.Subscribe(ctx, client.Subscription{Filter: name, QoS: qos}); err != nil {
			t.Fatal(err)
		}
		const n = 2000
		toks := make([]*client.Token, n)
		for i := range toks {
			toks[i] = pub.PublishAsync(ctx, name, qos, false, []byte(strconv.Itoa(i)))
		}
		seen := map[uint16]bool{}
		for i, tok := range toks {
			if err := tok.Wait(ctx); err != nil {
				t.Fatalf("token %d: %v", i, err)
			}
			if tok.PacketID() == 0 {
				t.Fatalf("token %d: packet id 0", i)
			}
			seen[tok.PacketID()] = true
		}
		if len(seen) < 20 {
			t.Errorf("only %d distinct packet ids", len(seen))
		}
		for i := range n {
			m := recv(t, msgs, 5*time.Second)
			if string(m.Payload) != strconv.Itoa(i) {
				t.Fatalf("message %d = %q", i, m.Payload)
			}
		}
	}
}

func TestMosquittoRetained(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := testCtx(t, 10*time.Second)
	pub := connect(t, client.Options{Servers: []string{b.URL}})
	if err := pub.Publish(ctx, "ret/a", 1, true, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	sub := connect(t, client.Options{Servers: []string{b.URL}})
	msgs := sub.Messages()
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "ret/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	// [MQTT-3.3.1-6] [MQTT-3.3.1-8] the retained message comes with RETAIN set.
	m := recv(t, msgs, 5*time.Second)
	if m.Topic != "ret/a" || string(m.Payload) != "kept" || !m.Retain {
		t.Fatalf("got %q %q retain %v", m.Topic, m.Payload, m.Retain)
	}
	// [MQTT-3.3.1-9] to an established subscription RETAIN is 0.
	if err := pub.Publish(ctx, "ret/a", 1, true, []byte("new")); err != nil {
		t.Fatal(err)
	}
	m = recv(t, msgs, 5*time.Second)
	if string(m.Payload) != "new" || m.Retain {
		t.Fatalf("got %q retain %v", m.Payload, m.Retain)
	}
	// An empty retained message clears it [MQTT-3.3.1-10].
	if err := pub.Publish(ctx, "ret/a", 1, true, nil); err != nil {
		t.Fatal(err)
	}
	recv(t, msgs, 5*time.Second)
	sub2 := connect(t, client.Options{Servers: []string{b.URL}})
	msgs2 := sub2.Messages()
	if _, err := sub2.Subscribe(ctx, client.Subscription{Filter: "ret/#", QoS: 1}, client.Subscription{Filter: "marker", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "marker", 1, false, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, msgs2, 5*time.Second); m.Topic != "marker" {
		t.Fatalf("got %q %q before the marker", m.Topic, m.Payload)
	}
}

func TestMosquittoWill(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := testCtx(t, 10*time.Second)
	sub := connect(t, client.Options{Servers: []string{b.URL}})
	msgs := sub.Messages()
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "will/#", QoS: 2}); err != nil {
		t.Fatal(err)
	}
	will := &client.Will{Topic: "will/a", Payload: []byte("gone"), QoS: 2}
	// A clean DISCONNECT discards the will [MQTT-3.14.4-3].
	a := connect(t, client.Options{Servers: []string{b.URL}, Will: will})
	if err := a.Disconnect(ctx); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	// A connection that ends otherwise publishes it [MQTT-3.1.2-8].
	w := connect(t, client.Options{Servers: []string{b.URL}, Will: &client.Will{Topic: "will/b", Payload: []byte("lost"), QoS: 1, Retain: true}})
	w.Close()
	m := recv(t, msgs, 5*time.Second)
	if m.Topic != "will/b" || string(m.Payload) != "lost" || m.QoS != 1 {
		t.Fatalf("got %q %q qos %d; want the will of the closed client only", m.Topic, m.Payload, m.QoS)
	}
	// The will was retained.
	sub2 := connect(t, client.Options{Servers: []string{b.URL}})
	msgs2 := sub2.Messages()
	if _, err := sub2.Subscribe(ctx, client.Subscription{Filter: "will/b", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, msgs2, 5*time.Second); !m.Retain || string(m.Payload) != "lost" {
		t.Fatalf("retained will: %q retain %v", m.Payload, m.Retain)
	}
}

func TestMosquittoWildcardsAndHandlers(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := testCtx(t, 10*time.Second)
	type got struct{ handler, topic string }
	ch := make(chan got, 100)
	var deflt []string
	var mu sync.Mutex
	sub := connect(t, client.Options{Servers: []string{b.URL}, DefaultHandler: func(m *client.Message) {
		mu.Lock()
		deflt = append(deflt, m.Topic)
		mu.Unlock()
		ch <- got{"default", m.Topic}
	}})
	for _, f := range []string{"home/#", "home/+/temp", "home/kitchen/temp", "home/+/+"} {
		sub.Handle(f, func(m *client.Message) { ch <- got{f, m.Topic} })
	}
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "home/#", QoS: 1}, client.Subscription{Filter: "office/+", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, client.Options{Servers: []string{b.URL}})
	want := []got{
		{"home/kitchen/temp", "home/kitchen/temp"},
		{"home/+/temp", "home/hall/temp"},
		{"home/+/+", "home/hall/light"},
		{"home/#", "home/hall"},
		{"home/#", "home"}, // '#' matches the parent level [MQTT-4.7.1-2]
		{"home/#", "home/a/b/c"},
		{"default", "office/1"},
	}
	for _, w := range want {
		if err := pub.Publish(ctx, w.topic, 1, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range want {
		select {
		case g := <-ch:
			if g != w {
				t.Errorf("got %+v, want %+v", g, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message for %+v", w)
		}
	}
	// Unsubscribe: office/+ no longer arrives; the marker on home/ does.
	if err := sub.Unsubscribe(ctx, "office/+"); err != nil {
		t.Fatal(err)
	}
	pub.Publish(ctx, "office/2", 1, false, nil)
	pub.Publish(ctx, "home/marker", 1, false, nil)
	select {
	case g := <-ch:
		if g.topic != "home/marker" {
			t.Fatalf("after Unsubscribe got %+v", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no marker")
	}
}

func TestMosquittoKeepAlive(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	p := mqtttest.NewProxy(t, b.URL)
	events := make(chan client.Event, 10)
	c := connect(t, client.Options{Servers: []string{p.URL()}, KeepAlive: time.Second, OnEvent: func(e client.Event) { events <- e }})
	_ = c
	time.Sleep(3500 * time.Millisecond)
	var pings, pongs int
	var last time.Time
	for _, f := range p.Frames() {
		switch {
		case f.Dir == mqtttest.ClientToServer && f.Type == packet.PINGREQ:
			// [MQTT-3.1.2-23] never silent for longer than the keepalive.
			if !last.IsZero() && f.Time.Sub(last) > 1500*time.Millisecond {
				t.Errorf("PINGREQ %v after the previous one", f.Time.Sub(last))
			}
			last = f.Time
			pings++
		case f.Dir == mqtttest.ServerToClient && f.Type == packet.PINGRESP:
			pongs++
		}
	}
	if pings < 2 || pongs < 2 {
		t.Errorf("%d PINGREQ and %d PINGRESP in 3.5 s with a 1 s keepalive", pings, pongs)
	}
	if p.Accepted() != 1 {
		t.Errorf("%d connections, want 1", p.Accepted())
	}
	for len(events) > 0 {
		if e := <-events; e.Kind != client.Connected {
			t.Errorf("event %v: %v", e.Kind, e.Err)
		}
	}
}

func TestMosquittoTransports(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{RequireClientCert: true, WebSockets: true, SecureWebSockets: true})
	// Every scheme of package transport; tcp, ssl and tls are other names
	// of mqtt and mqtts (unix: see TestUnixSocket).
	urls := []string{b.URL, b.TLSURL, b.WSURL, b.WSSURL,
		"tcp://" + b.Addr,
		"ssl://" + strings.TrimPrefix(b.TLSURL, "mqtts://"),
		"tls://" + strings.TrimPrefix(b.TLSURL, "mqtts://")}
	for _, url := range urls {
		scheme := url[:strings.Index(url, ":")]
		t.Run(scheme, func(t *testing.T) {
			ctx := testCtx(t, 10*time.Second)
			c := connect(t, client.Options{Servers: []string{url}, TLSConfig: b.ClientTLS()})
			msgs := c.Messages()
			if _, err := c.Subscribe(ctx, client.Subscription{Filter: "tr/" + scheme, QoS: 2}); err != nil {
				t.Fatal(err)
			}
			payload := bytes.Repeat([]byte("x"), 100000)
			if err := c.Publish(ctx, "tr/"+scheme, 2, false, payload); err != nil {
				t.Fatal(err)
			}
			if m := recv(t, msgs, 5*time.Second); !bytes.Equal(m.Payload, payload) {
				t.Fatalf("payload of %d bytes came back as %d", len(payload), len(m.Payload))
			}
			if err := c.Disconnect(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMosquittoConnectOptions(t *testing.T) {
	t.Parallel()
	passwd := mosquitto.Require(t, "mosquitto_passwd")
	// Not t.TempDir: mosquitto runs as user mosquitto and must read it.
	dir, err := os.MkdirTemp("", "tern-client-passwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	file := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-c", "-b", file, "alice", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(file, 0o644)
	b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"allow_anonymous false", "password_file " + file}})
	ctx := testCtx(t, 20*time.Second)

	// Credentials.
	good := client.Options{Servers: []string{b.URL}, Username: "alice", Password: []byte("s3cret")}
	connect(t, good)
	for _, o := range []client.Options{
		{Servers: []string{b.URL}, Username: "alice", Password: []byte("wrong")},
		{Servers: []string{b.URL}},
	} {
		c, _ := client.New(o)
		err := c.Connect(ctx)
		var ce *client.ConnectError
		if !errors.As(err, &ce) || (ce.Code != packet.RefusedNotAuthorized && ce.Code != packet.RefusedBadUsernameOrPassword) {
			t.Errorf("Connect with %q/%q = %v; want a refusal", o.Username, o.Password, err)
		}
		c.Close()
	}

	// Several servers: the first refuses TCP, the second answers.
	o := good
	o.Servers = []string{"mqtt://127.0.0.1:1", b.URL}
	c := connect(t, o)
	if !c.IsConnected() {
		t.Fatal("not connected")
	}

	// Client id: generated when empty, kept as given otherwise; a kept
	// session is found again [MQTT-3.2.2-2].
	if id := c.ClientID(); len(id) != len("tern-")+16 {
		t.Errorf("generated client id %q", id)
	}
	o = good
	o.ClientID, o.KeepSession = "keeper", true
	present := make(chan bool, 10)
	o.OnEvent = func(e client.Event) {
		if e.Kind == client.Connected {
			present <- e.SessionPresent
		}
	}
	k := connect(t, o)
	if k.ClientID() != "keeper" {
		t.Errorf("ClientID = %q", k.ClientID())
	}
	if _, err := k.Subscribe(ctx, client.Subscription{Filter: "kept", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	k.Disconnect(ctx)
	// While it is away, a QoS 1 message for it is kept by the broker.
	p := connect(t, good)
	if err := p.Publish(ctx, "kept", 1, false, []byte("for keeper")); err != nil {
		t.Fatal(err)
	}
	k2, _ := client.New(o)
	defer k2.Close()
	msgs := k2.Messages()
	if err := k2.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, msgs, 5*time.Second); string(m.Payload) != "for keeper" {
		t.Fatalf("got %q", m.Payload)
	}
	for i, want := range []bool{false, true} {
		select {
		case got := <-present:
			if got != want {
				t.Errorf("connection %d: session present %v, want %v", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no Connected event %d", i)
		}
	}
}
