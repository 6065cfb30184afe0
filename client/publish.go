package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/ternmq/mqtt/session"
)

// A Token is the outcome of an asynchronous call, such as PublishAsync.
// Its methods may be called from any goroutine.
type Token struct {
	c      *Client // for Wait in a handler; nil when complete from the start
	pooled bool    // a blocking call's own token: done is made, completed by a send, reused

	mu       sync.Mutex
	done     chan struct{} // made when first asked for, unless pooled
	finished bool
	err      error
	id       uint16
}

// Done returns a channel closed when the call is complete.
func (t *Token) Done() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done == nil {
		// Made on demand: most tokens of a stream of messages are never
		// waited on, and this saves their allocation.
		t.done = make(chan struct{})
		if t.finished {
			close(t.done)
		}
	}
	return t.done
}

// Err returns the call's error once it is complete, and nil before.
func (t *Token) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Wait waits for the call to complete and returns its error, or ctx's error
// if ctx ends first (the call goes on). In a message handler, wait with Wait
// rather than on Done: Wait lets the client read past Options.MaxPending
// meanwhile, so that the acknowledgement can arrive.
func (t *Token) Wait(ctx context.Context) error {
	t.mu.Lock()
	finished, err := t.finished, t.err
	t.mu.Unlock()
	if finished {
		return err
	}
	if t.c != nil {
		defer t.c.disp.handlerCall()()
	}
	select {
	case <-t.Done():
		return t.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PacketID returns the packet identifier the message was last sent with,
// once the call is complete; 0 for QoS 0 and for failed calls.
func (t *Token) PacketID() uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id
}

// complete ends the call. Called with c.mu held, once.
func (t *Token) complete(err error, id uint16) {
	if t.pooled {
		t.err, t.id = err, id
		t.done <- struct{}{}
		return
	}
	t.mu.Lock()
	t.err, t.id, t.finished = err, id, true
	if t.done != nil {
		close(t.done)
	}
	t.mu.Unlock()
}

// doneToken is the token of every QoS 0 PublishAsync that succeeded: there
// is nothing to wait for, and sharing it saves an allocation per message.
var doneToken = &Token{finished: true}

func failedToken(err error) *Token {
	return &Token{finished: true, err: err}
}

var tokenPool = sync.Pool{New: func() any {
	return &Token{done: make(chan struct{}, 1), pooled: true}
}}

// Publish sends an application message and waits, bounded by ctx, until it
// is complete: written to the connection for QoS 0, acknowledged by PUBACK
// for QoS 1 and by PUBCOMP for QoS 2. The payload is copied; the caller may
// reuse it at once.
//
// While reconnecting, a QoS 1 or 2 message waits in the offline queue and
// leaves on reconnection; a QoS 0 message fails with ErrNotConnected unless
// Options.QueueQoS0 is set. With Options.NoReconnect, a Publish while not
// connected, or waiting when the connection is lost, fails with an error
// wrapping ErrNotConnected (and the cause). A message the broker keeps
// closing the connection for fails with a *MessageError (see
// Options.MaxCuts). When ctx ends first, ctx's error is returned and the
// message stays in flight (use PublishAsync to keep track of it).
func (c *Client) Publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte) error {
	defer c.disp.handlerCall()()
	if qos == 0 {
		gen, err := c.publish(ctx, topic, 0, retain, payload, nil)
		if err != nil {
			return err
		}
		return c.waitWritten(ctx, gen)
	}
	t := tokenPool.Get().(*Token)
	if _, err := c.publish(ctx, topic, qos, retain, payload, t); err != nil {
		tokenPool.Put(t)
		return err
	}
	var lost <-chan struct{}
	if c.eventG.Load() != 0 {
		c.mu.Lock()
		lost = c.callbackLost()
		c.mu.Unlock()
	}
	select {
	case <-t.done:
		err := t.err
		t.err = nil
		tokenPool.Put(t)
		return err
	case <-ctx.Done():
		return ctx.Err() // the token stays with the message, and is dropped
	case <-lost:
		return ErrCallbackWait // likewise
	}
}

// PublishAsync sends an application message and returns at once with a
// Token that completes when Publish would return. It waits only when the
// inflight window and the queue are full (see Options.FailWhenFull), for as
// long as ctx allows. A QoS 0 token is complete as soon as the message is
// queued for writing. The payload is copied.
//
// Messages are sent in the order of the calls, whose tokens complete in
// that order for each QoS.
func (c *Client) PublishAsync(ctx context.Context, topic string, qos byte, retain bool, payload []byte) *Token {
	if qos == 0 {
		if _, err := c.publish(ctx, topic, 0, retain, payload, nil); err != nil {
			return failedToken(err)
		}
		return doneToken
	}
	t := &Token{c: c}
	if _, err := c.publish(ctx, topic, qos, retain, payload, t); err != nil {
		return failedToken(err)
	}
	return t
}

