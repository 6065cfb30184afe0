package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/session"
)

// youngFor is how long a connection must last, when nothing came on it
// after the CONNACK, for its loss to reset the reconnection wait.
const youngFor = 10 * time.Second

// young reports whether cn ended soon after its CONNACK with nothing
// received: the broker accepts the client and then cuts it, which calls for
// a growing wait rather than an immediate retry.
func (cn *conn) young() bool {
	return !cn.progress.Load() && time.Since(cn.since) < youngFor
}

// nextWait returns the wait before the next round of connection attempts,
// jittered (between half and all of it, so that clients cut off together do
// not come back together), and doubles it up to ReconnectMax.
func (c *Client) nextWait() time.Duration {
	minWait := orDefault(c.opts.ReconnectMin, DefaultReconnectMin)
	maxWait := orDefault(c.opts.ReconnectMax, DefaultReconnectMax)
	w := max(c.backoff, minWait)
	c.backoff = min(2*w, maxWait)
	return w/2 + rand.N(w/2+1)
}

// sleep waits for d; false when ctx or the client ended first.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	return false
}

// connectLoop makes Connect's attempts: one round over the servers, or
// rounds until ctx ends with Options.ConnectRetry.
func (c *Client) connectLoop(ctx context.Context) (*conn, error) {
	c.backoff = 0
	var last error // the last attempt that failed on its own, not for ctx
	attempts := 0
	for round := 0; ; round++ {
		if round > 0 {
			c.emit(Event{Kind: Reconnecting, URL: c.server(0), Attempt: attempts + 1, Err: last})
			if !c.sleep(ctx, c.nextWait()) {
				break
			}
		}
		for i := range c.opts.Servers {
			attempts++
			cn, err := c.dial(ctx, c.server(i))
			if err == nil {
				return cn, nil
			}
			var ce *ConnectError
			switch {
			case errors.Is(err, ErrClosed) || errors.Is(err, ErrStoreFailed) || (errors.As(err, &ce) && ce.permanent()):
				return nil, err
			case ended(ctx):
				if !c.opts.ConnectRetry || last == nil {
					return nil, err
				}
				attempts--
				return nil, c.gaveUpConnecting(ctx, attempts, last)
			}
			last = err
		}
		if !c.opts.ConnectRetry {
			return nil, last
		}
		c.log.Debug("connect failed, retrying", "attempts", attempts, "err", last)
	}
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	return nil, c.gaveUpConnecting(ctx, attempts, last)
}

// ended reports whether ctx is done or its deadline has passed: a dial
// may fail on the deadline (i/o timeout) before ctx's own timer fires.
func ended(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(d)
}

func (c *Client) gaveUpConnecting(ctx context.Context, attempts int, last error) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("client: connect: gave up after %d attempts when the context ended (%w); the last attempt: %w", attempts, err, last)
}

// suspectOf returns the message cn probably ended on, once it has ended on
// it Options.MaxCuts times in a row: the oldest message sent on cn and not
// acknowledged, when nothing came after the last write. A broker that refuses
// a message (over its maximum packet size, say) closes the connection
// without a word, again on every resend. Called with c.mu held, before
// Disconnected.
func (c *Client) suspectOf(cn *conn) *MessageError {
	limit := orDefault(c.opts.MaxCuts, DefaultMaxCuts)
	if limit < 0 || cn.err == nil || errors.Is(cn.err, ErrClosed) {
		return nil
	}
	if errors.Is(cn.err, session.ErrTimeout) || errors.Is(cn.err, os.ErrDeadlineExceeded) {
		// The broker went silent (keepalive, or a write that made no
		// progress): it did not close the connection on the message.
		return nil
	}
	h, tp, size, ok := c.s.OldestSent()
	if quiet := cn.recvs.Load() == cn.recvsAt.Load(); !ok || !quiet {
		c.suspect, c.cuts = 0, 0
		return nil
	}
	if h != c.suspect {
		c.suspect, c.cuts = h, 0
	}
	if c.cuts++; c.cuts < limit {
		return nil
	}
	return &MessageError{Topic: string(tp), Size: size, Attempts: c.cuts, Err: cn.err}
}

