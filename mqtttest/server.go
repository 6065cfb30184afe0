package mqtttest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/ternmq/mqtt/broker"
)

// Server is a broker.Server running for the length of a test, listening on a
// loopback port of the system's choosing, and also reachable through
// in-memory pipes (Dial).
type Server struct {
	// URL is the server's address as a URL: "mqtt://127.0.0.1:PORT".
	URL string
	// Addr is the listener's address: "127.0.0.1:PORT".
	Addr string
	// Broker is the running broker, for inspection (Stats) and for
	// publishing from the test (Publish).
	Broker *broker.Server

	pipes *pipeListener
	wg    sync.WaitGroup
	once  sync.Once
}

// NewServer starts a broker for the test t on 127.0.0.1, with options changed
// by the functions in opts, in order. The broker is closed when the test ends
// (t.Cleanup), and no goroutine of it survives the test.
//
//	srv := mqtttest.NewServer(t, func(o *broker.Options) { o.MaxQueued = 10 })
//	conn, err := transport.Dial(ctx, srv.URL, nil)
func NewServer(t testing.TB, opts ...func(*broker.Options)) *Server {
	t.Helper()
	var o broker.Options
	for _, f := range opts {
		f(&o)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mqtttest: listen: %v", err)
	}
	s := &Server{
		URL:    "mqtt://" + l.Addr().String(),
		Addr:   l.Addr().String(),
		Broker: broker.New(o),
		pipes:  newPipeListener(),
	}
	s.serve(t, l)
	s.serve(t, s.pipes)
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve(t testing.TB, l net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.Broker.Serve(l); err != nil && !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("mqtttest: serve %s: %v", l.Addr(), err)
		}
	}()
}

// Dial returns a new connection to the server over an in-memory pipe
// (net.Pipe), with no network under it. Its signature fits
// transport.Options.DialContext, which ignores network and addr; a client
// given it reaches this server whatever its URL says.
func (s *Server) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case s.pipes.ch <- server:
		return client, nil
	case <-s.pipes.done:
		client.Close()
		server.Close()
		return nil, net.ErrClosed
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	}
}

// Close closes the broker and every connection, and waits for their
// goroutines to end. The test's cleanup calls it; calling it earlier, to see
// how clients take the loss of their server, is fine.
func (s *Server) Close() {
	s.once.Do(func() {
		s.Broker.Close()
		s.pipes.Close()
		s.wg.Wait()
	})
}

// pipeListener hands out the server ends of the pipes made by Dial.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
