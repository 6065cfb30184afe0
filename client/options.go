package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/topic"
	"github.com/ternmq/mqtt/transport"
)

// Defaults of Options.
const (
	DefaultKeepAlive      = 60 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultReconnectMin   = 100 * time.Millisecond
	DefaultReconnectMax   = 30 * time.Second
	// DefaultMaxInflight is what a stock mosquitto accepts from a client
	// (max_inflight_messages 20): a 3.1.1 client with more unreleased QoS 2
	// messages is disconnected by it.
	DefaultMaxInflight = session.DefaultMaxInflight
	// DefaultMaxQueued bounds the messages waiting for an inflight slot or
	// for a connection.
	DefaultMaxQueued = session.DefaultMaxQueued
	// DefaultMaxPending bounds the received messages waiting for a handler
	// or a reader of Messages.
	DefaultMaxPending = 100
	// DefaultMaxPacketSize is the largest packet the client accepts from
	// the broker by default: what tern's broker lets through by default
	// (broker.DefaultMaxPacketSize). A read buffer grows with the bytes
	// that arrive, not with the length a header announces.
	DefaultMaxPacketSize = 16 << 20
	// DefaultBatchDelay is how long, at most, a fast stream of messages
	// may collect in the connection between two reads. On small QoS 0
	// messages through mosquitto it doubles throughput; so does 100 µs,
	// but 1 KiB messages need about 500 µs. At QoS 1 and 2 it cuts the
	// client's CPU per message by 40 to 50%.
	DefaultBatchDelay = 500 * time.Microsecond
	// DefaultMaxCuts is how many connections in a row may end while the
	// same message awaits its acknowledgement before Publish gives it up.
	DefaultMaxCuts = 3
	// MaxBatchDelay is the largest BatchDelay accepted: a paused reader
	// leaves the broker's PINGRESP unread, so a delay near the keepalive
	// would look like a dead broker.
	MaxBatchDelay = 100 * time.Millisecond
)

