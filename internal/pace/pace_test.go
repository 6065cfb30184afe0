package pace

import (
	"testing"
	"time"
)

// fakePacer is a Reader on a clock that moves only when told to, or when
// the pacer sleeps.
type fakePacer struct {
	Reader
	clock time.Time
	slept []time.Duration
}

func newFakePacer(delay time.Duration) *fakePacer {
	f := &fakePacer{clock: time.Unix(1000, 0)}
	f.Reader = NewClock(delay,
		func() time.Time { return f.clock },
		func(d time.Duration) { f.slept = append(f.slept, d); f.clock = f.clock.Add(d) })
	return f
}

// step is one read: gap after the previous read started, the reader is
// ready to read again, having handled the packets of the previous read (of
// the given kind); the read then waits wait for data. It returns how
// long the pacer made the reader sleep first.
func (f *fakePacer) step(gap time.Duration, kind Kind, packets int, wait time.Duration) time.Duration {
	f.clock = f.clock.Add(gap)
	n := len(f.slept)
	start := f.Wait(kind, packets)
	f.clock = f.clock.Add(wait)
	f.Read(start)
	if len(f.slept) > n {
		return f.slept[n]
	}
	return 0
}

// untilPausing reads packets every gap until the pacer pauses, which must
// happen within the trigger's reads and one delay.
func (f *fakePacer) untilPausing(t *testing.T, gap time.Duration, kind Kind, packets int) {
	t.Helper()
	most := max(pacerTrigger, int(f.delay/gap)) + 2
	for i := 0; !f.pausing; i++ {
		if i > most {
			t.Fatalf("not pausing after %d reads %v apart", i, gap)
		}
		if s := f.step(gap, kind, packets, 0); s != 0 {
			t.Fatalf("read %d slept %v before the trigger", i, s)
		}
	}
}

