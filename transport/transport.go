// Package transport opens MQTT connections by URL, for clients (Dial) and
// servers (Listen), over TCP, TLS, WebSocket, secure WebSocket and Unix
// sockets. Every connection is a plain net.Conn carrying the MQTT byte
// stream, so the layers above never care which transport is under them.
//
// URL schemes and their default ports:
//
//	mqtt://host:port, tcp://host:port     TCP, port 1883
//	mqtts://, ssl://, tls://              TLS over TCP, port 8883
//	ws://host:port/path                   WebSocket, port 80, path /mqtt
//	wss://host:port/path                  WebSocket over TLS, port 443, path /mqtt
//	unix:///path/to/socket                Unix domain socket
//
// WebSocket (RFC 6455) is implemented here on the standard library alone,
// following chapter 6 of MQTT 3.1.1: binary frames only, subprotocol
// "mqtt". See WebSocketConn for the frame layer and WebSocketHandler for
// serving MQTT over WebSocket beside other HTTP pages.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options tunes Dial, Listen and the WebSocket layer. A nil *Options means
// all defaults. Each field says whether it applies to dialing, listening or
// both.
type Options struct {
	// TLSConfig is used for mqtts, ssl, tls and wss. Dial: nil means the
	// system roots; an empty ServerName is set to the URL's host. Listen:
	// required for those schemes, with Certificates or GetCertificate. The
	// config is cloned, never modified.
	TLSConfig *tls.Config

	// DialContext, when set, opens the raw connection (network "tcp" with
	// host:port, or "unix" with the socket path) in place of a net.Dialer:
	// for a SOCKS or HTTP proxy, a custom source address, or an in-memory
	// pipe in tests. TLS and the WebSocket handshake still run on top of
	// what it returns. UnsentLimit applies to a *net.TCPConn, or to the
	// one a wrapper returns from a NetConn method (as tls.Conn has). Dial
	// only.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Header holds extra HTTP header fields for the WebSocket upgrade
	// request, such as Authorization, Cookie, Origin or User-Agent; a Host
	// field replaces the URL's host in the request. The WebSocket fields
	// themselves are always set by Dial. Dial only.
	Header http.Header

	// Subprotocols are the WebSocket subprotocols offered (Dial, default
	// "mqtt" [MQTT-6.0.0-3]) or accepted in order of preference (Listen and
	// WebSocketHandler, default "mqtt" then "mqttv3.1" [MQTT-6.0.0-4]).
	Subprotocols []string

	// MaxFrameSize limits the payload of one received WebSocket frame;
	// zero means DefaultMaxFrameSize. Both.
	MaxFrameSize int64

	// HandshakeTimeout bounds the TLS handshake and the HTTP upgrade of an
	// incoming WebSocket connection; zero means 10 seconds. Listen and
	// WebSocketHandler only: Dial is bounded by its context.
	HandshakeTimeout time.Duration

	// CheckOrigin, when set, must approve the Origin of each WebSocket
	// upgrade request; a request it refuses gets 403 Forbidden. The default
	// accepts every origin, as MQTT brokers commonly do. Listen and
	// WebSocketHandler only.
	CheckOrigin func(r *http.Request) bool

	// UnsentLimit bounds the bytes a TCP connection's kernel buffer holds
	// that are written but not yet sent (TCP_NOTSENT_LOWAT, on Linux and
	// macOS; ignored elsewhere and for Unix sockets): a write beyond it waits
	// until the peer takes more. Without a bound the kernel grows the buffer
	// to megabytes, and a publisher that outruns its broker queues seconds of
	// messages there, out of the client's sight: latency grows, and a QoS 0
	// message reported written is lost if the connection ends. Zero means
	// DefaultUnsentLimit, a negative value the kernel's default. Both: Listen
	// sets it on every TCP connection it accepts (tcp, tls, ws and wss), so
	// that a subscriber that stops reading holds about this much in the
	// server's kernel besides what the server queues for it.
	UnsentLimit int
}

// DefaultUnsentLimit is Options.UnsentLimit's default: at 64 KiB, writes of
// half of it keep a loopback or LAN connection busy, and a backlog of small
// messages waits at most a few milliseconds in the kernel.
const DefaultUnsentLimit = 64 << 10

func (o *Options) unsentLimit() int {
	if o == nil || o.UnsentLimit == 0 {
		return DefaultUnsentLimit
	}
	return o.UnsentLimit
}

const defaultHandshakeTimeout = 10 * time.Second

func (o *Options) handshakeTimeout() time.Duration {
	if o == nil || o.HandshakeTimeout <= 0 {
		return defaultHandshakeTimeout
	}
	return o.HandshakeTimeout
}

// ErrUnknownScheme is returned for a URL whose scheme is none of the ones
// this package knows.
var ErrUnknownScheme = errors.New("unknown URL scheme")

