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
// on the connection.
//
// Reconnection: when the connection is lost, the client tries
// Options.Servers in turn with a growing, jittered wait, and sends again,
// with their packet identifiers and DUP set, the QoS 1 and 2 messages not yet
// acknowledged [MQTT-4.4.0-1]. With Options.KeepSession the broker keeps the
// subscriptions; when its CONNACK says it did not (or without KeepSession),
// the client subscribes again to every filter granted so far. With a
// session.FileStore as Options.Store, messages in flight survive a restart of
// the process, and a QoS 2 message is still delivered once.
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
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	pub        packet.Publish
	lost       error          // what the calls failed by the last loss get
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

	disp dispatcher
}

// request is a SUBSCRIBE or UNSUBSCRIBE awaiting its answer.
type request struct {
	done  chan struct{}
	codes []byte
	err   error
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
		connect: opts.connectPacket(id),
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
	case c.running:
		c.mu.Unlock()
		return ErrConnected
	}
	c.running = true // no second Connect meanwhile
	// Added before shutdown can wait: Close may run while Connect dials.
	c.wg.Add(1)
	c.mu.Unlock()
	cn, err := c.connectLoop(ctx)
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

// conn is one network connection and its two goroutines.
type conn struct {
	nc       net.Conn
	r        *packet.Reader
	br       *bufio.Reader // under r
	url      string
	done     chan struct{} // closed when the connection ends
	discSent chan struct{} // closed once DISCONNECT is written
	once     sync.Once
	err      error // why it ended; set before done is closed
	wg       sync.WaitGroup
	stalled  atomic.Bool  // the reader waits for room in the delivery queue
	resumed  atomic.Int64 // when the reader last stopped waiting, Unix nanoseconds
	progress atomic.Bool  // a packet came after the CONNACK
	recvs    atomic.Int64 // packets read after the CONNACK
	recvsAt  atomic.Int64 // recvs when the last write was done
	since    time.Time    // when the CONNACK came

	sessionPresent bool // from the CONNACK
}

// close ends the connection for err, once.
func (cn *conn) close(err error) {
	cn.once.Do(func() {
		cn.err = err
		close(cn.done)
		cn.nc.Close()
	})
}

// dialOnce opens a connection to url and runs the CONNECT/CONNACK exchange.
func (c *Client) dialOnce(ctx context.Context, url string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(c.opts.ConnectTimeout, DefaultConnectTimeout))
	defer cancel()
	nc, err := transport.Dial(ctx, url, c.topts)
	if err != nil {
		return nil, newDialError(url, err)
	}
	// A deadline in the past interrupts the handshake when ctx ends.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	cn, err := c.handshake(nc, url)
	if !stop() && err == nil {
		err = ctx.Err()
		c.mu.Lock()
		c.s.Disconnected()
		c.dropEvents()
		c.mu.Unlock()
	}
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out or cancelled: %w", ctx.Err())
		}
		return nil, newDialError(url, err)
	}
	c.mu.Lock()
	if c.closing {
		c.s.Disconnected()
		c.dropEvents()
		c.mu.Unlock()
		nc.Close()
		return nil, ErrClosed
	}
	c.cur = cn
	for i, u := range c.opts.Servers {
		if u == url {
			c.lastGood = i
		}
	}
	close(c.up)
	c.mu.Unlock()
	return cn, nil
}

