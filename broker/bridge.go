package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ternmq/mqtt/topic"
)

// Defaults of Bridge.
const (
	DefaultBridgeMaxQueued    = 10000
	DefaultBridgeReconnectMin = 5 * time.Second  // mosquitto's restart_timeout base
	DefaultBridgeReconnectMax = 30 * time.Second // mosquitto's restart_timeout cap
)

// BridgeDirection says which way a bridge topic's messages go.
type BridgeDirection uint8

// The directions of a BridgeTopic, as mosquitto names them.
const (
	BridgeOut  BridgeDirection = iota + 1 // local broker to remote broker
	BridgeIn                              // remote broker to local broker
	BridgeBoth                            // both ways
)

// String returns "out", "in" or "both".
func (d BridgeDirection) String() string {
	switch d {
	case BridgeOut:
		return "out"
	case BridgeIn:
		return "in"
	case BridgeBoth:
		return "both"
	}
	return fmt.Sprintf("BridgeDirection(%d)", d)
}

func (d BridgeDirection) out() bool { return d == BridgeOut || d == BridgeBoth }
func (d BridgeDirection) in() bool  { return d == BridgeIn || d == BridgeBoth }

// BridgeTopic is one topic rule of a bridge, mosquitto's
// `topic PATTERN DIRECTION QOS LOCAL-PREFIX REMOTE-PREFIX`.
//
// The bridge subscribes to LocalPrefix+Pattern on the local broker (out)
// and to RemotePrefix+Pattern on the remote one (in), at QoS. A message
// crossing the bridge loses one prefix and gains the other: with prefixes
// "L/" and "R/", local topic L/a/b is remote topic R/a/b. An empty Pattern
// maps the single topic LocalPrefix to RemotePrefix (both then required).
type BridgeTopic struct {
	Pattern      string
	Direction    BridgeDirection
	QoS          byte
	LocalPrefix  string
	RemotePrefix string
}

func (t *BridgeTopic) localFilter() string  { return t.LocalPrefix + t.Pattern }
func (t *BridgeTopic) remoteFilter() string { return t.RemotePrefix + t.Pattern }

// Bridge is a connection from the Server to a remote broker, as mosquitto's
// bridges are: the Server holds a client connection (tern's client package,
// with its reconnection and resend) and forwards chosen topics one way or
// both.
//
// Going out, the bridge is a subscriber inside the Server: each matching
// message is taken into the bridge's queue, QoS 1 and 2 ones until the
// remote broker acknowledges them, through outages of the link. A QoS 0
// message is sent if the link is up, and dropped (counted) if not.
// Messages keep their RETAIN flag as published, as mosquitto's bridges do,
// unless NoOutgoingRetain; and on every connection the local retained
// messages of the outgoing topics are sent again with RETAIN set (as
// mosquitto does), so that the remote broker holds what was retained here
// while the link was down.
//
// Coming in, a message is published on the local broker as if a client had
// published it, with its RETAIN flag as received: a remote broker that
// accepted the bridge mark (mosquitto, or tern with AllowBridges) sends it as
// published, another one only sets it on the retained messages sent when the
// bridge subscribes. A message that came in through a bridge does not go
// out through the same bridge as it is routed; but a retained one is kept
// here like any other, and so is among the retained messages sent again on
// the next connection (as mosquitto's bridge sends them): if the remote
// broker cleared or replaced it meanwhile, it gets the old one back.
//
// Loops: with the bridge mark (the default, mosquitto's try_private), the
// remote broker does not send the bridge's own messages back. A broker that
// refuses the mark with CONNACK 0x01 is connected to without it; the
// bridge then drops incoming messages that equal (topic and payload) one of
// the last 4,096 it forwarded, which also drops a genuine copy published
// on the remote side meanwhile, and lets an echo through once 4,096 more
// have gone out (a burst faster than the round trip): use the mark where
// the remote broker takes it.
//
// QoS 2 is exactly once end to end as far as MQTT 3.1.1 allows: the queue
// and the exchange with the remote broker survive a restart when the Server
// has a durable store and the remote session is kept (CleanSession false,
// the default); with CleanSession true, a message in flight when the link
// breaks is sent again as a new message, and may arrive twice.
type Bridge struct {
	// Name names the bridge (mosquitto's `connection`): in logs, Stats,
	// and the default ClientID. Unique among a Server's bridges.
	Name string
	// URLs of the remote broker, tried in turn: every scheme of package
	// transport (mqtt, tcp, mqtts, ssl, tls, ws, wss, unix).
	URLs []string
	// ClientID on the remote broker; empty means "HOSTNAME.NAME", as
	// mosquitto.
	ClientID string
	// Username and Password authenticate to the remote broker; Password nil
	// sends none.
	Username string
	Password []byte
	// TLSConfig is used for mqtts, ssl, tls and wss URLs.
	TLSConfig *tls.Config
	// KeepAlive of the remote connection; 0 means 60 seconds.
	KeepAlive time.Duration
	// CleanSession starts a clean session on every connection. The zero
	// value keeps the remote session (mosquitto's default,
	// cleansession false).
	CleanSession bool
	// Topics are the topic rules, at least one.
	Topics []BridgeTopic
	// NoBridgeMark connects without the bridge mark (mosquitto's
	// try_private false).
	NoBridgeMark bool
	// NoNotifications turns off the state messages; NotificationsLocalOnly
	// publishes them on the local broker only. NotificationTopic is where
	// they go: "1" retained when the bridge is up, "0" when it is down;
	// empty means $SYS/broker/connection/CLIENTID/state, as mosquitto. On
	// the remote broker, "0" is the bridge's will.
	NoNotifications        bool
	NotificationsLocalOnly bool
	NotificationTopic      string
	// NoUnsubscribe keeps the bridge from unsubscribing on the remote
	// broker from the topics that go out only (mosquitto's
	// bridge_attempt_unsubscribe false).
	NoUnsubscribe bool
	// NoOutgoingRetain clears RETAIN on every outgoing message (mosquitto's
	// bridge_outgoing_retain false).
	NoOutgoingRetain bool
	// ReconnectMin and ReconnectMax bound the wait between connection
	// attempts (mosquitto's restart_timeout); 0 means
	// DefaultBridgeReconnectMin and DefaultBridgeReconnectMax.
	ReconnectMin, ReconnectMax time.Duration
	// MaxInflight is the number of messages awaiting the remote's
	// acknowledgement; 0 means 20.
	MaxInflight int
	// MaxQueued bounds the outgoing messages waiting behind the inflight
	// window or for the link (in memory, and in the store when there is
	// one); 0 means DefaultBridgeMaxQueued. A message for a full queue is
	// dropped for this bridge, logged and counted (BridgeStats.Dropped),
	// as with mosquitto's max_queued_messages: a local publisher is never
	// held up by the link.
	MaxQueued int
}

