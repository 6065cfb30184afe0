// Package pace holds the read pacer that the client and the broker share.
package pace

import "time"

// Reader lets a fast stream of packets collect in the connection between
// reads. A peer writes each packet on its own, so a reader that keeps up
// pays a system call and a wake-up per packet, and so does the peer, for
// waking it: on small messages that, not the MQTT work, limits throughput.
// Once several reads in a row were quick (each waited less than the
// pacer's quick interval for its data, or brought more than one packet:
// the stream keeps up with the reader or outruns it), over one delay at
// least, the reader waits until the delay has passed since the previous
// read started, so that each read takes what arrived meanwhile, at the cost
// of up to that delay of latency.
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
// It also stops when it slows the stream down. A sender of QoS 1 or 2
// messages has a window of messages in flight, and the acknowledgements
// that open it are packets too: delaying them, or the messages they
// answer, caps the stream at a window per delay. A sender of QoS 0
// messages may hold a window of its own, in the application: a publisher
// that waits for its messages to be delivered, or for answers to them, as
// tern bench does. So while the pacer pauses, it compares the packets per
// second of the paused reads with those of the quick reads that started
// the pausing; when pausing gets under half of that (under a quarter:
// after two paused reads), or when paused reads each bring the same
// number of packets however long they gathered them (a window's worth: the
// pause is the limit), it reads at once again and does not try pausing
// for a while, twice as long each time in a row it fails. A reader that
// knows its own window full and drained by a paused read says so
// (Drained), with the same effect. Every so often the pacer
// stops pausing to measure the rate anew, as the stream may have sped up.
// The check may take the chance ups and downs of a stream's rate for a
// window: that costs reads, for a while, where a window capped by the
// pauses would cost half the throughput and a delay of latency.
//
// The caller says what each read brought (Kind): answers to requests
// (CONNACK, SUBACK) are never delayed.
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

	// The rate check: the quick reads that started the pausing, from
	// streakAt, brought streakPk packets, at rate packets per nanosecond;
	// the reads since judgedAt, while pausing, brought pausedPk packets in
	// pausedReads reads.
	streakAt    time.Time
	streakPk    int
	rate        float64
	judgedAt    time.Time
	pausedPk    int
	pausedReads int
	each        int           // what each of those reads brought, if all the same; -1 if not
	shortest    time.Duration // the shortest and longest time a paused read gathered packets
	longest     time.Duration
	prev        time.Time     // when the read before the previous one started
	passed      int           // checks passed since the rate was measured
	backoff     time.Duration // how long not to pause after the next failed check
	holdUntil   time.Time     // no pausing before this, after a failed check

	now   func() time.Time    // time.Now but in tests
	sleep func(time.Duration) // time.Sleep but in tests
}

// Kind is what a read brought, as far as pacing goes: the most demanding
// of its packets.
type Kind int

const (
	// Stream: messages of any QoS and their acknowledgements, with no
	// answer to a request. Paced while pausing keeps their rate.
	Stream Kind = iota
	// Drained: acknowledgements that emptied much of the reader's own
	// window of messages in flight, which is full: pausing stalls its
	// messages behind the window. Holds pausing off, as a failed rate
	// check does.
	Drained
	// Answer: a packet somebody waits for, such as a CONNACK or SUBACK,
	// or anything the caller does not pace. Never paced.
	Answer
)

// pacerTrigger and pacerMaxTrigger bound Reader.need.
const (
	pacerTrigger    = 4
	pacerMaxTrigger = 1 << 10
)

// The rate check looks at judgeReads reads while pausing, and the rate is
// measured again after remeasure checks passed. After a failed check the
// pacer holds off for minHold delays, doubling up to maxHold delays for
// each failure in a row: a stream the pauses would slow loses a few
// pauses' worth of throughput once in a long while.
const (
	minWindow  = 4
	judgeReads = 4
	remeasure  = 16
	minHold    = 16
	maxHold    = 2048
)

// New returns a Reader that pauses up to delay (never if delay is 0 or
// less) once reads are quick: waiting less than half the delay, so that a
// pause would gather two packets or more, and the reads it saves are at
// least as many as it makes.
//
// How long a read waits, not how often reads come, is the measure: a reader
// slower than the stream, which finds data at every read, is what pacing
// helps most, however long it takes to handle each batch; and where a
// wake-up is slow, a read that waited still brings several packets.
func New(delay time.Duration) Reader {
	return NewClock(delay, time.Now, time.Sleep)
}

