package session

import (
	"errors"

	"github.com/ternmq/mqtt/packet"
)

// Handle identifies an outgoing QoS 1 or 2 message, or a SUBSCRIBE or
// UNSUBSCRIBE request, from the call that took it (Publish, Subscribe,
// Unsubscribe) to the event that ends it (EventPublished, EventSubscribed,
// EventUnsubscribed or EventDropped). Handles increase with every call and
// are never 0. Message handles are kept by the Store and never reused by
// it, even across restarts, so they also give the order messages were
// published in.
type Handle uint64

// Tag identifies an incoming QoS 1 or 2 message, for Ack with
// Config.ManualAck. Tags increase and are never 0. The tag of a QoS 2
// message is stored with its packet identifier: a message delivered again
// after a restart (see EventMessage) carries its first tag. With a Store
// that is a MarkStore (MemoryStore and FileStore are), no tag is ever
// handed out twice, so an application can make its processing idempotent
// by recording tags.
type Tag uint64

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of event.
const (
	// EventMessage: an application message arrived; Publish is the
	// packet (aliasing the packet given to Receive). Tag is set for QoS 1
	// and 2. Without Config.ManualAck its acknowledgement is already queued;
	// with it, call Ack(Tag) once the message is processed.
	//
	// A QoS 2 message is delivered once per packet identifier until its
	// PUBREL [MQTT-4.3.3-2], also across restarts with a durable Store, with
	// one exception that keeps exactly-once processing possible: with
	// ManualAck, a message whose Ack was not recorded before a restart is
	// delivered again with its original Tag when the peer sends it again.
	EventMessage EventKind = iota + 1

	// EventPublished: the outgoing message Handle is complete: PUBACK
	// arrived for QoS 1, PUBCOMP for QoS 2.
	EventPublished

	// EventDropped: the message or request Handle will never complete: a
	// SUBSCRIBE or UNSUBSCRIBE whose connection ended before its answer, a
	// message discarded by Reset, or (Err ErrSessionEnded) a QoS 2 message
	// whose exchange a clean session's connection cut short.
	EventDropped

	// EventSubscribed (client): the SUBACK for Subscribe call Handle;
	// ReturnCodes holds one code per filter, in order (aliasing the packet).
	EventSubscribed

	// EventUnsubscribed (client): the UNSUBACK for Unsubscribe call Handle.
	EventUnsubscribed

	// EventConnack (client): the CONNACK arrived. ReturnCode says whether
	// the connection is accepted and SessionPresent whether the server kept
	// the session. When refused, the caller closes the connection; when
	// accepted, the resends and queued messages are in the outbox.
	//
	// SessionPresent 0 on a CleanSession 0 connection means the server lost
	// the session (3.1.1 leaves the client's reaction open): the session
	// then forgets the incoming QoS 2 exchanges, whose ids the server will
	// reuse for new messages, and sends its unfinished messages again all
	// the same, which the server takes as new ones (a PUBREL it does not
	// know is answered with PUBCOMP). Subscriptions are the caller's: the
	// server has lost them too.
	EventConnack

	// EventSubscribe (server): a SUBSCRIBE arrived (Subscribe aliases the
	// packet). Answer it with Suback [MQTT-3.8.4-1].
	EventSubscribe

	// EventUnsubscribe (server): an UNSUBSCRIBE arrived (Unsubscribe aliases
	// the packet). Answer it with Unsuback [MQTT-3.10.4-4].
	EventUnsubscribe

	// EventDisconnect (server): the client sent DISCONNECT. Discard its will
	// [MQTT-3.14.4-3] and close the connection.
	EventDisconnect
)

var eventNames = [...]string{"EventKind(0)", "EventMessage", "EventPublished", "EventDropped", "EventSubscribed",
	"EventUnsubscribed", "EventConnack", "EventSubscribe", "EventUnsubscribe", "EventDisconnect"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "EventKind(?)"
}

// Event is something the caller acts on, returned by NextEvent. Which
// fields are set depends on Kind; pointers and slices alias the packet given
// to Receive and are valid only as long as it is.
type Event struct {
	Kind     EventKind
	Handle   Handle // EventPublished, EventDropped, EventSubscribed, EventUnsubscribed
	PacketID uint16 // the packet identifier concerned, when there is one
	Tag      Tag    // EventMessage with QoS 1 or 2

	Publish     *packet.Publish     // EventMessage
	Subscribe   *packet.Subscribe   // EventSubscribe
	Unsubscribe *packet.Unsubscribe // EventUnsubscribe
	ReturnCodes []byte              // EventSubscribed

	SessionPresent bool              // EventConnack
	ReturnCode     packet.ReturnCode // EventConnack

	Err error // EventDropped: why, when the caller must be told (ErrSessionEnded)
}

// ErrSessionEnded is the Err of EventDropped for a QoS 2 message whose
// PUBLISH had left when a CleanSession connection ended the session: the
// receiver may have delivered it or not, and sending it again could
// deliver it twice.
var ErrSessionEnded = errors.New("session: the session ended during the message's QoS 2 exchange: it may have been delivered, or not")
