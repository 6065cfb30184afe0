package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The load of tern bench: publishers that send within their window, and
// subscribers that record each delivery and wake the publisher waiting
// for it.

type benchPub struct {
	idx    int
	topic  string
	c      mqttConn
	done   uint64 // flows completed in the current phase
	fanout uint64 // subscribers that get its messages

	// The window: deliveries of its messages in the current phase, and a
	// wake-up for the publisher when it waits for them.
	delivered atomic.Uint64
	waiting   atomic.Bool
	wake      chan struct{}
}

// publishLoop publishes one publisher's messages of a phase, keeping up to
// a window of them in flight, and waits for all of their flows.
func (b *bench) publishLoop(ctx context.Context, p *benchPub, phase, qos byte, deadline time.Time) error {
	cfg := b.cfg
	window := max(2*cfg.inflight, 256)
	ring := make([]func(context.Context) error, window)
	head, n := 0, 0
	waitOldest := func() error {
		w := ring[head]
		ring[head] = nil
		head = (head + 1) % window
		n--
		if err := w(ctx); err != nil {
			return err
		}
		p.done++
		return nil
	}
	var stall *time.Timer
	start := time.Now()
	for seq := uint64(0); ; seq++ {
		if cfg.count > 0 {
			if seq >= uint64(cfg.count) {
				break
			}
		} else if !time.Now().Before(deadline) {
			break
		}
		if cfg.rate > 0 {
			due := start.Add(time.Duration(float64(seq) / cfg.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				}
			}
		}
		if cfg.window > 0 && p.fanout > 0 {
			if stall == nil {
				stall = time.NewTimer(time.Hour)
				defer stall.Stop()
			}
			if err := b.waitWindow(ctx, p, seq, stall); err != nil {
				return err
			}
		}
		payload := make([]byte, cfg.size)
		benchHeader{phase: phase, pub: uint32(p.idx), seq: seq, sent: b.clock.now()}.put(payload)
		wait, err := p.c.publishAsync(ctx, p.topic, payload, qos, false)
		if err != nil {
			return err
		}
		b.sent.Add(1)
		if n == window {
			if err := waitOldest(); err != nil {
				return err
			}
		}
		ring[(head+n)%window] = wait
		n++
	}
	for n > 0 {
		if err := waitOldest(); err != nil {
			return err
		}
	}
	return nil
}

// windowStall is how long a publisher waits for a delivery when its
// window is full before it counts the missing ones as lost and goes on (at
// QoS 0 the broker may drop them).
const windowStall = 200 * time.Millisecond

// waitWindow returns once fewer than the window of p's messages (seq sent so
// far) are in the air, or nothing was delivered for windowStall.
func (b *bench) waitWindow(ctx context.Context, p *benchPub, seq uint64, stall *time.Timer) error {
	limit := uint64(b.cfg.window)
	inAir := func() uint64 {
		due := seq * p.fanout
		got := p.delivered.Load()
		if got >= due {
			return 0
		}
		return (due - got + p.fanout - 1) / p.fanout
	}
	for inAir() >= limit {
		p.waiting.Store(true)
		if inAir() < limit { // a delivery came between the check and the flag
			p.waiting.Store(false)
			return nil
		}
		stall.Reset(windowStall)
		select {
		case <-p.wake:
			p.waiting.Store(false)
			stall.Stop() // Go 1.23 timers: nothing stale is left in C
		case <-stall.C:
			p.waiting.Store(false)
			return nil
		case <-ctx.Done():
			p.waiting.Store(false)
			return ctx.Err()
		}
	}
	return nil
}

type benchSub struct {
	idx    int
	filter string
	c      mqttConn
	b      *bench

	mu       sync.Mutex
	phase    byte
	total    histogram
	interval histogram
	seqs     []seqSet // by publisher
	received uint64   // deliveries, duplicates included
	dups     uint64
	stray    uint64 // not from this phase, or not a bench message
	last     int64  // clock time of the last delivery
}

// record is the subscribers' message handler.
func (s *benchSub) record(payload []byte) {
	now := s.b.clock.now()
	h, err := parseBenchHeader(payload)
	s.mu.Lock()
	if err != nil || h.phase != s.phase || int(h.pub) >= len(s.seqs) || !s.b.match[s.idx][h.pub] {
		s.stray++
		s.mu.Unlock()
		return
	}
	lat := now - h.sent
	s.total.record(lat)
	s.interval.record(lat)
	if s.seqs[h.pub].add(h.seq) {
		s.dups++
	}
	s.received++
	s.last = now
	s.mu.Unlock()
	s.b.received.Add(1)
	p := s.b.pubs[h.pub]
	p.delivered.Add(1)
	if p.waiting.Load() {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}
