// Package session is the MQTT 3.1.1 protocol state machine of one session,
// for clients and servers alike, with no I/O: packets go in, and packets to
// send and events to act on come out.
//
// A Session does not read clocks, start goroutines or touch the network. The
// caller reads packets (with packet.Reader), hands them to Receive, drains
// the events that produced with NextEvent, writes what AppendOutgoing (or
// Next) hands out, and calls Tick when Deadline is reached. Every method
// that needs the time takes it as now. A Session is not safe for concurrent
// use: callers that drive it from several goroutines hold a mutex.
//
// What it keeps, per the specification's section 4.1:
//
//   - outgoing QoS 1 messages until PUBACK, QoS 2 messages until PUBREC and
//     then their PUBREL until PUBCOMP [MQTT-4.3.2-1] [MQTT-4.3.3-1];
//   - the packet identifiers in use (1..65535, never one twice) for those and
//     for SUBSCRIBE and UNSUBSCRIBE requests [MQTT-2.3.1-2] [MQTT-2.3.1-4];
//   - a bounded queue of messages waiting for a free inflight slot or for a
//     connection (Config.MaxInflight, Config.MaxQueued and
//     Config.MaxQueuedBytes; Publish returns ErrFull when both are full,
//     nothing is dropped silently);
//   - incoming QoS 2 packet identifiers from PUBREC until PUBREL, so that a
//     duplicate PUBLISH is acknowledged again but not delivered twice
//     [MQTT-4.3.3-2].
//
// On a resumed session (CleanSession 0) unacknowledged PUBLISH packets are
// sent again with DUP set and PUBREL packets again, with their original
// packet identifiers and in their original order [MQTT-4.4.0-1]
// [MQTT-4.6.0-1]. Acknowledgements leave in the order the PUBLISH packets
// arrived [MQTT-4.6.0-2] [MQTT-4.6.0-3] [MQTT-4.6.0-4], also with
// Config.ManualAck, where each waits for the application's Ack. An Ack
// given while disconnected answers the peer's resend of that message on the
// next connection, in its turn, rather than leaving at the CONNACK.
//
// A Store makes the state durable. Without one, the state lives in the
// Session value only. FileStore survives kill -9 at any instant. The Session
// writes to the Store before it changes its own state, and it calls
// Store.Sync before it hands out any packet, so no packet leaves before the
// state it implies is durable: a PUBLISH before its message and packet
// identifier are stored, a PUBREC before its identifier is stored, a PUBCOMP
// before the identifier's removal is.
//
// Protocol violations by the peer are returned by Receive as *Error, which
// cites the rule broken; the caller then closes the connection
// [MQTT-4.8.0-1] and calls Disconnected.
//
// # Driving a client session
//
//	s, err := session.New(session.Config{Role: session.Client, Store: store})
//	// for each network connection:
//	s.Connect(&packet.Connect{ClientID: id, KeepAlive: 30}, time.Now()) // queues CONNECT
//	r := packet.NewReader(conn, 0)
//	// writer loop, whenever s.HasOutgoing() (after any call below):
//	buf, err = s.AppendOutgoing(buf[:0], time.Now()) // then conn.Write(buf)
//	// reader loop:
//	p, err := r.ReadPacket()
//	if err := s.Receive(p, time.Now()); err != nil { /* close the connection */ }
//	for ev, ok := s.NextEvent(); ok; ev, ok = s.NextEvent() {
//		switch ev.Kind {
//		case session.EventConnack:    // accepted or refused; resends are queued
//		case session.EventMessage:    // deliver ev.Publish; with ManualAck call s.Ack(ev.Tag) later
//		case session.EventPublished:  // Publish call ev.Handle is complete
//		case session.EventSubscribed: // Subscribe call ev.Handle: ev.ReturnCodes
//		case session.EventDropped:    // ev.Handle will never complete
//		}
//	}
//	// timer at s.Deadline(): if err := s.Tick(time.Now()); err != nil { /* peer gone: close */ }
//	// when the connection ends, whatever the reason:
//	s.Disconnected()
//
// Publish may be called at any time: while disconnected, QoS 1 and 2
// messages wait in the queue and leave after the next CONNACK.
//
// # Driving a server session
//
// A broker reads the CONNECT itself (it needs the client identifier to find
// the session), checks it, then either writes a refusing CONNACK on its own
// or calls Accept, which queues the accepting CONNACK and the resends:
//
//	s := sessions[clientID] // or session.New(session.Config{Role: session.Server})
//	if err := s.Accept(connect, hadState, time.Now()); err != nil { ... }
//	// then the same loops as a client; the events a server sees are
//	// EventMessage, EventPublished, EventSubscribe (answer with s.Suback),
//	// EventUnsubscribe (answer with s.Unsuback), EventDisconnect and EventDropped.
//	// A second CONNECT on the connection is an *Error [MQTT-3.1.0-2];
//	// PINGREQ is answered by the session itself [MQTT-3.12.4-1].
//	// Messages for a disconnected persistent session: s.Publish queues them,
//	// bounded by Config.MaxQueued [MQTT-3.1.2-5].
//
// Packets handed out by Next, and the byte slices inside events, are valid
// only until the next call on the Session: encode or copy them first.
package session
