package broker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

// [MQTT-3.3.5-2] An unauthorized PUBLISH is acknowledged per its QoS and
// dropped; the connection stays.
func TestAuthorizePublish(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) {
		o.AuthorizePublish = func(c *broker.Client, topic []byte, qos byte, retain bool) bool {
			return !strings.HasPrefix(string(topic), "secret/")
		}
	})
	s := connect(t, srv, "s", true, false)
	s.subscribe(1, "#", 2)
	p := connect(t, srv, "p", true, false)
	p.publish(pub("secret/x", "q0", 0, 0))
	p.publish(pub("secret/x", "q1", 1, 1)) // PUBACK all the same
	p.publish(pub("secret/x", "q2", 2, 2)) // PUBREC, PUBREL, PUBCOMP all the same
	p.publish(&packet.Publish{Topic: []byte("secret/r"), Payload: []byte("r"), Retain: true})
	p.publish(pub("open/x", "ok", 1, 3))
	got := s.expectPublish()
	checkPublish(t, got, "open/x", "ok", 1, false)
	s.ack(got)
	s.expectNothing()
	if n := srv.Broker.Stats().Retained; n != 0 {
		t.Errorf("an unauthorized retained message was stored: Stats.Retained = %d", n)
	}
}

// An AuthorizeSubscribe hook refuses filters with SUBACK 0x80 and may grant a
// lower QoS; a refused filter delivers nothing, retained messages included.
func TestAuthorizeSubscribe(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) {
		o.AuthorizeSubscribe = func(c *broker.Client, filter []byte, qos byte) byte {
			switch {
			case strings.HasPrefix(string(filter), "admin/"):
				return packet.SubackFailure
			case c.Username == "basic":
				return 0
			}
			return 2 // more than asked: the broker caps it
		}
	})
	p := connect(t, srv, "p", true, false)
	p.publish(&packet.Publish{Topic: []byte("admin/r"), Payload: []byte("r"), Retain: true})

	s := dial(t, srv, "s")
	s.send(&packet.Connect{ClientID: []byte("s"), CleanSession: true, HasUsername: true, Username: []byte("basic")})
	s.expect(&packet.Connack{})
	s.send(&packet.Subscribe{PacketID: 4, Subscriptions: []packet.Subscription{
		{Filter: []byte("admin/#"), QoS: 1},
		{Filter: []byte("data/#"), QoS: 2},
		{Filter: []byte("$share/admin/x"), QoS: 0},
	}})
	// The hook sees shared filters whole: "$share/admin/x" is not under
	// "admin/".
	s.expect(&packet.Suback{PacketID: 4, ReturnCodes: []byte{0x80, 0, 0}})

	o := connect(t, srv, "o", true, false)
	o.send(&packet.Subscribe{PacketID: 5, Subscriptions: []packet.Subscription{{Filter: []byte("data/#"), QoS: 1}}})
	o.expect(&packet.Suback{PacketID: 5, ReturnCodes: []byte{1}})

	p.publish(pub("admin/x", "no", 1, 1))
	p.publish(pub("data/x", "yes", 2, 2))
	checkPublish(t, s.expectPublish(), "data/x", "yes", 0, false)
	got := o.expectPublish()
	checkPublish(t, got, "data/x", "yes", 1, false)
	o.ack(got)
	s.expectNothing()
}

// OnEvent sees connections, messages, refusals and disconnections, with the
// reason the connection ended.
func TestOnEvent(t *testing.T) {
	var mu sync.Mutex
	var log []string
	srv := newServer(t, func(o *broker.Options) {
		o.Authenticate = func(c *broker.Client, password []byte) packet.ReturnCode {
			if string(password) != "pw" {
				return packet.RefusedBadUsernameOrPassword
			}
			return packet.Accepted
		}
		o.OnEvent = func(e *broker.Event) {
			mu.Lock()
			defer mu.Unlock()
			line := e.Kind.String() + " " + e.Client.ID
			switch e.Kind {
			case broker.EventPublish:
				line += " " + string(e.Topic)
			case broker.EventDisconnect:
				if e.Err == nil {
					line += " clean"
				} else {
					line += " lost"
				}
			case broker.EventRefuse:
				line += " " + packet.ReturnCode(e.ReturnCode).String()
			}
			log = append(log, line)
		}
	})
	login := func(id, pw string) *packet.Connect {
		return &packet.Connect{ClientID: []byte(id), CleanSession: true, HasUsername: true, Username: []byte("u"), HasPassword: true, Password: []byte(pw)}
	}
	bad := dial(t, srv, "bad")
	bad.send(login("bad", "wrong"))
	bad.expect(&packet.Connack{ReturnCode: packet.RefusedBadUsernameOrPassword})
	bad.expectClose()

	a := dial(t, srv, "a")
	a.send(login("a", "pw"))
	a.expect(&packet.Connack{})
	a.publish(pub("t/1", "x", 1, 1))
	a.disconnect()
	// The event follows the close the client sees: wait for it.
	waitFor(t, "a's disconnection", func() bool { return srv.Broker.Stats().Disconnected == 1 })
	b := dial(t, srv, "b")
	b.send(login("b", "pw"))
	b.expect(&packet.Connack{})
	b.c.Close()
	waitFor(t, "b's disconnection", func() bool { return srv.Broker.Stats().Disconnected == 2 })

	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"refuse bad " + packet.RefusedBadUsernameOrPassword.String(),
		"connect a", "publish a t/1", "disconnect a clean",
		"connect b", "disconnect b lost",
	}
	if strings.Join(log, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
}

