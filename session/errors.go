package session

import (
	"errors"
	"strings"

	"github.com/ternmq/mqtt/packet"
)

var (
	// ErrFull means a message or request cannot be taken: the inflight
	// window and the queue are both full (Config.MaxInflight,
	// Config.MaxQueued), or all 65,535 packet identifiers are in use. The
	// caller decides what to do: wait for EventPublished, drop and count, or
	// fail the call.
	ErrFull = errors.New("session: inflight window and queue are full")

	// ErrNotConnected means the call needs a connection the session does not
	// have: Subscribe or Unsubscribe before the CONNACK, a QoS 0 Publish
	// while disconnected without Config.QueueQoS0, or Receive with no
	// connection started.
	ErrNotConnected = errors.New("session: not connected")

	// ErrState means a method was called in a role or state where it makes
	// no sense, such as Accept on a client session or Connect while a
	// connection is open. It is a bug in the caller, not the peer.
	ErrState = errors.New("session: call not valid in this role or state")

	// ErrUnknownTag means Ack was given a tag that names no message awaiting
	// acknowledgement.
	ErrUnknownTag = errors.New("session: unknown delivery tag")

	// ErrProtocol is the Kind of an *Error for a protocol violation by the
	// peer. It is packet.ErrProtocol, so that one errors.Is test catches
	// violations found by the codec and by the session.
	ErrProtocol = packet.ErrProtocol

	// ErrTimeout is the Kind of an *Error returned by Tick when the peer
	// has sent nothing for one and a half times the keepalive period.
	ErrTimeout = errors.New("keepalive timeout")

	// ErrLocked is returned by OpenFileStore for a directory that a
	// FileStore has open already, in this process or another.
	ErrLocked = errors.New("session: file store directory in use")
)

// Error is a protocol violation by the peer, or a keepalive timeout. The
// caller closes the network connection [MQTT-4.8.0-1].
type Error struct {
	Kind   error       // ErrProtocol or ErrTimeout
	Type   packet.Type // the packet that broke the rule, or 0
	Rule   string      // the rule: a statement id such as "MQTT-3.1.0-2", or a section such as "3.8"
	Reason string      // what happened, in a few words
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("session: ")
	if e.Type != 0 {
		b.WriteString(e.Type.String())
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.Error())
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Rule != "" {
		b.WriteString(" [")
		b.WriteString(e.Rule)
		b.WriteString("]")
	}
	return b.String()
}

// Unwrap returns the error's Kind, for errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

func violation(t packet.Type, rule, reason string) error {
	return &Error{Kind: ErrProtocol, Type: t, Rule: rule, Reason: reason}
}
