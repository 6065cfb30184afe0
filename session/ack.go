package session

import "github.com/ternmq/mqtt/packet"

// Manual acknowledgement (Config.ManualAck): incoming messages acknowledged
// when the application says so, in the order they came.

// Ack acknowledges the incoming message tag (Config.ManualAck): its PUBACK
// or PUBREC is queued once every message that arrived before it is
// acknowledged too [MQTT-4.6.0-2] [MQTT-4.6.0-3]. Acknowledging twice, or a
// message whose exchange has ended meanwhile, does nothing; ErrUnknownTag
// is for tags the session never handed out. Acknowledgements given while
// disconnected leave after the next CONNACK (client) or Accept (server).
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

func (s *Session) findAck(t Tag) int {
	x := s.spare
	if t == 0 || x == nil || x.ackHead >= len(x.acks) {
		return -1
	}
	// Tags are handed out in arrival order, so the guess is usually right;
	// redeliveries after a restart carry older tags.
	if d := t - x.acks[x.ackHead].tag; d < Tag(len(x.acks)-x.ackHead) {
		if i := x.ackHead + int(d); x.acks[i].tag == t {
			return i
		}
	}
	for i := x.ackHead; i < len(x.acks); i++ {
		if x.acks[i].tag == t {
			return i
		}
	}
	return -1
}

// releaseAcks queues the acknowledgements at the head of the arrival order
// that the application has given. Without a connection they wait for the
// next one.
func (s *Session) releaseAcks() {
	x := s.spare
	if s.state != online || x == nil {
		return
	}
	for x.ackHead < len(x.acks) && x.acks[x.ackHead].done != ackWaiting {
		a := x.acks[x.ackHead]
		x.ackHead++
		if a.done == ackVoid {
			continue
		}
		if a.qos == 1 {
			delete(s.inQ1, a.id)
			s.push(outItem{t: packet.PUBACK, id: a.id}) // [MQTT-4.3.2-2]
		} else if st, ok := s.in[a.id]; ok && st.tag == a.tag {
			st.pending, st.acked = false, true
			s.in[a.id] = st
			s.push(outItem{t: packet.PUBREC, id: a.id}) // [MQTT-4.3.3-2]
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
