package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// within runs f and fails the test when it takes longer than d.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
	return nil
}

// TestNoReconnectFailsWaitingCalls: with NoReconnect, a QoS 1 or 2 Publish
// and a Subscribe waiting on a connection that is lost fail at once with
// ErrNotConnected and the cause, not when their context ends; later calls
// fail at once too.
func TestNoReconnectFailsWaitingCalls(t *testing.T) {
	t.Parallel()
	for _, qos := range []byte{1, 2} {
		c, _, p := startScripted(t, client.Options{NoReconnect: true})
		defer c.Close()
		ctx := testCtx(t, time.Minute) // far beyond the bound below
		pubErr := make(chan error, 1)
		go func() { pubErr <- c.Publish(ctx, "a", qos, false, []byte("x")) }()
		p.expect(packet.PUBLISH)
		subErr := make(chan error, 1)
		go func() {
			_, err := c.Subscribe(ctx, client.Subscription{Filter: "b", QoS: 1})
			subErr <- err
		}()
		p.expect(packet.SUBSCRIBE)
		tok := c.PublishAsync(ctx, "a", qos, false, []byte("y"))
		p.expect(packet.PUBLISH)
		p.c.Close() // no PUBACK, PUBREC or SUBACK
		for what, ch := range map[string]chan error{"Publish": pubErr, "Subscribe": subErr} {
			select {
			case err := <-ch:
				if !errors.Is(err, client.ErrNotConnected) || !errors.Is(err, client.ErrConnectionLost) ||
					!strings.HasPrefix(err.Error(), "client: not connected") || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("QoS %d: %s after the loss = %v; want ErrNotConnected wrapping the cause (EOF)", qos, what, err)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("QoS %d: %s still waits 2 s after the connection was lost", qos, what)
			}
		}
		if err := tok.Wait(testCtx(t, 2*time.Second)); !errors.Is(err, client.ErrNotConnected) {
			t.Errorf("QoS %d: token after the loss = %v, want ErrNotConnected", qos, err)
		}
		for c.IsConnected() {
			time.Sleep(time.Millisecond)
		}
		err := within(t, time.Second, "Publish after the loss", func() error { return c.Publish(ctx, "a", qos, false, nil) })
		if !errors.Is(err, client.ErrNotConnected) {
			t.Errorf("QoS %d: Publish after the loss = %v, want ErrNotConnected", qos, err)
		}
	}
}

// TestRefusedMessageGivenUp: tern's broker with a 1 MiB limit closes the
// connection on a 2 MiB PUBLISH, on every resend. The client gives the
// message up after MaxCuts connections and Publish says why; the
// connections stay few, and the next message goes through.
func TestRefusedMessageGivenUp(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t, func(o *broker.Options) { o.MaxPacketSize = 1 << 20 })
	for _, maxCuts := range []int{0, 2} { // 0: DefaultMaxCuts
		var connects atomic.Int32
		c := connect(t, client.Options{Servers: []string{srv.URL}, MaxCuts: maxCuts, ReconnectMin: time.Millisecond, ReconnectMax: 50 * time.Millisecond,
			OnEvent: func(e client.Event) {
				if e.Kind == client.Connected {
					connects.Add(1)
				}
			}})
		want := maxCuts
		if want == 0 {
			want = client.DefaultMaxCuts
		}
		ctx := testCtx(t, 20*time.Second)
		big := make([]byte, 2<<20)
		err := c.Publish(ctx, "big", 1, false, big)
		var me *client.MessageError
		if !errors.As(err, &me) || !errors.Is(err, client.ErrMessageRefused) || me.Attempts != want || me.Topic != "big" || me.Size != len(big)+3 {
			t.Fatalf("MaxCuts %d: Publish of 2 MiB = %v, want a *MessageError after %d attempts", maxCuts, err, want)
		}
		if !strings.Contains(err.Error(), "maximum packet size") {
			t.Errorf("error %q does not name the likely reason", err)
		}
		if err := c.Publish(ctx, "small", 1, false, []byte("x")); err != nil {
			t.Fatalf("the next message: %v", err)
		}
		// One connection per attempt, and the one that carried the next
		// message.
		if n := int(connects.Load()); n > want+1 {
			t.Errorf("%d connections for %d attempts", n, want)
		}
		if s := c.Stats(); s.Refused != 1 || s.Lost != uint64(want) {
			t.Errorf("stats %+v, want 1 refused and %d lost", s, want)
		}
	}
}

