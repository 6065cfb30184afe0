package session

import "github.com/ternmq/mqtt/packet"

// Manual acknowledgement (Config.ManualAck): incoming messages acknowledged
// when the application says so, in the order they came.

// Ack acknowledges the incoming message tag (Config.ManualAck): its PUBACK
// or PUBREC is queued once every message that arrived before it is
// acknowledged too [MQTT-4.6.0-2] [MQTT-4.6.0-3]. Acknowledging twice, or a
// message whose exchange has ended meanwhile, does nothing; ErrUnknownTag
// is for tags the session never handed out. The acknowledgement of a
// message that came on an earlier connection answers the peer's resend of
// it (see releaseAcks).
func (s *Session) Ack(t Tag) error {
	i := s.findAck(t)
	if i < 0 {
		if t == 0 || t > s.lastTag {
			return ErrUnknownTag
		}
		return nil // acknowledged already, or its exchange ended
	}
	if a := &s.spare.acks[i]; a.done == ackWaiting {
		a.done = ackDone
		s.releaseAcks()
	}
	return nil
}

// findAck returns the index of tag t's acknowledgement, -1 if it has none
// or it was voided.
func (s *Session) findAck(t Tag) int {
	x := s.spare
	if t == 0 || x == nil || x.ackHead >= len(x.acks) {
		return -1
	}
	// Tags are handed out in arrival order, so the guess is usually right;
	// redeliveries after a restart carry older tags, and resends after a
	// reconnection move theirs to the end (resent).
	if d := t - x.acks[x.ackHead].tag; d < Tag(len(x.acks)-x.ackHead) {
		if i := x.ackHead + int(d); x.acks[i].tag == t && x.acks[i].done != ackVoid {
			return i
		}
	}
	for i := x.ackHead; i < len(x.acks); i++ {
		if x.acks[i].tag == t && x.acks[i].done != ackVoid {
			return i
		}
	}
	return -1
}

// releaseAcks queues the acknowledgements at the head of the arrival order
// that the application has given. Without a connection they wait for the
// next one.
//
// The acknowledgement of a message that came on an earlier connection
// waits for the peer's resend of it [MQTT-4.4.0-1], which the peer sends
// since it never had our answer (mosquitto right after the CONNACK), and
// recvPublish answers the resend in its turn [MQTT-4.6.0-2]
// [MQTT-4.6.0-3]. Sent before the resend, the answer would leave ahead of
// the answers to the resends of earlier messages, and the message would be
// answered twice, once more for its resend: an acknowledgement for an id
// it no longer holds makes mosquitto 2.0 let later messages overtake
// queued ones.
func (s *Session) releaseAcks() {
	x := s.spare
	if s.state != online || x == nil {
		return
	}
	for x.ackHead < len(x.acks) && x.acks[x.ackHead].done != ackWaiting {
		a := x.acks[x.ackHead]
		x.ackHead++
		switch {
		case a.done == ackVoid:
		case a.qos == 1:
			if a.resend {
				if s.inQ1 != nil {
					s.inQ1[a.id] = 0 // answered when it comes again
				}
				continue
			}
			delete(s.inQ1, a.id)
			s.push(outItem{t: packet.PUBACK, id: a.id}) // [MQTT-4.3.2-2]
		default:
			// Tag 0 is the answer to a resend (see answer): a PUBREL may
			// have ended the exchange meanwhile.
			if st, ok := s.in[a.id]; ok && !st.released && (a.tag == 0 || st.tag == a.tag) {
				st.pending, st.acked = false, true // a resend gets its PUBREC
				s.in[a.id] = st
				s.storeAcked(a.id, st.tag)
				if !a.resend {
					s.push(outItem{t: packet.PUBREC, id: a.id}) // [MQTT-4.3.3-2]
				}
			}
		}
	}
	if x.ackHead == len(x.acks) {
		x.acks = x.acks[:0]
		x.ackHead = 0
	} else if x.ackHead >= 64 && x.ackHead*2 >= len(x.acks) {
		n := copy(x.acks, x.acks[x.ackHead:])
		x.acks = x.acks[:n]
		x.ackHead = 0
	}
}

// storeAcked records that the application acknowledged the incoming QoS 2
// message id, before its PUBREC leaves (the Sync of AppendOutgoing): a
// resend after a crash, which comes when the PUBREC did not reach the peer,
// then gets its PUBREC without reaching the application a second time.
// A failed write is kept for that Sync to report: Ack's caller may be
// done with it.
func (s *Session) storeAcked(id uint16, t Tag) {
	if s.store == nil {
		return
	}
	if err := s.store.SaveIncoming(Incoming{PacketID: id, Tag: t, Acked: true}); err != nil && s.storeErr == nil {
		s.storeErr = err
	}
	s.dirty = true
}

// awaitResends marks, as a connection resumes the session, every message
// still awaiting its acknowledgement as one the peer will send again.
func (s *Session) awaitResends() {
	if x := s.spare; x != nil {
		for i := x.ackHead; i < len(x.acks); i++ {
			x.acks[i].resend = true
		}
	}
}

// resent notes that the peer sent again the message of tag t, which still
// awaits the application's Ack: the Ack answers the resend, in the turn of
// the resend among the messages of this connection.
func (s *Session) resent(t Tag) {
	i := s.findAck(t)
	if i < 0 || !s.spare.acks[i].resend {
		return
	}
	x := s.spare
	a := x.acks[i]
	a.resend = false
	x.acks[i].done = ackVoid
	x.acks = append(x.acks, a)
	s.releaseAcks() // what waited behind it
}

// answer answers the resend of a message whose exchange awaits it (QoS 2
// acknowledged, or QoS 1 acknowledged before the resend came). With
// ManualAck the answer waits for the messages that came before the resend
// [MQTT-4.6.0-2] [MQTT-4.6.0-3]; cut off before it leaves, it waits for
// the next resend.
func (s *Session) answer(qos byte, id uint16) {
	if !s.manualAck {
		t := packet.PUBREC
		if qos == 1 {
			t = packet.PUBACK
		}
		s.push(outItem{t: t, id: id})
		return
	}
	s.addAck(pendingAck{id: id, qos: qos, done: ackDone})
	s.releaseAcks()
}

// voidAck ends the wait for the application's Ack of tag without sending it.
func (s *Session) voidAck(t Tag) {
	if i := s.findAck(t); i >= 0 && s.spare.acks[i].done == ackWaiting {
		a := &s.spare.acks[i]
		a.done = ackVoid
		if a.qos == 1 {
			delete(s.inQ1, a.id)
		}
		s.releaseAcks()
	}
}

// addAck records an incoming message awaiting the application's Ack.
func (s *Session) addAck(a pendingAck) {
	x := s.spares()
	x.acks = append(x.acks, a)
}

// clearAcks forgets every message awaiting the application's Ack.
func (s *Session) clearAcks() {
	if x := s.spare; x != nil {
		x.acks = x.acks[:0]
		x.ackHead = 0
	}
}
