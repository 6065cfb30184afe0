package store

import (
	"time"

	"github.com/ternmq/mqtt/session"
)

// index is the state the log describes, kept in memory: what Load and the
// sessions' Load return, and what a compaction writes. Message and
// retained bodies are kept too, so that neither loading nor compacting
// reads the log back.
type index struct {
	sids     map[uint32]*sessState
	ids      map[string]*sessState
	retained map[string]retainedMsg
	maxSid   uint32 // the largest sid in any record read or written
	live     int64  // bytes of the records that describe the state
	messages int    // messages stored, in all sessions
}

// sessState is a session in the index.
type sessState struct {
	id         string
	sid        uint32
	msgs       map[session.Handle]message
	in         map[uint16]session.Incoming
	subs       map[string]byte
	lastHandle session.Handle
	lastTag    session.Tag
	lastSeen   time.Time // zero while connected
	live       int64     // bytes of this session's records in a snapshot
	deleted    bool
}

// message is a stored outgoing message; data holds its topic then its
// payload.
type message struct {
	id     uint16
	state  session.State
	qos    byte
	retain bool
	tlen   uint16
	data   []byte
}

type retainedMsg struct {
	qos     byte
	payload []byte
}

func newIndex() *index {
	return &index{
		sids:     make(map[uint32]*sessState),
		ids:      make(map[string]*sessState),
		retained: make(map[string]retainedMsg),
	}
}

func (x *index) grow(s *sessState, n int64) {
	s.live += n
	x.live += n
}

// intern binds sid to id, creating the session's empty state unless sid
// already names it.
func (x *index) intern(sid uint32, id string) *sessState {
	if s := x.sids[sid]; s != nil {
		if s.id == id {
			return s
		}
		x.drop(s)
	}
	if s := x.ids[id]; s != nil {
		x.drop(s)
	}
	// The maps of incoming exchanges and subscriptions are made when
	// first needed: many sessions have none.
	s := &sessState{id: id, sid: sid, msgs: make(map[session.Handle]message)}
	x.sids[sid] = s
	x.ids[id] = s
	x.grow(s, int64(sizeSessionBase+len(id)+sizeMarks))
	return s
}

// drop removes a session and all it holds.
func (x *index) drop(s *sessState) {
	x.live -= s.live
	x.messages -= len(s.msgs)
	delete(x.sids, s.sid)
	if x.ids[s.id] == s {
		delete(x.ids, s.id)
	}
	s.deleted = true
}

