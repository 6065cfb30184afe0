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
	f.Reader = New(delay)
	f.now = func() time.Time { return f.clock }
	f.sleep = func(d time.Duration) { f.slept = append(f.slept, d); f.clock = f.clock.Add(d) }
	return f
}

// step is one read: gap after the previous read started, the reader is
// ready to read again, having handled the packets of the previous read (all
// QoS 0 PUBLISHes when qos0); the read then waits wait for data. It returns
// how long the pacer made the reader sleep first.
func (f *fakePacer) step(gap time.Duration, qos0 bool, packets int, wait time.Duration) time.Duration {
	f.clock = f.clock.Add(gap)
	n := len(f.slept)
	start := f.Wait(qos0, packets)
	f.clock = f.clock.Add(wait)
	f.Read(start)
	if len(f.slept) > n {
		return f.slept[n]
	}
	return 0
}

func TestReadPacer(t *testing.T) {
	const d = 500 * time.Microsecond
	quick := 5 * time.Microsecond // a read that starts soon after the previous one

	t.Run("sparse reads never wait", func(t *testing.T) {
		// Each read waits for its data, however soon after the previous
		// one it starts.
		f := newFakePacer(d)
		for i := range 20 {
			if s := f.step(0, true, 1, d/4); s != 0 {
				t.Fatalf("read %d slept %v", i, s)
			}
		}
	})

	t.Run("a reader slower than the stream is paced", func(t *testing.T) {
		// Every read finds data at once, after a long time handling the
		// previous batch: the reader cannot keep up, and reading more per
		// call is what helps it.
		f := newFakePacer(d)
		const handling = 200 * time.Microsecond
		f.step(time.Second, true, 1, 0)
		for i := range pacerTrigger {
			if s := f.step(handling, true, 4, 0); s != 0 {
				t.Fatalf("read %d slept %v before the trigger", i, s)
			}
		}
		for i := range 10 {
			if s := f.step(handling, true, 20, 0); s != d-handling {
				t.Fatalf("paced read %d slept %v, want %v", i, s, d-handling)
			}
		}
	})

	t.Run("the zero Reader never waits", func(t *testing.T) {
		var p Reader
		for range 20 {
			p.Read(p.Wait(true, 20))
		}
	})

	t.Run("a fast QoS 0 stream is paced", func(t *testing.T) {
		f := newFakePacer(d)
		f.step(time.Second, true, 1, 0)
		for i := range pacerTrigger {
			if s := f.step(quick, true, 1, 0); s != 0 {
				t.Fatalf("quick read %d slept %v before the trigger", i, s)
			}
		}
		// Every later read starts one delay after the previous one, and no
		// sooner, while each brings several packets.
		for i := range 10 {
			if s := f.step(quick, true, 20, 0); s != d-quick {
				t.Fatalf("paced read %d slept %v, want %v", i, s, d-quick)
			}
		}
		// The handling of a batch that took longer than the delay leaves
		// nothing to wait for.
		if s := f.step(2*d, true, 20, 0); s != 0 {
			t.Fatalf("read after slow handling slept %v", s)
		}
		if s := f.step(quick, true, 20, 0); s != d-quick {
			t.Fatalf("read after slow handling ended the pacing: slept %v", s)
		}
	})

	t.Run("a read that waits longer than the delay ends the pacing", func(t *testing.T) {
		f := newFakePacer(d)
		for range pacerTrigger + 1 {
			f.step(quick, true, 1, 0)
		}
		if s := f.step(quick, true, 1, d+time.Microsecond); s == 0 {
			t.Fatal("not pacing before the stream slowed")
		}
		if s := f.step(quick, true, 20, 0); s != 0 {
			t.Fatalf("still pacing after the stream slowed: slept %v", s)
		}
	})

	t.Run("a conversation is rarely delayed", func(t *testing.T) {
		// A request and its response, on a quick network: every read
		// brings one packet, soon after the previous one.
		f := newFakePacer(d)
		const reads = 10000
		for range reads {
			f.step(quick, true, 1, 0)
		}
		// After two useless pauses in a row the pacer wants twice as
		// many quick reads: 4+8+...+1024 reads, then two pauses per
		// 1024.
		if n, most := len(f.slept), 2*(9+reads/pacerMaxTrigger); n == 0 || n > most {
			t.Fatalf("%d of %d reads delayed, want 1 to %d", n, reads, most)
		}
	})

	t.Run("one pause that brings one packet does not end the pacing", func(t *testing.T) {
		f := newFakePacer(d)
		for range pacerTrigger + 2 {
			f.step(quick, true, 20, 0)
		}
		// A gap in the stream: the pause brings one packet, the next
		// ones many again.
		if s := f.step(quick, true, 1, 0); s == 0 {
			t.Fatal("not pacing before the gap")
		}
		for i := range 5 {
			if s := f.step(quick, true, 20, 0); s != d-quick {
				t.Fatalf("paced read %d after the gap slept %v, want %v", i, s, d-quick)
			}
		}
	})

	t.Run("QoS 1 and 2 traffic and acknowledgements are never paced", func(t *testing.T) {
		f := newFakePacer(d)
		for i := range 20 {
			if s := f.step(quick, false, 20, 0); s != 0 {
				t.Fatalf("read %d slept %v", i, s)
			}
		}
		// Pacing stops at the first read that is not all QoS 0.
		for range pacerTrigger + 2 {
			f.step(quick, true, 20, 0)
		}
		if s := f.step(quick, false, 20, 0); s != 0 {
			t.Fatalf("read after a QoS 1 batch slept %v", s)
		}
	})

	t.Run("a negative or zero delay turns pacing off", func(t *testing.T) {
		for _, delay := range []time.Duration{0, -1} {
			f := newFakePacer(delay)
			for i := range 20 {
				if s := f.step(0, true, 20, 0); s != 0 {
					t.Fatalf("delay %v: read %d slept %v", delay, i, s)
				}
			}
		}
	})
}

// FuzzPacer drives a Reader with arbitrary reads: whatever their gaps,
// waits and packets, it never sleeps longer than the delay, never before a
// read that follows anything but QoS 0 PUBLISHes, never with pacing off,
// and never right after a read that waited longer than the delay.
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
			qos0 := data[0]&1 == 1
			packets := int(data[1])
			gap := time.Duration(data[2]) * 10 * time.Microsecond
			wait := time.Duration(data[3]) * 20 * time.Microsecond
			s := p.step(gap, qos0, packets, wait)
			switch {
			case s < 0 || (d > 0 && s > d):
				t.Fatalf("slept %v with a delay of %v", s, d)
			case s > 0 && !qos0:
				t.Fatalf("slept %v before a read after other packets than QoS 0 PUBLISHes", s)
			case s > 0 && d <= 0:
				t.Fatalf("slept %v with pacing off", s)
			case s > 0 && longWait:
				t.Fatalf("slept %v right after a read that waited longer than the delay", s)
			}
			longWait = d > 0 && wait > d
		}
	})
}