// Options configures a Client. Only Servers is required; the zero value of
// every other field is a default that works against a stock broker.
type Options struct {
	// Servers are the URLs of the broker, tried in turn on every
	// connection attempt, starting with the last one that worked. Every
	// scheme of package transport is accepted: mqtt, tcp, mqtts, ssl, tls,
	// ws, wss and unix.
	Servers []string

	// ClientID identifies the client to the broker. Empty means one is
	// generated ("tern-" and 16 random hex digits) and kept for the life of
	// the Client, so that a kept session is found again on reconnection.
	ClientID string

	// KeepSession asks the broker to keep the session between connections
	// (CleanSession 0): subscriptions, and QoS 1 and 2 messages for the
	// client while it is away. The zero value starts a clean session on
	// every connection (CleanSession 1) [MQTT-3.1.2-6]; outgoing QoS 1
	// messages not yet acknowledged are then sent again as new messages,
	// and QoS 2 messages whose exchange had begun are given up with
	// ErrSessionEnded (exactly once does not outlive the session: sent
	// again they could arrive twice, reported done they could be lost).
	KeepSession bool

	// KeepAlive is the longest time the client stays silent; the broker
	// drops the connection after 1.5 times it without a packet
	// [MQTT-3.1.2-24], and the client drops a broker that stays silent as
	// long. Zero means DefaultKeepAlive, a negative value turns keepalive
	// off. It is rounded up to whole seconds.
	KeepAlive time.Duration

	// Will is published by the broker when the connection ends without
	// DISCONNECT [MQTT-3.1.2-8].
	Will *Will

	// Username and Password authenticate the client. Username empty means
	// none is sent; Password nil means none is sent [MQTT-3.1.2-22].
	Username string
	Password []byte

	// TLSConfig is used for the mqtts, ssl, tls and wss schemes; nil means
	// the system roots. It overrides Transport.TLSConfig.
	TLSConfig *tls.Config

	// Transport tunes the dialing (WebSocket headers, a custom dialer for
	// proxies or in-memory pipes). Nil means the defaults.
	Transport *transport.Options

	// ConnectTimeout bounds each connection attempt to one server: dial,
	// handshakes and CONNACK. Zero means DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// NoReconnect turns automatic reconnection off: when the connection is
	// lost, the client stays disconnected, and the calls waiting on it
	// (Publish at any QoS, Subscribe, Unsubscribe, tokens) fail at once
	// with an error wrapping ErrNotConnected and the cause of the loss, as
	// do new calls, until Connect is called again. The QoS 1 and 2
	// messages of failed calls stay in the session (and Options.Store):
	// a later Connect sends them again.
	NoReconnect bool

	// ConnectRetry makes Connect try Servers again, waiting as between
	// reconnections (ReconnectMin, ReconnectMax), until one accepts or
	// Connect's context ends, rather than fail after one round. A CONNACK
	// that refuses the client for good (bad credentials, not authorized,
	// identifier rejected, protocol version) still ends it at once.
	ConnectRetry bool

	// MaxCuts is how many connections in a row may end while the same QoS
	// 1 or 2 message is the oldest sent and not acknowledged, with nothing
	// received from the broker after the client's last write, before the client
	// gives that message up: it is removed from the session and its Publish
	// fails with a *MessageError (errors.Is ErrMessageRefused). A broker
	// closes the connection on a message it will never take, such as one
	// over its maximum packet size, and the client would otherwise send it
	// again forever. Zero means DefaultMaxCuts; negative means no limit.
	MaxCuts int

	// ReconnectMin and ReconnectMax bound the wait between reconnection
	// attempts, which doubles after each failed round over Servers, with
	// random jitter (between half and all of the wait). A connection that
	// ends soon after its CONNACK with nothing received does not reset the
	// wait: the next attempt waits, longer each time, so that a broker that
	// accepts and then cuts the client is not hammered. Zero means
	// DefaultReconnectMin and DefaultReconnectMax.
	ReconnectMin, ReconnectMax time.Duration

	// Store keeps the session state (messages in flight, incoming QoS 2
	// exchanges) durable: session.NewMemoryStore, or session.OpenFileStore
	// to survive a restart of the process. Nil keeps it in memory, for the
	// life of the Client. The caller closes a FileStore after Disconnect.
	// A write to the store that fails stops the client (ErrStoreFailed).
	Store session.Store

	// MaxInflight is the number of QoS 1 and 2 messages that may await
	// their acknowledgement at once. Zero means DefaultMaxInflight.
	MaxInflight int

	// MaxQueued is the number of messages that may wait for an inflight
	// slot or, while disconnected, for a connection (the offline queue).
	// Zero means DefaultMaxQueued.
	MaxQueued int

	// QueueQoS0 makes QoS 0 messages published while disconnected wait in
	// the offline queue; without it such a Publish fails with
	// ErrNotConnected.
	QueueQoS0 bool

	// FailWhenFull makes Publish fail with ErrFull when the inflight
	// window and the queue are full. Without it, Publish waits for room,
	// as long as its context allows.
	FailWhenFull bool

	// ManualAck makes the acknowledgement of a received QoS 1 or 2 message
	// wait for Message.Ack, so that the broker sends it again after a
	// crash if it was not processed. Acknowledgements still leave in the
	// order the messages arrived [MQTT-4.6.0-2] [MQTT-4.6.0-3]. Without it, a
	// message is acknowledged when its handler returns, or when it is taken
	// from Messages.
	ManualAck bool

	// MaxPending bounds the received messages waiting for their handler or
	// for a reader of Messages. When it is reached, the client stops
	// reading from the network, which slows the broker down; keepalive
	// goes on meanwhile. Zero means DefaultMaxPending. While a handler
	// waits in a call of the client, reading goes on (see the package doc,
	// Flow control).
	MaxPending int

	// BatchDelay is how long, at most, the packets of a fast stream of
	// messages or acknowledgements (reads that bring several, or wait less
	// than half the delay, several times in a row) may collect in
	// the connection before the client reads them, so that one read takes
	// many: under such load it costs up to that much latency, and saves a
	// system call and a wake-up per packet, on the broker too, and the
	// acknowledgements of a read's QoS 1 and 2 messages leave in one write.
	// Pausing stops when it would slow the stream, as when the window of a
	// sender (of QoS 1 or 2 messages, or an application's own at QoS 0),
	// not its pace, decides how much each read brings, and for a while
	// after. On Linux, over plain TCP, the bytes that
	// arrive during a pause do not wake the process either (SO_RCVLOWAT,
	// see internal/lowat). In an otherwise idle process Go's
	// timers round waits under a millisecond up to about one. Zero means
	// DefaultBatchDelay; a negative value reads every packet as soon as
	// it arrives. Answers to requests (CONNACK, SUBACK, UNSUBACK,
	// PINGRESP) are never delayed.
	BatchDelay time.Duration

	// MaxPacketSize is the largest packet accepted from the broker, which
	// bounds memory with MaxPending. Zero means DefaultMaxPacketSize
	// (16 MiB). A larger packet ends the connection, and the broker would
	// send it again on the next one: the client logs it at error level,
	// with the limit to raise (mosquitto lets up to 256 MiB through).
	MaxPacketSize int

	// DefaultHandler receives the messages no Handle filter matches. When
	// it is nil they go to Messages. Until Messages is first called, they
	// are acknowledged and kept for it, up to MaxPending; beyond that the
	// oldest kept is discarded, with a warning in the log, and counted in
	// Stats.Dropped.
	DefaultHandler func(*Message)

	// DiscardUnhandled makes the client discard the messages that no
	// handler takes while nobody has called Messages, instead of keeping
	// them for a reader to come (see DefaultHandler). Each is still
	// acknowledged [MQTT-4.5.0-2], logged at debug level and counted in
	// Stats.Dropped.
	DiscardUnhandled bool

	// OnEvent is told about the connection: connected, lost (with the
	// cause), reconnecting. It runs on the client's connection goroutine
	// (or Connect's): it must return promptly, and may call the Client's
	// methods. A call that waits on the connection (Publish at QoS 1 or 2,
	// Subscribe, Unsubscribe) fails with ErrCallbackWait when the
	// connection is down, or goes down while it waits: the loss is
	// handled, and the next connection made, only once the callback
	// returns. A message published stays queued (PublishAsync does not
	// wait).
	OnEvent func(Event)

	// Logger receives debug and warning records. Nil means silence.
	Logger *slog.Logger

	// BridgeMark sends the CONNECT with the bridge mark (protocol level
	// 0x84), as mosquitto's bridges do with try_private: a broker that
	// knows it does not send the client's own messages back to it. It is
	// not MQTT 3.1.1; a broker that refuses it with CONNACK 0x01 is asked
	// again at once without it, and the client goes on without it (see
	// Client.BridgeMark).
	BridgeMark bool
}

