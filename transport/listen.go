package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
)

// Listen announces on the address of rawURL and returns a listener of MQTT
// connections: tcp (mqtt://, tcp://), tls (mqtts://, ssl://, tls://), ws://,
// wss:// and unix://. Use port 0 to let the system pick one; Addr tells
// which.
//
// For tls and wss, opts.TLSConfig must hold the server certificate. A tls
// listener returns *tls.Conn values whose handshake runs on their first
// Read or Write (as crypto/tls does), in the goroutine serving the
// connection, so one slow client never holds up Accept; a client's Dial
// returns once the server has read from the connection. A wss listener
// completes the handshake before Accept returns the connection.
//
// For ws and wss, Listen runs an HTTP server that upgrades requests to the
// URL's path, or to any path when the URL has none or "/". Accept returns
// *WebSocketConn values. Close stops the HTTP server, closes connections
// not yet accepted, and returns once every goroutine Listen started has
// ended; accepted connections stay open.
func Listen(rawURL string, opts *Options) (net.Listener, error) {
	e, err := parseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", redact(rawURL), err)
	}
	ln, err := listen(e, opts)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", e.url.Redacted(), err)
	}
	return ln, nil
}

func listen(e *endpoint, opts *Options) (net.Listener, error) {
	var cfg *tls.Config
	if e.kind == kindTLS || e.kind == kindWSS {
		if opts == nil || opts.TLSConfig == nil ||
			(len(opts.TLSConfig.Certificates) == 0 && opts.TLSConfig.GetCertificate == nil && opts.TLSConfig.GetConfigForClient == nil) {
			return nil, errors.New("TLS needs Options.TLSConfig with a certificate")
		}
		cfg = opts.TLSConfig.Clone()
	}
	network := "tcp"
	if e.kind == kindUnix {
		network = "unix"
	}
	ln, err := net.Listen(network, e.addr)
	if err != nil {
		return nil, err
	}
	if tl, ok := ln.(*net.TCPListener); ok {
		if n := opts.unsentLimit(); n > 0 {
			ln = &unsentListener{tl, n}
		}
	}
	switch e.kind {
	case kindTLS:
		return tls.NewListener(ln, cfg), nil
	case kindWS, kindWSS:
		if cfg != nil {
			// HTTP/2 cannot hand over its connection; keep ALPN to
			// HTTP/1.1.
			cfg.NextProtos = []string{"http/1.1"}
		}
		return newWSListener(ln, cfg, e.url.Path, opts), nil
	}
	return ln, nil
}

// unsentListener sets Options.UnsentLimit on the TCP connections it
// accepts, before TLS or WebSocket wraps them: a broker's subscriber that
// stops reading then holds about the limit in the kernel beyond the
// broker's own queue, not megabytes.
type unsentListener struct {
	*net.TCPListener
	limit int
}

func (l *unsentListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	// A socket that refuses the option works all the same, with the
	// kernel's buffering: not a reason to refuse the client.
	setUnsentLimit(c, l.limit)
	return c, nil
}

// wsListener serves WebSocket upgrades on its own HTTP server.
type wsListener struct {
	ln        net.Listener
	srv       *http.Server
	h         *WebSocketHandler
	serveDone chan struct{}
	conns     sync.WaitGroup // HTTP connections not yet closed or hijacked
	once      sync.Once
	closeErr  error
}

func newWSListener(ln net.Listener, cfg *tls.Config, path string, opts *Options) *wsListener {
	l := &wsListener{ln: ln, h: NewWebSocketHandler(opts), serveDone: make(chan struct{})}
	l.h.addr = ln.Addr()
	var handler http.Handler = l.h
	if path != "" && path != "/" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			l.h.ServeHTTP(w, r)
		})
	}
	timeout := opts.handshakeTimeout()
	l.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: timeout, // also bounds the TLS handshake
		IdleTimeout:       timeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(io.Discard, "", 0),
		// Track every connection so Close can wait for their goroutines.
		// Serve reports StateNew before starting one, and each ends in
		// exactly one of StateHijacked or StateClosed.
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				l.conns.Add(1)
			case http.StateHijacked, http.StateClosed:
				l.conns.Done()
			}
		},
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	go func() {
		defer close(l.serveDone)
		l.srv.Serve(ln)
	}()
	return l
}

// Accept waits for the next upgraded connection.
func (l *wsListener) Accept() (net.Conn, error) { return l.h.Accept() }

// Addr returns the listening address.
func (l *wsListener) Addr() net.Addr { return l.ln.Addr() }

// Close stops the listener and waits for its goroutines.
func (l *wsListener) Close() error {
	l.once.Do(func() {
		l.closeErr = l.srv.Close() // closes ln and every open HTTP connection
		l.h.Close()                // ends ServeHTTP calls, closes unaccepted conns
		<-l.serveDone
		l.conns.Wait()
	})
	return l.closeErr
}
