package broker

import (
	"errors"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/topic"
)

// retainedBacklog holds, by topic name, the retained messages that a
// SUBSCRIBE matched and the session's queue had no room for. The writer moves
// them into the queue as it makes room (refillRetained), so that a
// subscriber gets every matching retained message [MQTT-3.3.1-6] however
// many there are, while the queue keeps its bound in bytes: 2,000 retained
// messages of 64 KiB no longer overflow a 16 MiB queue.
//
// It keeps names, not messages: a name is looked up again when its turn
// comes, so that the subscriber gets the value retained then, nothing if
// it was cleared meanwhile, and the backlog pins no payload.
type retainedBacklog struct {
	topics []string // in the order matched; "" for a name taken or forgotten
	qos    []byte   // the QoS granted by the subscription that matched
	next   int      // topics[next:] wait
	index  map[string]int
	bytes  int // what the backlog costs, against Options.MaxQueuedBytes
}

// backlogOverhead is what a name costs in the backlog besides its bytes:
// its string in topics and its entry in index.
const backlogOverhead = 64

// add appends a name that matched a subscription granted qos, and reports
// false if the backlog is full. A name already waiting is not added twice;
// it keeps the higher QoS.
func (b *retainedBacklog) add(name []byte, qos byte, limit int) bool {
	if i, ok := b.index[string(name)]; ok {
		b.qos[i] = max(b.qos[i], qos)
		return true
	}
	cost := len(name) + backlogOverhead
	if limit > 0 && b.bytes+cost > limit {
		return false
	}
	if b.index == nil {
		b.index = make(map[string]int)
	}
	if b.next >= 1024 && b.next*2 >= len(b.topics) {
		b.compact()
	}
	t := string(name)
	b.index[t] = len(b.topics)
	b.topics = append(b.topics, t)
	b.qos = append(b.qos, qos)
	b.bytes += cost
	return true
}

// forget drops the name, if it waits: a live message to it has just joined
// the queue, and its retained copy, older, must not follow it.
func (b *retainedBacklog) forget(name []byte) {
	i, ok := b.index[string(name)]
	if !ok {
		return
	}
	b.take(i)
}

// take removes the name at i from the backlog.
func (b *retainedBacklog) take(i int) {
	t := b.topics[i]
	delete(b.index, t)
	b.topics[i] = ""
	b.bytes -= len(t) + backlogOverhead
}

// compact drops the names already gone from the front of the backlog, so
// that one SUBSCRIBE after another while it drains does not grow it for good.
func (b *retainedBacklog) compact() {
	n := copy(b.topics, b.topics[b.next:])
	copy(b.qos, b.qos[b.next:])
	clear(b.topics[n:])
	b.topics, b.qos, b.next = b.topics[:n], b.qos[:n], 0
	for i, t := range b.topics {
		if t != "" {
			b.index[t] = i
		}
	}
}

// regrant fits the names waiting to the client's subscriptions, after one
// was removed or replaced: a name no filter in subs matches any longer is
// dropped [MQTT-3.10.4-2], and the others wait at the highest QoS granted
// by a filter that matches them now [MQTT-3.8.4-3]. A SUBSCRIBE that
// replaces a subscription then sends its retained messages once, at the QoS
// it grants.
func (b *retainedBacklog) regrant(subs *subscriptionSet) {
	for i := b.next; i < len(b.topics); i++ {
		t := b.topics[i]
		if t == "" {
			continue
		}
		q, ok := byte(0), false
		subs.each(func(f string, g byte) {
			if !topic.IsShared(f) && topic.Match(f, t) {
				q, ok = max(q, g), true
			}
		})
		if ok {
			b.qos[i] = q
		} else {
			b.take(i)
		}
	}
}

// waiting returns the number of names still waiting.
func (b *retainedBacklog) waiting() int { return len(b.index) }

// backlogRetained appends to cl's backlog the retained messages in rets that
// the session has no room for, from the first one (all of them if a backlog
// is waiting already, to keep the order), at most at QoS granted. It returns
// the indexes in rets of those the backlog had no room for either: dropped.
// cl.mu is held.
func (s *Server) backlogRetained(cl *client, rets []*retainedMsg, granted byte, dropped []int) []int {
	for i, m := range rets {
		if cl.ret == nil {
			p := packet.Publish{QoS: min(m.qos, granted), Retain: true, Topic: m.topic(), Payload: m.payload()}
			_, err := cl.sess.PublishShared(&p, m.buf)
			if !errors.Is(err, session.ErrFull) {
				continue // taken, or refused for good (a failed store)
			}
			cl.ret = new(retainedBacklog)
		}
		if !cl.ret.add(m.topic(), granted, s.opts.MaxQueuedBytes) {
			p := packet.Publish{QoS: min(m.qos, granted), Retain: true, Topic: m.topic(), Payload: m.payload()}
			s.countDrop(cl, &p)
			dropped = append(dropped, i)
		}
	}
	if cl.ret != nil && cl.ret.waiting() == 0 {
		cl.ret = nil
	}
	return dropped
}

// refillRetained moves retained messages from cl's backlog into its
// session's queue while there is room, each as retained now. cl.mu is held.
func (s *Server) refillRetained(cl *client) {
	b := cl.ret
	for ; b.next < len(b.topics); b.next++ {
		t := b.topics[b.next]
		if t == "" {
			continue
		}
		m, ok := s.retained.Get(t)
		if !ok && t[0] == '$' {
			m, ok = s.sys.retained.Get(t) // the broker's own $SYS topics
		}
		if ok {
			p := packet.Publish{QoS: min(m.qos, b.qos[b.next]), Retain: true, Topic: m.topic(), Payload: m.payload()}
			if _, err := cl.sess.PublishShared(&p, m.buf); errors.Is(err, session.ErrFull) {
				return // the writer comes back once it has made room
			}
		}
		b.take(b.next)
	}
	cl.ret = nil
}

// discardBacklogs counts and logs, as the Server ends, the retained messages
// still waiting in the backlogs of persistent sessions: a backlog is not
// stored, and these sessions come back from Options.Store without it.
func (s *Server) discardBacklogs() {
	if s.dur.st == nil {
		return // the sessions end with the Server, and their queues with them
	}
	s.mu.Lock()
	n, sessions := 0, 0
	for _, cl := range s.clients {
		cl.mu.Lock()
		if cl.ret != nil {
			n += cl.ret.waiting()
			sessions++
			cl.ret = nil
		}
		cl.mu.Unlock()
	}
	s.mu.Unlock()
	if n > 0 {
		total := s.discarded.Add(int64(n))
		s.log.Warn("server closed: retained messages not yet queued for their subscribers discarded",
			"messages", n, "sessions", sessions, "discarded", total)
	}
}
