package client

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/topic"
)

// A Message is an application message received from the broker. It belongs
// to the handler or reader it is given to.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool   // a retained message sent because a subscription was just made [MQTT-3.3.1-8]
	Dup     bool   // the broker may have sent it before
	ID      uint16 // the packet identifier it came with; 0 for QoS 0

	c     *Client
	tag   session.Tag
	acked atomic.Bool
	slot  bool // holds a place in the delivery queue
}

// Ack acknowledges the message, with Options.ManualAck: its PUBACK or PUBREC
// leaves once every message received before it is acknowledged too
// [MQTT-4.6.0-2] [MQTT-4.6.0-3]. If the connection the message came on is
// gone, the broker sends the message again on the next one, and the
// acknowledgement answers that resend in its turn; the message is not
// delivered again. Without ManualAck, and for QoS 0 messages, it does
// nothing. Calling it more than once does nothing.
func (m *Message) Ack() error {
	if !m.claim() {
		return nil
	}
	return m.c.ack(m.tag, true)
}

// claim reports whether m is a QoS 1 or 2 message not acknowledged yet, and
// marks it acknowledged.
func (m *Message) claim() bool {
	return m.c != nil && m.tag != 0 && m.acked.CompareAndSwap(false, true)
}

// ack acknowledges t in the session and, with wake, wakes the writer for
// the answer it releases; the dispatcher wakes it once for a batch.
func (c *Client) ack(t session.Tag, wake bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.s.Ack(t); err != nil {
		return fmt.Errorf("client: ack: %w", err)
	}
	if wake && c.cur != nil && c.s.HasOutgoing() {
		c.kick()
	}
	return nil
}

// newMessage copies a received message out of the read buffer. Called with
// c.mu held.
func (c *Client) newMessage(ev session.Event) *Message {
	p := ev.Publish
	// One allocation for both: the topic's bytes are never written again,
	// and the payload, after them, cannot grow into them.
	buf := make([]byte, len(p.Topic)+len(p.Payload))
	n := copy(buf, p.Topic)
	copy(buf[n:], p.Payload)
	return &Message{
		Topic:   unsafe.String(unsafe.SliceData(buf), n),
		Payload: buf[n:len(buf):len(buf)],
		QoS:     p.QoS,
		Retain:  p.Retain,
		Dup:     p.Dup,
		ID:      p.PacketID,
		c:       c,
		tag:     ev.Tag,
	}
}

// Handle routes the messages whose topic matches filter to fn, from now on.
// When several filters match, the most specific wins: level by level, a
// literal level beats '+', which beats '#'; between equals, the first
// registered. A nil fn removes the filter's handler. Messages that no filter
// matches go to Options.DefaultHandler, or else to Messages. A shared
// subscription filter ("$share/group/sensors/#") routes by the filter after
// its group.
//
// Handlers run one at a time, in the order the messages arrived, on a
// goroutine of the client's: they may call any method of the Client,
// Disconnect included. A QoS 1 or 2 message is acknowledged when its handler
// returns (unless Options.ManualAck), so a slow handler slows the broker
// down; it does not stop the keepalive.
func (c *Client) Handle(filter string, fn func(*Message)) error {
	if err := topic.ValidFilter(filter); err != nil {
		return fmt.Errorf("client: handle %q: %w", filter, err)
	}
	// The messages of a shared subscription carry topics matching the
	// filter after "$share/{group}/".
	match := filter
	if topic.IsShared(filter) {
		_, sub, err := topic.ParseShared(filter)
		if err != nil {
			return fmt.Errorf("client: handle %q: %w", filter, err)
		}
		match = sub
	}
	r := &c.disp.routes
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byFilter[filter]; ok {
		r.tree.Remove(r.byID[old].filter, old)
		delete(r.byFilter, filter)
		delete(r.byID, old)
	}
	if fn == nil {
		return nil
	}
	r.next++
	if err := r.tree.Add(match, r.next); err != nil {
		return err
	}
	r.byFilter[filter] = r.next
	r.byID[r.next] = route{filter: match, fn: fn}
	return nil
}

