package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/transport"
)

// connect is a minimal MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean
// session, keepalive 60, empty client id.
var connect = []byte{
	0x10, 0x0c, // CONNECT, remaining length 12
	0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
	0x04,       // protocol level 4
	0x02,       // clean session
	0x00, 0x3c, // keepalive 60 s
	0x00, 0x00, // client id ""
}

// connack is CONNACK, session present 0, return code 0 (accepted).
var connack = []byte{0x20, 0x02, 0x00, 0x00}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serveMQTT accepts connections on ln and answers one CONNECT with a
// CONNACK on each, then echoes whatever follows.
func serveMQTT(t *testing.T, ln net.Listener) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, len(connect))
				if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, connect) {
					return
				}
				if _, err := c.Write(connack); err != nil {
					return
				}
				io.Copy(c, c)
			}()
		}
	}()
}

// exchange sends CONNECT on c, expects CONNACK, then checks an echo.
func exchange(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(connect); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	got := make([]byte, len(connack))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if !bytes.Equal(got, connack) {
		t.Fatalf("got % x, want CONNACK % x", got, connack)
	}
	msg := bytes.Repeat([]byte("0123456789abcdef"), 5000) // spans frames and records
	go c.Write(msg)
	echo := make([]byte, len(msg))
	if _, err := io.ReadFull(c, echo); err != nil || !bytes.Equal(echo, msg) {
		t.Fatalf("echo: %v", err)
	}
}

// TestSchemesAgainstOwnListeners checks every scheme end to end: each gives
// an ordered, lossless byte stream in both directions [MQTT-7.1.1-1]
// [MQTT-7.1.2-1].
func TestSchemesAgainstOwnListeners(t *testing.T) {
	certs := testcert.Must(t)
	sock := filepath.Join(t.TempDir(), "mqtt.sock")
	tests := []struct {
		listen, dial string // dial "" means the listen scheme with the picked address
		tls          bool
	}{
		{"mqtt://127.0.0.1:0", "mqtt", false},
		{"tcp://127.0.0.1:0", "tcp", false},
		{"mqtts://127.0.0.1:0", "mqtts", true},
		{"ssl://127.0.0.1:0", "ssl", true},
		{"tls://127.0.0.1:0", "tls", true},
		{"ws://127.0.0.1:0/mqtt", "ws", false},
		{"wss://127.0.0.1:0/mqtt", "wss", true},
		{"ws://127.0.0.1:0", "ws", false}, // any path
		{"unix://" + sock, "unix", false},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			opts := &transport.Options{TLSConfig: certs.ServerConfig(false)}
			ln, err := transport.Listen(tt.listen, opts)
			if err != nil {
				t.Fatal(err)
			}
			serveMQTT(t, ln)
			url := tt.dial + "://" + ln.Addr().String()
			switch tt.dial {
			case "ws", "wss":
				url += "/mqtt"
			case "unix":
				url = "unix://" + sock
			}
			var dopts *transport.Options
			if tt.tls {
				dopts = &transport.Options{TLSConfig: &tls.Config{RootCAs: certs.Pool}}
			}
			c, err := transport.Dial(ctxT(t), url, dopts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if strings.HasPrefix(tt.dial, "ws") {
				wc, ok := c.(*transport.WebSocketConn)
				if !ok || wc.Subprotocol() != "mqtt" { // [MQTT-6.0.0-4]
					t.Fatalf("Dial returned %T with subprotocol %q, want *WebSocketConn with mqtt", c, wc.Subprotocol())
				}
			}
			exchange(t, c)
		})
	}
}

