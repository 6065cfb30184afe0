package transport_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/transport"
)

// fakeWSServer answers a WebSocket upgrade with the response respond
// builds from the request, and records the request.
func fakeWSServer(t *testing.T, respond func(r *http.Request) string) (addr string, reqs chan *http.Request) {
	reqs = make(chan *http.Request, 1)
	addr = rawServer(t, func(c net.Conn) {
		r, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		reqs <- r
		resp := respond(r)
		if resp == "" {
			c.Close()
			return
		}
		io.WriteString(c, resp)
		io.Copy(io.Discard, c)
	})
	return addr, reqs
}

func accept(r *http.Request) string {
	return transport.AcceptKeyForTest(r.Header.Get("Sec-WebSocket-Key"))
}

func TestDialWebSocketHandshake(t *testing.T) {
	ok := func(extra string) func(r *http.Request) string {
		return func(r *http.Request) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
				accept(r) + "\r\n" + extra + "\r\n"
		}
	}
	tests := []struct {
		name    string
		respond func(r *http.Request) string
		want    string // error substring, "" for success
	}{
		{"accepted with mqtt", ok("Sec-WebSocket-Protocol: mqtt\r\n"), ""},
		{"accepted without a subprotocol", ok(""), ""},
		{"header case ignored", func(r *http.Request) string {
			return "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\nsec-websocket-accept: " + accept(r) + "\r\n\r\n"
		}, ""},
		{"refused 403", func(*http.Request) string {
			return "HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n"
		}, "transport: dial ws://ADDR: handshake refused: 403 Forbidden"},
		{"plain 200", func(*http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" }, "handshake refused: 200 OK"},
		{"wrong accept", func(*http.Request) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
		}, "Sec-WebSocket-Accept"},
		{"no upgrade header", func(r *http.Request) string {
			return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept(r) + "\r\n\r\n"
		}, "Upgrade header"},
		{"no connection header", func(r *http.Request) string {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + accept(r) + "\r\n\r\n"
		}, "Connection header"},
		{"subprotocol not offered", ok("Sec-WebSocket-Protocol: stomp\r\n"), `subprotocol "stomp"`},
		{"extension not offered", ok("Sec-WebSocket-Extensions: permessage-deflate\r\n"), "extension"},
		{"not HTTP", func(*http.Request) string { return "SSH-2.0-OpenSSH\r\n\r\n" }, "malformed HTTP"},
		{"closed", func(*http.Request) string { return "" }, "connection closed before the HTTP response was complete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, reqs := fakeWSServer(t, tt.respond)
			hdr := http.Header{"Authorization": {"Bearer x"}}
			c, err := transport.Dial(ctxT(t), "ws://"+addr, &transport.Options{Header: hdr})
			if c != nil {
				c.Close()
			}
			want := strings.ReplaceAll(tt.want, "ADDR", addr)
			if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
				t.Fatalf("error %v, want %q", err, want)
			}
			var herr *transport.HandshakeError
			if strings.Contains(tt.name, "403") && (!errors.As(err, &herr) || herr.StatusCode != 403) {
				t.Fatalf("error %v is not a HandshakeError with status 403", err)
			}
			r := <-reqs
			if r.Method != "GET" || r.URL.Path != "/mqtt" || r.Host != addr {
				t.Fatalf("request %s %s Host %s, want GET /mqtt Host %s", r.Method, r.URL, r.Host, addr)
			}
			for k, v := range map[string]string{
				"Sec-Websocket-Protocol": "mqtt", // [MQTT-6.0.0-3]
				"Sec-Websocket-Version":  "13",
				"Upgrade":                "websocket",
				"Connection":             "Upgrade",
				"Authorization":          "Bearer x",
			} {
				if got := r.Header.Get(k); got != v {
					t.Errorf("request header %s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestFramesRightAfterUpgrade(t *testing.T) {
	// The server's first frame arrives in the same segment as its 101
	// response; the bytes buffered while reading the response must not be
	// lost. Likewise the client's first frame right after its request.
	addr, _ := fakeWSServer(t, func(r *http.Request) string {
		return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			accept(r) + "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n" + string([]byte{0x82, 0x04, 0x20, 0x02, 0x00, 0x00})
	})
	c, err := transport.Dial(ctxT(t), "ws://"+addr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, connack) {
		t.Fatalf("read % x, %v; want CONNACK", got, err)
	}

	ln, err := transport.Listen("ws://127.0.0.1:0/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	req := "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqttv3.1, mqtt\r\n\r\n"
	frame := []byte{0x82, 0x84, 1, 2, 3, 4, 0xc0 ^ 1, 0x00 ^ 2, 0xc0 ^ 3, 0x00 ^ 4} // two PINGREQs, masked
	raw.Write(append([]byte(req), frame...))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	got = make([]byte, 4)
	if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, []byte{0xc0, 0, 0xc0, 0}) {
		t.Fatalf("server read % x, %v", got, err)
	}
	// The server prefers mqtt over mqttv3.1 whatever the client's order
	// [MQTT-6.0.0-4], and the accept key is the RFC's.
	resp, err := http.ReadResponse(bufio.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Protocol") != "mqtt" ||
		resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("response %s %v", resp.Status, resp.Header)
	}
}

func TestUpgradeRefused(t *testing.T) {
	ln, err := transport.Listen("ws://127.0.0.1:0/mqtt", &transport.Options{
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") != "http://evil.example" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	good := http.Header{
		"Upgrade":                {"websocket"},
		"Connection":             {"Upgrade"},
		"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Protocol": {"mqtt"},
	}
	with := func(k, v string) http.Header {
		h := good.Clone()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		status int
	}{
		{"wrong path", "GET", "/other", good, 404},
		{"POST", "POST", "/mqtt", good, 405},
		{"no Upgrade", "GET", "/mqtt", with("Upgrade", ""), 426},
		{"no Connection upgrade", "GET", "/mqtt", with("Connection", "keep-alive"), 426},
		{"version 8", "GET", "/mqtt", with("Sec-Websocket-Version", "8"), 426},
		{"no key", "GET", "/mqtt", with("Sec-Websocket-Key", ""), 400},
		{"short key", "GET", "/mqtt", with("Sec-Websocket-Key", "c2hvcnQ="), 400},
		{"no subprotocol [MQTT-6.0.0-3]", "GET", "/mqtt", with("Sec-Websocket-Protocol", ""), 400},
		{"other subprotocol", "GET", "/mqtt", with("Sec-Websocket-Protocol", "stomp, mqtt5"), 400},
		{"origin refused", "GET", "/mqtt", with("Origin", "http://evil.example"), 403},
		{"accepted", "GET", "/mqtt", with("Origin", "http://good.example"), 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			req, _ := http.NewRequest(tt.method, "http://"+ln.Addr().String()+tt.path, nil)
			req.Header = tt.header
			req.Write(raw)
			resp, err := http.ReadResponse(bufio.NewReader(raw), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %s, want %d", resp.Status, tt.status)
			}
			if tt.status == 101 {
				c, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func TestSubprotocolChoice(t *testing.T) {
	// [MQTT-6.0.0-4] The server returns the subprotocol it selected.
	for _, tt := range []struct {
		offered  []string
		accepted []string
		want     string
	}{
		{[]string{"mqtt"}, nil, "mqtt"},
		{[]string{"mqttv3.1"}, nil, "mqttv3.1"},
		{[]string{"mqttv3.1", "mqtt"}, nil, "mqtt"},
		{[]string{"custom", "mqtt"}, []string{"custom"}, "custom"},
		// The answer is the value as the client offered it (RFC 6455
		// section 4.2.2), matched ignoring case.
		{[]string{"MQTT"}, nil, "MQTT"},
		{[]string{"Mqtt", "mqttv3.1"}, nil, "Mqtt"},
	} {
		ln, err := transport.Listen("ws://127.0.0.1:0", &transport.Options{Subprotocols: tt.accepted})
		if err != nil {
			t.Fatal(err)
		}
		c, err := transport.Dial(ctxT(t), "ws://"+ln.Addr().String(), &transport.Options{Subprotocols: tt.offered})
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := c.(*transport.WebSocketConn).Subprotocol(); got != tt.want {
			t.Errorf("offered %v, accepted %v: client got %q, want %q", tt.offered, tt.accepted, got, tt.want)
		}
		if got := sc.(*transport.WebSocketConn).Subprotocol(); got != tt.want {
			t.Errorf("server chose %q, want %q", got, tt.want)
		}
		if r := sc.(*transport.WebSocketConn).Request(); r == nil || r.URL.Path != "/mqtt" || r.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Errorf("server conn's Request() = %v", r)
		}
		if c.(*transport.WebSocketConn).Request() != nil {
			t.Error("client conn has an upgrade request")
		}
		c.Close()
		sc.Close()
		ln.Close()
	}
}

func TestWebSocketHandlerBesidePages(t *testing.T) {
	h := transport.NewWebSocketHandler(nil)
	mux := http.NewServeMux()
	mux.Handle("/mqtt", h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "home page") })
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(tcp)
	defer srv.Close()
	serveMQTT(t, h)

	resp, err := http.Get("http://" + tcp.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "home page" {
		t.Fatalf("page: %q", body)
	}
	c, err := transport.Dial(ctxT(t), "ws://"+tcp.Addr().String()+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, c)
	c.Close()

	h.Close()
	if _, err := h.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	_, err = transport.Dial(ctxT(t), "ws://"+tcp.Addr().String()+"/mqtt", nil)
	var herr *transport.HandshakeError
	if !errors.As(err, &herr) || herr.StatusCode != 503 {
		t.Fatalf("dial after handler Close: %v, want 503", err)
	}
}

// A server that answers the upgrade with a response head that never ends,
// as many header lines or one endless line, fails the handshake once the
// head passes 64 KiB, instead of filling the client's memory until the
// context ends (RFC 6455 section 10.4). The server writes at most 8 MiB.
func TestDialEndlessResponseHead(t *testing.T) {
	for name, filler := range map[string]string{
		"lines":    "X-Filler: " + strings.Repeat("a", 100) + "\r\n",
		"one line": strings.Repeat("a", 1000),
	} {
		t.Run(name, func(t *testing.T) {
			addr := rawServer(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nX-Start: 1")
				if name == "lines" {
					io.WriteString(c, "\r\n")
				}
				for sent := 0; sent < 8<<20; sent += len(filler) {
					if _, err := io.WriteString(c, filler); err != nil {
						return
					}
				}
			})
			_, err := transport.Dial(ctxT(t), "ws://"+addr+"/mqtt", nil)
			if err == nil || !strings.Contains(err.Error(), "longer than 65536 bytes") {
				t.Fatalf("Dial: %v, want the response head refused for its length", err)
			}
		})
	}
}