// Messages returns the channel of the messages no handler takes (see
// Handle). It is closed when the client shuts down. A message is
// acknowledged when it is taken from the channel (unless
// Options.ManualAck); until then the next messages wait, and the client
// stops reading once Options.MaxPending of them wait.
//
// The messages that came before the first call, and that no handler took,
// come first: they were kept for it (see Options.DefaultHandler), and were
// acknowledged when kept.
func (c *Client) Messages() <-chan *Message {
	d := &c.disp
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.msgs == nil {
		d.msgs = make(chan *Message)
		if d.finished {
			close(d.msgs)
		}
		if len(d.kept) > 0 {
			d.wake()
		}
	}
	return d.msgs
}

type route struct {
	filter string
	fn     func(*Message)
}

type routes struct {
	mu       sync.RWMutex
	tree     topic.Tree[int]
	byFilter map[string]int
	byID     map[int]route
	next     int
}

// dispatcher runs the handlers on its own goroutine, in arrival order.
type dispatcher struct {
	c      *Client
	routes routes
	slots  chan struct{} // one per message waiting or being handled
	ready  chan struct{} // something was queued

	handling atomic.Bool // a handler runs

	mu       sync.Mutex
	queue    []*Message
	head     int
	kept     []*Message    // no handler took them before Messages was called
	max      int           // MaxPending
	reentry  chan struct{} // closed while a handler waits in a call of the client
	calls    int           // the calls of the handler under way (nested: Publish waiting for room)
	over     atomic.Int64  // the overCost of the messages queued without a place (see reserve)
	msgs     chan *Message // Messages, once called
	started  bool
	finished bool // the goroutine has ended; msgs is closed
	done     chan struct{}
	g        atomic.Int64 // goroutine id of the dispatcher
	matches  []int        // Tree.Match results, reused
}

func (d *dispatcher) init(c *Client, max int) {
	d.c = c
	d.routes.byFilter = make(map[string]int)
	d.routes.byID = make(map[int]route)
	d.slots = make(chan struct{}, max)
	d.max = max
	d.ready = make(chan struct{}, 1)
	d.done = make(chan struct{})
	d.reentry = make(chan struct{})
}

// handlerCall is called by the client's blocking methods. When the caller
// is a handler, the reader may queue messages past MaxPending until the
// call returns, since the answer the call waits for may be behind them on
// the connection; the returned function ends that. Otherwise it returns a
// function that does nothing.
func (d *dispatcher) handlerCall() func() {
	if !d.handling.Load() || d.g.Load() != goid() {
		return func() {}
	}
	d.mu.Lock()
	if d.calls++; d.calls == 1 {
		close(d.reentry)
	}
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		if d.calls--; d.calls == 0 {
			d.reentry = make(chan struct{})
		}
		d.mu.Unlock()
	}
}

// start starts the goroutine, once.
func (d *dispatcher) start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.finished {
		return
	}
	d.started = true
	go d.run()
}

