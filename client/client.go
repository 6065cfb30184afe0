// Package client is an MQTT 3.1.1 client: blocking calls bounded by a
// context, asynchronous publishing with tokens, messages routed to handlers
// by topic filter or read from a channel, and reconnection with the session
// resumed and unacknowledged messages sent again.
//
// A Client is the I/O shell around a session.Session, the protocol state
// machine: one goroutine reads packets and feeds them to the session, one
// writes what the session hands out, in batches (everything queued since the
// last write leaves in one write call), and drives the keepalive; a third
// runs the message handlers, in arrival order, so that a handler may call
// Publish, Subscribe or Disconnect; a fourth manages the connection and
// reconnects. All of them end before Disconnect or Close returns.
//
//	c, err := client.New(client.Options{Servers: []string{"mqtt://localhost:1883"}})
//	if err != nil { ... }
//	if err := c.Connect(ctx); err != nil { ... }
//	c.Handle("sensors/+/temperature", func(m *client.Message) { ... })
//	if _, err := c.Subscribe(ctx, client.Subscription{Filter: "sensors/#", QoS: 1}); err != nil { ... }
//	err = c.Publish(ctx, "sensors/kitchen/temperature", 1, false, []byte("21.5"))
//	...
//	c.Disconnect(ctx)
//
// Flow control: at most Options.MaxInflight QoS 1 and 2 messages await their
// acknowledgement, Options.MaxQueued more wait for a slot or, while
// disconnected, for the connection; a Publish beyond that waits for room (or
// fails with ErrFull, with Options.FailWhenFull). Received messages wait for
// their handler in a queue of Options.MaxPending; when it is full the client
// stops reading, and a QoS 1 or 2 message is acknowledged only once its
// handler has returned, so a slow consumer slows the broker down rather than
// filling memory, while the keepalive goes on. While a handler waits in a
// call of the client (Publish, Subscribe, Token.Wait...), reading goes on
// past MaxPending, since the answer it waits for may be behind the messages
// on the connection: QoS 1 and 2 messages are queued (the broker's inflight
// window bounds them), QoS 0 ones too until they hold Options.MaxPacketSize
// (16 MiB by default), and the next ones are dropped, counted in
// Stats.Discarded and logged.
//
// Reconnection: when the connection is lost, the client tries
// Options.Servers in turn with a growing, jittered wait, and sends again,
// with their packet identifiers and DUP set, the QoS 1 and 2 messages not yet
// acknowledged [MQTT-4.4.0-1]. With Options.KeepSession the broker keeps the
// subscriptions; when its CONNACK says it did not (or without KeepSession),
// the client subscribes again to every filter granted so far. With a
// session.FileStore as Options.Store, messages in flight survive a restart of
// the process, and a QoS 2 message is still delivered once, unless the
// process dies while its handler runs (or, with Options.ManualAck, before
// it is acknowledged): it is then delivered again, with Message.Dup set.
//
// Every call ends: with Options.NoReconnect, the calls waiting on a lost
// connection fail at once (ErrNotConnected, with the cause); with
// reconnection, a message the broker closes the connection for
// Options.MaxCuts times in a row fails with a *MessageError, and the
// reconnection wait keeps growing while connections die young. Received
// messages no handler takes are kept for Messages, within MaxPending, and
// every one discarded is logged and counted (Stats).
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/transport"
)