// TestBackoffAfterYoungConnections: a broker that accepts and cuts at once
// gets fewer and fewer attempts, not a tight loop.
func TestBackoffAfterYoungConnections(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer nc.Close()
				r := packet.NewReader(nc, 0)
				nc.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := r.Next(); err != nil {
					return
				}
				nc.Write([]byte{0x20, 2, 0, 0}) // CONNACK accepted, then gone
			}()
		}
	}()
	c := connect(t, client.Options{Servers: []string{"mqtt://" + l.Addr().String()}, ReconnectMin: 10 * time.Millisecond, ReconnectMax: time.Second})
	time.Sleep(time.Second)
	c.Close()
	// Waits of 5-10, 10-20, 20-40, 40-80, 80-160, 160-320, 320-640 ms:
	// at most 8 connections in a second; without the backoff, hundreds.
	if n := accepted.Load(); n > 9 || n < 3 {
		t.Errorf("%d connections in a second, want 3 to 9", n)
	}
}

// TestConnectRetry: with ConnectRetry, Connect waits for a broker that
// is not there yet; without it, it fails at once. When its context ends,
// the error says so and gives the last attempt's cause.
func TestConnectRetry(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	url := "mqtt://" + addr

	c, err := client.New(client.Options{Servers: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(testCtx(t, 5*time.Second)); !errors.Is(err, syscall.ECONNREFUSED) || !strings.HasPrefix(err.Error(), "client: connect to "+url+": ") {
		t.Errorf("Connect without a broker = %v, want ECONNREFUSED", err)
	}
	c.Close()

	c, err = client.New(client.Options{Servers: []string{url}, ConnectRetry: true, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = c.Connect(short)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("Connect retrying until its context ended = %v", err)
	}

	errc := make(chan error, 1)
	go func() { errc <- c.Connect(testCtx(t, 20*time.Second)) }()
	time.Sleep(300 * time.Millisecond)
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	b := broker.New(broker.Options{})
	go b.Serve(l)
	defer b.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Connect with a broker appearing: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Connect did not find the broker that appeared")
	}
	if !c.IsConnected() {
		t.Error("not connected")
	}
}

// TestConnectRetryStopsOnRefusal: bad credentials do not get better by
// trying again.
func TestConnectRetryStopsOnRefusal(t *testing.T) {
	t.Parallel()
	s, topts := newScripted(t)
	c, err := client.New(client.Options{Servers: []string{"mqtt://scripted"}, Transport: topts, ConnectRetry: true, Username: "u", Password: []byte("bad")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() { errc <- c.Connect(testCtx(t, time.Minute)) }()
	p := s.accept()
	p.expect(packet.CONNECT)
	p.send(&packet.Connack{ReturnCode: packet.RefusedBadUsernameOrPassword})
	err = within(t, 2*time.Second, "Connect", func() error { return <-errc })
	var ce *client.ConnectError
	if !errors.As(err, &ce) || ce.Code != packet.RefusedBadUsernameOrPassword {
		t.Fatalf("Connect = %v, want the refusal", err)
	}
	want := "client: mqtt://scripted refused the connection: bad user name or password (CONNACK return code 4): check the user name and password (Options.Username, Options.Password)"
	if err.Error() != want {
		t.Errorf("error\n%q\nwant\n%q", err, want)
	}
}

// TestNewChecksURLs: a server URL the transport cannot dial is refused by
// New, not by Connect.
func TestNewChecksURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"localhost:1883", "http://x", "unix://", "mqtt://[::1"} {
		_, err := client.New(client.Options{Servers: []string{"mqtt://ok", u}})
		if err == nil || !strings.HasPrefix(err.Error(), "client: Options.Servers[1]: ") {
			t.Errorf("New with %q = %v, want an error naming Servers[1]", u, err)
		}
	}
}

// TestPlainToTLSPort: a plain connection to a TLS port, and a TLS one to
// a plain port, fail with an error that says which scheme to use.
func TestPlainToTLSPort(t *testing.T) {
	t.Parallel()
	certs := testcert.Must(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig(false))
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(broker.Options{})
	go b.Serve(l)
	defer b.Close()
	c, err := client.New(client.Options{Servers: []string{"mqtt://" + l.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = within(t, 10*time.Second, "Connect", func() error { return c.Connect(testCtx(t, 5*time.Second)) })
	if err == nil || !strings.HasPrefix(err.Error(), "client: connect to mqtt://") || !strings.Contains(err.Error(), "use mqtts://") {
		t.Errorf("plain to a TLS port: %v", err)
	}

	plain := mqtttest.NewServer(t)
	c2, err := client.New(client.Options{Servers: []string{strings.Replace(plain.URL, "mqtt://", "mqtts://", 1)}, TLSConfig: certs.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	err = within(t, 10*time.Second, "Connect", func() error { return c2.Connect(testCtx(t, 5*time.Second)) })
	if err == nil || !strings.Contains(err.Error(), "use mqtt://") || strings.Count(err.Error(), "mqtts://") != 1 {
		t.Errorf("TLS to a plain port: %v", err)
	}
}

// TestErrorPrefix: errors of the API start with "client:" and wrap the
// layer's error.
func TestErrorPrefix(t *testing.T) {
	t.Parallel()
	c, _, _ := startScripted(t, client.Options{})
	defer c.Close()
	ctx := testCtx(t, 5*time.Second)
	var pe *packet.Error
	if err := c.Publish(ctx, "a/+", 1, false, nil); !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), `client: publish to "a/+": `) {
		t.Errorf("Publish(a/+) = %v", err)
	}
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "a/#/b"}); err == nil || !strings.HasPrefix(err.Error(), `client: subscribe to "a/#/b": topic: `) {
		t.Errorf("Subscribe(a/#/b) = %v", err)
	}
	if err := c.Handle("a/#/b", func(*client.Message) {}); err == nil || !strings.HasPrefix(err.Error(), "client: ") {
		t.Errorf("Handle(a/#/b) = %v", err)
	}
}

// A broker that closes the connection as soon as it reads DISCONNECT, as
// mosquitto and tern do, ends it cleanly: the reader may see its EOF before
// the writer reports the DISCONNECT written, and that is no lost connection.
func TestDisconnectAnsweredByClose(t *testing.T) {
	t.Parallel()
	for i := range 40 {
		var logs syncBuf
		c, _, p := startScripted(t, client.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		for !c.IsConnected() {
			time.Sleep(time.Millisecond)
		}
		done := make(chan error, 1)
		go func() { done <- c.Disconnect(testCtx(t, 5*time.Second)) }()
		p.expect(packet.DISCONNECT)
		p.c.Close()
		if err := <-done; err != nil {
			t.Fatalf("run %d: Disconnect: %v", i, err)
		}
		if st := c.Stats(); st.Lost != 0 || strings.Contains(logs.String(), "connection lost") {
			t.Fatalf("run %d: Stats.Lost = %d after a clean Disconnect; log:\n%s", i, st.Lost, logs.String())
		}
	}
}

// TestDisconnectClosesConnection: after DISCONNECT the client closes the
// network connection [MQTT-3.14.4-1] and sends nothing more
// [MQTT-3.14.4-2].
func TestDisconnectClosesConnection(t *testing.T) {
	t.Parallel()
	c, _, p := startScripted(t, client.Options{})
	for !c.IsConnected() { // the CONNACK is on its way
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- c.Disconnect(testCtx(t, 5*time.Second)) }()
	p.expect(packet.DISCONNECT)
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := p.c.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after DISCONNECT: read %d bytes, %v; want the connection closed by the client", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
