package broker

import (
	"time"

	"github.com/ternmq/mqtt/packet"
)

// Defaults of the queue bounds in Options.
const (
	// DefaultMaxQueued is the number of messages kept for a client that
	// is away, as mosquitto's max_queued_messages. A connected client's
	// queue has no default bound in messages, only DefaultMaxQueuedBytes.
	DefaultMaxQueued = 1000

	// DefaultMaxQueuedBytes bounds the messages waiting for a client
	// behind its inflight window: 16 MiB, one message of the default
	// MaxPacketSize, or about 100,000 small ones. What a client that does
	// not acknowledge makes the broker hold is that plus its window,
	// MaxInflight messages (20 by default, each a copy of its own, as
	// large as MaxPacketSize).
	DefaultMaxQueuedBytes = 16 << 20
)

// queuedOnline is the session's bound in messages when Options.MaxQueued is
// 0: in effect none, the bound in bytes decides.
const queuedOnline = 1 << 30

// sessionQueued returns the bound in messages of a session's queue.
func (s *Server) sessionQueued() int {
	if s.opts.MaxQueued > 0 {
		return s.opts.MaxQueued
	}
	return queuedOnline
}

// awayQueued returns the bound in messages of the queue of a client that is
// away.
func (s *Server) awayQueued() int {
	if s.opts.MaxQueued > 0 {
		return s.opts.MaxQueued
	}
	return DefaultMaxQueued
}

// dropLogInterval is the least time between two log lines about drops.
const dropLogInterval = time.Second

// countDrop counts a message dropped because cl's queue is full, in the
// Server's and in cl's counters, and logs it at warn level unless a drop was
// logged less than dropLogInterval ago; then a line at the end of that
// interval gives the drops not logged, so that the log accounts for every
// drop of a burst shorter than the interval too.
func (s *Server) countDrop(cl *client, p *packet.Publish) {
	total := s.dropped.Add(1)
	n := cl.drops.Add(1)
	now := time.Now().UnixNano()
	last := s.dropLog.Load()
	if now-last >= int64(dropLogInterval) && s.dropLog.CompareAndSwap(last, now) {
		s.dropLogged.Store(total)
		s.log.Warn("queue full: message dropped", "client", cl.id, "qos", p.QoS, "topic", string(p.Topic),
			"client_dropped", n, "dropped", total)
		return
	}
	if !s.dropTail.CompareAndSwap(false, true) {
		return // a line is due already
	}
	// dropMu, not mu: drops are counted with a client's mu held, which
	// other paths take after mu.
	s.dropMu.Lock()
	if s.dropStop {
		s.dropTail.Store(false)
	} else {
		s.dropTimer = time.AfterFunc(time.Duration(last+int64(dropLogInterval)-now), s.logDropTail)
	}
	s.dropMu.Unlock()
}

// stopDropLog stops the line countDrop may have scheduled, for Close.
func (s *Server) stopDropLog() {
	s.dropMu.Lock()
	s.dropStop = true
	if s.dropTimer != nil {
		s.dropTimer.Stop()
	}
	s.dropMu.Unlock()
}

// logDropTail logs the drops countDrop did not log.
func (s *Server) logDropTail() {
	s.dropTail.Store(false)
	total := s.dropped.Load()
	if since := total - s.dropLogged.Swap(total); since > 0 {
		s.dropLog.Store(time.Now().UnixNano())
		s.log.Warn("queue full: messages dropped since the last line", "since", since, "dropped", total)
	}
}

// ClientStats are the counters of one client's session.
type ClientStats struct {
	Connected   bool
	Inflight    int   // QoS 1 and 2 messages sent and not yet acknowledged
	Queued      int   // messages waiting behind the inflight window or for a connection
	QueuedBytes int   // the memory of those and of QoS 0 messages not yet written, as bounded by MaxQueuedBytes
	Dropped     int64 // messages dropped because the queue was full, since the session began
}

// ClientStats returns the counters of the session of the client identifier
// id, and false if the Server holds no session for it.
func (s *Server) ClientStats(id string) (ClientStats, bool) {
	s.mu.Lock()
	cl := s.clients[id]
	s.mu.Unlock()
	if cl == nil {
		return ClientStats{}, false
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return ClientStats{
		Connected:   cl.conn != nil,
		Inflight:    cl.sess.Inflight(),
		Queued:      cl.sess.Queued(),
		QueuedBytes: cl.sess.QueuedBytes(),
		Dropped:     cl.drops.Load(),
	}, true
}