// A Client is a connection to an MQTT broker that comes back when it is lost.
// Create it with New, then call Connect. Its methods are safe for concurrent
// use.
type Client struct {
	opts    Options
	id      string
	connect *packet.Connect
	topts   *transport.Options
	log     *slog.Logger

	ctx    context.Context // ends at shutdown
	cancel context.CancelFunc

	mu         sync.Mutex
	s          *session.Session
	cur        *conn         // the connection in service, or nil
	up         chan struct{} // closed while a connection is up; replaced when it is lost
	running    bool          // the connection manager runs
	closing    bool          // Disconnect or Close was called
	closed     bool          // shutdown is done or under way
	discQueued bool          // DISCONNECT queued in the session
	lastGood   int           // index in Servers of the last server that answered
	tokens     map[session.Handle]*Token
	reqs       map[session.Handle]*request
	subs       map[string]byte // filters subscribed, for resubscription
	subOrder   []string
	room       chan struct{} // closed when the window or the queue may have room
	writeWait  []writeWaiter // blocking QoS 0 Publish calls awaiting their write
	takenGen   uint64        // batches taken from the session
	writtenGen uint64        // batches written
	connGen    uint64        // connections lost
	inbox      []*Message    // the messages of one Receive, for the reader
	overLog    atomic.Int64  // when dropOverQoS0 last logged, Unix nanoseconds
	pub        packet.Publish
	lost       error          // what the calls failed by the last loss get
	storeErr   error          // the session store failed: the client stops (see ErrStoreFailed)
	gaveUp     error          // what the token of a message given up gets (Abandon)
	suspect    session.Handle // the message the last connections ended on
	cuts       int            // connections in a row that ended on suspect
	backoff    time.Duration  // the reconnection wait, kept while connections die young
	stats      stats

	wake     chan struct{} // tells the writer there is something to send
	lowWater int           // queued messages at or below which a publisher waiting for room is woken
	roomQ0   bool          // a QoS 0 message waits for room: woken by any write

	wg       sync.WaitGroup // the connection manager
	managerG atomic.Int64   // goroutine id of the connection manager
	eventG   atomic.Int64   // goroutine id running Options.OnEvent, 0 when none does

	disp dispatcher
}

// request is a SUBSCRIBE or UNSUBSCRIBE awaiting its answer.
type request struct {
	done  chan struct{}
	codes []byte
	err   error
	// answered, if set, acts on the answer's return codes, called with
	// c.mu held whether or not the caller still waits for them.
	answered func(codes []byte)
}

// New returns a Client for opts. It opens no connection (see Connect) but
// loads the state of opts.Store, so that messages left from a previous run
// are sent on the first connection.
func New(opts Options) (*Client, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.Servers = append([]string(nil), opts.Servers...)
	id := opts.ClientID
	if id == "" {
		var b [8]byte
		crand.Read(b[:])
		id = "tern-" + hex.EncodeToString(b[:])
	}
	// What the codec refuses (a will payload over 65535 bytes, a client
	// id or user name that is not UTF-8 or holds U+0000) would fail every
	// connection, after the dial: say so now.
	cp := opts.connectPacket(id)
	if _, err := cp.Append(nil); err != nil {
		return nil, fmt.Errorf("client: Options make a CONNECT that cannot be sent: %w", err)
	}
	s, err := session.New(session.Config{
		Role:        session.Client,
		MaxInflight: orDefault(opts.MaxInflight, DefaultMaxInflight),
		MaxQueued:   orDefault(opts.MaxQueued, DefaultMaxQueued),
		QueueQoS0:   opts.QueueQoS0,
		ManualAck:   true, // the client acknowledges after delivery, or the application does
		Store:       opts.Store,
	})
	if err != nil {
		return nil, fmt.Errorf("client: loading the session from Options.Store: %w", err)
	}
	var topts transport.Options
	if opts.Transport != nil {
		topts = *opts.Transport
	}
	if opts.TLSConfig != nil {
		topts.TLSConfig = opts.TLSConfig
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Client{
		opts:    opts,
		id:      id,
		connect: cp,
		topts:   &topts,
		log:     log.With("client", id),
		s:       s,
		up:      make(chan struct{}),
		tokens:  make(map[session.Handle]*Token),
		reqs:    make(map[session.Handle]*request),
		subs:    make(map[string]byte),
		wake:    make(chan struct{}, 1),
	}
	// Up to 64 at a time: the session recycles that many more messages
	// than its window; more would be allocated anew.
	q := orDefault(opts.MaxQueued, DefaultMaxQueued)
	c.lowWater = max(q-64, q*3/4)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.disp.init(c, orDefault(opts.MaxPending, DefaultMaxPending))
	return c, nil
}

// ClientID returns the client identifier, generated by New when
// Options.ClientID was empty.
func (c *Client) ClientID() string { return c.id }

// LastHandle returns the handle of the latest QoS 1 or 2 message taken by
// Publish or PublishAsync, or of the latest Subscribe or Unsubscribe
// request, including those loaded from Options.Store: handles grow by one
// with each, and are never reused, so a publisher restarted on a FileStore
// can tell from it how far it had got.
func (c *Client) LastHandle() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return uint64(c.s.LastHandle())
}