func TestTLSClientCertificate(t *testing.T) {
	certs := testcert.Must(t)
	for _, scheme := range []string{"mqtts", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			ln, err := transport.Listen(scheme+"://127.0.0.1:0", &transport.Options{TLSConfig: certs.ServerConfig(true)})
			if err != nil {
				t.Fatal(err)
			}
			serveMQTT(t, ln)
			url := scheme + "://localhost:" + port(ln) // ServerName defaults to the URL host
			c, err := transport.Dial(ctxT(t), url, &transport.Options{TLSConfig: certs.ClientConfig()})
			if err != nil {
				t.Fatal(err)
			}
			exchange(t, c)
			c.Close()

			// Without the client certificate the server refuses; with TLS
			// 1.3 the refusal arrives on the first read.
			c, err = transport.Dial(ctxT(t), url, &transport.Options{TLSConfig: &tls.Config{RootCAs: certs.Pool}})
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write(connect)
				_, err = io.ReadFull(c, make([]byte, 4))
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("without a client certificate: %v, want a certificate error", err)
			}
		})
	}
}

func port(ln net.Listener) string { return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port) }

func TestDialTLSFailure(t *testing.T) {
	certs := testcert.Must(t)
	for _, scheme := range []string{"mqtts", "wss"} {
		ln, err := transport.Listen(scheme+"://127.0.0.1:0", &transport.Options{TLSConfig: certs.ServerConfig(false)})
		if err != nil {
			t.Fatal(err)
		}
		serveMQTT(t, ln)
		// The system roots do not hold the test CA.
		url := scheme + "://" + ln.Addr().String()
		_, err = transport.Dial(ctxT(t), url, nil)
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) || !strings.Contains(err.Error(), "transport: dial "+url) || !strings.Contains(err.Error(), "tls handshake") {
			t.Fatalf("%s: error %v, want a wrapped x509.UnknownAuthorityError", scheme, err)
		}
		// A name the certificate does not hold.
		_, err = transport.Dial(ctxT(t), url, &transport.Options{TLSConfig: &tls.Config{RootCAs: certs.Pool, ServerName: "example.com"}})
		var herr x509.HostnameError
		if !errors.As(err, &herr) {
			t.Fatalf("%s: error %v, want x509.HostnameError", scheme, err)
		}
	}
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"foo://127.0.0.1:1", `transport: dial foo://127.0.0.1:1: unknown URL scheme "foo"`},
		{"127.0.0.1:1883", "transport: dial 127.0.0.1:1883: unknown URL scheme: missing scheme"},
		{"localhost", "missing scheme"},
		{"mqtt://[::1", "transport: dial mqtt://[::1: missing ']' in host"},
		{"unix://", "without a socket path"},
		{"mqtt:opaque", "missing scheme"},
		{"mqtt://user:secret@127.0.0.1:1", "transport: dial mqtt://user:xxxxx@127.0.0.1:1: dial tcp 127.0.0.1:1"},
	}
	for _, tt := range tests {
		_, err := transport.Dial(ctxT(t), tt.url, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Dial(%q): %v, want an error containing %q", tt.url, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Dial(%q) error shows the password: %v", tt.url, err)
		}
	}
	if _, err := transport.Dial(ctxT(t), "bogus://x", nil); !errors.Is(err, transport.ErrUnknownScheme) {
		t.Errorf("error %v is not ErrUnknownScheme", err)
	}
	if _, err := transport.Listen("mqtts://127.0.0.1:0", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Listen mqtts without TLSConfig: %v, want an error about the certificate", err)
	}
	if _, err := transport.Listen("http://127.0.0.1:0", nil); !errors.Is(err, transport.ErrUnknownScheme) {
		t.Errorf("Listen http: %v, want ErrUnknownScheme", err)
	}
}

// rawServer accepts TCP connections and hands each to fn.
func rawServer(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			go fn(c)
		}
	}()
	return ln.Addr().String()
}

