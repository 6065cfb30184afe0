package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/packet"
)

// clientConn is an mqttConn on a client.Client.
type clientConn struct {
	c     *client.Client
	url   string
	onMsg func(message)

	msgsOnce sync.Once
	msgs     chan message
	done     chan struct{} // closed by close
	doneOnce sync.Once

	logf      func(format string, args ...any)
	connected bool // event only: a first connection was made

	mu       sync.Mutex
	lost     error         // why the connection was lost, once it was
	lostCh   chan struct{} // closed when lost for good (no reconnection)
	lostOnce sync.Once
	final    bool // the client does not reconnect
}

// dial connects to the broker of d and returns the connection, with errors
// that read as one line: "connect to mqtt://localhost:1883: connection
// refused", "mqtt://localhost:1883 refused the connection: bad user name or
// password" (exit code 3).
func dial(ctx context.Context, d *dialConfig, o connOptions) (mqttConn, error) {
	cc, err := dialClient(ctx, d, o)
	if err != nil {
		return nil, err
	}
	return cc, nil
}

// dialClient is dial for the commands that need more than mqttConn.
func dialClient(ctx context.Context, d *dialConfig, o connOptions) (*clientConn, error) {
	cc := &clientConn{url: d.url, onMsg: o.onMessage, logf: o.logf, done: make(chan struct{}), lostCh: make(chan struct{}), final: !o.reconnect}
	opts := client.Options{
		Servers:        []string{d.url},
		ClientID:       d.clientID,
		KeepSession:    !o.clean,
		KeepAlive:      d.keepalive,
		Username:       d.username,
		TLSConfig:      d.tls,
		ConnectTimeout: d.timeout,
		NoReconnect:    !o.reconnect,
		MaxInflight:    o.maxInflight,
		OnEvent:        cc.event,
		// A command's messages are read through Messages, or by the
		// DefaultHandler: none is ever left to the client's keeping.
		DiscardUnhandled: o.onMessage != nil,
	}
	if d.keepalive == 0 {
		opts.KeepAlive = -1 // off, as -k 0 asks
	}
	if d.hasPass {
		opts.Password = []byte(d.password)
	}
	if w := d.will; w != nil {
		opts.Will = &client.Will{Topic: w.topic, Payload: w.payload, QoS: w.qos, Retain: w.retain}
	}
	if o.onMessage != nil {
		opts.DefaultHandler = func(m *client.Message) {
			o.onMessage(message{topic: m.Topic, payload: m.Payload, qos: m.QoS, retain: m.Retain})
		}
		opts.MaxPacketSize = o.maxPacket
	} else {
		// sub prints whatever comes: accept packets as large as MQTT allows,
		// with few of them pending, which bounds memory all the same.
		opts.MaxPacketSize = packet.MaxRemainingLength + 5
		opts.MaxPending = 8
	}
	c, err := client.New(opts)
	if err != nil {
		return nil, usagef("%v", strings.TrimPrefix(err.Error(), "client: "))
	}
	cc.c = c
	if err := c.Connect(ctx); err != nil {
		c.Close()
		return nil, connectErr(d.url, err)
	}
	return cc, nil
}

// connectErr makes a Connect error one clear line, and a CONNACK refusal
// exit with its return code, as mosquitto_pub and mosquitto_sub do.
func connectErr(url string, err error) error {
	var ce *client.ConnectError
	if errors.As(err, &ce) {
		return &exitErr{code: int(ce.Code), refusal: true, err: &causeErr{fmt.Sprintf("%s refused the connection: %s", redact(url), ce.Code), err}}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &causeErr{"connect to " + redact(url) + ": timed out", err}
	}
	if errors.Is(err, context.Canceled) {
		return &causeErr{"connect to " + redact(url) + ": interrupted", err}
	}
	s := strings.TrimPrefix(err.Error(), "client: ")
	s = strings.TrimPrefix(s, "connect to "+redact(url)+": ")
	var dns *net.DNSError
	if errors.As(err, &dns) {
		s = dns.Error()
	}
	return &causeErr{"connect to " + redact(url) + ": " + trimErr(errors.New(s)), err}
}

// causeErr is a message written for people over the error it comes from,
// which errors.Is and errors.As still see.
type causeErr struct {
	msg   string
	cause error
}

func (e *causeErr) Error() string { return e.msg }
func (e *causeErr) Unwrap() error { return e.cause }

// trimErr drops the package prefixes and the repetition of the address that
// nested network errors carry, keeping the telling end: "dial tcp
// 127.0.0.1:1883: connect: connection refused" becomes "connection refused".
func trimErr(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	s := err.Error()
	if i := strings.LastIndex(s, "connect: "); i >= 0 {
		s = s[i+len("connect: "):]
	}
	s = strings.TrimPrefix(s, "client: ")
	s = strings.TrimPrefix(s, "transport: ")
	return s
}

