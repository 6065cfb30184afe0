package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/topic"
)

// How tern bench runs: the bench and its state, connecting every client,
// the phases (one per QoS level: publish, wait for the deliveries, count),
// and disconnecting.

// bench runs the phases of one benchmark.
type bench struct {
	cfg      *benchConfig
	dial     func(ctx context.Context, d *dialConfig, o connOptions) (mqttConn, error)
	progress io.Writer
	tty      bool
	clock    clock
	runID    string

	pubs  []*benchPub
	subs  []*benchSub
	idle  []mqttConn
	match [][]bool // match[s][p]: subscriber s gets publisher p's messages

	// dropped, when set, returns the messages the broker has dropped so
	// far for slow subscribers (the embedded broker tells).
	dropped func() int64

	sent     atomic.Uint64 // publishes issued in the current phase
	received atomic.Uint64 // deliveries recorded in the current phase
}

func newBench(cfg *benchConfig, dial func(context.Context, *dialConfig, connOptions) (mqttConn, error)) *bench {
	var id [4]byte
	rand.Read(id[:])
	return &bench{cfg: cfg, dial: dial, progress: io.Discard, clock: clock{time.Now()}, runID: hex.EncodeToString(id[:])}
}

// run connects every client, runs each phase, and disconnects. It returns
// the report of the phases done, even on error.
func (b *bench) run(ctx context.Context) (*Report, error) {
	cfg := b.cfg
	rep := &Report{
		Publishers: cfg.pubs, Subscribers: cfg.subs, Connections: cfg.pubs + cfg.subs + cfg.idle,
		PayloadSize: cfg.size, Topic: cfg.topic, Filter: cfg.filter, Rate: cfg.rate,
		Inflight: cfg.inflight, Window: cfg.window, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
	}
	defer b.closeAll()
	if err := b.connect(ctx); err != nil {
		return nil, err
	}
	for i, q := range cfg.qos {
		res, err := b.phase(ctx, byte(i+1), q)
		if res != nil {
			rep.Phases = append(rep.Phases, *res)
		}
		if err != nil {
			return rep, err
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.disconnectAll(dctx)
	return rep, nil
}

// connect opens every connection, a few at a time, and subscribes.
func (b *bench) connect(ctx context.Context) error {
	cfg := b.cfg
	maxQoS := byte(0)
	for _, q := range cfg.qos {
		maxQoS = max(maxQoS, q)
	}
	for i := range cfg.pubs {
		b.pubs = append(b.pubs, &benchPub{idx: i, topic: expandIndex(cfg.topic, i), wake: make(chan struct{}, 1)})
	}
	b.match = make([][]bool, cfg.subs)
	for i := range cfg.subs {
		s := &benchSub{idx: i, filter: expandIndex(cfg.filter, i), b: b}
		b.subs = append(b.subs, s)
		b.match[i] = make([]bool, cfg.pubs)
		for j, p := range b.pubs {
			b.match[i][j] = topic.Match(s.filter, p.topic)
			if b.match[i][j] {
				p.fanout++
			}
		}
	}
	if cfg.subs > 0 && !slices.ContainsFunc(b.pubs, func(p *benchPub) bool { return p.fanout > 0 }) {
		return usagef("no -filter %q matches a -topic %q: the subscribers would get nothing", cfg.filter, cfg.topic)
	}
	b.idle = make([]mqttConn, cfg.idle)

	type job struct {
		id  string
		o   connOptions
		set func(mqttConn)
	}
	var jobs []job
	for _, s := range b.subs {
		jobs = append(jobs, job{fmt.Sprintf("tern-bench-%s-s%d", b.runID, s.idx),
			connOptions{clean: true, maxInflight: cfg.inflight, maxPacket: benchMaxPacket, onMessage: func(m message) { s.record(m.payload) }},
			func(c mqttConn) { s.c = c }})
	}
	for _, p := range b.pubs {
		jobs = append(jobs, job{fmt.Sprintf("tern-bench-%s-p%d", b.runID, p.idx),
			connOptions{clean: true, maxInflight: cfg.inflight}, func(c mqttConn) { p.c = c }})
	}
	for i := range cfg.idle {
		jobs = append(jobs, job{fmt.Sprintf("tern-bench-%s-i%d", b.runID, i),
			connOptions{clean: true}, func(c mqttConn) { b.idle[i] = c }})
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan job)
	)
	for range min(16, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				d := *cfg.dial
				d.clientID = j.id
				c, err := b.dial(cctx, &d, j.o)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					j.set(c)
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		select {
		case next <- j:
		case <-cctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, s := range b.subs {
		if err := s.c.subscribe(ctx, []subscription{{s.filter, maxQoS}}); err != nil {
			return err
		}
	}
	return nil
}

// phase runs one QoS level: publish, wait for the deliveries, count.
func (b *bench) phase(parent context.Context, phase byte, qos byte) (*PhaseResult, error) {
	cfg := b.cfg
	ctx, cancel := context.WithTimeout(parent, cfg.timeout+cfg.duration)
	defer cancel()
	for _, s := range b.subs {
		s.mu.Lock()
		s.phase = phase
		s.total.reset()
		s.interval.reset()
		s.seqs = make([]seqSet, cfg.pubs)
		s.received, s.dups, s.stray, s.last = 0, 0, 0, 0
		s.mu.Unlock()
	}
	b.sent.Store(0)
	b.received.Store(0)
	for _, p := range b.pubs {
		p.done = 0
		p.delivered.Store(0)
	}

	res := &PhaseResult{QoS: qos}
	var dropped0 int64
	if b.dropped != nil {
		dropped0 = b.dropped()
	}
	start := b.clock.now()
	res.start = float64(start) / 1e9
	stopTicker := b.startTicker(res, qos, start)

	// Publish.
	var wg sync.WaitGroup
	errs := make([]error, len(b.pubs))
	deadline := time.Now().Add(cfg.duration)
	for i, p := range b.pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.publishLoop(ctx, p, phase, qos, deadline)
		}()
	}
	wg.Wait()
	sendEnd := b.clock.now()
	// A run that outlasts -timeout is reported with what it did so far: a
	// broker that stops delivering or acknowledging is a finding, not a
	// failure of the bench.
	var timedOut error
	if err := errors.Join(errs...); err != nil {
		if parent.Err() != nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			stopTicker()
			return nil, firstErr(errs)
		}
		timedOut = fmt.Errorf("the QoS %d run did not end within -duration plus -timeout (%v): the broker stopped delivering or acknowledging", qos, cfg.duration+cfg.timeout)
	}
	for _, p := range b.pubs {
		res.Sent += p.done
		res.Expected += p.done * p.fanout
	}

	// Wait for the deliveries: all of them, or none for a second (lost),
	// or the timeout.
	if timedOut == nil {
		b.drain(ctx, res.Expected)
	}
	stopTicker()
	if err := b.lostConn(); err != nil {
		return nil, err
	}

	if b.dropped != nil {
		d := b.dropped() - dropped0
		res.BrokerDropped = &d
	}
	var all histogram
	last := sendEnd
	for _, s := range b.subs {
		s.mu.Lock()
		s.phase = 0 // what comes now is late
		all.merge(&s.total)
		res.Received += s.received
		res.Duplicates += s.dups
		res.Stray += s.stray
		for pi, p := range b.pubs {
			if b.match[s.idx][pi] && s.seqs[pi].distinct < p.done {
				res.Lost += p.done - s.seqs[pi].distinct
			}
		}
		last = max(last, s.last)
		s.mu.Unlock()
	}
	res.Seconds = float64(last-start) / 1e9
	if d := float64(sendEnd-start) / 1e9; d > 0 {
		res.SendRate = float64(res.Sent) / d
	}
	if res.Seconds > 0 {
		res.ReceiveRate = float64(res.Received) / res.Seconds
	}
	res.Latency = Latency{
		P50: ms(all.quantile(0.50)), P90: ms(all.quantile(0.90)), P99: ms(all.quantile(0.99)),
		Max: ms(all.max), Mean: all.mean() / 1e6,
	}
	return res, timedOut
}

