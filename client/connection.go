package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/internal/lowat"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/transport"
)

// A connection: dialled, shaken hands with, served by a reader and a writer
// goroutine, and made again after it is lost.

// conn is one network connection and its two goroutines.
type conn struct {
	nc        net.Conn
	r         *packet.Reader
	br        *bufio.Reader // under r
	lr        *lowat.Reader // under br
	url       string
	done      chan struct{} // closed when the connection ends
	discSent  chan struct{} // closed once DISCONNECT is written
	wend      chan struct{} // closed when the writer ends
	once      sync.Once
	err       error // why it ended; set before done is closed
	wg        sync.WaitGroup
	stalled   atomic.Bool  // the reader waits for room in the delivery queue
	resumed   atomic.Int64 // when the reader last stopped waiting, Unix nanoseconds
	progress  atomic.Bool  // a packet came after the CONNACK
	recvs     atomic.Int64 // packets read after the CONNACK
	recvsAt   atomic.Int64 // recvs when the last write was done
	since     time.Time    // when the CONNACK came
	wdeadline time.Time    // the write deadline; the writer's

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
		err = c.sessionFailed(err)
		c.mu.Unlock()
		return nil, err
	}
	buf, err := c.s.AppendOutgoing(nil, now)
	if err != nil {
		err = c.sessionFailed(err)
	}
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
	lr := lowat.NewReader(nc)
	br := bufio.NewReaderSize(lr, readBuffer)
	r := packet.NewReader(br, orDefault(c.opts.MaxPacketSize, DefaultMaxPacketSize))
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
	cn := &conn{nc: nc, r: r, br: br, lr: lr, url: url, done: make(chan struct{}), discSent: make(chan struct{}), wend: make(chan struct{}), since: time.Now()}
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
	filters := slices.Clone(c.subOrder)
	c.reqs[h] = &request{done: make(chan struct{}), answered: func(codes []byte) { // awaited by nobody
		for i, code := range codes {
			if code == packet.SubackFailure && i < len(filters) {
				c.log.Warn("resubscription refused", "filter", filters[i])
			}
		}
	}}
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
		stop := c.closing || c.final()
		if stop {
			c.running = false
			// Calls waiting for a connection see that none comes.
			close(c.up)
			c.up = make(chan struct{})
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
	if c.storeErr != nil && !c.closing {
		// A reconnection found the store failed: fail the calls
		// waiting, as when a connection is lost for good.
		c.lost = c.storeErr
		close(c.up)
		c.up = make(chan struct{})
		c.failWaiting()
	}
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
	c.lost = &lostError{final: c.final(), store: c.storeErr != nil, url: cn.url, cause: cn.err}
	suspect := c.suspectOf(cn)
	c.s.Disconnected()
	c.dropEvents()
	if suspect != nil {
		c.giveUp(suspect)
	}
	// A broker that closes the connection once our DISCONNECT is written
	// ends it cleanly too, though the reader may see its EOF first.
	clean := errors.Is(cn.err, ErrClosed) || isClosed(cn.discSent)
	if !clean {
		c.stats.lost.Add(1)
	}
	c.cur = nil
	c.up = make(chan struct{})
	c.connGen++
	c.discQueued = false
	c.broadcast()
	c.mu.Unlock()
	if !clean {
		c.log.Warn("connection lost", "url", cn.url, "err", cn.err)
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
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
			if c.ctx.Err() != nil || errors.Is(err, ErrClosed) || errors.Is(err, ErrStoreFailed) {
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
		c.eventG.Store(goid())
		defer c.eventG.Store(0)
		c.opts.OnEvent(e)
	}
}

// callbackLost returns, for a call made from the OnEvent callback, a
// channel closed once the connection is down: the callback holds up the
// handling of that loss and the next connection, so a call waiting on
// the connection would wait for itself. Nil (never ready) for any other
// caller; cheap unless a callback runs. Called with c.mu held.
func (c *Client) callbackLost() <-chan struct{} {
	g := c.eventG.Load()
	if g == 0 || g != goid() {
		return nil
	}
	if c.cur == nil {
		return closedChan
	}
	return c.cur.done
}

// closedChan is a channel that is always ready.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()