func TestDialContextCancel(t *testing.T) {
	// A server that accepts TCP and then says nothing: the TLS handshake or
	// the HTTP upgrade would wait forever. Cancelling the context must end
	// the dial promptly (the 2 s bound is generous, not a speed claim).
	silent := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	for _, scheme := range []string{"mqtts", "ws", "wss"} {
		for _, how := range []string{"cancel", "deadline"} {
			t.Run(scheme+"/"+how, func(t *testing.T) {
				var ctx context.Context
				var cancel context.CancelFunc
				want := context.Canceled
				if how == "cancel" {
					ctx, cancel = context.WithCancel(t.Context())
					time.AfterFunc(100*time.Millisecond, cancel)
				} else {
					ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
					want = context.DeadlineExceeded
				}
				defer cancel()
				errc := make(chan error, 1)
				go func() {
					c, err := transport.Dial(ctx, scheme+"://"+silent+"/mqtt", nil)
					if c != nil {
						c.Close()
					}
					errc <- err
				}()
				<-ctx.Done()
				select {
				case err := <-errc:
					if !errors.Is(err, want) {
						t.Fatalf("error %v, want %v", err, want)
					}
				case <-time.After(2 * time.Second):
					t.Fatal("Dial still blocked 2s after its context ended")
				}
			})
		}
	}
	// Already cancelled: nothing is dialed.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := transport.Dial(ctx, "mqtt://"+silent, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

func TestCustomDialer(t *testing.T) {
	ln, err := transport.Listen("ws://127.0.0.1:0/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	serveMQTT(t, ln)
	var gotNetwork, gotAddr string
	opts := &transport.Options{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			gotNetwork, gotAddr = network, addr
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		},
	}
	c, err := transport.Dial(ctxT(t), "ws://broker.example", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if gotNetwork != "tcp" || gotAddr != "broker.example:80" {
		t.Fatalf("dialer called with %s %s, want tcp broker.example:80", gotNetwork, gotAddr)
	}
	exchange(t, c)

	// A dialer error is reported with the URL.
	opts.DialContext = func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("proxy said no") }
	if _, err := transport.Dial(ctxT(t), "mqtt://broker.example", opts); err == nil || err.Error() != "transport: dial mqtt://broker.example: proxy said no" {
		t.Fatalf("error %v", err)
	}
}

// settleGoroutines waits for the goroutine count to fall to at most n.
func settleGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestListenerCloseLeavesNoGoroutines(t *testing.T) {
	certs := testcert.Must(t)
	for _, url := range []string{"mqtt://127.0.0.1:0", "mqtts://127.0.0.1:0", "ws://127.0.0.1:0", "wss://127.0.0.1:0/mqtt", "unix://" + filepath.Join(t.TempDir(), "s")} {
		t.Run(url, func(t *testing.T) {
			before := runtime.NumGoroutine()
			ln, err := transport.Listen(url, &transport.Options{TLSConfig: certs.ServerConfig(false)})
			if err != nil {
				t.Fatal(err)
			}
			network, addr := "tcp", ln.Addr().String()
			if strings.HasPrefix(url, "unix") {
				network = "unix"
			}
			// Connections in every state: idle before the request, one
			// upgraded but never accepted, one half-way through a request.
			var raws []net.Conn
			for range 3 {
				raw, err := net.Dial(network, addr)
				if err != nil {
					t.Fatal(err)
				}
				raws = append(raws, raw)
			}
			if strings.HasPrefix(url, "ws://") {
				io.WriteString(raws[1], "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
					"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
				io.WriteString(raws[2], "GET / HTTP/1.1\r\nHost: x\r\n")
				time.Sleep(50 * time.Millisecond) // let the server reach ServeHTTP
			}
			done := make(chan error, 1)
			go func() { done <- ln.Close() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close blocked")
			}
			if _, err := ln.Accept(); err == nil {
				t.Fatal("Accept after Close succeeded")
			}
			for _, raw := range raws {
				raw.Close()
			}
			settleGoroutines(t, before)
		})
	}
}

func TestAcceptKeyRFCExample(t *testing.T) {
	// RFC 6455 section 1.3 (and 4.2.2, 4.1 of the RFC's example handshake).
	if got := transport.AcceptKeyForTest("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("accept key %q", got)
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"mqtt://h", "tcp://h:1", "mqtts://h", "ssl://h", "tls://[::1]:8883", "ws://h", "wss://h:443/x?y=1", "unix:///tmp/s", "unix://rel.sock", "MQTT://h", "mqtt://h:65535"} {
		if err := transport.CheckURL(u); err != nil {
			t.Errorf("CheckURL(%q): %v", u, err)
		}
	}
	for _, u := range []string{"", "h:1883", "http://h", "mqtt://[::1", "unix://", "mqtt://u:secret@h:x", "mqtt://h:65536", "ws://h:99999"} {
		err := transport.CheckURL(u)
		if err == nil {
			t.Errorf("CheckURL(%q) accepted", u)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("CheckURL(%q) shows the password: %v", u, err)
		}
	}
}

func TestDialHostHeader(t *testing.T) {
	addr, reqs := fakeWSServer(t, func(r *http.Request) string { return "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n" })
	_, err := transport.Dial(ctxT(t), "ws://"+addr+"/x", &transport.Options{Header: http.Header{"Host": {"broker.example"}, "User-Agent": {"tern-test"}}})
	if err == nil || !strings.Contains(err.Error(), "404 Not Found") {
		t.Fatalf("error %v", err)
	}
	r := <-reqs
	if r.Host != "broker.example" || r.UserAgent() != "tern-test" || r.URL.Path != "/x" {
		t.Fatalf("Host %q, User-Agent %q, path %q", r.Host, r.UserAgent(), r.URL.Path)
	}
}

func TestHandshakeTimeoutClosesSilentClients(t *testing.T) {
	for _, scheme := range []string{"ws", "wss"} {
		certs := testcert.Must(t)
		ln, err := transport.Listen(scheme+"://127.0.0.1:0", &transport.Options{HandshakeTimeout: 100 * time.Millisecond, TLSConfig: certs.ServerConfig(false)})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if scheme == "ws" {
			io.WriteString(raw, "GET /mqtt HTTP/1.1\r\n") // and then nothing
		} // wss: not even a TLS hello
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, raw)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: server kept a silent client beyond its handshake timeout", scheme)
		}
	}
}

