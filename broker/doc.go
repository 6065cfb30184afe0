// Package broker is an embeddable MQTT 3.1.1 broker built on the packet,
// topic, session and transport packages: QoS 0, 1 and 2 in both directions,
// retained messages, wills, persistent sessions, keepalive, shared
// subscriptions, and hooks for authentication, authorization and metrics.
//
// A Server serves any number of listeners at once:
//
//	srv := broker.New(broker.Options{})
//	go srv.ListenAndServe("mqtt://127.0.0.1:1883")
//	go srv.ListenAndServe("ws://127.0.0.1:8080/mqtt")
//	...
//	srv.Shutdown(ctx)
//
// # Connections
//
// While bytes arrive, a connection has a goroutine that reads packets and
// routes the messages they carry, and, while the connection's session has
// packets waiting, one that writes them in batches, with one write per batch.
// A publisher hands a message to each subscriber's session (a copy into that
// session's reused buffers) and wakes its writer once per batch of packets
// read; it never waits for a subscriber's network. The acknowledgements a
// reader produces it writes itself, before it waits for more bytes. A client
// that publishes a fast stream of messages is read at most once per
// Options.BatchDelay (1 ms), so that one read and one wake-up take many
// messages and one write their acknowledgements: common clients write each
// message on its own, which would otherwise cost the broker a read and a
// wake-up each. A lone message is not delayed, nor is a stream that pausing
// would slow (a window that each pause fills, of QoS 1 or 2 messages or of
// an application that waits for its QoS 0 messages to arrive, or the rate
// dropping by half). A client with several
// messages in flight is read, on Linux, once half of their
// acknowledgements have come (or after BatchDelay), not at each.
//
// An idle connection holds no read or write buffer. On Linux, an idle plain
// TCP or Unix connection holds no goroutine either: it is parked, its socket
// watched by the Server's own epoll instance and its keepalive deadline by a
// heap of deadlines, and a goroutine starts again when bytes or the deadline
// come. A connection parks once nothing has come for a tenth of a second (a
// new one at once): a busy connection waits for its next packet in the Go
// runtime's poller, as parking per packet would cost more than it saves.
// Once idle for a quarter of a second (a new connection at once), it
// also gives back its net.Conn, and with it the Go runtime's state for the
// socket, keeping only a duplicate of the socket's descriptor; bytes to read
// or to write make a net.Conn again. That leaves about 1.5 KB of memory per
// idle connection, 1.7 KB with one subscription (RSS, 10,000 connections; see
// bench/idle_test.go), against about 8 KB with a goroutine each. TLS and
// WebSocket connections keep their reading goroutine.
//
// A packet's read buffer grows with the bytes that have arrived, not with
// the length its header announces, up to Options.MaxPacketSize. A client is
// read from no faster than the broker writes to it: once 4,096 packets (the
// answers to its PINGREQs, PUBLISHes and PUBRELs among them) wait for a
// connection's writer, its reader pauses until the writer takes them.
// Topics are bounded to MaxTopicLevels levels.
//
// # Slow subscribers
//
// Every session holds at most Options.MaxInflight unacknowledged QoS 1 and 2
// messages, and behind them a queue bounded by Options.MaxQueued messages
// and Options.MaxQueuedBytes bytes (QoS 0 messages not yet written count
// against the same queue). The defaults (16 MiB; and 1000 messages while the
// client is away, as mosquitto) carry a burst of tens of thousands of
// messages to a subscriber that reads at line rate without loss. A message for a session whose queue is full is dropped,
// counted (Stats.Dropped, Server.ClientStats, EventDrop) and logged at warn
// level, at most one line a second: a slow or stuck subscriber loses
// messages, publishers and other subscribers are never slowed by it. A
// connection whose writes make no progress for Options.WriteTimeout is
// closed (a client that reads a long backlog slowly but steadily is not:
// the deadline covers 64 KiB at a time); what its session cannot keep,
// the messages of a clean session and QoS 0 messages not yet written, is
// discarded, counted (Stats.Discarded) and logged at warn level.
//
// The retained messages a new subscription matches are not dropped for want
// of room [MQTT-3.3.1-6]: those the queue has no room for wait, by topic
// name, in a backlog that joins the queue as the subscriber takes what is in
// it, each with the value retained when its turn comes (none if it was
// cleared meanwhile, and none once a newer message to its topic has been
// queued), at the QoS its subscriptions grant then; a name that no
// subscription of the client matches any longer (UNSUBSCRIBE) is dropped
// [MQTT-3.10.4-2]. The backlog costs its names and 64 bytes each, bounded by
// Options.MaxQueuedBytes too; names beyond that are dropped as above. A
// backlog is not stored: a Server with Options.Store counts and logs as
// discarded, when it closes, the names still waiting.
//
// # Sessions
//
// A client that connects with CleanSession 0 keeps its subscriptions and its
// undelivered QoS 1 and 2 messages while it is away [MQTT-3.1.2-4]
// [MQTT-3.1.2-5]; QoS 0 messages for it are not kept. Sessions live in memory
// and end with the Server, unless Options.Store keeps them: then persistent
// sessions and retained messages are restored when the Server starts again,
// after a clean stop or a kill -9, and a message is acknowledged only once
// it is durable for every persistent session it was queued for (see
// Options.Store and package store). Options.SessionExpiry deletes the
// sessions of clients gone for too long. A second connection with the client
// identifier of a connected client takes over: the first connection is
// closed (its will, if any, is published) [MQTT-3.1.4-2].
//
// # Shared subscriptions
//
// A filter "$share/{group}/{filter}" (the form of MQTT 5.0, also accepted from
// 3.1.1 clients by mosquitto, EMQX and HiveMQ) makes the client a member of
// the group: each matching message goes to one member of each group, taken in
// turn among the connected members that may take it (AuthorizeRead allows
// it, and it is not the bridge that brought it; mosquitto instead gives the
// turn to such a member and the group loses the message); a member whose
// session is full (its window and queue taken) passes the message to the
// next member with room, and it is dropped, counted, only when none has.
// Retained messages are not sent for shared subscriptions.
//
// # Authorization
//
// Options.Authenticate decides who connects; Options.AuthorizePublish which
// messages a client may publish (a refused PUBLISH is acknowledged and
// dropped [MQTT-3.3.5-2]); Options.AuthorizeSubscribe which filters it may
// subscribe to; Options.AuthorizeRead, for each delivery, whether a
// subscriber may receive a message, retained messages included. With a read
// check, a subscription such as "#" can be granted with some topics under it
// denied, as mosquitto's ACLs work.
//
// # Monitoring
//
// Server.Stats returns the counters: connections, sessions, subscriptions,
// messages and bytes in and out, drops. WriteMetrics writes them in the
// Prometheus text format and Server.MetricsHandler serves them over HTTP.
// With Options.SysInterval set, the Server publishes them on the
// $SYS/broker/... topics mosquitto uses (see SysUptime and the other Sys
// constants), retained, which only filters starting with "$SYS" receive
// [MQTT-4.7.2-1].
//
// # Wills
//
// A will is published when a connection ends without DISCONNECT: the client
// vanished, broke the protocol, missed its keepalive [MQTT-3.1.2-24] or was
// taken over [MQTT-3.1.2-8]. It is not published after DISCONNECT
// [MQTT-3.14.4-3], nor when the Server itself closes connections in Shutdown
// or Close.
//
// # Bridges
//
// Options.Bridges connect the Server to remote brokers, as mosquitto's
// bridges do (ParseBridges reads mosquitto's bridge section): topics go out,
// come in, or both, with prefixes mapped. Outgoing QoS 1 and 2 messages wait
// in the bridge's queue, in Options.Store when there is one, until the remote
// broker acknowledges them; a local publisher's acknowledgement waits until
// the message is in that queue. RETAIN crosses as published. A bridge offers
// mosquitto's bridge mark (protocol level 0x84), so that the remote broker
// does not send its messages back; Options.AllowBridges makes this Server
// accept the mark from others, which MQTT 3.1.1 alone refuses with CONNACK
// 0x01. See Bridge.
package broker