func (cc *clientConn) event(e client.Event) {
	if cc.logf != nil {
		switch e.Kind {
		case client.ConnectionLost:
			if !cc.final {
				cc.logf("connection to %s lost: %s; reconnecting", redact(cc.url), trimErr(orLost(e.Err)))
			}
		case client.Connected:
			if cc.c != nil && cc.connected {
				cc.logf("reconnected to %s", redact(cc.url))
			}
			cc.connected = true
		}
	}
	if e.Kind == client.ConnectionLost {
		cc.mu.Lock()
		if cc.lost == nil {
			cc.lost = orLost(e.Err)
		}
		cc.mu.Unlock()
		if cc.final {
			cc.lostOnce.Do(func() { close(cc.lostCh) })
		}
	}
}

// lostErr is the error of a connection lost for good: exit status 7, as
// mosquitto_pub's.
func (cc *clientConn) lostErr() error {
	return &exitErr{code: exitLost, err: fmt.Errorf("connection to %s lost: %s", redact(cc.url), trimErr(orLost(cc.err())))}
}

func (cc *clientConn) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if err := cc.c.Publish(ctx, topic, qos, retain, payload); err != nil {
		return cc.opErr("publish", err)
	}
	return nil
}

func (cc *clientConn) publishAsync(ctx context.Context, topic string, payload []byte, qos byte, retain bool) (func(context.Context) error, error) {
	t := cc.c.PublishAsync(ctx, topic, qos, retain, payload)
	select {
	case <-t.Done():
		// Failed at once (or done at once, as QoS 0 may be).
		if err := t.Err(); err != nil {
			return nil, cc.opErr("publish", err)
		}
	default:
	}
	return func(ctx context.Context) error {
		if err := t.Wait(ctx); err != nil {
			return cc.opErr("publish", err)
		}
		return nil
	}, nil
}

func (cc *clientConn) subscribe(ctx context.Context, subs []subscription) error {
	cs := make([]client.Subscription, len(subs))
	for i, s := range subs {
		cs[i] = client.Subscription{Filter: s.filter, QoS: s.qos}
	}
	if cc.onMsg == nil {
		cc.messages() // start taking messages before any retained one comes
	}
	if _, err := cc.c.Subscribe(ctx, cs...); err != nil {
		var se *client.SubscribeError
		if errors.As(err, &se) {
			return &refusedSubs{filters: se.Filters, all: len(se.Filters) == len(subs)}
		}
		return cc.opErr("subscribe", err)
	}
	return nil
}

// refusedSubs lists the filters the server refused (SUBACK 0x80).
type refusedSubs struct {
	filters []string
	all     bool
}

func (e *refusedSubs) Error() string {
	if e.all {
		return "every subscription was refused by the server: " + strings.Join(e.filters, ", ")
	}
	return "subscription refused by the server: " + strings.Join(e.filters, ", ")
}

func (cc *clientConn) unsubscribe(ctx context.Context, filters []string) error {
	if err := cc.c.Unsubscribe(ctx, filters...); err != nil {
		return cc.opErr("unsubscribe", err)
	}
	return nil
}

// opErr names the operation and, when the connection was lost, why (exit
// status 7, as mosquitto_pub's).
func (cc *clientConn) opErr(op string, err error) error {
	if errors.Is(err, client.ErrConnectionLost) || errors.Is(err, client.ErrNotConnected) {
		why := "lost"
		if lost := cc.err(); lost != nil {
			why += ": " + trimErr(lost)
		} else if i := strings.LastIndex(err.Error(), " lost: "); i >= 0 {
			why += err.Error()[i+len(" lost"):]
		}
		return &exitErr{code: exitLost, err: &causeErr{op + ": connection to " + redact(cc.url) + " " + why, err}}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &causeErr{op + ": timed out", err}
	}
	return &causeErr{op + ": " + trimErr(err), err}
}

func (cc *clientConn) messages() <-chan message {
	cc.msgsOnce.Do(func() {
		cc.msgs = make(chan message)
		in := cc.c.Messages()
		go func() {
			defer close(cc.msgs)
			for {
				select {
				case m, ok := <-in:
					if !ok {
						return
					}
					select {
					case cc.msgs <- message{topic: m.Topic, payload: m.Payload, qos: m.QoS, retain: m.Retain, id: m.ID}:
					case <-cc.done:
						return
					}
				case <-cc.done:
					return
				}
			}
		}()
	})
	return cc.msgs
}

func (cc *clientConn) err() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.lost
}

func (cc *clientConn) disconnect(ctx context.Context) error {
	if err := cc.c.Disconnect(ctx); err != nil && !errors.Is(err, client.ErrClosed) {
		return cc.opErr("disconnect", err)
	}
	return nil
}

func (cc *clientConn) close() {
	cc.doneOnce.Do(func() { close(cc.done) })
	cc.c.Close()
}

func orLost(err error) error {
	if err == nil {
		return client.ErrConnectionLost
	}
	return err
}