// handshake sends CONNECT on nc and reads the CONNACK. On success the
// session is online, and the resends, queued messages and resubscriptions
// wait in its outbox.
func (c *Client) handshake(nc net.Conn, url string) (*conn, error) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	now := time.Now()
	if err := c.s.Connect(c.connect, now); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	buf, err := c.s.AppendOutgoing(nil, now)
	c.mu.Unlock()
	fail := func(err error) (*conn, error) {
		c.mu.Lock()
		c.s.Disconnected()
		c.dropEvents()
		c.mu.Unlock()
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	if _, err := nc.Write(buf); err != nil {
		return fail(fmt.Errorf("writing CONNECT: %w", err))
	}
	// A large buffer under the packet reader: one read system call takes
	// many messages from a busy connection.
	br := bufio.NewReaderSize(nc, readBuffer)
	r := packet.NewReader(br, c.opts.MaxPacketSize)
	p, err := r.ReadPacket()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fail(fmt.Errorf("reading CONNACK: %w", err))
	}
	if _, ok := p.(*packet.Connack); !ok {
		// [MQTT-3.2.0-1] the first packet from the server is CONNACK.
		return fail(&packet.Error{Kind: packet.ErrProtocol, Type: p.Type(), Rule: "MQTT-3.2.0-1", Reason: "received before CONNACK"})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.s.Receive(p, time.Now()); err != nil {
		c.s.Disconnected()
		c.dropEvents()
		return nil, err
	}
	var ack session.Event
	for ev, ok := c.s.NextEvent(); ok; ev, ok = c.s.NextEvent() {
		if ev.Kind == session.EventConnack {
			ack = ev
		} else {
			c.event(ev)
		}
	}
	if ack.ReturnCode != packet.Accepted {
		c.s.Disconnected()
		c.dropEvents()
		return nil, &ConnectError{URL: url, Code: ack.ReturnCode}
	}
	if !ack.SessionPresent && len(c.subOrder) > 0 {
		c.resubscribe()
	}
	c.log.Info("connected", "url", url, "session_present", ack.SessionPresent)
	cn := &conn{nc: nc, r: r, br: br, url: url, done: make(chan struct{}), discSent: make(chan struct{}), since: time.Now()}
	cn.sessionPresent = ack.SessionPresent
	c.stats.connects.Add(1)
	return cn, nil
}

// resubscribe asks again for every subscription, after a CONNACK that says
// the broker has no session for the client. Called with c.mu held.
func (c *Client) resubscribe() {
	sub := &packet.Subscribe{Subscriptions: make([]packet.Subscription, 0, len(c.subOrder))}
	for _, f := range c.subOrder {
		sub.Subscriptions = append(sub.Subscriptions, packet.Subscription{Filter: []byte(f), QoS: c.subs[f]})
	}
	h, err := c.s.Subscribe(sub)
	if err != nil {
		c.log.Warn("resubscribe failed", "err", err)
		return
	}
	c.reqs[h] = nil // answered by the reader, awaited by nobody
}

// manage serves connections and reconnects, until shutdown or, with
// Options.NoReconnect, until the connection is lost.
func (c *Client) manage(cn *conn) {
	defer c.wg.Done()
	c.managerG.Store(goid())
	defer c.managerG.Store(0)
	for cn != nil {
		c.serve(cn)
		c.mu.Lock()
		stop := c.closing || c.opts.NoReconnect
		if stop {
			c.running = false
			if !c.closing {
				c.failWaiting() // nothing will send them: fail them now
			}
		}
		c.mu.Unlock()
		if !c.isClosing() {
			c.emit(Event{Kind: ConnectionLost, URL: cn.url, Err: cn.err})
		}
		if stop {
			return
		}
		cn = c.reconnect(cn.young())
	}
	c.mu.Lock()
	c.running = false
	c.mu.Unlock()
}

func (c *Client) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// serve runs the reader and the writer of cn until the connection ends,
// then tells the session.
func (c *Client) serve(cn *conn) {
	cn.wg.Add(2)
	go c.reader(cn)
	go c.writer(cn)
	// Reported once the connection is served, so that the callback may
	// use it, even to Disconnect.
	c.emit(Event{Kind: Connected, URL: cn.url, SessionPresent: cn.sessionPresent})
	<-cn.done
	cn.wg.Wait()
	c.mu.Lock()
	c.lost = &lostError{final: c.opts.NoReconnect, url: cn.url, cause: cn.err}
	suspect := c.suspectOf(cn)
	c.s.Disconnected()
	c.dropEvents()
	if suspect != nil {
		c.giveUp(suspect)
	}
	if !errors.Is(cn.err, ErrClosed) {
		c.stats.lost.Add(1)
	}
	c.cur = nil
	c.up = make(chan struct{})
	c.connGen++
	c.discQueued = false
	c.broadcast()
	c.mu.Unlock()
	if !errors.Is(cn.err, ErrClosed) {
		c.log.Warn("connection lost", "url", cn.url, "err", cn.err)
	}
}

