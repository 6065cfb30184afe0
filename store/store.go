// Package store keeps the durable state of an MQTT server: the persistent
// sessions of all its clients (subscriptions, outgoing messages queued and
// in flight, incoming QoS 2 exchanges) and its retained messages, in one
// store for the whole server.
//
// Store is the interface a broker writes through; it is small so that the
// same state can be kept in another database. Log is the implementation on
// disk: one append-only, checksummed log with group commit and compaction.
package store

import (
	"time"

	"github.com/ternmq/mqtt/session"
)

// Subscription is one stored subscription of a session.
type Subscription struct {
	Filter string
	QoS    byte
}

// Retained is a stored retained message.
type Retained struct {
	Topic   []byte
	Payload []byte
	QoS     byte
}

// Store is the durable state of a server.
//
// Writes may be buffered: they are durable once a later Sync returns (the
// Session methods' Sync included, which syncs the whole Store). After a
// crash the store holds a prefix of its writes in the order they were
// made (at least every write a Sync covered), less the writes of groups
// that had not ended (see Begin). A server
// therefore calls Sync before it sends any packet that depends on what it
// wrote: PUBACK or PUBREC to a publisher once the message is stored for
// every persistent subscriber and as retained, SUBACK once the
// subscriptions are stored.
//
// Implementations are safe for concurrent use.
type Store interface {
	// Load calls sess for every stored session, with its subscriptions
	// and the time its last connection ended (zero if it was connected
	// when the store was last written), and ret for every retained
	// message. What is passed is valid only during the call. A server
	// calls Load once, before any other method.
	Load(sess func(id string, subs []Subscription, lastSeen time.Time) error, ret func(*Retained) error) error

	// Session returns the store of the session of client identifier id,
	// an empty one if none is stored. A server calls it at most once per
	// id until that session is deleted.
	Session(id string) (Session, error)

	// SetRetained stores m as its topic's retained message, replacing
	// any; DeleteRetained removes the one on topic, if any. m and topic
	// are valid only during the call.
	SetRetained(m *Retained) error
	DeleteRetained(topic []byte) error

	// Sync makes every write made before the call durable. Calls made at
	// the same time share one flush (group commit). A write inside a
	// group is durable only with the whole group: Sync first waits for
	// the groups open at the call to end, and no group begins meanwhile.
	Sync() error

	// Begin opens a group of writes that a crash keeps whole or not at
	// all: a server routes one QoS 2 message to many sessions, and then
	// records the publisher's packet identifier, inside a group, so that
	// a crash cannot keep some copies without the identifier (the
	// publisher's resend would then be routed again: a duplicate for the
	// sessions whose copy was kept). Writes made by others while the
	// group is open may be lost with it by a crash, unless a Sync covered
	// them. End closes the group; it must be called, and soon: Sync
	// waits for it. Between Begin and End the caller must not wait for a
	// Sync.
	Begin() Group
	End(Group)

	// Close syncs and releases the store.
	Close() error
}

// Group names a group of writes opened by Store.Begin.
type Group uint64

// Session is the durable state of one client's session: what
// session.Store keeps (the session state machine writes it), and the
// subscriptions, which the server writes.
type Session interface {
	session.MarkStore

	// Subscribe stores a subscription, replacing one to the same filter.
	Subscribe(filter string, qos byte) error

	// Unsubscribe removes the subscription to filter, if any.
	Unsubscribe(filter string) error

	// Disconnected records when the session's connection ended, for the
	// expiry of abandoned sessions; Connected records that a connection
	// serves it again.
	Disconnected(at time.Time) error
	Connected() error

	// Delete removes the session and all it holds. The Session is not used
	// afterwards; Store.Session returns a new, empty one for the same id.
	Delete() error
}
