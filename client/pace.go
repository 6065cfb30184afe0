package client

import "time"

// readPacer lets a fast stream of QoS 0 messages collect in the connection
// between reads. A broker writes each message on its own, so a reader that
// keeps up pays a system call and a wake-up per message, and so does the
// broker, for waking it: on small messages that, not the MQTT work, limits
// throughput. Once several reads in a row start within a quarter of the
// delay of each other, the reader waits until the delay has passed since
// the previous read, so that each read takes what arrived meanwhile, at the
// cost of up to that delay of latency. A read that then waits longer than
// the delay for data ends the pausing: the stream has slowed.
//
// Only QoS 0 messages are paced: nobody waits for them. Delaying the
// acknowledgement of a QoS 1 or 2 message, or the reading of the
// acknowledgements of one's own, would stall a sender whose window of
// messages in flight is full.
type readPacer struct {
	delay   time.Duration // 0: never pause
	last    time.Time     // when the previous read started
	quick   int           // reads in a row that started soon after the one before
	pausing bool

	now   func() time.Time    // time.Now but in tests
	sleep func(time.Duration) // time.Sleep but in tests
}

func newReadPacer(delay time.Duration) readPacer {
	return readPacer{delay: delay, now: time.Now, sleep: time.Sleep}
}

// pacerTrigger is the number of quick reads in a row that starts the
// pausing.
const pacerTrigger = 4

// wait is called when the reader is about to read from the network; qos0
// reports whether every packet of the previous read was a QoS 0 PUBLISH. It
// returns when the read may start.
func (p *readPacer) wait(qos0 bool) time.Time {
	now := p.now()
	switch {
	case p.delay <= 0 || !qos0:
		p.quick, p.pausing = 0, false
	case p.pausing:
		if w := p.last.Add(p.delay).Sub(now); w > 0 {
			p.sleep(w)
			now = p.now()
		}
	case now.Sub(p.last) < p.delay/4:
		if p.quick++; p.quick >= pacerTrigger {
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
		p.quick, p.pausing = 0, false
	}
}