// reconnect tries the servers in turn, waiting longer after each round,
// until one accepts or the client shuts down (nil). After a young
// connection (see conn.young) it waits before the first round too, and the
// wait keeps growing from where it was.
func (c *Client) reconnect(young bool) *conn {
	if !young {
		c.backoff = 0
	}
	var last error
	attempt := 0
	for {
		if young || attempt > 0 {
			if !c.sleep(c.ctx, c.nextWait()) {
				return nil
			}
		}
		for i := range c.opts.Servers {
			url := c.server(i)
			attempt++
			c.emit(Event{Kind: Reconnecting, URL: url, Attempt: attempt, Err: last})
			cn, err := c.dial(c.ctx, url)
			if err == nil {
				return cn
			}
			if c.ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return nil
			}
			c.log.Debug("reconnect failed", "url", url, "attempt", attempt, "err", err)
			last = err
		}
	}
}

// emit calls Options.OnEvent.
func (c *Client) emit(e Event) {
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(e)
	}
}

// kick wakes the writer.
func (c *Client) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// broadcast wakes every call waiting for room or for a write. Called with
// c.mu held.
func (c *Client) broadcast() {
	if c.room != nil {
		close(c.room)
		c.room, c.roomQ0 = nil, false
	}
	c.wakeWriteWaiters(true)
}

// roomChan returns a channel closed when the window or queue may have room.
// Called with c.mu held.
func (c *Client) roomChan() chan struct{} {
	if c.room == nil {
		c.room = make(chan struct{})
	}
	return c.room
}

// maxKeptBuffer is the largest write buffer the writer keeps between
// batches. A batch holds everything queued since the last write (up to
// MaxQueued messages), so a smaller limit would make a steady stream of
// large messages grow a new buffer for every batch.
const maxKeptBuffer = 4 << 20

// maxBatch bounds the packets the reader, and the messages the dispatcher,
// handle before the writer is woken for their answers.
const maxBatch = 64

// readBuffer is the size of the buffer between the connection and the
// packet reader.
const readBuffer = 32 << 10

// writer hands the session's packets to the network in batches, and runs
// the keepalive.
func (c *Client) writer(cn *conn) {
	defer cn.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var buf []byte
	keepAlive := time.Duration(c.connect.KeepAlive) * time.Second
	lastWrite := time.Now()
	for {
		now := time.Now()
		busy := false
		c.mu.Lock()
		if d := c.s.Deadline(); !d.IsZero() && !now.Before(d) {
			if err := c.s.Tick(now); err != nil {
				if !cn.readerBusy(now, keepAlive) {
					c.mu.Unlock()
					cn.close(err)
					return
				}
				// The broker's packets wait unread behind a slow
				// consumer: it is not dead. The session stopped its
				// pings, so keep the broker's keepalive satisfied here
				// [MQTT-3.1.2-23].
				busy = true
			}
		}
		var err error
		buf, err = c.s.AppendOutgoing(buf[:0], now)
		if busy && len(buf) == 0 && now.Sub(lastWrite) >= keepAlive/2 {
			buf = append(buf, byte(packet.PINGREQ)<<4, 0) // an unsolicited PINGRESP is harmless
		}
		disc := c.discQueued
		gen := c.takenGen
		if len(buf) > 0 {
			c.takenGen++
			gen = c.takenGen
			// QoS 0 messages left the outbox, or queued ones left the queue.
			if c.room != nil && (c.roomQ0 || c.s.Queued() <= c.lowWater) {
				close(c.room)
				c.room, c.roomQ0 = nil, false
			}
		}
		deadline := c.s.Deadline()
		c.mu.Unlock()
		if err != nil {
			cn.close(err)
			return
		}
		if len(buf) > 0 {
			if _, err := cn.nc.Write(buf); err != nil {
				cn.close(err)
				return
			}
			lastWrite = now
			cn.recvsAt.Store(cn.recvs.Load())
			c.mu.Lock()
			c.writtenGen = gen
			if len(c.writeWait) > 0 {
				c.wakeWriteWaiters(false)
			}
			c.mu.Unlock()
			if disc {
				close(cn.discSent)
				return
			}
			if cap(buf) > maxKeptBuffer {
				buf = nil // a burst of large messages is over; do not keep its buffer
			}
		}
		switch {
		case busy:
			timer.Reset(keepAlive / 2)
		case !deadline.IsZero():
			timer.Reset(time.Until(deadline))
		default:
			timer.Stop()
		}
		select {
		case <-c.wake:
		case <-timer.C:
		case <-cn.done:
			return
		}
	}
}

