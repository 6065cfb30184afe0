package transport

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// websocketGUID is appended to the client's key to compute the accept value
// (RFC 6455 section 1.3).
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// HandshakeError reports a WebSocket upgrade the server refused or
// answered wrongly. StatusCode is the HTTP status received (101 when the
// status was right but a header was not).
type HandshakeError struct {
	StatusCode int
	Status     string // e.g. "403 Forbidden"
	Reason     string // what was wrong, when the status alone does not say
}

// Error reads "handshake refused: 403 Forbidden", or names the header at
// fault in a 101 response.
func (e *HandshakeError) Error() string {
	if e.StatusCode != http.StatusSwitchingProtocols {
		return "handshake refused: " + e.Status
	}
	return "bad handshake response: " + e.Reason
}

var aLongTimeAgo = time.Unix(1, 0)

// watchContext makes blocking I/O on conn return when ctx ends, the way
// net/http does: by moving the deadline into the past. The returned stop
// function reports ctx's error if it fired, and clears the deadline
// otherwise.
//
// The context's own deadline is not copied onto conn: the I/O could then
// time out a moment before ctx reports DeadlineExceeded, and the caller
// would see a bare i/o timeout.
func watchContext(ctx context.Context, conn net.Conn) (stop func() error) {
	stopAfter := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	return func() error {
		if !stopAfter() {
			return ctx.Err()
		}
		conn.SetDeadline(time.Time{})
		return nil
	}
}

// clientHandshake performs the client side of the opening handshake (RFC
// 6455 section 4.1) on conn.
func clientHandshake(ctx context.Context, conn net.Conn, e *endpoint, opts *Options) (*WebSocketConn, error) {
	var nonce [16]byte
	crand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	protocols := []string{"mqtt"} // [MQTT-6.0.0-3]
	if opts != nil && len(opts.Subprotocols) > 0 {
		protocols = opts.Subprotocols
	}

	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Opaque: e.path},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		Host:       e.url.Host,
	}
	if opts != nil {
		for k, v := range opts.Header {
			req.Header[http.CanonicalHeaderKey(k)] = v
		}
	}
	// A Host in Options.Header names a virtual host behind a proxy or a
	// custom dialer; net/http only sends req.Host.
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Protocol", strings.Join(protocols, ", "))

	stop := watchContext(ctx, conn)
	resp, br, err := roundTrip(conn, req)
	if cerr := stop(); cerr != nil {
		return nil, fmt.Errorf("websocket handshake: %w", cerr)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, &HandshakeError{StatusCode: resp.StatusCode, Status: resp.Status}
	}
	bad := func(format string, args ...any) error {
		return &HandshakeError{StatusCode: resp.StatusCode, Status: resp.Status, Reason: fmt.Sprintf(format, args...)}
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") {
		return nil, bad("Upgrade header is %q, want websocket", resp.Header.Get("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return nil, bad("Connection header is %q, want Upgrade", resp.Header.Get("Connection"))
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(key); got != want {
		return nil, bad("Sec-WebSocket-Accept is %q, want %q", got, want)
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return nil, bad("server chose extension %q, none was offered", ext)
	}
	// RFC 6455 allows a server to choose no subprotocol; a chosen one must
	// be among those offered.
	proto := resp.Header.Get("Sec-WebSocket-Protocol")
	if proto != "" && !slices.Contains(protocols, proto) {
		return nil, bad("server chose subprotocol %q, offered %q", proto, protocols)
	}
	return newWebSocketConn(conn, br, true, proto, opts), nil
}

// maxResponseHead bounds the HTTP response to a WebSocket upgrade: a
// server or proxy that sends headers without end fails the handshake
// instead of filling memory (RFC 6455 section 10.4).
const maxResponseHead = 64 << 10

// errResponseHead reports a response head longer than maxResponseHead.
var errResponseHead = fmt.Errorf("HTTP response head longer than %d bytes", maxResponseHead)

// headReader reads a connection for the handshake, failing once the
// response head has taken more than its share; lifted after the head, so
// that the same buffered reader goes on with the frames that follow it.
type headReader struct {
	r    io.Reader
	left int // bytes the head may still take; -1 once it is read
}

func (h *headReader) Read(p []byte) (int, error) {
	switch {
	case h.left < 0:
		return h.r.Read(p)
	case h.left == 0:
		return 0, errResponseHead
	}
	n, err := h.r.Read(p[:min(len(p), h.left)])
	h.left -= n
	return n, err
}

// roundTrip writes req and reads the response head. The reader it returns
// may hold the first frames, sent right after the response.
func roundTrip(conn net.Conn, req *http.Request) (*http.Response, *bufio.Reader, error) {
	if err := req.Write(conn); err != nil {
		return nil, nil, err
	}
	hr := &headReader{r: conn, left: maxResponseHead}
	br := bufio.NewReaderSize(hr, 4096)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = errors.New("connection closed before the HTTP response was complete")
		}
		return nil, nil, err
	}
	hr.left = -1
	// The body of a 101 response is the WebSocket stream itself; for
	// other statuses it is an error page nobody reads.
	return resp, br, nil
}

// headerHasToken reports whether a comma-separated header field holds
// token, ignoring case (RFC 7230 section 7).
func headerHasToken(h http.Header, name, token string) bool {
	_, ok := headerToken(h, name, token)
	return ok
}

