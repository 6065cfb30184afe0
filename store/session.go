package store

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/ternmq/mqtt/session"
)

// errDeleted is returned by the methods of a Session after its Delete.
var errDeleted = errors.New("store: session deleted")

// logSession is a Session of a Log.
type logSession struct {
	l *Log
	s *sessState
}

// write appends the record that append adds to the log, unless the
// session is deleted or the log unusable.
func (ls *logSession) write(msg bool, append func(b []byte) []byte) error {
	l := ls.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if ls.s.deleted {
		return errDeleted
	}
	start := len(l.buf)
	l.buf = append(l.buf)
	if len(l.buf) == start {
		return nil // nothing changes: no record
	}
	return l.appended(start, msg)
}

// Load implements session.Store: messages in Handle order, incoming
// exchanges in Tag order.
func (ls *logSession) Load(msg func(*session.Message) error, in func(session.Incoming) error) (session.Handle, session.Tag, error) {
	l, s := ls.l, ls.s
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return 0, 0, l.err
	}
	msgs := make([]session.Message, 0, len(s.msgs))
	for h, m := range s.msgs {
		// The bytes are never changed in place, only replaced, so they
		// may be passed without the lock.
		msgs = append(msgs, session.Message{
			Handle: h, PacketID: m.id, State: m.state, QoS: m.qos, Retain: m.retain,
			Topic: m.data[:m.tlen:m.tlen], Payload: m.data[m.tlen:],
		})
	}
	ins := make([]session.Incoming, 0, len(s.in))
	for _, i := range s.in {
		ins = append(ins, i)
	}
	lh, lt := s.lastHandle, s.lastTag
	l.mu.Unlock()
	slices.SortFunc(msgs, func(a, b session.Message) int { return cmp.Compare(a.Handle, b.Handle) })
	slices.SortFunc(ins, func(a, b session.Incoming) int { return cmp.Compare(a.Tag, b.Tag) })
	for i := range msgs {
		if err := msg(&msgs[i]); err != nil {
			return 0, 0, err
		}
	}
	for _, i := range ins {
		if err := in(i); err != nil {
			return 0, 0, err
		}
	}
	return lh, lt, nil
}

// SaveMessage implements session.Store.
func (ls *logSession) SaveMessage(m *session.Message) error {
	switch {
	case len(m.Topic) > 65535:
		return errors.New("store: topic longer than 65535 bytes")
	case len(m.Payload) > maxPayload:
		return errTooLarge
	case m.QoS < 1 || m.QoS > 2:
		return errors.New("store: a stored message has QoS 1 or 2")
	case m.State > session.StateReleased:
		return errors.New("store: bad message state")
	}
	return ls.write(true, func(b []byte) []byte {
		return appendMessage(b, ls.s.sid, m.Handle, m.PacketID, m.State, m.QoS, m.Retain, m.Topic, m.Payload)
	})
}

// UpdateMessage implements session.Store.
func (ls *logSession) UpdateMessage(h session.Handle, packetID uint16, st session.State) error {
	if st > session.StateReleased {
		return errors.New("store: bad message state")
	}
	return ls.write(false, func(b []byte) []byte {
		if _, ok := ls.s.msgs[h]; !ok {
			return b // no message: nothing to record
		}
		return appendUpdate(b, ls.s.sid, h, packetID, st)
	})
}

// DeleteMessage implements session.Store.
func (ls *logSession) DeleteMessage(h session.Handle) error {
	return ls.write(false, func(b []byte) []byte {
		if _, ok := ls.s.msgs[h]; !ok {
			return b
		}
		return appendDeleteMsg(b, ls.s.sid, h)
	})
}

// SaveIncoming implements session.Store.
func (ls *logSession) SaveIncoming(in session.Incoming) error {
	return ls.write(false, func(b []byte) []byte { return appendIncoming(b, ls.s.sid, in) })
}

// DeleteIncoming implements session.Store.
func (ls *logSession) DeleteIncoming(packetID uint16) error {
	return ls.write(false, func(b []byte) []byte {
		if _, ok := ls.s.in[packetID]; !ok {
			return b
		}
		return appendDeleteIn(b, ls.s.sid, packetID)
	})
}

// Clear implements session.Store; the marks and subscriptions stay.
func (ls *logSession) Clear() error {
	return ls.write(false, func(b []byte) []byte {
		if len(ls.s.msgs) == 0 && len(ls.s.in) == 0 {
			return b
		}
		return appendSessionRec(b, recClear, ls.s.sid, "")
	})
}

// SaveMarks implements session.MarkStore.
func (ls *logSession) SaveMarks(lastHandle session.Handle, lastTag session.Tag) error {
	return ls.write(false, func(b []byte) []byte {
		if lastHandle <= ls.s.lastHandle && lastTag <= ls.s.lastTag {
			return b
		}
		return appendMarks(b, ls.s.sid, lastHandle, lastTag)
	})
}

// Sync implements session.Store: it syncs the whole Log.
func (ls *logSession) Sync() error { return ls.l.Sync() }

// Subscribe implements Session.
func (ls *logSession) Subscribe(filter string, qos byte) error {
	if qos > 2 {
		return errors.New("store: subscription QoS above 2")
	}
	return ls.write(false, func(b []byte) []byte {
		if q, ok := ls.s.subs[filter]; ok && q == qos {
			return b
		}
		return appendSubscribe(b, ls.s.sid, filter, qos)
	})
}

// Unsubscribe implements Session.
func (ls *logSession) Unsubscribe(filter string) error {
	return ls.write(false, func(b []byte) []byte {
		if _, ok := ls.s.subs[filter]; !ok {
			return b
		}
		return appendSessionRec(b, recUnsubscribe, ls.s.sid, filter)
	})
}

// Disconnected implements Session. A zero time is taken as Connected.
func (ls *logSession) Disconnected(at time.Time) error {
	if at.IsZero() {
		return ls.Connected()
	}
	if at.UnixNano() == 0 {
		at = time.Unix(0, 1) // 0 is not a time on disk
	}
	return ls.write(false, func(b []byte) []byte { return appendDisconnected(b, ls.s.sid, at) })
}

// Connected implements Session.
func (ls *logSession) Connected() error {
	return ls.write(false, func(b []byte) []byte {
		if ls.s.lastSeen.IsZero() {
			return b
		}
		return appendSessionRec(b, recConnected, ls.s.sid, "")
	})
}

// Delete implements Session.
func (ls *logSession) Delete() error {
	return ls.write(false, func(b []byte) []byte { return appendSessionRec(b, recDelete, ls.s.sid, "") })
}