func TestReadPacer(t *testing.T) {
	const d = 500 * time.Microsecond
	quick := 5 * time.Microsecond // a read that starts soon after the previous one

	t.Run("sparse reads never wait", func(t *testing.T) {
		// Each read waits for its data, however soon after the previous
		// one it starts.
		f := newFakePacer(d)
		for i := range 20 {
			if s := f.step(0, Stream, 1, d/2); s != 0 {
				t.Fatalf("read %d slept %v", i, s)
			}
		}
	})

	t.Run("reads that wait under half the delay are paced", func(t *testing.T) {
		// A stream a little faster than two packets a delay: each read
		// waits for one, and a pause gathers two.
		f := newFakePacer(d)
		wait := d/2 - 10*time.Microsecond
		f.step(time.Second, Stream, 1, wait)
		for i := 0; !f.pausing; i++ {
			if i > pacerTrigger+int(d/wait)+2 {
				t.Fatalf("not pausing after %d reads that each waited %v", i, wait)
			}
			f.step(0, Stream, 1, wait)
		}
		if s := f.step(0, Stream, 1, 0); s != d-wait {
			t.Fatalf("paced read slept %v, want %v", s, d-wait)
		}
	})

	t.Run("a reader slower than the stream is paced", func(t *testing.T) {
		// Every read finds data at once, after a long time handling the
		// previous batch: the reader cannot keep up, and reading more per
		// call is what helps it.
		f := newFakePacer(d)
		const handling = 200 * time.Microsecond
		f.step(time.Second, Stream, 1, 0)
		f.untilPausing(t, handling, Stream, 4)
		for i := range 10 {
			if s := f.step(handling, Stream, 20, 0); s != d-handling {
				t.Fatalf("paced read %d slept %v, want %v", i, s, d-handling)
			}
		}
	})

	t.Run("the zero Reader never waits", func(t *testing.T) {
		var p Reader
		for range 20 {
			p.Read(p.Wait(Stream, 20))
		}
	})

	t.Run("a fast QoS 0 stream is paced", func(t *testing.T) {
		f := newFakePacer(d)
		f.step(time.Second, Stream, 1, 0)
		f.untilPausing(t, quick, Stream, 1)
		// Every later read starts one delay after the previous one, and no
		// sooner, while each brings what a delay of the stream brings.
		perDelay := int(d / quick)
		for i := range 10 {
			if s := f.step(quick, Stream, perDelay, 0); s != d-quick {
				t.Fatalf("paced read %d slept %v, want %v", i, s, d-quick)
			}
		}
		// The handling of a batch that took longer than the delay leaves
		// nothing to wait for.
		if s := f.step(2*d, Stream, perDelay, 0); s != 0 {
			t.Fatalf("read after slow handling slept %v", s)
		}
		if s := f.step(quick, Stream, 2*perDelay, 0); s != d-quick {
			t.Fatalf("read after slow handling ended the pacing: slept %v", s)
		}
	})

	t.Run("a read that waits longer than the delay ends the pacing", func(t *testing.T) {
		f := newFakePacer(d)
		f.untilPausing(t, quick, Stream, 1)
		if s := f.step(quick, Stream, 1, d+time.Microsecond); s == 0 {
			t.Fatal("not pacing before the stream slowed")
		}
		if s := f.step(quick, Stream, 20, 0); s != 0 {
			t.Fatalf("still pacing after the stream slowed: slept %v", s)
		}
	})

	t.Run("a conversation is rarely delayed", func(t *testing.T) {
		// A request and its response, on a quick network: every read
		// brings one packet, soon after the previous one.
		f := newFakePacer(d)
		const reads = 10000
		for range reads {
			f.step(quick, Stream, 1, 0)
		}
		// After two useless pauses in a row the pacer wants twice as
		// many quick reads: at most two pauses per delay's worth of
		// reads, and then fewer and fewer: 4+8+...+1024 reads, then two
		// pauses per 1024.
		if n, most := len(f.slept), 2*(9+reads/pacerMaxTrigger); n == 0 || n > most {
			t.Fatalf("%d of %d reads delayed, want 1 to %d", n, reads, most)
		}
	})

	t.Run("one pause that brings one packet does not end the pacing", func(t *testing.T) {
		f := newFakePacer(d)
		f.untilPausing(t, quick, Stream, 1)
		// A gap in the stream: the pause brings one packet, the next
		// ones many again.
		if s := f.step(quick, Stream, 1, 0); s == 0 {
			t.Fatal("not pacing before the gap")
		}
		for i := range 5 {
			if s := f.step(quick, Stream, int(d/quick), 0); s != d-quick {
				t.Fatalf("paced read %d after the gap slept %v, want %v", i, s, d-quick)
			}
		}
	})

	t.Run("packets that may not be paced are never paced", func(t *testing.T) {
		f := newFakePacer(d)
		for i := range 20 {
			if s := f.step(quick, Answer, 20, 0); s != 0 {
				t.Fatalf("read %d slept %v", i, s)
			}
		}
		// Pacing stops at the first read that brings one.
		f.untilPausing(t, quick, Stream, 20)
		f.step(quick, Stream, 20, 0)
		if s := f.step(quick, Answer, 20, 0); s != 0 {
			t.Fatalf("read after a packet that may not be paced slept %v", s)
		}
	})

	t.Run("a stream that keeps its rate while paused stays paced", func(t *testing.T) {
		// QoS 1 messages at one per 25 µs, a window that the pauses
		// never fill.
		f := newFakePacer(d)
		const every = 25 * time.Microsecond
		f.untilPausing(t, every, Stream, 1)
		// Paced for remeasure checks, then read at once for a delay to
		// measure the rate again, and paced again: under 5% of the time
		// unpaced.
		var paced, unpaced time.Duration
		for range 2000 {
			packets := 1
			if f.paused {
				packets = int(d / every)
			}
			at := f.clock
			if s := f.step(every, Stream, packets, 0); s > 0 {
				paced += f.clock.Sub(at)
			} else {
				unpaced += f.clock.Sub(at)
			}
		}
		if unpaced > (paced+unpaced)/20 {
			t.Fatalf("%v paced, %v not", paced, unpaced)
		}
	})

	t.Run("a stream that pausing slows is read at once again", func(t *testing.T) {
		// A sender with a window of 100 QoS 1 messages that the reader
		// acknowledges, or of 100 QoS 0 messages that it waits to see
		// delivered (tern bench's publishers): read at once, a read
		// brings 5 of them every 10 µs (500,000 a second); paused, a
		// read brings the window per delay (200,000 a second).
		f := newFakePacer(d)
		const gap, window = 10 * time.Microsecond, 100
		pausing := func() bool { return f.pausing }
		var reads, pauses int
		var elapsed time.Duration
		step := func() {
			packets := 5
			if f.paused {
				packets = window
			}
			at := f.clock
			if f.step(gap, Stream, packets, 0) > 0 {
				pauses++
			}
			elapsed += f.clock.Sub(at)
			reads++
		}
		f.untilPausing(t, gap, Stream, 5)
		for pausing() {
			step()
			if pauses > judgeReads {
				t.Fatalf("%d pauses, and still pausing", pauses)
			}
		}
		// Held off: reads at once for minHold delays.
		for hold := f.clock.Add(minHold * d); f.clock.Before(hold); {
			if step(); pauses > judgeReads {
				t.Fatalf("paused during the hold at %v", hold.Sub(f.clock))
			}
		}
		// Over a long run the pauses hold the stream up less and less:
		// each failed check doubles the hold, up to maxHold delays.
		for elapsed < 10*maxHold*d {
			step()
		}
		if lost := time.Duration(pauses) * d; lost > elapsed/20 {
			t.Fatalf("%d pauses (%v) in %v of reading, want under 5%%", pauses, lost, elapsed)
		}
	})

	t.Run("a window that every pause fills stops the pausing", func(t *testing.T) {
		// A broker with a window of 20 QoS 1 messages to the reader:
		// whether a pause lasts the delay or longer (the reader busy with
		// the previous batch), it brings 20, so the window, not the
		// stream, is the limit; the rate check alone could miss it when
		// the quick reads that started the pausing were slow ones.
		f := newFakePacer(d)
		f.untilPausing(t, 100*time.Microsecond, Stream, 1)
		for i := 0; f.pausing; i++ {
			if i > judgeReads {
				t.Fatalf("still pausing after %d reads of a full window", i)
			}
			gap := d / 2
			if i%2 == 1 {
				gap = d * 3 / 2
			}
			f.step(gap, Stream, 20, 0)
		}
		if s := f.step(0, Stream, 20, 0); s != 0 {
			t.Fatalf("paused %v right after", s)
		}
	})

	t.Run("acknowledgements that drain the window hold pausing off", func(t *testing.T) {
		f := newFakePacer(d)
		const every = 25 * time.Microsecond
		f.untilPausing(t, every, Stream, 1)
		if s := f.step(every, Stream, 1, 0); s == 0 {
			t.Fatal("not pacing before the window drained")
		}
		// The paused read brought acknowledgements for most of the
		// window: no pause now, nor for minHold delays.
		if s := f.step(every, Drained, 20, 0); s != 0 {
			t.Fatalf("paused %v after the window drained", s)
		}
		for hold := f.clock.Add(minHold * d); f.clock.Before(hold); {
			if s := f.step(every, Stream, 1, 0); s != 0 {
				t.Fatalf("paused %v during the hold, %v before its end", s, hold.Sub(f.clock))
			}
		}
		// Then pausing starts again.
		f.untilPausing(t, every, Stream, 1)
	})

	t.Run("a QoS 1 conversation is paused rarely", func(t *testing.T) {
		// A QoS 1 message to oneself, again and again, for 200 ms: each
		// read brings one packet 40 µs after the last, and a pause
		// brings the two that a round trip gathers.
		f := newFakePacer(d)
		const every = 40 * time.Microsecond
		var elapsed, lost time.Duration
		for elapsed < 200*time.Millisecond {
			packets := 1
			if f.paused {
				packets = 2
			}
			at := f.clock
			s := f.step(every, Stream, packets, 0)
			lost += s
			elapsed += f.clock.Sub(at)
		}
		// Two paused reads tell a conversation from a stream: two
		// pauses per hold, 2.3% of the time here; four, as a stream is
		// judged, would cost 4.6%.
		if lost > elapsed*3/100 {
			t.Fatalf("%v of %v in pauses, want under 3%%", lost, elapsed)
		}
	})

	t.Run("a negative or zero delay turns pacing off", func(t *testing.T) {
		for _, delay := range []time.Duration{0, -1} {
			f := newFakePacer(delay)
			for i := range 20 {
				if s := f.step(0, Stream, 20, 0); s != 0 {
					t.Fatalf("delay %v: read %d slept %v", delay, i, s)
				}
			}
		}
	})
}

