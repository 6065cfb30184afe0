package session

import (
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
	return s.queue.bytes + (s.queue.n+s.pendQ0)*QueuedOverhead + s.pendQ0B
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
