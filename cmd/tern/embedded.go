package main

import (
	"fmt"
	"net"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/transport"
)

// embeddedBroker is the broker bench starts in its own process when given
// no -url: tern's broker on 127.0.0.1 and a free port.
type embeddedBroker struct {
	srv   *broker.Server
	l     net.Listener
	url   string
	stats func() broker.Stats
	done  chan struct{}
}

// embeddedQueued is the per-session queue of the embedded broker: deep
// enough that subscribers of the default run, which keep up on average, do
// not lose QoS 0 messages to a burst; bounded, so memory stays bounded.
const embeddedQueued = 100000

func startEmbeddedBroker() (*embeddedBroker, error) {
	srv := broker.New(broker.Options{MaxInflight: embeddedInflight, MaxQueued: embeddedQueued, MaxPacketSize: benchMaxPacket})
	l, err := transport.Listen("mqtt://127.0.0.1:0", nil)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("start the embedded broker: %v", unwrapNet(err))
	}
	eb := &embeddedBroker{srv: srv, l: l, url: "mqtt://" + l.Addr().String(), stats: srv.Stats, done: make(chan struct{})}
	go func() {
		defer close(eb.done)
		srv.Serve(l)
	}()
	return eb, nil
}

// close stops the broker and waits for its Serve to return.
func (eb *embeddedBroker) close() {
	eb.srv.Close()
	eb.l.Close()
	<-eb.done
}
