package client

import (
	"context"
	"errors"

	"github.com/ternmq/mqtt/packet"
)

// dial opens a connection to url and runs the CONNECT/CONNACK exchange.
// A broker that refuses the bridge mark (Options.BridgeMark) with CONNACK
// 0x01 [MQTT-3.1.2-2] is asked again at once without it; the mark stays
// off for the life of the Client.
func (c *Client) dial(ctx context.Context, url string) (*conn, error) {
	cn, err := c.dialOnce(ctx, url)
	var ce *ConnectError
	if errors.As(err, &ce) && ce.Code == packet.RefusedProtocolVersion && c.dropBridgeMark() {
		c.log.Info("bridge mark refused; connecting without it", "url", url)
		return c.dialOnce(ctx, url)
	}
	return cn, err
}

// dropBridgeMark turns the bridge mark off, and reports whether it was on.
func (c *Client) dropBridgeMark() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.connect.Bridge {
		return false
	}
	c.connect.Bridge = false
	return true
}

// BridgeMark reports whether the client's CONNECT carries the bridge mark:
// Options.BridgeMark was set and no broker has refused it. Once connected
// with it, the broker knows the client is a bridge.
func (c *Client) BridgeMark() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connect.Bridge
}

// Pending returns the number of outgoing QoS 1 and 2 messages not yet
// complete: awaiting their acknowledgement, or queued for an inflight slot
// or a connection.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.Inflight() + c.s.Queued()
}