// kind is a transport family; several schemes map to one.
type kind int

const (
	kindTCP kind = iota
	kindTLS
	kindWS
	kindWSS
	kindUnix
)

// endpoint is a parsed URL with the defaults filled in.
type endpoint struct {
	url  *url.URL
	kind kind
	addr string // host:port, or the socket path for unix
	path string // WebSocket request path
}

// parseURL parses raw and fills in the default port and WebSocket path.
func parseURL(raw string) (*endpoint, error) {
	if !strings.Contains(raw, "://") {
		// "host:port" would parse with host as the scheme; say what is wrong.
		return nil, fmt.Errorf("%w: missing scheme (write mqtt://host:port, mqtts://, ws://, wss:// or unix:///path)", ErrUnknownScheme)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// *url.Error repeats the URL, password and all; the caller adds a
		// redacted one.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	e := &endpoint{url: u}
	port := ""
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
		e.kind, port = kindTCP, "1883"
	case "mqtts", "ssl", "tls":
		e.kind, port = kindTLS, "8883"
	case "ws":
		e.kind, port = kindWS, "80"
	case "wss":
		e.kind, port = kindWSS, "443"
	case "unix":
		e.kind = kindUnix
		e.addr = u.Host + u.Path
		if e.addr == "" {
			return nil, errors.New("unix URL without a socket path")
		}
		return e, nil
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownScheme, u.Scheme)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n > 65535 {
			return nil, fmt.Errorf("port %s out of range", p)
		}
		port = p
	}
	e.addr = net.JoinHostPort(u.Hostname(), port)
	e.path = u.EscapedPath()
	if e.path == "" {
		e.path = "/mqtt"
	}
	if u.RawQuery != "" {
		e.path += "?" + u.RawQuery
	}
	return e, nil
}

// CheckURL reports whether Dial and Listen understand rawURL: a known
// scheme, a host (or a socket path for unix) that parses. It does not
// resolve or connect; clients use it to reject bad options early.
func CheckURL(rawURL string) error {
	if _, err := parseURL(rawURL); err != nil {
		return fmt.Errorf("transport: %s: %w", redact(rawURL), err)
	}
	return nil
}

// Dial connects to the MQTT server at rawURL (see the package comment for
// the schemes) and returns the connection once the transport is ready for
// the first MQTT packet: TCP connected, TLS handshake done, WebSocket
// upgraded. ctx bounds every step; when it ends first, Dial returns an
// error wrapping ctx.Err(). Errors read like
// "transport: dial ws://host/mqtt: handshake refused: 403 Forbidden".
func Dial(ctx context.Context, rawURL string, opts *Options) (net.Conn, error) {
	e, err := parseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", redact(rawURL), err)
	}
	c, err := dial(ctx, e, opts)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", e.url.Redacted(), err)
	}
	return c, nil
}

func dial(ctx context.Context, e *endpoint, opts *Options) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	network := "tcp"
	if e.kind == kindUnix {
		network = "unix"
	}
	dialFn := (&net.Dialer{}).DialContext
	if opts != nil && opts.DialContext != nil {
		dialFn = opts.DialContext
	}
	conn, err := dialFn(ctx, network, e.addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := tcpConn(conn); ok {
		if n := opts.unsentLimit(); n > 0 {
			if err := setUnsentLimit(tc, n); err != nil {
				conn.Close()
				return nil, fmt.Errorf("unsent limit: %w", err)
			}
		}
	}
	if e.kind == kindTLS || e.kind == kindWSS {
		cfg := clientTLSConfig(opts, e.url.Hostname())
		if e.kind == kindWSS {
			// The upgrade needs HTTP/1.1; a server offered h2 may pick it.
			cfg.NextProtos = []string{"http/1.1"}
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("tls handshake: %w", ctx.Err())
			}
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	if e.kind == kindWS || e.kind == kindWSS {
		wc, err := clientHandshake(ctx, conn, e, opts)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return wc, nil
	}
	return conn, nil
}

// tcpConn returns the TCP connection under conn: conn itself, or the one a
// wrapper from Options.DialContext returns from its NetConn method.
func tcpConn(conn net.Conn) (*net.TCPConn, bool) {
	if w, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = w.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	return tc, ok
}

// clientTLSConfig clones the configured TLS config, defaulting ServerName
// to the URL's host so certificates are checked against it.
func clientTLSConfig(opts *Options, host string) *tls.Config {
	var cfg *tls.Config
	if opts != nil && opts.TLSConfig != nil {
		cfg = opts.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}

// redact hides a password in a URL that failed to parse, as well as it can.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if i, j := strings.Index(raw, "://"), strings.LastIndex(raw, "@"); i >= 0 && j > i {
		return raw[:i+3] + "xxxxx" + raw[j:]
	}
	return raw
}