// readerBusy reports whether the reader waits, or waited recently, for room
// in the delivery queue: the broker's packets then sit unread, so its
// silence is not a sign of death.
func (cn *conn) readerBusy(now time.Time, keepAlive time.Duration) bool {
	if cn.stalled.Load() {
		return true
	}
	return now.Sub(time.Unix(0, cn.resumed.Load())) < keepAlive*3/2
}

// reader feeds the session with the packets read from cn and delivers
// messages to the dispatcher.
func (c *Client) reader(cn *conn) {
	defer cn.wg.Done()
	// The packets of one read are handled as a batch: their messages go
	// to the dispatcher together and their answers (PUBREL, or the PUBACK
	// of a handled message) leave in one write, once no complete packet is
	// left in the buffer (the next may be slow to come), or after maxBatch
	// packets.
	var batch []*Message
	answers := false // a packet of the batch queued an answer
	packets := 0
	flush := func() {
		if len(batch) == 0 && !answers {
			return
		}
		if answers {
			c.kick()
		}
		c.disp.push(cn, batch)
		clear(batch)
		batch, answers, packets = batch[:0], false, 0
	}
	defer flush() // what was received before an error is delivered
	pacer := newReadPacer(orDefault(c.opts.BatchDelay, DefaultBatchDelay))
	qos0, read := true, 0 // the packets of the last read from the network: all QoS 0 PUBLISHes, and how many
	for {
		if !cn.r.HasPacket() {
			flush()
		}
		var start time.Time
		fromNet := cn.r.Buffered()+cn.br.Buffered() == 0
		if fromNet {
			start = pacer.wait(qos0, read)
			qos0, read = true, 0
		}
		p, err := cn.r.ReadPacket()
		if fromNet {
			pacer.read(start)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the broker closes only after a protocol error
			}
			cn.close(err)
			return
		}
		read++
		cn.recvs.Add(1)
		if !cn.progress.Load() {
			cn.progress.Store(true)
		}
		if pub, ok := p.(*packet.Publish); !ok || pub.QoS != 0 {
			qos0 = false
		}
		c.mu.Lock()
		err = c.s.Receive(p, time.Now())
		if err == nil {
			c.drainEvents()
			batch = append(batch, c.inbox...)
			clear(c.inbox)
			c.inbox = c.inbox[:0]
			answers = answers || c.s.HasOutgoing()
		}
		c.mu.Unlock()
		if err != nil {
			c.log.Warn("protocol error", "err", err)
			cn.close(err)
			return
		}
		if packets++; packets >= maxBatch {
			flush()
		}
	}
}

// drainEvents acts on the session's events. Called with c.mu held.
func (c *Client) drainEvents() {
	for ev, ok := c.s.NextEvent(); ok; ev, ok = c.s.NextEvent() {
		c.event(ev)
	}
}