// IsConnected reports whether a connection is up.
func (c *Client) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// Connect connects to the first server of Options.Servers that accepts
// the connection, trying each once (or, with Options.ConnectRetry, until
// ctx ends), bounded by ctx and by Options.ConnectTimeout for each. A
// refusal by CONNACK is a *ConnectError. Once connected, the client
// reconnects on its own when the connection is lost, unless
// Options.NoReconnect is set; then Connect may be called again.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closing:
		c.mu.Unlock()
		return ErrClosed
	case c.storeErr != nil:
		c.mu.Unlock()
		return c.storeErr
	case c.running:
		c.mu.Unlock()
		return ErrConnected
	}
	c.running = true // no second Connect meanwhile
	// Added before shutdown can wait: Close may run while Connect dials.
	c.wg.Add(1)
	c.mu.Unlock()
	// Close ends the dial and the CONNACK's wait too, not only ctx.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(c.ctx, stop)()
	cn, err := c.connectLoop(ctx)
	if err != nil && c.ctx.Err() != nil {
		err = ErrClosed
	}
	if err == nil {
		c.disp.start()
		go c.manage(cn)
		return nil
	}
	c.mu.Lock()
	c.running = false
	c.mu.Unlock()
	c.wg.Done()
	return err
}

// server returns the i-th server to try, starting from the last good one.
func (c *Client) server(i int) string {
	c.mu.Lock()
	n := (c.lastGood + i) % len(c.opts.Servers)
	c.mu.Unlock()
	return c.opts.Servers[n]
}

// Disconnect ends the connection cleanly and stops the client: it stops
// taking messages (ErrClosed), waits, while connected, for the QoS 1 and 2
// messages in flight and queued to complete and for the packets queued to
// be written, sends DISCONNECT
// (so that the broker discards the will [MQTT-3.14.4-3]), closes the
// connection and waits for the client's goroutines to end. ctx bounds the
// waiting: when it ends, the rest is done at once and ctx's error returned.
// Messages not yet complete stay in Options.Store and their tokens fail with
// ErrClosed; Disconnect then returns an error wrapping ErrConnectionLost
// (the connection was lost while it waited, or before DISCONNECT was
// written) or ErrNotConnected (there was no connection).
//
// Disconnect may be called from a message handler or from Options.OnEvent;
// the goroutine running them then ends just after they return.
func (c *Client) Disconnect(ctx context.Context) error {
	defer c.disp.handlerCall()()
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closing = true
	var err error
	for c.cur != nil && (c.s.Inflight() > 0 || c.s.Queued() > 0) {
		ch := c.roomChan()
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
		c.mu.Lock()
		if err != nil {
			break
		}
	}
	if n := c.s.Inflight() + c.s.Queued(); err == nil && n > 0 {
		// The connection was lost, or there was none: what is not
		// complete fails, and the caller must hear of it.
		err = c.notUp(fmt.Sprintf("%d messages not complete", n))
	}
	if cn := c.cur; cn != nil && err == nil {
		if e := c.s.Disconnect(); e == nil {
			c.discQueued = true
			c.kick()
			c.mu.Unlock()
			select {
			case <-cn.discSent:
			case <-cn.done:
				select {
				case <-cn.wend: // it ends once done is closed, having written the DISCONNECT or not
				case <-ctx.Done():
				}
				select {
				case <-cn.discSent: // written, then closed by the broker
				default:
					c.mu.Lock()
					err = c.notUp("DISCONNECT not sent")
					c.mu.Unlock()
				}
			case <-ctx.Done():
				err = ctx.Err()
			}
			c.mu.Lock()
		}
	}
	c.mu.Unlock()
	if e := c.shutdown(ctx); err == nil {
		err = e
	}
	return err
}

