package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"syscall"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
)

// Errors returned by the Client. Every error of the client's API starts with
// "client:"; errors from the network, the codec and the session are wrapped,
// so that errors.Is and errors.As still find them.
var (
	// ErrClosed means the Client was disconnected or closed: it takes no
	// more calls.
	ErrClosed = errors.New("client: closed")

	// ErrNotConnected means the call needs a connection the client does
	// not have: Connect was never called, or, with Options.NoReconnect,
	// the connection was lost (the error then wraps the cause too), or a
	// QoS 0 Publish came while reconnecting, without Options.QueueQoS0.
	ErrNotConnected = errors.New("client: not connected")

	// ErrConnected means Connect was called on a client that is connected,
	// or reconnecting on its own.
	ErrConnected = errors.New("client: already connected")

	// ErrConnectionLost means the connection ended before the call's
	// answer arrived: a SUBSCRIBE or UNSUBSCRIBE without its acknowledgement
	// (the call may be repeated once reconnected), or a QoS 0 message not
	// yet written. QoS 1 and 2 messages are not affected: they are sent
	// again on the next connection (unless Options.NoReconnect).
	ErrConnectionLost = errors.New("client: connection lost")

	// ErrCallbackWait is returned by a call made from Options.OnEvent
	// that would wait for a connection while the connection is down: the
	// next one comes only once the callback returns. A message published
	// stays queued and leaves on the next connection, as when a Publish's
	// context ends first; a Subscribe or Unsubscribe is not made.
	ErrCallbackWait = errors.New("client: called from OnEvent while the connection is down: waiting would hold up the reconnection")

	// ErrStoreFailed means a write to Options.Store failed (a full disk,
	// a failing one). The session can no longer record what it does, and
	// the client stops as with Options.NoReconnect: the connection is
	// closed, the calls waiting on it fail with an error wrapping this one
	// and the store's, and later calls and Connect fail too. Make a new
	// Client once the store works again: the messages it had stored are
	// loaded and sent.
	ErrStoreFailed = errors.New("client: session store failed")

	// ErrSessionEnded fails a QoS 2 message whose exchange was under way
	// (its PUBLISH sent, perhaps its PUBREC received) when the connection
	// ended with Options.KeepSession false: the broker's session, and the
	// exchange with it, ended too, and the broker may have delivered the
	// message or not. Sent again it could arrive twice; reported done it
	// could be lost. Options.KeepSession keeps exactly once across
	// connections.
	ErrSessionEnded = errors.New("client: QoS 2 message given up: the session ended with the connection (KeepSession false) during its exchange; it may have been delivered, or not")

	// ErrFull means the inflight window and the queue are full
	// (Options.FailWhenFull). It is session.ErrFull.
	ErrFull = session.ErrFull

	// ErrSubscriptionRefused is the Kind of a *SubscribeError: the broker
	// answered SUBACK 0x80 for at least one filter.
	ErrSubscriptionRefused = errors.New("client: subscription refused")

	// ErrMessageRefused is what a *MessageError wraps: the broker closed
	// the connection every time the message was sent (see Options.MaxCuts).
	ErrMessageRefused = errors.New("client: message refused by the broker")
)

// ConnectError is a CONNACK that refused the connection.
type ConnectError struct {
	URL  string
	Code packet.ReturnCode
}

// Error names the server, the return code and what to do about it.
func (e *ConnectError) Error() string {
	return fmt.Sprintf("client: %s refused the connection: %s (CONNACK return code %d): %s",
		redactURL(e.URL), e.Code, byte(e.Code), refusalHint(e.Code))
}

// refusalHint says what a CONNACK return code asks of the user.
func refusalHint(c packet.ReturnCode) string {
	switch c {
	case packet.RefusedProtocolVersion:
		return "the server does not speak MQTT 3.1.1"
	case packet.RefusedIdentifierRejected:
		return "the server does not accept this client id; choose another one (Options.ClientID)"
	case packet.RefusedServerUnavailable:
		return "the server cannot take connections now; try again later"
	case packet.RefusedBadUsernameOrPassword:
		return "check the user name and password (Options.Username, Options.Password)"
	case packet.RefusedNotAuthorized:
		return "the server's rules refuse this client; ask for access or give other credentials"
	}
	return "a return code MQTT 3.1.1 does not define"
}

