package client

import "time"

// readPacer lets a fast stream of QoS 0 messages collect in the connection
// between reads. A broker writes each message on its own, so a reader that
// keeps up pays a system call and a wake-up per message, and so does the
// broker, for waking it: on small messages that, not the MQTT work, limits
// throughput. Once several reads in a row start within pacerQuick of each
// other, the reader waits until the delay has passed since the previous
// read, so that each read takes what arrived meanwhile, at the cost of up
// to that delay of latency.
//
// Pausing stops when it does not pay: when a read waits longer than the
// delay for data (the stream slowed), and when the read after a pause brings
// a single packet: the other end was waiting for us, as in a request and
// its response, which look like a fast stream on a quick network. After the
// latter the pacer wants twice as many quick reads before it pauses again,
// so that a conversation is delayed a few times, not every few messages.
//
// Only QoS 0 messages are paced: nobody waits for them. Delaying the
// acknowledgement of a QoS 1 or 2 message, or the reading of the
// acknowledgements of one's own, would stall a sender whose window of
// messages in flight is full.
type readPacer struct {
	delay   time.Duration // 0: never pause
	last    time.Time     // when the previous read started
	quick   int           // reads in a row that started soon after the one before
	need    int           // quick reads that start the pausing
	pausing bool
	paused  bool // the previous read followed a pause

	now   func() time.Time    // time.Now but in tests
	sleep func(time.Duration) // time.Sleep but in tests
}

const (
	// pacerQuick is how soon after the previous read a read must start to
	// count as quick: messages arrive faster than 40,000 a second.
	pacerQuick = 25 * time.Microsecond
	// pacerTrigger and pacerMaxTrigger bound readPacer.need.
	pacerTrigger    = 4
	pacerMaxTrigger = 1 << 10
)

func newReadPacer(delay time.Duration) readPacer {
	return readPacer{delay: delay, need: pacerTrigger, now: time.Now, sleep: time.Sleep}
}

// wait is called when the reader is about to read from the network, with
// the number of packets the previous read brought and whether they were all
// QoS 0 PUBLISHes. It returns when the read may start.
func (p *readPacer) wait(qos0 bool, packets int) time.Time {
	now := p.now()
	paused := p.paused
	p.paused = false
	switch {
	case p.delay <= 0 || !qos0:
		p.quick, p.pausing = 0, false
	case paused && packets < 2:
		p.quick, p.pausing = 0, false
		p.need = min(2*p.need, pacerMaxTrigger)
	case p.pausing:
		if paused {
			p.need = pacerTrigger // pausing pays
		}
		if w := p.last.Add(p.delay).Sub(now); w > 0 {
			p.sleep(w)
			now = p.now()
			p.paused = true
		}
	case now.Sub(p.last) < pacerQuick:
		if p.quick++; p.quick >= p.need {
			p.pausing = true
		}
	default:
		p.quick = 0
	}
	p.last = now
	return now
}

// read is called when the read that started at start has returned.
func (p *readPacer) read(start time.Time) {
	if p.pausing && p.now().Sub(start) > p.delay {
		p.quick, p.pausing, p.paused = 0, false, false
	}
}