// notUp returns the error of a Disconnect that could not do what: the
// loss of the connection, or ErrNotConnected when there was none. Called
// with c.mu held.
func (c *Client) notUp(what string) error {
	if cn := c.cur; cn != nil {
		select {
		case <-cn.done:
			return fmt.Errorf("client: disconnect: %s: %w", what, &lostError{url: cn.url, cause: cn.err})
		default:
		}
	}
	if c.lost != nil {
		return fmt.Errorf("client: disconnect: %s: %w", what, c.lost)
	}
	return fmt.Errorf("client: disconnect: %s: %w", what, ErrNotConnected)
}

// Close stops the client at once, without DISCONNECT: the broker publishes
// the will, as for a crash. Messages not complete stay in Options.Store.
// It waits for the client's goroutines to end, except one running the
// handler or OnEvent callback that called it, and for a message handler
// under way to return, at most CloseWait: a handler that has not returned
// by then is left to end on its own, and Close returns an error saying so
// (use Disconnect to choose the wait). Calling it again does nothing.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stop := time.AfterFunc(CloseWait, func() { cancel(errCloseWait) })
	defer stop.Stop()
	return c.shutdown(ctx)
}

var errCloseWait = fmt.Errorf("gave up after CloseWait (%v)", CloseWait)

// CloseWait is the longest Close waits for a message handler under way.
const CloseWait = 5 * time.Second

// shutdown closes the connection, ends the goroutines and fails what is
// still waiting.
func (c *Client) shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cn := c.cur
	c.mu.Unlock()
	c.cancel()
	if cn != nil {
		cn.close(ErrClosed)
	}
	// Fail what waits before waiting for the goroutines: a handler or
	// callback blocked in Publish or Subscribe is one of them.
	c.failPending()
	var err error
	self := goid()
	// Not from the manager, nor from the goroutine of a Connect whose
	// OnEvent called this: each would wait for itself.
	if c.managerG.Load() != self && c.eventG.Load() != self {
		if err = waitCtx(ctx, c.wg.Wait); err != nil {
			err = fmt.Errorf("client: goroutines still running: %w", context.Cause(ctx))
		}
	}
	if e := c.disp.stop(ctx, self); err == nil && e != nil {
		err = fmt.Errorf("client: handler still running: %w", context.Cause(ctx))
	}
	c.failPending() // anything the goroutines left
	return err
}

// failPending fails the tokens and requests still waiting with ErrClosed,
// and wakes the calls waiting for room or for a write.
func (c *Client) failPending() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, t := range c.tokens {
		delete(c.tokens, h)
		t.complete(ErrClosed, 0)
	}
	for h, r := range c.reqs {
		delete(c.reqs, h)
		r.err = ErrClosed
		close(r.done)
	}
	c.broadcast()
}

// waitCtx runs wait, giving up when ctx ends first (wait then goes on in
// the background until it returns).
func waitCtx(ctx context.Context, wait func()) error {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// goid returns the id of the calling goroutine. It is used only to tell
// whether Disconnect is called from one of the client's own goroutines,
// which must not wait for itself.
func goid() int64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	s := b[:n]
	s = bytes.TrimPrefix(s, []byte("goroutine "))
	if i := bytes.IndexByte(s, ' '); i > 0 {
		id, _ := strconv.ParseInt(string(s[:i]), 10, 64)
		return id
	}
	return 0
}

// waitUp waits until a connection is up.
func (c *Client) waitUp(ctx context.Context) error {
	c.mu.Lock()
	for {
		switch {
		case c.closing:
			c.mu.Unlock()
			return ErrClosed
		case c.cur != nil:
			c.mu.Unlock()
			return nil
		case !c.running:
			err := error(ErrNotConnected)
			if c.lost != nil && c.final() {
				err = c.lost // ErrNotConnected, with the cause
			}
			c.mu.Unlock()
			return err
		case c.callbackLost() != nil && c.cur == nil:
			c.mu.Unlock()
			return ErrCallbackWait
		}
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		}
		c.mu.Lock()
	}
}