// permanent reports whether retrying the connection cannot help.
func (e *ConnectError) permanent() bool {
	return e.Code != packet.RefusedServerUnavailable
}

// SubscribeError lists the filters of a Subscribe call the broker refused
// (return code 0x80). errors.Is(err, ErrSubscriptionRefused) is true.
type SubscribeError struct {
	Filters []string
}

// Error lists the refused filters.
func (e *SubscribeError) Error() string {
	return fmt.Sprintf("client: subscription refused for %q: the broker's rules (ACL) do not allow it", e.Filters)
}

// Unwrap returns ErrSubscriptionRefused.
func (e *SubscribeError) Unwrap() error { return ErrSubscriptionRefused }

// MessageError is an outgoing message the client gave up on: the broker
// closed the connection each time it was sent, Options.MaxCuts times in a
// row. errors.Is(err, ErrMessageRefused) is true, and the cause of the last
// loss is wrapped too.
type MessageError struct {
	Topic    string
	Size     int // bytes of topic and payload
	Attempts int // connections lost while it awaited its acknowledgement
	Err      error
}

// Error says what happened and the likely reason.
func (e *MessageError) Error() string {
	return fmt.Sprintf("client: publish to %q (%d bytes): the broker closed the connection each of the %d times the message was sent, so it was given up; "+
		"it is probably over the broker's maximum packet size, or refused by its rules (last cause: %v)", e.Topic, e.Size, e.Attempts, e.Err)
}

// Unwrap returns ErrMessageRefused and the cause of the last loss.
func (e *MessageError) Unwrap() []error { return []error{ErrMessageRefused, e.Err} }

// lostError fails the calls that waited on a connection that was lost. It
// is ErrConnectionLost and the cause and, with Options.NoReconnect (final),
// ErrNotConnected too.
type lostError struct {
	final bool
	store bool // final because the session store failed
	url   string
	cause error
}

func (e *lostError) Error() string {
	s := "client: connection to " + redactURL(e.url) + " lost"
	switch {
	case e.store:
		s = "client: stopped (the session store failed): connection to " + redactURL(e.url) + " lost"
	case e.final:
		s = "client: not connected (Options.NoReconnect): connection to " + redactURL(e.url) + " lost"
	}
	if e.cause != nil {
		s += ": " + strings.TrimPrefix(e.cause.Error(), "client: ")
	}
	return s
}

func (e *lostError) Unwrap() []error {
	errs := []error{ErrConnectionLost}
	if e.final {
		errs = append(errs, ErrNotConnected)
	}
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

// dialError is a connection attempt that failed before its CONNACK.
type dialError struct {
	url  string
	err  error
	hint string
}

func (e *dialError) Error() string {
	msg := e.err.Error()
	// The transport names the URL already: say it once.
	for _, p := range []string{"transport: dial " + redactURL(e.url) + ": ", "client: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	s := "client: connect to " + redactURL(e.url) + ": " + msg
	if e.hint != "" {
		s += "; " + e.hint
	}
	return s
}

func (e *dialError) Unwrap() error { return e.err }

// newDialError wraps err, adding what to do when a plain connection met a
// TLS port or the other way round.
func newDialError(rawURL string, err error) error {
	if err == nil {
		return nil
	}
	var ce *ConnectError
	if errors.As(err, &ce) || errors.Is(err, ErrClosed) {
		return err
	}
	d := &dialError{url: rawURL, err: err}
	tlsScheme := false
	if u, perr := url.Parse(rawURL); perr == nil {
		switch strings.ToLower(u.Scheme) {
		case "mqtts", "ssl", "tls", "wss":
			tlsScheme = true
		}
	}
	var rh tls.RecordHeaderError
	var pe *packet.Error
	switch {
	case tlsScheme && errors.As(err, &rh):
		d.hint = "the server does not speak TLS on this port: use mqtt:// (or ws://), or the server's TLS port"
	case tlsScheme && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)):
		d.hint = "the server closed the connection during the TLS handshake: if this port speaks plain MQTT, use mqtt:// (or ws://)"
	case !tlsScheme && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.As(err, &pe)):
		d.hint = "the server closed the connection without a CONNACK: if this port expects TLS, use mqtts:// (or wss://)"
	}
	return d
}

// redactURL hides the password of a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