// stop waits, bounded by ctx, for the goroutine to end after the client's
// context was cancelled; it does not wait when called from the dispatcher
// itself (self is the caller's goroutine id).
func (d *dispatcher) stop(ctx context.Context, self int64) error {
	d.mu.Lock()
	started := d.started
	if !started && !d.finished {
		d.finished = true
		if d.msgs != nil {
			close(d.msgs)
		}
		close(d.done)
	}
	d.mu.Unlock()
	if !started || d.g.Load() == self {
		return nil
	}
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reserve takes a place in the delivery queue for the message in the
// PUBLISH about to be handed to the session, waiting while the queue is
// full; flush hands the batch read so far to the dispatcher first, so that
// the wait does not hold back messages that have their place. A message
// gets its place before the session takes it: when the connection or the
// client ends during the wait, the PUBLISH is left unread (go is false), as
// if the network had lost it, and the broker sends a QoS 1 or 2 message
// again to a kept session. Across any number of lost connections the queue
// holds at most MaxPending.
//
// While a handler waits in a call of the client, the answer it waits for
// may be behind the messages on the connection: reading goes on without a
// place (slot is false). QoS 1 and 2 messages are queued all the same: the
// broker's inflight window bounds them, since they are acknowledged once
// handled. QoS 0 messages are bounded by overFull.
func (d *dispatcher) reserve(cn *conn, flush func()) (slot, ok bool) {
	select {
	case d.slots <- struct{}{}:
		return true, true
	default:
	}
	flush()
	cn.stalled.Store(true)
	defer func() {
		cn.resumed.Store(time.Now().UnixNano())
		cn.stalled.Store(false)
	}()
	d.mu.Lock()
	reentry := d.reentry
	d.mu.Unlock()
	select {
	case d.slots <- struct{}{}:
		return true, true
	case <-reentry:
		return false, true
	case <-cn.done:
	case <-d.c.ctx.Done():
	}
	return false, false
}

// overCost is what a message queued without a place counts against
// overFull: its topic and payload, and about what the Message costs.
func overCost(topicLen, payloadLen int) int64 {
	return int64(topicLen + payloadLen + 128)
}

// overFull reports whether a QoS 0 message of cost c, read while a handler
// waits in a call of the client, is to be dropped rather than queued without
// a place: the messages so queued hold Options.MaxPacketSize already, the
// memory the client must allow for one packet anyway. It is dropped, not
// waited for, since the answer the handler waits for may be behind it.
func (d *dispatcher) overFull(c int64) bool {
	return d.over.Load()+c > int64(orDefault(d.c.opts.MaxPacketSize, DefaultMaxPacketSize))
}

// release gives back a place reserve took for a PUBLISH that brought no
// message: a duplicate of a QoS 2 message already received.
func (d *dispatcher) release() { <-d.slots }

// push queues msgs for delivery and wakes the dispatcher once for all. Once
// the dispatcher has ended (the client stopped), they are discarded: counted
// and logged.
func (d *dispatcher) push(msgs []*Message) {
	if len(msgs) == 0 {
		return
	}
	d.mu.Lock()
	if d.finished {
		d.mu.Unlock()
		d.discarded(len(msgs))
		return
	}
	for _, m := range msgs {
		if !m.slot {
			d.over.Add(overCost(len(m.Topic), len(m.Payload)))
		}
	}
	d.queue = append(d.queue, msgs...)
	d.mu.Unlock()
	d.wake()
}

// discarded counts and logs n received messages that the client stopped
// before handing to a handler or to Messages. The QoS 1 and 2 ones were not
// acknowledged: a broker keeping the session sends them again.
func (d *dispatcher) discarded(n int) {
	d.c.stats.discarded.Add(uint64(n))
	d.c.log.Warn("received messages not handled: the client stopped", "count", n)
}

// wake tells the dispatcher there is something to deliver.
func (d *dispatcher) wake() {
	select {
	case d.ready <- struct{}{}:
	default:
	}
}

// popKept returns the oldest kept message, once there is a reader for it.
func (d *dispatcher) popKept() (*Message, chan *Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.msgs == nil || len(d.kept) == 0 {
		return nil, nil
	}
	m := d.kept[0]
	d.kept[0] = nil
	d.kept = d.kept[1:]
	if len(d.kept) == 0 {
		d.kept = nil
	}
	return m, d.msgs
}

func (d *dispatcher) pop() *Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.head == len(d.queue) {
		return nil
	}
	m := d.queue[d.head]
	d.queue[d.head] = nil
	d.head++
	if d.head == len(d.queue) {
		d.queue, d.head = d.queue[:0], 0
	} else if d.head >= 64 && d.head*2 >= len(d.queue) {
		n := copy(d.queue, d.queue[d.head:])
		clear(d.queue[n:])
		d.queue, d.head = d.queue[:n], 0
	}
	return m
}

func (d *dispatcher) run() {
	d.g.Store(goid())
	// A message taken from the kept ones or from the queue when the client
	// stopped, not handed out.
	keptTaken, queueTaken := 0, 0
	defer func() {
		d.mu.Lock()
		if n := len(d.kept) + keptTaken; n > 0 {
			d.c.stats.dropped.Add(uint64(n))
			d.c.log.Warn("messages kept for Messages discarded at shutdown", "count", n)
			d.kept = nil
		}
		if n := len(d.queue) - d.head + queueTaken; n > 0 {
			d.discarded(n)
			clear(d.queue)
			d.queue, d.head = nil, 0
		}
		d.finished = true
		if d.msgs != nil {
			close(d.msgs)
		}
		close(d.done)
		d.mu.Unlock()
	}()
	done := d.c.ctx.Done()
	unsent := 0 // acknowledgements the writer was not woken for
	for {
		if m, ch := d.popKept(); m != nil {
			select {
			case ch <- m:
				continue
			case <-done:
				keptTaken = 1
				return
			}
		}
		m := d.pop()
		if m == nil {
			if unsent > 0 {
				d.c.kick()
				unsent = 0
			}
			select {
			case <-d.ready:
				continue
			case <-done:
				return
			}
		}
		select {
		case <-done:
			queueTaken = 1
			return
		default:
		}
		if !d.deliver(m) {
			queueTaken = 1
			return
		}
		if m.slot {
			<-d.slots
		} else {
			d.over.Add(-overCost(len(m.Topic), len(m.Payload)))
		}
		if !d.c.opts.ManualAck && m.claim() {
			d.c.ack(m.tag, false)
			if unsent++; unsent >= maxBatch {
				d.c.kick()
				unsent = 0
			}
		}
	}
}