// publish hands a message to the session, waiting for room if needed. It
// returns the write batch a QoS 0 message will leave in.
func (c *Client) publish(ctx context.Context, topic string, qos byte, retain bool, payload []byte, t *Token) (uint64, error) {
	c.mu.Lock()
	for {
		if c.closing {
			c.mu.Unlock()
			return 0, ErrClosed
		}
		if c.final() && !c.running {
			// Nothing would send it: say so now rather than queue it.
			err := c.lost
			if err == nil {
				err = ErrNotConnected
			}
			c.mu.Unlock()
			return 0, err
		}
		// The session copies the topic before Publish returns and never
		// writes to it, so the string's bytes can be lent without a copy.
		c.pub.Topic = unsafe.Slice(unsafe.StringData(topic), len(topic))
		c.pub.Payload, c.pub.QoS, c.pub.Retain = payload, qos, retain
		h, err := c.s.Publish(&c.pub)
		c.pub.Topic, c.pub.Payload = nil, nil
		switch {
		case err == nil:
			gen := c.takenGen + 1
			if t != nil {
				c.tokens[h] = t
			}
			// A message queued behind a full window leaves later, when an
			// acknowledgement frees a slot; the reader wakes the writer then.
			if c.cur != nil && c.s.HasOutgoing() {
				c.kick()
			}
			c.mu.Unlock()
			return gen, nil
		case errors.Is(err, session.ErrFull) && !c.opts.FailWhenFull:
			room := c.roomChan()
			c.roomQ0 = c.roomQ0 || qos == 0
			c.mu.Unlock()
			done := c.disp.handlerCall()
			select {
			case <-room:
			case <-ctx.Done():
				done()
				return 0, ctx.Err()
			}
			done()
			c.mu.Lock()
		case errors.Is(err, session.ErrNotConnected):
			c.mu.Unlock()
			return 0, ErrNotConnected
		default:
			c.mu.Unlock()
			return 0, fmt.Errorf("client: publish to %q: %w", topic, err)
		}
	}
}

// writeWaiter is a blocking QoS 0 Publish waiting for write batch gen.
type writeWaiter struct {
	gen uint64
	ch  chan struct{} // from waitPool, capacity 1
}

// waitPool recycles the channels of writeWaiters, so that a blocking QoS 0
// Publish allocates nothing.
var waitPool = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

// wakeWriteWaiters wakes the waiters whose batch is written, or all of them.
// Called with c.mu held.
func (c *Client) wakeWriteWaiters(all bool) {
	kept := c.writeWait[:0]
	for _, w := range c.writeWait {
		if all || w.gen <= c.writtenGen {
			w.ch <- struct{}{}
		} else {
			kept = append(kept, w)
		}
	}
	clear(c.writeWait[len(kept):])
	c.writeWait = kept
}

// waitWritten waits until write batch gen is written.
func (c *Client) waitWritten(ctx context.Context, gen uint64) error {
	c.mu.Lock()
	lost := c.connGen
	for c.writtenGen < gen {
		switch {
		case c.connGen != lost:
			err := c.lost
			c.mu.Unlock()
			return err
		case c.closed:
			c.mu.Unlock()
			return ErrClosed
		}
		lostCh := c.callbackLost()
		ch := waitPool.Get().(chan struct{})
		c.writeWait = append(c.writeWait, writeWaiter{gen: gen, ch: ch})
		c.mu.Unlock()
		var err error
		select {
		case <-ch:
			waitPool.Put(ch)
			c.mu.Lock()
			continue
		case <-ctx.Done():
			err = ctx.Err()
		case <-lostCh: // queued with Options.QueueQoS0
			err = ErrCallbackWait
		}
		c.mu.Lock()
		for i, w := range c.writeWait {
			if w.ch == ch {
				c.writeWait = append(c.writeWait[:i], c.writeWait[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		// Woken meanwhile or not, the channel is empty or holds one
		// value: drain it before reuse.
		select {
		case <-ch:
		default:
		}
		waitPool.Put(ch)
		return err
	}
	c.mu.Unlock()
	return nil
}