// headerToken returns the element of a comma-separated header field that
// is token, ignoring case, as the field spells it.
func headerToken(h http.Header, name, token string) (string, bool) {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); strings.EqualFold(t, token) {
				return t, true
			}
		}
	}
	return "", false
}

// UpgradeWebSocket performs the server side of the opening handshake (RFC
// 6455 section 4.2) on an HTTP request and takes over its connection. The
// client must offer one of the accepted subprotocols (Options.Subprotocols,
// default "mqtt" and "mqttv3.1"); the chosen one is returned to it
// [MQTT-6.0.0-4]. On failure UpgradeWebSocket has already answered the
// request with an HTTP error and returns why.
func UpgradeWebSocket(w http.ResponseWriter, r *http.Request, opts *Options) (*WebSocketConn, error) {
	fail := func(status int, msg string) (*WebSocketConn, error) {
		http.Error(w, msg, status)
		return nil, fmt.Errorf("transport: websocket upgrade from %s refused: %s", r.RemoteAddr, msg)
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return fail(http.StatusMethodNotAllowed, "websocket upgrade needs GET")
	}
	if !r.ProtoAtLeast(1, 1) {
		return fail(http.StatusBadRequest, "websocket upgrade needs HTTP/1.1")
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		return fail(http.StatusUpgradeRequired, "not a websocket upgrade request")
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return fail(http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return fail(http.StatusBadRequest, "bad Sec-WebSocket-Key")
	}
	if opts != nil && opts.CheckOrigin != nil && !opts.CheckOrigin(r) {
		return fail(http.StatusForbidden, "origin not allowed")
	}
	accepted := []string{"mqtt", "mqttv3.1"}
	if opts != nil && len(opts.Subprotocols) > 0 {
		accepted = opts.Subprotocols
	}
	// The answer must be one of the values offered (RFC 6455 section
	// 4.2.2), which clients compare as they sent them: a client that
	// offers "MQTT" gets "MQTT" back.
	proto := ""
	for _, p := range accepted {
		if t, ok := headerToken(r.Header, "Sec-WebSocket-Protocol", p); ok {
			proto = t
			break
		}
	}
	if proto == "" {
		// [MQTT-6.0.0-3]: the client must offer "mqtt".
		return fail(http.StatusBadRequest, fmt.Sprintf("no accepted subprotocol offered (want one of %s)", strings.Join(accepted, ", ")))
	}

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fail(http.StatusInternalServerError, "connection cannot be taken over: "+err.Error())
	}
	// The server may have set deadlines; the caller owns the connection now.
	conn.SetDeadline(time.Now().Add(opts.handshakeTimeout()))
	resp := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n" +
		"Sec-WebSocket-Protocol: " + proto + "\r\n\r\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		conn.Close()
		return nil, fmt.Errorf("transport: websocket upgrade from %s: %w", r.RemoteAddr, err)
	}
	conn.SetDeadline(time.Time{})
	// brw.Reader may already hold frames the client sent after its request.
	wc := newWebSocketConn(conn, brw.Reader, false, proto, opts)
	wc.req = r
	return wc, nil
}

// WebSocketHandler is an http.Handler that upgrades requests to MQTT over
// WebSocket and hands the connections out through Accept: it is also a
// net.Listener, so an MQTT server serves it like any other listener while
// the HTTP server mounts it beside its own pages:
//
//	h := transport.NewWebSocketHandler(nil)
//	mux.Handle("/mqtt", h)
//	go broker.Serve(h)
//
// ServeHTTP blocks until the connection is accepted (backpressure, like a
// listen backlog) or the handler is closed.
type WebSocketHandler struct {
	opts  Options
	conns chan net.Conn
	done  chan struct{}
	addr  net.Addr

	mu     sync.Mutex
	closed bool
	active sync.WaitGroup // ServeHTTP calls in progress
	once   sync.Once
}

// NewWebSocketHandler returns a handler upgrading requests with opts (nil
// for defaults).
func NewWebSocketHandler(opts *Options) *WebSocketHandler {
	h := &WebSocketHandler{conns: make(chan net.Conn), done: make(chan struct{}), addr: handlerAddr{}}
	if opts != nil {
		h.opts = *opts
	}
	return h
}

// ServeHTTP upgrades the request and queues the connection for Accept.
func (h *WebSocketHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	h.active.Add(1)
	h.mu.Unlock()
	defer h.active.Done()

	c, err := UpgradeWebSocket(w, r, &h.opts)
	if err != nil {
		return
	}
	select {
	case h.conns <- c:
	case <-h.done:
		c.conn.Close()
	}
}

// Accept waits for the next upgraded connection. After Close it returns
// net.ErrClosed.
func (h *WebSocketHandler) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept return, refuses further requests with 503, closes
// upgraded connections not yet accepted, and waits for ServeHTTP calls to
// return. Connections already accepted are the caller's to close.
func (h *WebSocketHandler) Close() error {
	h.once.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.done)
		h.active.Wait()
	})
	return nil
}

// Addr returns the listening address when the handler belongs to a
// listener made by Listen, and a placeholder otherwise.
func (h *WebSocketHandler) Addr() net.Addr { return h.addr }

// handlerAddr is the Addr of a handler mounted by the caller, whose
// address this package does not know.
type handlerAddr struct{}

func (handlerAddr) Network() string { return "websocket" }
func (handlerAddr) String() string  { return "websocket handler" }