// firstErr returns the first non-nil error: publishers that fail together
// usually fail for the same reason, said once is enough.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// drain waits until the subscribers have recorded expected distinct
// deliveries, or nothing arrived for drainIdle, or ctx ends.
func (b *bench) drain(ctx context.Context, expected uint64) {
	const drainIdle = time.Second
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastCount, lastChange := b.received.Load(), time.Now()
	for {
		var distinct uint64
		for _, s := range b.subs {
			s.mu.Lock()
			for i := range s.seqs {
				distinct += s.seqs[i].distinct
			}
			s.mu.Unlock()
		}
		if distinct >= expected {
			return
		}
		if n := b.received.Load(); n != lastCount {
			lastCount, lastChange = n, time.Now()
		} else if time.Since(lastChange) >= drainIdle {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// lostConn reports the first publisher or subscriber whose connection was
// lost: its losses would otherwise read as the broker's.
func (b *bench) lostConn() error {
	for _, p := range b.pubs {
		if err := p.c.err(); err != nil {
			return fmt.Errorf("publisher %d: connection lost: %s", p.idx, trimErr(err))
		}
	}
	for _, s := range b.subs {
		if err := s.c.err(); err != nil {
			return fmt.Errorf("subscriber %d: connection lost: %s", s.idx, trimErr(err))
		}
	}
	return nil
}

func (b *bench) disconnectAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range b.conns() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.disconnect(ctx)
		}()
	}
	wg.Wait()
}

func (b *bench) closeAll() {
	for _, c := range b.conns() {
		c.close()
	}
}

func (b *bench) conns() []mqttConn {
	var cs []mqttConn
	for _, p := range b.pubs {
		if p.c != nil {
			cs = append(cs, p.c)
		}
	}
	for _, s := range b.subs {
		if s.c != nil {
			cs = append(cs, s.c)
		}
	}
	for _, c := range b.idle {
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}