// dropEvents acts on the events of Disconnected. Called with c.mu held.
func (c *Client) dropEvents() { c.drainEvents() }

// event acts on one session event. Called with c.mu held.
func (c *Client) event(ev session.Event) {
	switch ev.Kind {
	case session.EventMessage:
		c.stats.received.Add(1)
		c.inbox = append(c.inbox, c.newMessage(ev))
	case session.EventPublished:
		if ev.Handle == c.suspect {
			c.suspect, c.cuts = 0, 0
		}
		if t, ok := c.tokens[ev.Handle]; ok {
			delete(c.tokens, ev.Handle)
			t.complete(nil, ev.PacketID)
		}
		// A publisher that filled the queue is woken once some room is
		// free (see lowWater), not for every acknowledgement.
		if c.room != nil && c.s.Queued() <= c.lowWater {
			close(c.room)
			c.room, c.roomQ0 = nil, false
		}
	case session.EventDropped:
		if t, ok := c.tokens[ev.Handle]; ok {
			delete(c.tokens, ev.Handle)
			err := ErrClosed
			if c.gaveUp != nil {
				err = c.gaveUp
			}
			t.complete(err, ev.PacketID)
		}
		if r, ok := c.reqs[ev.Handle]; ok {
			delete(c.reqs, ev.Handle)
			if r != nil {
				r.err = ErrConnectionLost
				if c.lost != nil {
					r.err = c.lost
				}
				close(r.done)
			}
		}
	case session.EventSubscribed, session.EventUnsubscribed:
		r, ok := c.reqs[ev.Handle]
		if !ok {
			return
		}
		delete(c.reqs, ev.Handle)
		if r == nil {
			for i, code := range ev.ReturnCodes {
				if code == packet.SubackFailure {
					c.log.Warn("resubscription refused", "index", i)
				}
			}
			return
		}
		r.codes = bytes.Clone(ev.ReturnCodes)
		close(r.done)
	}
}

// Disconnect ends the connection cleanly and stops the client: it stops
// taking messages (ErrClosed), waits, while connected, for the QoS 1 and 2
// messages in flight and queued to complete and for the packets queued to
// be written, sends DISCONNECT
// (so that the broker discards the will [MQTT-3.14.4-3]), closes the
// connection and waits for the client's goroutines to end. ctx bounds the
// waiting: when it ends, the rest is done at once and ctx's error returned.
// Messages not yet complete stay in Options.Store and their tokens fail with
// ErrClosed.
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
	if cn := c.cur; cn != nil && err == nil {
		if e := c.s.Disconnect(); e == nil {
			c.discQueued = true
			c.kick()
			c.mu.Unlock()
			select {
			case <-cn.discSent:
			case <-cn.done:
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

// Close stops the client at once, without DISCONNECT: the broker publishes
// the will, as for a crash. Messages not complete stay in Options.Store.
// It waits for the client's goroutines to end, except one running the
// handler or OnEvent callback that called it. Calling it again does nothing.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	return c.shutdown(context.Background())
}

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
	var err error
	self := goid()
	if c.managerG.Load() != self {
		if err = waitCtx(ctx, c.wg.Wait); err != nil {
			err = fmt.Errorf("client: goroutines still running: %w", err)
		}
	}
	if e := c.disp.stop(ctx, self); err == nil && e != nil {
		err = fmt.Errorf("client: handler still running: %w", e)
	}
	c.mu.Lock()
	for h, t := range c.tokens {
		delete(c.tokens, h)
		t.complete(ErrClosed, 0)
	}
	for h, r := range c.reqs {
		delete(c.reqs, h)
		if r != nil {
			r.err = ErrClosed
			close(r.done)
		}
	}
	c.broadcast()
	c.mu.Unlock()
	return err
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
			c.mu.Unlock()
			return ErrNotConnected
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
