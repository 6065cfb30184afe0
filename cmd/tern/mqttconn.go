package main

import (
	"context"
)

// mqttConn is the part of a client connection the commands use. The real
// one wraps a client.Client (clientconn.go); bench tests use an in-memory
// one that can lose and duplicate messages on purpose.
type mqttConn interface {
	// publish sends one message and returns when its QoS flow is complete.
	publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
	// publishAsync hands one message over for sending and returns at once,
	// or when there is room for it; wait reports the end of its flow. The
	// payload may be reused when it returns.
	publishAsync(ctx context.Context, topic string, payload []byte, qos byte, retain bool) (wait func(context.Context) error, err error)
	// subscribe subscribes to every filter; a refusal by the server is an
	// error for exit code 3.
	subscribe(ctx context.Context, subs []subscription) error
	// messages returns the received messages, when the connection was
	// opened with no connOptions.onMessage. It is closed when the
	// connection ends for good; err then says why.
	messages() <-chan message
	err() error
	// disconnect ends the session politely (DISCONNECT: no will).
	disconnect(ctx context.Context) error
	// close releases everything, without DISCONNECT if disconnect was not
	// called. It may be called more than once.
	close()
}

// subscription is one filter of a SUBSCRIBE.
type subscription struct {
	filter string
	qos    byte
}

// connOptions are what a command asks of a connection beyond dialConfig.
type connOptions struct {
	clean bool
	// onMessage, when set, receives each message on the client's own
	// goroutine (for bench, where a channel hop would be measured too);
	// payload is valid only during the call.
	onMessage   func(m message)
	maxInflight int
	maxPacket   int // largest packet accepted from the broker; 0 for the client's default
	// reconnect keeps reconnecting when the connection is lost, telling
	// logf (if set) about it.
	reconnect bool
	logf      func(format string, args ...any)
}