// giveUp removes the message c.suspect from the session and fails its
// call with e. Called with c.mu held, after Disconnected.
func (c *Client) giveUp(e *MessageError) {
	h := c.suspect
	c.suspect, c.cuts = 0, 0
	c.gaveUp = e
	err := c.s.Abandon(h)
	c.drainEvents()
	c.gaveUp = nil
	if err != nil {
		c.log.Warn("giving up a message failed", "err", err)
		return
	}
	c.stats.refused.Add(1)
	c.log.Warn("message given up", "err", e)
}

// failWaiting fails every call waiting on the connection, which will not
// come back (Options.NoReconnect): the tokens of QoS 1 and 2 messages (the
// messages stay in the session, for a later Connect) and the requests.
// Called with c.mu held.
func (c *Client) failWaiting() {
	for h, t := range c.tokens {
		delete(c.tokens, h)
		t.complete(c.lost, 0)
	}
	for h, r := range c.reqs {
		delete(c.reqs, h)
		r.err = c.lost
		close(r.done)
	}
	c.broadcast()
}

// Stats counts what happened to a Client since New.
type Stats struct {
	// Received counts the application messages received.
	Received uint64
	// Dropped counts the received messages discarded because no handler
	// took them and no one read Messages (see Options.DefaultHandler and
	// Options.DiscardUnhandled). Each was acknowledged all the same.
	Dropped uint64
	// Discarded counts the received messages the client stopped (Close,
	// Disconnect) before handing them to a handler or to Messages (the QoS
	// 1 and 2 ones were not acknowledged, so a broker keeping the session
	// sends them again), and the QoS 0 messages dropped while a handler
	// waited in a call of the client (see the package doc, Flow control).
	Discarded uint64
	// Kept is the number of received messages kept for a reader of
	// Messages still to come.
	Kept int
	// Connects counts the connections made (CONNACK accepted), Lost those
	// that ended other than by Disconnect or Close.
	Connects, Lost uint64
	// Refused counts the outgoing messages given up with a *MessageError.
	Refused uint64
	// SessionEnded counts the QoS 2 messages given up with
	// ErrSessionEnded.
	SessionEnded uint64
}

type stats struct {
	received, dropped, discarded, connects, lost, refused, sessionEnded atomic.Uint64
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	d := &c.disp
	d.mu.Lock()
	kept := len(d.kept)
	d.mu.Unlock()
	return Stats{
		Received: c.stats.received.Load(),
		Dropped:  c.stats.dropped.Load(),
		Kept:     kept,

		Discarded: c.stats.discarded.Load(),
		Connects:  c.stats.connects.Load(),
		Lost:      c.stats.lost.Load(),
		Refused:   c.stats.refused.Load(),

		SessionEnded: c.stats.sessionEnded.Load(),
	}
}

// final reports whether a lost connection ends the client's service:
// with Options.NoReconnect, or once the session store failed. Called with
// c.mu held.
func (c *Client) final() bool { return c.opts.NoReconnect || c.storeErr != nil }

// sessionFailed classifies an error of the session met while a connection
// is served: a protocol violation or a keepalive timeout (*session.Error)
// is the connection's; anything else is the store's (a write or a sync
// that failed), which stops the client (see ErrStoreFailed). It returns
// the error the connection closes with. Called with c.mu held.
func (c *Client) sessionFailed(err error) error {
	var se *session.Error
	switch {
	case errors.As(err, &se), errors.Is(err, session.ErrState), errors.Is(err, session.ErrNotConnected):
		return err
	}
	if c.storeErr == nil {
		c.storeErr = fmt.Errorf("%w: %w", ErrStoreFailed, err)
		c.log.Error("session store failed: the client stops", "err", err)
	}
	return c.storeErr
}
