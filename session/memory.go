package session

import (
	"sync"
	"unsafe"

	"github.com/ternmq/mqtt/packet"
)

// QueuedOverhead is the memory a waiting message takes besides its topic and
// payload (the session's record of it), as counted against
// Config.MaxQueuedBytes.
const QueuedOverhead = int(unsafe.Sizeof(message{}))

// QueuedBytes returns the memory held by the messages waiting for an
// inflight slot or a connection, and by the QoS 0 messages taken by Publish
// and not yet handed out, as counted against Config.MaxQueuedBytes: topic
// and payload (encoded size for QoS 0 in the outbox) plus QueuedOverhead
// each.
func (s *Session) QueuedBytes() int {
	n := s.queue.bytes + s.queue.n*QueuedOverhead
	if x := s.spare; x != nil {
		n += x.pendQ0*QueuedOverhead + x.pendQ0B
	}
	return n
}

// overBytes reports whether p would take the waiting messages past
// Config.MaxQueuedBytes. With nothing waiting it is false, so that one
// message larger than the bound can still pass.
func (s *Session) overBytes(p *packet.Publish) bool {
	if s.maxBytes == 0 {
		return false
	}
	held := s.QueuedBytes()
	return held > 0 && held+len(p.Topic)+len(p.Payload)+QueuedOverhead > s.maxBytes
}

// The maps of a Session are made when first needed: a server holds many
// sessions that never use some of them.

func (s *Session) mapID(id uint16, m *message) {
	if s.byID == nil {
		s.byID = make(map[uint16]*message)
	}
	s.byID[id] = m
}

func (s *Session) mapIn(id uint16, st inState) {
	if s.in == nil {
		s.in = make(map[uint16]inState)
	}
	s.in[id] = st
}

// Shrink lets go of the memory a Session keeps for reuse between packets:
// the space of packets already handed out, of events already returned, and
// of finished messages. A server holding many idle sessions calls it when a
// connection goes idle; the next packets regrow what they need, or take it
// from what other sessions let go of (a pool shared by all).
func (s *Session) Shrink() {
	x := s.spare
	if x == nil {
		return
	}
	outDone, evDone, acksDone := x.outHead >= len(x.out), x.evHead >= len(x.events), x.ackHead >= len(x.acks)
	if outDone && evDone && acksDone {
		s.spare = nil // all of it: taken from sparePool, or made, when packets flow
		putSpare(x)
		return
	}
	if outDone {
		x.out, x.outHead, x.slab = nil, 0, nil
		x.pendQ0, x.pendQ0B = 0, 0
	}
	if evDone {
		x.events, x.evHead = nil, 0
	}
	if acksDone {
		x.acks, x.ackHead = nil, 0
	}
	// Something still waits: keep the queues, drop the reusable messages,
	// the scratch and the bitmap of packet ids (remade from byID and subs
	// when many are in use again).
	x.free, x.check, x.storeMsg, x.sp, x.bits = nil, nil, nil, nil, nil
}

// sparePool keeps what Shrink lets go of for the next session that needs it.
// A broker shrinks the session of a connection that only receives after
// each batch written to it (it has no reader running, see broker's
// park_linux.go), and a busy subscriber would otherwise grow its outbox
// again for every batch: a few hundred bytes allocated per message.
var sparePool sync.Pool

// Beyond these, an outbox is let go of rather than kept for another
// session: a backlog flushed once should not stay with the pool.
const (
	spareSlabMax = 64 << 10
	spareOutMax  = 1024
)

// putSpare gives x, all of whose packets and events are handed out, to
// sparePool, keeping the room of its outbox, slab, events and topic
// check and nothing else.
func putSpare(x *spare) {
	if cap(x.slab) > spareSlabMax || cap(x.out) > spareOutMax || cap(x.events) > spareOutMax {
		return
	}
	clear(x.out) // the message pointers of items handed out
	clear(x.events)
	*x = spare{out: x.out[:0], slab: x.slab[:0], events: x.events[:0], check: x.check[:0]}
	sparePool.Put(x)
}