// The Authenticate hook sees the client's TLS certificate on mqtts://.
func TestTLSClientCertificate(t *testing.T) {
	certs := testcert.Must(t)
	var cn string
	srv := broker.New(broker.Options{
		Transport: &transport.Options{TLSConfig: certs.ServerConfig(false)},
		Authenticate: func(c *broker.Client, password []byte) packet.ReturnCode {
			if c.TLS == nil || len(c.TLS.PeerCertificates) == 0 {
				return packet.RefusedNotAuthorized
			}
			cn = c.TLS.PeerCertificates[0].Subject.CommonName
			return packet.Accepted
		},
	})
	l, err := transport.Listen("mqtts://127.0.0.1:0", &transport.Options{TLSConfig: certs.ServerConfig(false)})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, l)
	url := "mqtts://" + l.Addr().String()

	s := dialURL(t, url, &transport.Options{TLSConfig: certs.ClientConfig()}, "with cert")
	s.send(&packet.Connect{ClientID: []byte("c"), CleanSession: true})
	s.expect(&packet.Connack{})
	if cn != "tern-test-client" {
		t.Errorf("Authenticate saw CN %q", cn)
	}
	noCert := certs.ClientConfig()
	noCert.Certificates = nil
	s = dialURL(t, url, &transport.Options{TLSConfig: noCert}, "without cert")
	s.send(&packet.Connect{ClientID: []byte("d"), CleanSession: true})
	s.expect(&packet.Connack{ReturnCode: packet.RefusedNotAuthorized})
}

// [MQTT-6.0.0-4] [MQTT-7.1.1-1] The broker serves every transport: TCP, TLS,
// WebSocket (returning the "mqtt" subprotocol) and Unix sockets, and routes
// between them.
func TestListeners(t *testing.T) {
	certs := testcert.Must(t)
	srv := broker.New(broker.Options{Transport: &transport.Options{TLSConfig: certs.ServerConfig(false)}})
	var urls []string
	for _, u := range []string{"mqtt://127.0.0.1:0", "mqtts://127.0.0.1:0", "ws://127.0.0.1:0/mqtt", "wss://127.0.0.1:0/mqtt", "unix://" + t.TempDir() + "/mqtt.sock"} {
		l, err := transport.Listen(u, &transport.Options{TLSConfig: certs.ServerConfig(false)})
		if err != nil {
			t.Fatal(err)
		}
		serve(t, srv, l)
		if strings.HasPrefix(u, "unix:") {
			urls = append(urls, u)
			continue
		}
		scheme, rest, _ := strings.Cut(u, "://")
		_, path, _ := strings.Cut(rest, "/")
		if path != "" {
			path = "/" + path
		}
		urls = append(urls, scheme+"://"+l.Addr().String()+path)
	}
	opts := &transport.Options{TLSConfig: certs.ClientConfig()}
	var subs []*script
	for i, u := range urls {
		s := dialURL(t, u, opts, u)
		s.send(&packet.Connect{ClientID: []byte{'c', byte('0' + i)}, CleanSession: true})
		s.expect(&packet.Connack{})
		s.subscribe(1, "all", 1)
		if ws, ok := s.c.(*transport.WebSocketConn); ok && ws.Subprotocol() != "mqtt" {
			t.Errorf("%s: subprotocol %q, want mqtt", u, ws.Subprotocol()) // [MQTT-6.0.0-4]
		}
		subs = append(subs, s)
	}
	p := dialURL(t, urls[0], nil, "publisher")
	p.send(&packet.Connect{ClientID: []byte("p"), CleanSession: true})
	p.expect(&packet.Connack{})
	p.publish(pub("all", "hi", 1, 1))
	for _, s := range subs {
		got := s.expectPublish()
		checkPublish(t, got, "all", "hi", 1, false)
		s.ack(got)
	}
}