// FuzzPacer drives a Reader with arbitrary reads: whatever their gaps,
// waits and packets, it never sleeps longer than the delay, never before a
// read that follows packets that may not be paced or that drained the
// window, never with pacing off,
// never right after a read that waited longer than the delay, and never
// while it holds off after a failed rate check.
func FuzzPacer(f *testing.F) {
	f.Add([]byte{5, 1, 20, 1, 0, 1, 20, 1, 0, 1, 20, 1, 0, 1, 20, 1, 0, 1, 20, 1, 0, 1, 1, 1, 0})
	f.Add([]byte{0, 1, 20, 1, 0})
	f.Add([]byte{200, 0, 20, 1, 0, 1, 1, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		d := time.Duration(data[0]) * 100 * time.Microsecond
		if data[0] == 0 {
			d = -1
		}
		p := newFakePacer(d)
		longWait := false
		for data = data[1:]; len(data) >= 4; data = data[4:] {
			kind := Kind(data[0] % 4)
			packets := int(data[1])
			gap := time.Duration(data[2]) * 10 * time.Microsecond
			wait := time.Duration(data[3]) * 20 * time.Microsecond
			holding := p.clock.Add(gap).Before(p.holdUntil)
			s := p.step(gap, kind, packets, wait)
			switch {
			case s < 0 || (d > 0 && s > d):
				t.Fatalf("slept %v with a delay of %v", s, d)
			case s > 0 && (kind == Answer || kind == Drained):
				t.Fatalf("slept %v before a read after packets that may not be paced (%d)", s, kind)
			case s > 0 && holding:
				t.Fatalf("slept %v while holding off", s)
			case s > 0 && d <= 0:
				t.Fatalf("slept %v with pacing off", s)
			case s > 0 && longWait:
				t.Fatalf("slept %v right after a read that waited longer than the delay", s)
			}
			longWait = d > 0 && wait > d
		}
	})
}