// apply changes the index by one record body. It returns errBadRecord,
// having changed nothing, if the body does not parse. Records of a session
// the index does not hold are ignored: after a compaction, the log that
// follows a snapshot may repeat the last writes of a session deleted
// before its snapshot was taken.
func (x *index) apply(body []byte) error {
	f := fields{b: body}
	kind := f.u8()
	switch kind {
	case recGroupBegin, recGroupEnd:
		// Recovery acts on them (Log.groupCut); they change no state.
		if _, _, ok := groupMarker(body); !ok {
			return errBadRecord
		}
		return nil
	case recRetained:
		qos := f.u8()
		tl := int(f.u16())
		if f.bad || tl > len(f.b) || qos > 2 {
			return errBadRecord
		}
		topic := string(f.next(tl))
		payload := f.rest()
		if old, ok := x.retained[topic]; ok {
			x.live -= int64(sizeRetainBase + len(topic) + len(old.payload))
		}
		x.retained[topic] = retainedMsg{qos: qos, payload: append(make([]byte, 0, len(payload)), payload...)}
		x.live += int64(sizeRetainBase + len(topic) + len(payload))
		return nil
	case recDeleteRet:
		topic := f.rest()
		if old, ok := x.retained[string(topic)]; ok {
			x.live -= int64(sizeRetainBase + len(topic) + len(old.payload))
			delete(x.retained, string(topic))
		}
		return nil
	}
	sid := f.u32()
	if f.bad || sid == 0 {
		return errBadRecord
	}
	if kind == recIntern {
		x.maxSid = max(x.maxSid, sid)
		x.intern(sid, string(f.rest()))
		return nil
	}
	s := x.sids[sid]
	switch kind {
	case recDelete:
		if !f.done() {
			return errBadRecord
		}
		if s != nil {
			x.drop(s)
		}
	case recMessage:
		h := session.Handle(f.u64())
		id, st, qos, retain := f.u16(), session.State(f.u8()), f.u8(), f.u8()
		tl := int(f.u16())
		if f.bad || tl > len(f.b) || st > session.StateReleased || qos < 1 || qos > 2 || retain > 1 {
			return errBadRecord
		}
		if s == nil {
			break
		}
		data := f.rest()
		if old, ok := s.msgs[h]; ok {
			x.grow(s, -int64(sizeMessageBase+len(old.data)))
		} else {
			x.messages++
		}
		s.msgs[h] = message{id: id, state: st, qos: qos, retain: retain == 1, tlen: uint16(tl), data: append(make([]byte, 0, len(data)), data...)}
		x.grow(s, int64(sizeMessageBase+len(data)))
		s.lastHandle = max(s.lastHandle, h)
	case recUpdate:
		h := session.Handle(f.u64())
		id, st := f.u16(), session.State(f.u8())
		if !f.done() || st > session.StateReleased {
			return errBadRecord
		}
		if s == nil {
			break
		}
		if m, ok := s.msgs[h]; ok {
			m.id, m.state = id, st
			s.msgs[h] = m
		}
	case recDeleteMsg:
		h := session.Handle(f.u64())
		if !f.done() {
			return errBadRecord
		}
		if s == nil {
			break
		}
		if old, ok := s.msgs[h]; ok {
			x.grow(s, -int64(sizeMessageBase+len(old.data)))
			x.messages--
			delete(s.msgs, h)
		}
	case recIncoming:
		in := session.Incoming{PacketID: f.u16(), Tag: session.Tag(f.u64())}
		acked := f.u8()
		if !f.done() || acked > 1 {
			return errBadRecord
		}
		if s == nil {
			break
		}
		in.Acked = acked == 1
		if s.in == nil {
			s.in = make(map[uint16]session.Incoming)
		}
		if _, ok := s.in[in.PacketID]; !ok {
			x.grow(s, sizeIncoming)
		}
		s.in[in.PacketID] = in
		s.lastTag = max(s.lastTag, in.Tag)
	case recDeleteIn:
		id := f.u16()
		if !f.done() {
			return errBadRecord
		}
		if s == nil {
			break
		}
		if _, ok := s.in[id]; ok {
			x.grow(s, -sizeIncoming)
			delete(s.in, id)
		}
	case recClear:
		if !f.done() {
			return errBadRecord
		}
		if s == nil {
			break
		}
		for _, m := range s.msgs {
			x.grow(s, -int64(sizeMessageBase+len(m.data)))
		}
		x.messages -= len(s.msgs)
		x.grow(s, -int64(len(s.in)*sizeIncoming))
		clear(s.msgs)
		clear(s.in)
	case recMarks:
		h, t := session.Handle(f.u64()), session.Tag(f.u64())
		if !f.done() {
			return errBadRecord
		}
		if s != nil {
			s.lastHandle = max(s.lastHandle, h)
			s.lastTag = max(s.lastTag, t)
		}
	case recSubscribe:
		qos := f.u8()
		if f.bad || qos > 2 {
			return errBadRecord
		}
		if s == nil {
			break
		}
		filter := string(f.rest())
		if s.subs == nil {
			s.subs = make(map[string]byte)
		}
		if _, ok := s.subs[filter]; !ok {
			x.grow(s, int64(sizeSessionBase+1+len(filter)))
		}
		s.subs[filter] = qos
	case recUnsubscribe:
		filter := f.rest()
		if s == nil {
			break
		}
		if _, ok := s.subs[string(filter)]; ok {
			x.grow(s, -int64(sizeSessionBase+1+len(filter)))
			delete(s.subs, string(filter))
		}
	case recDisconnected:
		ns := int64(f.u64())
		if !f.done() || ns == 0 {
			return errBadRecord
		}
		if s == nil {
			break
		}
		if s.lastSeen.IsZero() {
			x.grow(s, sizeTime)
		}
		s.lastSeen = time.Unix(0, ns)
	case recConnected:
		if !f.done() {
			return errBadRecord
		}
		if s != nil && !s.lastSeen.IsZero() {
			x.grow(s, -sizeTime)
			s.lastSeen = time.Time{}
		}
	default:
		return errBadRecord
	}
	x.maxSid = max(x.maxSid, sid)
	return nil
}

// appendSession appends the records that recreate s to b: what a
// snapshot holds for it. If s holds more than split messages, it appends
// only the session's other records and returns the handles of its
// messages, for appendMessages to write later, in parts.
func appendSession(b []byte, s *sessState, split int) ([]byte, []session.Handle) {
	b = appendSessionRec(b, recIntern, s.sid, s.id)
	b = appendMarks(b, s.sid, s.lastHandle, s.lastTag)
	if !s.lastSeen.IsZero() {
		b = appendDisconnected(b, s.sid, s.lastSeen)
	}
	for filter, qos := range s.subs {
		b = appendSubscribe(b, s.sid, filter, qos)
	}
	for _, in := range s.in {
		b = appendIncoming(b, s.sid, in)
	}
	if len(s.msgs) > split {
		hs := make([]session.Handle, 0, len(s.msgs))
		for h := range s.msgs {
			hs = append(hs, h)
		}
		return b, hs
	}
	for h, m := range s.msgs {
		b = appendMessage(b, s.sid, h, m.id, m.state, m.qos, m.retain, m.data[:m.tlen], m.data[m.tlen:])
	}
	return b, nil
}

// appendMessages appends the records of the messages of s among hs, until
// b holds limit bytes, and returns the handles left.
func appendMessages(b []byte, s *sessState, hs []session.Handle, limit int) ([]byte, []session.Handle) {
	for len(hs) > 0 && len(b) < limit {
		if m, ok := s.msgs[hs[0]]; ok {
			b = appendMessage(b, s.sid, hs[0], m.id, m.state, m.qos, m.retain, m.data[:m.tlen], m.data[m.tlen:])
		}
		hs = hs[1:]
	}
	return b, hs
}
