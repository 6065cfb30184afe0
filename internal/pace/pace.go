// Package pace holds the read pacer that the client and the broker share.
package pace

import "time"

// Reader lets a fast stream of QoS 0 messages collect in the connection
// between reads. A peer writes each message on its own, so a reader that
// keeps up pays a system call and a wake-up per message, and so does the
// peer, for waking it: on small messages that, not the MQTT work, limits
// throughput. Once several reads in a row were quick (each waited less than
// the pacer's quick interval for its data, or brought more than one packet:
// the stream keeps up with the reader or outruns it), the reader waits until
// the delay has passed since the previous read started, so that each read
// takes what arrived meanwhile, at the cost of up to that delay of latency.
//
// Pausing stops when it does not pay: when a read waits longer than the
// delay for data (the stream slowed), and when the reads after two pauses
// in a row bring a single packet each: the other end was waiting for us, as
// in a request and its response, which look like a fast stream on a quick
// network (one such pause alone may be the chance gap of a stream). After
// the latter the pacer wants twice as many quick reads before it pauses
// again, so that a conversation is delayed a few times, not every few
// messages.
//
// Only QoS 0 messages are paced: nobody waits for them. Delaying the
// acknowledgement of a QoS 1 or 2 message, or the reading of the
// acknowledgements of one's own, would stall a sender whose window of
// messages in flight is full.
//
// The zero Reader never pauses.
type Reader struct {
	delay   time.Duration // 0: never pause
	quickIn time.Duration // a read that waits less than this for data is quick
	last    time.Time     // when the previous read started
	prompt  bool          // the previous read was quick
	quick   int           // quick reads in a row
	need    int           // quick reads that start the pausing
	pausing bool
	paused  bool // the previous read followed a pause
	useless bool // and brought a single packet

	now   func() time.Time    // time.Now but in tests
	sleep func(time.Duration) // time.Sleep but in tests
}

// pacerTrigger and pacerMaxTrigger bound Reader.need.
const (
	pacerTrigger    = 4
	pacerMaxTrigger = 1 << 10
)

// New returns a Reader that pauses up to delay (never if delay is 0 or
// less) once reads are quick: waiting less than a quarter of the delay, so
// that a pause would gather four packets or more.
//
// How long a read waits, not how often reads come, is the measure: a reader
// slower than the stream, which finds data at every read, is what pacing
// helps most, however long it takes to handle each batch; and where a
// wake-up is slow, a read that waited still brings several packets.
func New(delay time.Duration) Reader {
	return Reader{delay: delay, quickIn: delay / 4, need: pacerTrigger, now: time.Now, sleep: time.Sleep}
}

// Wait is called when the reader is about to read from the network, with
// the number of packets the previous read brought and whether they were all
// QoS 0 PUBLISHes. It returns when the read may start.
func (p *Reader) Wait(qos0 bool, packets int) time.Time {
	if p.now == nil {
		return time.Time{} // the zero Reader
	}
	now := p.now()
	paused := p.paused
	p.paused = false
	switch {
	case p.delay <= 0 || !qos0:
		p.quick, p.pausing, p.useless = 0, false, false
	case paused && packets < 2 && p.useless:
		p.quick, p.pausing, p.useless = 0, false, false
		p.need = min(2*p.need, pacerMaxTrigger)
	case p.pausing:
		if paused {
			p.useless = packets < 2
			if !p.useless {
				p.need = pacerTrigger // pausing pays
			}
		}
		if w := p.last.Add(p.delay).Sub(now); w > 0 {
			p.sleep(w)
			now = p.now()
			p.paused = true
		}
	case p.prompt || packets >= 2:
		if p.quick++; p.quick >= p.need {
			p.pausing = true
		}
	default:
		p.quick = 0
	}
	p.last = now
	return now
}

// Read is called when the read that started at start has returned.
func (p *Reader) Read(start time.Time) {
	if p.now == nil {
		return
	}
	waited := p.now().Sub(start)
	p.prompt = waited < p.quickIn
	if p.pausing && waited > p.delay {
		p.quick, p.pausing, p.paused, p.useless = 0, false, false, false
	}
}