// A WebSocket client idle for longer than WriteTimeout still gets a pong
// for its ping (RFC 6455 section 5.5.2: it MUST be answered) and its
// connection still works: the write deadline the broker set for its last
// write, long past, does not hold back the pong, nor break the connection.
func TestWebSocketIdlePastWriteTimeout(t *testing.T) {
	const wt = 100 * time.Millisecond
	srv := broker.New(broker.Options{WriteTimeout: wt})
	l, err := transport.Listen("ws://127.0.0.1:0/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, l)
	s := dialURL(t, "ws://"+l.Addr().String()+"/mqtt", nil, "idle")
	s.send(&packet.Connect{ClientID: []byte("idle"), CleanSession: true, KeepAlive: 60})
	s.expect(&packet.Connack{})
	time.Sleep(3 * wt)

	// A masked ping, written under the WebSocketConn, whose reader then
	// holds nothing: the CONNACK frame was read whole.
	nc := s.c.(*transport.WebSocketConn).NetConn()
	key := [4]byte{1, 2, 3, 4}
	ping := []byte{0x89, 0x80 | 4, key[0], key[1], key[2], key[3]}
	for i, b := range []byte("idle") {
		ping = append(ping, b^key[i%4])
	}
	if _, err := nc.Write(ping); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	pong := make([]byte, 6)
	if _, err := io.ReadFull(nc, pong); err != nil || string(pong) != "\x8a\x04idle" {
		t.Fatalf("pong: %q, %v; want \"\\x8a\\x04idle\"", pong, err)
	}
	nc.SetReadDeadline(time.Time{})
	s.send(&packet.Pingreq{})
	s.expect(&packet.Pingresp{})
	if st := srv.Stats(); st.Disconnected != 0 {
		t.Errorf("Stats.Disconnected = %d, want 0", st.Disconnected)
	}
}

// ListenAndServe fails on a bad URL, and returns ErrServerClosed after Close.
func TestListenAndServe(t *testing.T) {
	srv := broker.New(broker.Options{})
	if err := srv.ListenAndServe("gopher://127.0.0.1:0"); !errors.Is(err, transport.ErrUnknownScheme) {
		t.Errorf("ListenAndServe(gopher://) = %v, want ErrUnknownScheme", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe("mqtt://127.0.0.1:0") }()
	time.Sleep(50 * time.Millisecond)
	srv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("ListenAndServe after Close = %v, want ErrServerClosed", err)
		}
	case <-time.After(scriptTimeout):
		t.Fatal("ListenAndServe did not return after Close")
	}
	if err := srv.Serve(nopListener{}); !errors.Is(err, broker.ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}
}

func serve(t testing.TB, srv *broker.Server, l net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

func dialURL(t testing.TB, url string, opts *transport.Options, name string) *script {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	c, err := transport.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("%s: dial: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &script{t: t, name: name, c: c, r: packet.NewReader(c, 0)}
}

// emfileListener fails its first accepts as a process out of file
// descriptors does, then accepts from l.
type emfileListener struct {
	net.Listener
	fails atomic.Int32
}

func (f *emfileListener) Accept() (net.Conn, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return f.Listener.Accept()
}

// Too many open files is trouble to wait out, not the end of Serve: a
// flood of connections that never send CONNECT made the broker exit when
// the process ran out of descriptors (accept4: too many open files).
func TestServeOutOfFiles(t *testing.T) {
	srv := broker.New(broker.Options{Logger: slog.New(slog.DiscardHandler)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &emfileListener{Listener: l}
	fl.fails.Store(5)
	serve(t, srv, fl)
	s := dialURL(t, "mqtt://"+l.Addr().String(), nil, "after")
	s.send(&packet.Connect{ClientID: []byte("after"), CleanSession: true})
	s.expect(&packet.Connack{})
}

// nopListener is a listener that never accepts anything.
type nopListener struct{}

func (nopListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (nopListener) Close() error              { return nil }
func (nopListener) Addr() net.Addr            { return &net.TCPAddr{} }

// A connection reset while a packet is half read ends the connection with
// the read's error, as a net.Conn gives it (an *net.OpError around
// ECONNRESET), whichever way the broker reads the socket (rawio.go).
func TestDisconnectReset(t *testing.T) {
	errs := make(chan error, 1)
	srv := newServer(t, func(o *broker.Options) {
		o.OnEvent = func(e *broker.Event) {
			if e.Kind == broker.EventDisconnect {
				errs <- e.Err
			}
		}
	})
	c := connect(t, srv, "c", true, false)
	c.sendRaw([]byte{0x30, 10, 0, 1}) // a PUBLISH of 10 bytes, 2 of them sent
	time.Sleep(50 * time.Millisecond) // let the broker wait for the rest
	c.c.(*net.TCPConn).SetLinger(0)   // close sends a reset
	c.c.Close()
	select {
	case err := <-errs:
		var oe *net.OpError
		if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("disconnect error %v (%T); want a read *net.OpError around ECONNRESET", err, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EventDisconnect 5 s after the reset")
	}
}
