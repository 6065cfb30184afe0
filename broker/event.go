package broker

import (
	"crypto/tls"
	"net"
)

// Client describes a client connection to the hooks of Options. Its fields
// are set once the CONNECT has been read and do not change afterwards; hooks
// must not modify them. The same *Client is passed to every hook call of one
// connection, so a hook may use it as a map key for per-connection state.
type Client struct {
	ID           string               // client identifier, assigned by the Server when the client sent none
	Username     string               // user name, empty when absent
	HasUsername  bool                 // the CONNECT carried a user name
	CleanSession bool                 // the CONNECT's CleanSession flag
	KeepAlive    uint16               // seconds
	Level        byte                 // protocol level: 4 (3.1.1) or 3 (3.1)
	Bridge       bool                 // the CONNECT carried the bridge mark (Options.AllowBridges)
	RemoteAddr   net.Addr             // the peer's address
	TLS          *tls.ConnectionState // the TLS state (peer certificates) on mqtts:// and wss://, else nil
}

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of Event.
const (
	// EventConnect: a client's CONNECT was accepted.
	EventConnect EventKind = iota + 1
	// EventDisconnect: an accepted connection ended; Err says why (nil
	// after DISCONNECT).
	EventDisconnect
	// EventPublish: a client's PUBLISH was authorized and routed to
	// Event.Subscribers sessions.
	EventPublish
	// EventDrop: a message for Client was dropped because its session's
	// queue was full (a slow subscriber).
	EventDrop
	// EventRefuse: a CONNECT was refused with CONNACK Event.ReturnCode.
	EventRefuse
)

var eventNames = [...]string{"", "connect", "disconnect", "publish", "drop", "refuse"}

// String returns "connect", "disconnect", "publish", "drop" or "refuse".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return "unknown"
}

// Event is what Options.OnEvent observes. The Event and the byte slices in it
// are valid only during the call.
type Event struct {
	Kind   EventKind
	Client *Client // the client concerned; for EventDrop, the subscriber

	// EventPublish and EventDrop: the message.
	Topic       []byte
	QoS         byte
	Retain      bool
	PayloadSize int
	Subscribers int // EventPublish: sessions the message was handed to

	ReturnCode byte  // EventRefuse: the CONNACK return code sent
	Err        error // EventDisconnect: why the connection ended, nil after DISCONNECT
}