// deliver hands m to its handler, the default handler or Messages. It
// returns false when the client shut down while a Messages reader was
// awaited.
func (d *dispatcher) deliver(m *Message) bool {
	fn := d.match(m.Topic)
	if fn == nil {
		fn = d.c.opts.DefaultHandler
	}
	if fn != nil {
		d.handling.Store(true)
		defer d.handling.Store(false)
		fn(m)
		return true
	}
	d.mu.Lock()
	ch := d.msgs
	if ch == nil {
		gone := d.keep(m)
		d.mu.Unlock()
		if gone != nil {
			gone.discard()
		}
		return true
	}
	d.mu.Unlock()
	select {
	case ch <- m:
		return true
	case <-d.c.ctx.Done():
		return false
	}
}

// keep holds m, which no handler takes, for a reader of Messages to come,
// or discards it with Options.DiscardUnhandled; when MaxPending are kept
// already, the oldest is discarded. A message discarded is acknowledged all
// the same: the broker must not send it again [MQTT-4.5.0-2]. keep returns
// the message to discard, if any. Called with d.mu held.
func (d *dispatcher) keep(m *Message) (gone *Message) {
	c := d.c
	if c.opts.DiscardUnhandled {
		c.stats.dropped.Add(1)
		c.log.Debug("message without handler discarded (DiscardUnhandled)", "topic", m.Topic)
		return m
	}
	if len(d.kept) >= d.max {
		old := d.kept[0]
		d.kept[0] = nil
		d.kept = d.kept[1:]
		c.stats.dropped.Add(1)
		c.log.Warn("message without handler discarded: MaxPending kept already for Messages, which nobody called",
			"topic", old.Topic, "kept", d.max)
		gone = old
	}
	d.kept = append(d.kept, m)
	return gone
}

// discard acknowledges a message no one will process, with ManualAck too.
func (m *Message) discard() {
	if m.claim() {
		m.c.ack(m.tag, true)
	}
}

// match returns the handler of the most specific filter matching name.
func (d *dispatcher) match(name string) func(*Message) {
	r := &d.routes
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.byID) == 0 {
		return nil
	}
	d.matches = r.tree.MatchString(name, d.matches[:0])
	best, bestID := route{}, 0
	for _, id := range d.matches {
		rt := r.byID[id]
		if bestID == 0 || moreSpecific(rt.filter, best.filter) || (!moreSpecific(best.filter, rt.filter) && id < bestID) {
			best, bestID = rt, id
		}
	}
	return best.fn
}

// moreSpecific reports whether filter a is more specific than b, both
// matching the same topic: comparing level by level, a literal level beats
// '+', '+' beats '#', and the end of the filter beats '#' (which also
// matches the parent level).
func moreSpecific(a, b string) bool {
	for {
		ra, rb := rank(a), rank(b)
		if ra != rb {
			return ra > rb
		}
		if a == "" || b == "" {
			return false
		}
		a, b = rest(a), rest(b)
	}
}

// rank is the specificity of a filter's first level: 3 for no level left,
// 2 for a literal, 1 for '+' and 0 for '#'.
func rank(f string) int {
	if f == "" {
		return 3
	}
	lvl := f
	if i := strings.IndexByte(f, '/'); i >= 0 {
		lvl = f[:i]
	}
	switch lvl {
	case "#":
		return 0
	case "+":
		return 1
	}
	return 2
}

// rest drops a filter's first level; "" when it was the last one.
func rest(f string) string {
	if i := strings.IndexByte(f, '/'); i >= 0 {
		return f[i+1:]
	}
	return ""
}
