package packet

import (
	"errors"
	"strings"
)

// Kinds of error. Every error returned by this package for bad input is an
// *Error whose Kind is one of these, so callers can test with errors.Is.
var (
	// ErrMalformed means the bytes do not form a packet: bad lengths,
	// truncated fields, trailing bytes, invalid flags or values.
	ErrMalformed = errors.New("malformed packet")

	// ErrProtocol means the bytes form a packet that the specification
	// forbids, such as a PUBLISH to a topic with wildcards.
	ErrProtocol = errors.New("protocol violation")

	// ErrTooLarge means a packet is longer than the configured maximum,
	// or than the protocol's limit of 268,435,455 bytes of remaining length.
	ErrTooLarge = errors.New("packet too large")

	// ErrUnsupportedVersion means a CONNECT asks for a protocol level this
	// package does not speak. A server answers it with CONNACK return code
	// 0x01 before closing the connection [MQTT-3.1.2-2].
	ErrUnsupportedVersion = errors.New("unsupported protocol version")

	// ErrIdentifierRejected means a CONNECT carries an empty client
	// identifier with CleanSession 0, or is an MQTT 3.1 CONNECT whose
	// identifier is not 1 to 23 characters long. A server answers it with
	// CONNACK return code 0x02 before closing the connection
	// [MQTT-3.1.3-8].
	ErrIdentifierRejected = errors.New("client identifier rejected")
)

// Error is a violation of the MQTT 3.1.1 wire format.
type Error struct {
	Kind   error  // ErrMalformed, ErrProtocol, ErrTooLarge, ErrUnsupportedVersion or ErrIdentifierRejected
	Type   Type   // the packet type, or 0 if the type byte itself is bad
	Rule   string // the rule broken: a statement id such as "MQTT-3.3.1-4", or a section such as "2.2.3"
	Reason string // what is wrong, in a few words
}

// Error returns "packet: TYPE: kind: reason [rule]".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("packet: ")
	if e.Type != 0 {
		b.WriteString(e.Type.String())
		b.WriteString(": ")
	}
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
		b.WriteString(": ")
	}
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

func malformed(t Type, rule, reason string) error {
	return &Error{Kind: ErrMalformed, Type: t, Rule: rule, Reason: reason}
}

func violation(t Type, rule, reason string) error {
	return &Error{Kind: ErrProtocol, Type: t, Rule: rule, Reason: reason}
}