func TestMaxFrameSizeEndToEnd(t *testing.T) {
	// The server's limit applies to what clients send; the client learns
	// why from the close status 1009.
	ln, err := transport.Listen("ws://127.0.0.1:0", &transport.Options{MaxFrameSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := transport.Dial(ctxT(t), "ws://"+ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, 1024)); err != nil {
		t.Fatalf("frame at the limit: %v", err)
	}
	c.Write(make([]byte, 1025))
	if _, err := s.Read(make([]byte, 10)); !errors.Is(err, transport.ErrFrameTooLarge) {
		t.Fatalf("server read %v, want ErrFrameTooLarge", err)
	}
	var ce *transport.CloseError
	if _, err := c.Read(make([]byte, 10)); !errors.As(err, &ce) || ce.Code != transport.StatusMessageTooBig {
		t.Fatalf("client read %v, want close status 1009", err)
	}
}

func TestUnixSocketRemovedOnClose(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "m.sock")
	ln, err := transport.Listen("unix://"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := transport.Dial(ctxT(t), "unix://"+sock, nil); err == nil {
		t.Fatal("dial after Close succeeded")
	}
	// The path is free again.
	ln, err = transport.Listen("unix://"+sock, nil)
	if err != nil {
		t.Fatalf("listen again: %v", err)
	}
	ln.Close()
}

func TestWSSNegotiatesHTTP1(t *testing.T) {
	// A client config listing h2 must still get HTTP/1.1 for the upgrade,
	// from a server that would prefer h2.
	certs := testcert.Must(t)
	srvCfg := certs.ServerConfig(false)
	srvCfg.NextProtos = []string{"h2", "http/1.1"}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := transport.NewWebSocketHandler(nil)
	srv := &http.Server{Handler: h, TLSConfig: srvCfg}
	go srv.ServeTLS(tcp, "", "")
	defer srv.Close()
	defer h.Close()
	cliCfg := certs.ClientConfig()
	cliCfg.NextProtos = []string{"h2"}
	c, err := transport.Dial(ctxT(t), "wss://"+tcp.Addr().String(), &transport.Options{TLSConfig: cliCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.(*transport.WebSocketConn).NetConn().(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("negotiated %q", p)
	}
}