// BridgeStats are the counters of one bridge.
type BridgeStats struct {
	Name      string
	Connected bool  // the link is up
	Marked    bool  // the remote broker accepted the bridge mark
	Forwarded int64 // messages taken to go out
	Pending   int   // of those, QoS 1 and 2 ones not yet acknowledged by the remote broker
	Received  int64 // messages that came in and were published locally
	Dropped   int64 // messages not forwarded: queue full, QoS 0 while down, echoes
}

// validate checks what can be judged before connecting.
func (b *Bridge) validate() error {
	if b.Name == "" || strings.ContainsAny(b.Name, "/+#") {
		return fmt.Errorf("bridge %q: the name must be non-empty, without / + #", b.Name)
	}
	if len(b.URLs) == 0 {
		return fmt.Errorf("bridge %s: no address", b.Name)
	}
	if len(b.Topics) == 0 {
		return fmt.Errorf("bridge %s: no topic", b.Name)
	}
	if b.Password != nil && b.Username == "" {
		return fmt.Errorf("bridge %s: a password needs a username", b.Name)
	}
	for i := range b.Topics {
		if err := b.Topics[i].validate(); err != nil {
			return fmt.Errorf("bridge %s: topic %q: %w", b.Name, b.Topics[i].Pattern, err)
		}
	}
	if b.NotificationTopic != "" {
		if err := topic.ValidName([]byte(b.NotificationTopic)); err != nil {
			return fmt.Errorf("bridge %s: notification topic: %w", b.Name, err)
		}
	}
	return nil
}

func (t *BridgeTopic) validate() error {
	if t.Direction < BridgeOut || t.Direction > BridgeBoth {
		return errors.New("direction not out, in or both")
	}
	if t.QoS > 2 {
		return errors.New("QoS over 2")
	}
	if strings.ContainsAny(t.LocalPrefix, "+#") || strings.ContainsAny(t.RemotePrefix, "+#") {
		return errors.New("a prefix contains a wildcard")
	}
	if t.Pattern == "" && (t.LocalPrefix == "" || t.RemotePrefix == "") {
		return errors.New("an empty pattern needs both prefixes (the local and the remote topic)")
	}
	if err := topic.ValidFilter([]byte(t.localFilter())); err != nil {
		return fmt.Errorf("local filter %q: %w", t.localFilter(), err)
	}
	if err := topic.ValidFilter([]byte(t.remoteFilter())); err != nil {
		return fmt.Errorf("remote filter %q: %w", t.remoteFilter(), err)
	}
	return nil
}