// NewClock is New on a clock of the caller's: now tells the time and sleep
// waits (or moves the clock on). For tests and fuzzing.
func NewClock(delay time.Duration, now func() time.Time, sleep func(time.Duration)) Reader {
	return Reader{delay: delay, quickIn: delay / 2, need: pacerTrigger, now: now, sleep: sleep}
}

// Wait is called when the reader is about to read from the network, with
// what the previous read brought and how many packets. It returns when the
// read may start.
func (p *Reader) Wait(kind Kind, packets int) time.Time {
	if p.now == nil {
		return time.Time{} // the zero Reader
	}
	now := p.now()
	paused := p.paused
	p.paused = false
	switch {
	case p.delay <= 0 || kind == Answer:
		p.quick, p.pausing, p.useless = 0, false, false
	case kind == Drained:
		if p.pausing {
			p.holdOff(now)
		}
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
		if !p.judge(now, packets) {
			p.quick, p.pausing, p.useless = 0, false, false
			break
		}
		if w := p.last.Add(p.delay).Sub(now); w > 0 {
			p.sleep(w)
			now = p.now()
			p.paused = true
		}
	case now.Before(p.holdUntil):
		p.quick = 0
	case p.last.IsZero():
		// The first read: nothing to measure a stream by yet.
	case p.prompt || packets >= 2:
		if p.quick == 0 {
			p.streakAt, p.streakPk = p.last, 0
		}
		p.streakPk += packets
		// A streak as long as a pause at least: its rate is what the
		// pauses are held to, and a few reads alone may have found a
		// chance backlog.
		if p.quick++; p.quick >= p.need && now.Sub(p.streakAt) >= p.delay {
			p.pausing = true
			p.rate = 0 // unknown: a streak that took no time
			if d := now.Sub(p.streakAt); d > 0 {
				p.rate = float64(p.streakPk) / float64(d)
			}
			p.judgedAt, p.pausedPk, p.pausedReads, p.passed = time.Time{}, 0, 0, 0
		}
	default:
		p.quick = 0
	}
	p.prev, p.last = p.last, now
	return now
}

// Pausing reports whether the reader is pausing: the next Wait will
// likely pause.
func (p *Reader) Pausing() bool { return p.pausing }

// judge counts the packets of a read made while pausing and, every
// judgeReads reads, reports whether pausing kept the stream at half its
// rate before, at least. If not, it holds pausing off. After remeasure
// checks passed, it ends the pausing all the same, so that the next quick
// reads measure the rate anew: the stream may have sped up since, and
// pauses that hold it at its old rate would pass every check.
func (p *Reader) judge(now time.Time, packets int) bool {
	if p.judgedAt.IsZero() {
		// The read that started the pausing was not paused: the
		// paused reads start here.
		p.judgedAt = now
		return true
	}
	p.pausedPk += packets
	gathered := p.last.Sub(p.prev)
	switch {
	case p.pausedReads == 0:
		p.each, p.shortest, p.longest = packets, gathered, gathered
	case packets != p.each:
		p.each = -1
	}
	p.shortest, p.longest = min(p.shortest, gathered), max(p.longest, gathered)
	d := now.Sub(p.judgedAt)
	// Under a quarter of the rate, two paused reads are enough to tell:
	// a conversation, such as a QoS 1 message to oneself, gathers its
	// two or three packets per pause. (One may be a chance gap.)
	p.pausedReads++
	crawl := p.pausedReads >= 2 && d > 0 && 4*float64(p.pausedPk) < p.rate*float64(d)
	if p.pausedReads < judgeReads && !crawl {
		return true
	}
	// Paused reads that each bring the same number of packets, several,
	// however long they gathered them, bring a window's worth: the
	// window, not the stream, sets how much a pause gathers, and the
	// pause is what holds it up.
	full := p.each >= minWindow && 4*p.longest >= 5*p.shortest
	slowed := full || d > 0 && 2*float64(p.pausedPk) < p.rate*float64(d)
	p.judgedAt, p.pausedPk, p.pausedReads = now, 0, 0
	if slowed {
		p.holdOff(now)
		return false
	}
	p.backoff = 0
	if p.passed++; p.passed >= remeasure {
		p.passed = 0
		p.need = pacerTrigger
		return false
	}
	return true
}

// holdOff keeps the pacer from pausing for a while after pausing slowed
// the stream: minHold delays, twice as long as the last time if that was
// the last time pausing was tried, up to maxHold delays.
func (p *Reader) holdOff(now time.Time) {
	p.backoff = min(max(2*p.backoff, minHold*p.delay), maxHold*p.delay)
	p.holdUntil = now.Add(p.backoff)
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
