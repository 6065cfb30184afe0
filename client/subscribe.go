package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/topic"
)

// Subscription is a topic filter and the maximum QoS asked for it.
type Subscription struct {
	Filter string
	QoS    byte
	// Handler, when set, receives the messages matching Filter: Subscribe
	// routes them to it with Handle before it sends the SUBSCRIBE, so that
	// no message (a retained one, say) can come before its handler. It
	// stays when the subscription is refused or the call fails; remove it
	// with Handle(Filter, nil).
	Handler func(*Message)
}

// Subscribe subscribes to the filters in one SUBSCRIBE and returns the QoS
// the broker granted for each, in order [MQTT-3.9.3-1]. If the broker
// refused some (return code 0x80), the codes are returned with a
// *SubscribeError naming them. Filters granted are subscribed again on
// every new connection to a broker that has no session for the client.
//
// While the client is reconnecting, Subscribe waits for the connection, as
// long as ctx allows. If the connection is lost before the SUBACK, it
// returns ErrConnectionLost. If ctx ends after the SUBSCRIBE has left, it
// returns ctx's error, and the broker may still grant the subscription:
// the filters it grants are then subscribed again on reconnection like the
// others (Unsubscribe them if they are not wanted).
//
// Messages are routed to handlers with Handle, independently of
// subscriptions, or with Subscription.Handler in the same call: either way
// the handler is in place before the SUBSCRIBE leaves, so that retained
// messages find it.
func (c *Client) Subscribe(ctx context.Context, subs ...Subscription) ([]byte, error) {
	if len(subs) == 0 {
		return nil, errors.New("client: Subscribe needs at least one filter") // [MQTT-3.8.3-3]
	}
	p := &packet.Subscribe{Subscriptions: make([]packet.Subscription, len(subs))}
	for i, s := range subs {
		if err := topic.ValidFilter(s.Filter); err != nil {
			return nil, fmt.Errorf("client: subscribe to %q: %w", s.Filter, err)
		}
		if s.QoS > 2 {
			return nil, fmt.Errorf("client: subscribe to %q: QoS %d [MQTT-3.8.3-4]", s.Filter, s.QoS)
		}
		p.Subscriptions[i] = packet.Subscription{Filter: []byte(s.Filter), QoS: s.QoS}
	}
	for _, s := range subs {
		if s.Handler != nil {
			if err := c.Handle(s.Filter, s.Handler); err != nil {
				return nil, fmt.Errorf("client: subscribe to %q: %w", s.Filter, err)
			}
		}
	}
	// The filters granted are recorded when the SUBACK comes, even if ctx
	// has ended by then: the broker has the subscription, and a broker
	// that loses it must be asked again.
	granted := func(codes []byte) {
		for i, s := range subs {
			if i < len(codes) && codes[i] != packet.SubackFailure {
				if _, ok := c.subs[s.Filter]; !ok {
					c.subOrder = append(c.subOrder, s.Filter)
				}
				c.subs[s.Filter] = s.QoS
			}
		}
	}
	codes, err := c.request(ctx, func() (session.Handle, error) {
		h, err := c.s.Subscribe(p)
		return h, err
	}, granted)
	if err != nil {
		return nil, err
	}
	var refused []string
	for i, s := range subs {
		if i < len(codes) && codes[i] == packet.SubackFailure {
			refused = append(refused, s.Filter)
		}
	}
	if refused != nil {
		return codes, &SubscribeError{Filters: refused}
	}
	return codes, nil
}

// Unsubscribe removes subscriptions, in one UNSUBSCRIBE, and waits for the
// broker's UNSUBACK. The filters are compared with those subscribed byte
// for byte [MQTT-3.10.4-1]. They are no longer subscribed again on
// reconnection, even if the call fails. Handlers stay: a message that still
// comes (through another subscription that matches its topic) goes to the
// handler of the most specific filter, this one's included; remove it with
// Handle(filter, nil).
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	if len(filters) == 0 {
		return errors.New("client: Unsubscribe needs at least one filter") // [MQTT-3.10.3-2]
	}
	p := &packet.Unsubscribe{Filters: make([][]byte, len(filters))}
	for i, f := range filters {
		if err := topic.ValidFilter(f); err != nil {
			return fmt.Errorf("client: unsubscribe from %q: %w", f, err)
		}
		p.Filters[i] = []byte(f)
	}
	c.mu.Lock()
	for _, f := range filters {
		if _, ok := c.subs[f]; ok {
			delete(c.subs, f)
			c.subOrder = slices.DeleteFunc(c.subOrder, func(s string) bool { return s == f })
		}
	}
	c.mu.Unlock()
	_, err := c.request(ctx, func() (session.Handle, error) {
		h, err := c.s.Unsubscribe(p)
		return h, err
	}, nil)
	return err
}

// request sends a SUBSCRIBE or UNSUBSCRIBE through send (called with c.mu
// held) and waits for its answer; answered (if not nil) acts on the answer
// when it comes, also after ctx has ended.
func (c *Client) request(ctx context.Context, send func() (session.Handle, error), answered func([]byte)) ([]byte, error) {
	defer c.disp.handlerCall()()
	for {
		if err := c.waitUp(ctx); err != nil {
			return nil, err
		}
		c.mu.Lock()
		if c.cur == nil { // lost again meanwhile
			c.mu.Unlock()
			continue
		}
		h, err := send()
		if err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("client: %w", err)
		}
		r := &request{done: make(chan struct{}), answered: answered}
		c.reqs[h] = r
		c.kick()
		lost := c.callbackLost()
		c.mu.Unlock()
		select {
		case <-r.done:
			return r.codes, r.err
		case <-ctx.Done():
			err = ctx.Err()
		case <-lost:
			err = ErrCallbackWait
		}
		// The answer is still handled when it comes (answered), and
		// awaited by nobody.
		return nil, err
	}
}