// Will is the message the broker publishes for the client when its
// connection ends without a DISCONNECT (section 3.1.2.5).
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of connection event.
const (
	// Connected: a connection is up (CONNACK accepted). SessionPresent
	// says whether the broker kept the session.
	Connected EventKind = iota + 1
	// ConnectionLost: the connection ended; Err is why.
	ConnectionLost
	// Reconnecting: an attempt to connect to URL starts; Attempt counts
	// the attempts since the connection was lost, from 1.
	Reconnecting
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case ConnectionLost:
		return "connection lost"
	case Reconnecting:
		return "reconnecting"
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event reports a change of the connection to Options.OnEvent.
type Event struct {
	Kind           EventKind
	URL            string // the server concerned
	SessionPresent bool   // Connected
	Err            error  // ConnectionLost: the cause; Reconnecting: the previous attempt's failure, if any
	Attempt        int    // Reconnecting
}

// validate checks the options that can be judged before connecting.
func (o *Options) validate() error {
	if len(o.Servers) == 0 {
		return errors.New("client: no server URL in Options.Servers")
	}
	for i, u := range o.Servers {
		if err := transport.CheckURL(u); err != nil {
			return fmt.Errorf("client: Options.Servers[%d]: %w", i, err)
		}
	}
	if o.Will != nil {
		if err := topic.ValidName(o.Will.Topic); err != nil {
			return fmt.Errorf("client: will topic: %w", err)
		}
		if o.Will.QoS > 2 {
			return errors.New("client: will QoS over 2")
		}
	}
	if len(o.ClientID) > 65535 || len(o.Username) > 65535 || len(o.Password) > 65535 {
		return errors.New("client: client id, username or password longer than 65535 bytes")
	}
	if o.Password != nil && o.Username == "" {
		return errors.New("client: a password needs a username [MQTT-3.1.2-22]")
	}
	if o.MaxInflight < 0 || o.MaxInflight > 65535 || o.MaxQueued < 0 || o.MaxPending < 0 || o.MaxPacketSize < 0 {
		return errors.New("client: negative or too large limit")
	}
	if o.BatchDelay > MaxBatchDelay {
		return fmt.Errorf("client: BatchDelay over %v", MaxBatchDelay)
	}
	return nil
}

// keepAliveSeconds is the CONNECT keepalive field.
func (o *Options) keepAliveSeconds() uint16 {
	d := o.KeepAlive
	switch {
	case d < 0:
		return 0
	case d == 0:
		d = DefaultKeepAlive
	}
	s := (d + time.Second - 1) / time.Second
	if s > 65535 {
		s = 65535
	}
	return uint16(s)
}

// connectPacket builds the CONNECT the client sends on every connection.
func (o *Options) connectPacket(clientID string) *packet.Connect {
	c := &packet.Connect{
		Level:        packet.Level311,
		CleanSession: !o.KeepSession,
		KeepAlive:    o.keepAliveSeconds(),
		ClientID:     []byte(clientID),
		Bridge:       o.BridgeMark,
	}
	if w := o.Will; w != nil {
		c.Will, c.WillQoS, c.WillRetain = true, w.QoS, w.Retain
		c.WillTopic, c.WillMessage = []byte(w.Topic), append([]byte{}, w.Payload...)
	}
	if o.Username != "" {
		c.HasUsername, c.Username = true, []byte(o.Username)
	}
	if o.Password != nil {
		c.HasPassword, c.Password = true, append([]byte{}, o.Password...)
	}
	return c
}

func orDefault[T int | time.Duration](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}
