package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/topic"
)

const benchUsage = `
Usage: tern bench [flags]

Measures what a broker and tern's client do under load. Each publisher sends
as fast as it can (or at -rate) while at most -window of its messages are in
the air, sent and not yet received by all its subscribers: the throughput is
then the system's, and the latency is not that of a queue the benchmark
filled itself. Each message carries its publisher, a sequence number and its
send time, so that every delivery is checked: latency (p50, p90, p99, max),
losses and duplicates, per QoS.

Without -url, bench starts tern's own broker in the process, on 127.0.0.1
with a free port, so it needs nothing else installed. With -url, it loads the
broker given (mosquitto, EMQX, another tern broker...).

The default run publishes at QoS 0, then 1, then 2, for 3 seconds each, from
4 publishers to 4 subscribers of "bench/#" (each message reaches every
subscriber): about 10 seconds in all.

Topics: in -topic, %i is the publisher's number (from 0); in -filter, %i is
the subscriber's number. "-topic bench/%i -filter bench/%i" pairs publisher i
with subscriber i; "-topic bench/t -filter bench/t" makes every subscriber
get every message on one topic.

Output: a live progress line on standard error when it is a terminal (plain
lines, one a second, otherwise; rates over the last half second, or the
average before the first), then a table per QoS on standard output (rates
averaged over the phase). Lost means deliveries that never came
(allowed at QoS 0, a broken guarantee at QoS 1 and 2); dup means deliveries
that came twice (allowed at QoS 1, a broken guarantee at QoS 2). -json prints
the same as one JSON object on standard output. -svg FILE draws throughput and latency over time.

Examples:
  tern bench
  tern bench -qos 1 -pub 8 -sub 8 -duration 10s
  tern bench -qos 2 -count 10000 -json
  tern bench -pub 10 -rate 1000 -size 1024 -svg bench.svg
  tern bench -topic bench/%i -filter bench/%i -pub 16 -sub 16
  tern bench -url mqtt://localhost:1883 -conns 1000
  tern bench -url mqtts://broker.local:8883 -cafile ca.crt -u alice -P secret

Exit status: 0 success; 1 error; 2 bad usage; 3 refused by the server;
5 a QoS guarantee was broken (a loss at QoS 1 or 2, a duplicate at QoS 2).
`

type benchFlags struct {
	url      string
	username string
	password string
	caFile   string
	certFile string
	keyFile  string
	insecure bool

	pubs     int
	subs     int
	idle     int
	qos      string
	size     int
	rate     float64
	count    int
	duration time.Duration
	timeout  time.Duration
	topic    string
	filter   string
	inflight int
	window   int
	jsonOut  bool
	svg      string
	quiet    bool
	cpuProf  string
}

// benchConfig is the checked form of benchFlags.
type benchConfig struct {
	url      string // "" for the embedded broker
	dial     *dialConfig
	pubs     int
	subs     int
	idle     int
	qos      []byte
	size     int
	rate     float64
	count    int
	duration time.Duration
	timeout  time.Duration
	topic    string
	filter   string
	inflight int
	window   int
}

func runBench(ctx context.Context, e *env, args []string) error {
	var f benchFlags
	fs := newFlagSet(e, "bench", benchUsage)
	registerBenchFlags(fs, &f)
	if err := parseFlags(e, fs, args, false); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	cfg, err := f.check(set)
	if err != nil {
		return err
	}

	// Progress on standard error, the results alone on standard output.
	progress, progressTTY := e.stderr, e.stderrTTY
	if f.quiet {
		progress = io.Discard
	}

	if f.cpuProf != "" {
		pf, err := os.Create(f.cpuProf)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", pathErr(err))
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("-cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}

	target := cfg.url
	var dropped func() int64
	if cfg.url == "" {
		eb, err := startEmbeddedBroker()
		if err != nil {
			return err
		}
		defer eb.close()
		cfg.dial.url = eb.url
		target = "embedded"
		dropped = func() int64 { return eb.stats().Dropped }
		if cfg.inflight == 0 {
			// Our broker has no inflight limit of mosquitto's to respect.
			cfg.inflight = embeddedInflight
		}
	}

	b := newBench(cfg, dial)
	b.progress, b.tty = progress, progressTTY
	b.dropped = dropped
	fmt.Fprintf(progress, "tern bench: %s, %d publishers (%s), %d subscribers (%s), QoS %s, %s\n",
		describeTarget(target, cfg.dial.url), cfg.pubs, cfg.topic, cfg.subs, cfg.filter, joinQoS(cfg.qos), describeLoad(cfg))
	rep, err := b.run(ctx)
	if rep != nil && len(rep.Phases) > 0 {
		rep.Target = target
		if f.svg != "" {
			if werr := writeSVGFile(f.svg, rep); werr != nil && err == nil {
				err = werr
			}
		}
		if f.jsonOut {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(rep); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			writeReport(e.stdout, rep)
		}
	}
	if err != nil {
		return err
	}
	if broken := rep.broken(); broken != "" {
		return &exitErr{code: exitBroken, err: errors.New(broken)}
	}
	return nil
}

func registerBenchFlags(fs *flag.FlagSet, f *benchFlags) {
	fs.StringVar(&f.url, "url", "", "broker `URL` to load (mqtt://, mqtts://, ws://, wss://, unix://); empty starts an embedded broker")
	fs.StringVar(&f.username, "u", "", "`username`")
	fs.StringVar(&f.password, "P", "", "`password`")
	fs.StringVar(&f.caFile, "cafile", "", "PEM `file` of the certificate authorities to trust")
	fs.StringVar(&f.certFile, "cert", "", "PEM `file` of the client certificate (with -key)")
	fs.StringVar(&f.keyFile, "key", "", "PEM `file` of the client private key (with -cert)")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the server's certificate (for testing only)")

	fs.IntVar(&f.pubs, "pub", 4, "publishing `connections`")
	fs.IntVar(&f.subs, "sub", 4, "subscribing `connections`")
	fs.IntVar(&f.idle, "conns", 0, "extra idle `connections` held open during the run (keepalive only)")
	fs.StringVar(&f.qos, "qos", "0,1,2", "QoS `levels` to run in turn, comma-separated")
	fs.IntVar(&f.size, "size", 64, "payload size in `bytes` (at least 24, the bench header)")
	fs.Float64Var(&f.rate, "rate", 0, "`messages` per second per publisher; 0 for as fast as the QoS flow allows")
	fs.IntVar(&f.count, "count", 0, "`messages` per publisher per QoS; when set, -duration is not used")
	fs.DurationVar(&f.duration, "duration", 3*time.Second, "publishing `time` per QoS")
	fs.DurationVar(&f.timeout, "timeout", time.Minute, "give up a QoS run after this `time` (with -count, or a slow broker)")
	fs.StringVar(&f.topic, "topic", "bench/%i", "topic `template` of the publishers; %i is the publisher's number")
	fs.StringVar(&f.filter, "filter", "bench/#", "filter `template` of the subscribers; %i is the subscriber's number")
	fs.IntVar(&f.inflight, "inflight", 0, "QoS 1 and 2 `messages` in flight per client; 0 for the client's default (64 with the embedded broker)")
	fs.IntVar(&f.window, "window", 50, "`messages` of each publisher in the air (sent, not yet received by all its subscribers); it waits beyond that, so that latency measures the system and not a queue of its own making; 0 for no limit")
	fs.BoolVar(&f.jsonOut, "json", false, "print the results as JSON")
	fs.StringVar(&f.svg, "svg", "", "write a plot of throughput and latency over time to `file` (SVG)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output")
	fs.StringVar(&f.cpuProf, "cpuprofile", "", "write a CPU profile of the run (clients and embedded broker) to `file`, for go tool pprof")
}

// benchMaxPacket is the largest packet the embedded broker and the bench
// subscribers accept: room for the largest -size with any topic.
const benchMaxPacket = 1<<20 + 1<<17

// embeddedInflight is the inflight window of clients and broker sessions
// when bench runs its own broker.
const embeddedInflight = 64

func (f *benchFlags) check(set map[string]bool) (*benchConfig, error) {
	cfg := &benchConfig{
		pubs: f.pubs, subs: f.subs, idle: f.idle, size: f.size, rate: f.rate,
		count: f.count, duration: f.duration, timeout: f.timeout,
		topic: f.topic, filter: f.filter, inflight: f.inflight, window: f.window,
	}
	switch {
	case f.pubs < 0 || f.subs < 0 || f.idle < 0:
		return nil, usagef("-pub, -sub and -conns must not be negative")
	case f.pubs == 0:
		return nil, usagef("-pub 0: bench needs at least one publisher")
	case f.pubs > 100000 || f.subs > 100000 || f.idle > 1000000:
		return nil, usagef("too many connections")
	case f.size < benchHeaderLen:
		return nil, usagef("-size %d: at least %d bytes (the bench header)", f.size, benchHeaderLen)
	case f.size > 1<<20:
		return nil, usagef("-size %d: at most 1 MiB", f.size)
	case f.rate < 0 || f.rate != f.rate:
		return nil, usagef("-rate must not be negative")
	case f.count < 0:
		return nil, usagef("-count must not be negative")
	case f.count == 0 && f.duration <= 0:
		return nil, usagef("-duration must be positive")
	case f.timeout <= 0:
		return nil, usagef("-timeout must be positive")
	case f.window < 0:
		return nil, usagef("-window must not be negative")
	case f.inflight < 0 || f.inflight > 65535:
		return nil, usagef("-inflight must be between 0 and 65535")
	}
	for _, s := range strings.Split(f.qos, ",") {
		q, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || q < 0 || q > 2 {
			return nil, usagef("-qos %q: want QoS levels 0, 1 or 2, comma-separated", f.qos)
		}
		cfg.qos = append(cfg.qos, byte(q))
	}
	if len(cfg.qos) > 200 {
		return nil, usagef("-qos: too many runs")
	}
	for i := range max(f.pubs, 1) {
		if err := topic.ValidName(expandIndex(f.topic, i)); err != nil {
			return nil, usagef("-topic %q: %v", f.topic, err)
		}
	}
	for i := range max(f.subs, 1) {
		if err := topic.ValidFilter(expandIndex(f.filter, i)); err != nil {
			return nil, usagef("-filter %q: %v", f.filter, err)
		}
	}
	cf := connFlags{
		host: "localhost", url: f.url, username: f.username, password: f.password,
		caFile: f.caFile, certFile: f.certFile, keyFile: f.keyFile, insecure: f.insecure,
		keepalive: 60 * time.Second, connectTimeout: 10 * time.Second,
		set: map[string]bool{"P": set["P"]},
	}
	if f.url == "" {
		if f.caFile != "" || f.certFile != "" || f.insecure {
			return nil, usagef("TLS flags need -url: the embedded broker listens on plain TCP")
		}
		cf.url = "mqtt://127.0.0.1:1" // replaced by the embedded broker's
	}
	d, err := cf.resolve()
	if err != nil {
		return nil, err
	}
	if f.url != "" {
		cfg.url = d.url
	}
	cfg.dial = d
	return cfg, nil
}

func describeTarget(target, url string) string {
	if target == "embedded" {
		return "embedded broker on " + url
	}
	return "broker " + redact(url)
}

func joinQoS(qos []byte) string {
	s := make([]string, len(qos))
	for i, q := range qos {
		s[i] = strconv.Itoa(int(q))
	}
	return strings.Join(s, ",")
}

// describeLoad says how much each run sends.
func describeLoad(cfg *benchConfig) string {
	s := fmt.Sprintf("%v each", cfg.duration)
	if cfg.count > 0 {
		s = fmt.Sprintf("%d messages per publisher each", cfg.count)
	}
	if cfg.rate > 0 {
		s += fmt.Sprintf(" at %s msg/s per publisher", si(cfg.rate))
	}
	return s
}

// expandIndex replaces %i in a topic template by i.
func expandIndex(tmpl string, i int) string {
	return strings.ReplaceAll(tmpl, "%i", strconv.Itoa(i))
}

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

func newBench(cfg *benchConfig, dial func(context.Context, *dialConfig, connOptions) (mqttConn, error)) *bench {
	var id [4]byte
	rand.Read(id[:])
	return &bench{cfg: cfg, dial: dial, progress: io.Discard, clock: clock{time.Now()}, runID: hex.EncodeToString(id[:])}
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

// Report is the result of a bench run, as printed by -json.
type Report struct {
	Target      string        `json:"target"` // "embedded" or the URL
	Publishers  int           `json:"publishers"`
	Subscribers int           `json:"subscribers"`
	Connections int           `json:"connections"` // publishers, subscribers and idle ones
	PayloadSize int           `json:"payload_size"`
	Topic       string        `json:"topic"`
	Filter      string        `json:"filter"`
	Rate        float64       `json:"rate,omitempty"` // per publisher, 0 for unlimited
	Inflight    int           `json:"inflight,omitempty"`
	Window      int           `json:"window"` // per publisher, 0 for none
	CPUs        int           `json:"cpus"`
	GoVersion   string        `json:"go"`
	Phases      []PhaseResult `json:"phases"`
}

// PhaseResult is what one QoS level did.
type PhaseResult struct {
	QoS        byte    `json:"qos"`
	Seconds    float64 `json:"seconds"`    // first publish to last delivery
	Sent       uint64  `json:"sent"`       // messages published (QoS flow complete)
	Expected   uint64  `json:"expected"`   // deliveries due: each message times its subscribers
	Received   uint64  `json:"received"`   // deliveries, duplicates included
	Lost       uint64  `json:"lost"`       // deliveries due that never came
	Duplicates uint64  `json:"duplicates"` // deliveries that came more than once
	Stray      uint64  `json:"stray"`      // late messages of an earlier run, foreign messages
	// BrokerDropped counts the messages the embedded broker dropped for
	// subscribers whose queue was full (absent with -url).
	BrokerDropped *int64   `json:"broker_dropped,omitempty"`
	SendRate      float64  `json:"send_rate"`    // messages per second, all publishers
	ReceiveRate   float64  `json:"receive_rate"` // deliveries per second, all subscribers
	Latency       Latency  `json:"latency_ms"`
	Series        []Sample `json:"series"` // one per second
	start         float64  // seconds since the bench began, for the plot
}

// Latency summarises delivery latencies in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Sample is one interval of a phase.
type Sample struct {
	T           float64 `json:"t"` // seconds since the phase began, end of the interval
	SendRate    float64 `json:"send_rate"`
	ReceiveRate float64 `json:"receive_rate"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// broken describes the QoS guarantees the report shows broken, or "".
func (r *Report) broken() string {
	var s []string
	for _, p := range r.Phases {
		if p.QoS > 0 && p.Lost > 0 {
			s = append(s, fmt.Sprintf("%d messages lost at QoS %d", p.Lost, p.QoS))
		}
		if p.QoS == 2 && p.Duplicates > 0 {
			s = append(s, fmt.Sprintf("%d duplicates at QoS 2", p.Duplicates))
		}
	}
	return strings.Join(s, ", ")
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
	}
	for si := range b.subs {
		for pi, p := range b.pubs {
			if b.match[si][pi] {
				res.Expected += p.done
			}
		}
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

// Ticker periods: the live line is redrawn every tick, the series gets a
// sample every sampleEvery, and a plain progress line is printed every
// lineEvery when the output is not a terminal.
const (
	tickEvery   = 250 * time.Millisecond
	sampleEvery = 500 * time.Millisecond
	lineEvery   = time.Second
)

// startTicker samples the phase into res.Series and shows progress: a line
// redrawn in place on a terminal, a line a second otherwise. The returned
// function stops it and ends the progress output.
func (b *bench) startTicker(res *PhaseResult, qos byte, start int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(tickEvery)
		defer t.Stop()
		lastT, lastLine := start, start
		var lastSent, lastRecv uint64
		var shown Sample // the latest sample, for the progress line
		take := func(now int64) {
			sent, recv := b.sent.Load(), b.received.Load()
			shown = b.sample(res, now-start, now-lastT, sent-lastSent, recv-lastRecv)
			lastT, lastSent, lastRecv = now, sent, recv
		}
		for {
			select {
			case <-t.C:
			case <-done:
				now := b.clock.now()
				if now-lastT >= int64(sampleEvery/2) { // a last, partial interval
					take(now)
				}
				if b.tty {
					fmt.Fprint(b.progress, "\r\033[K"+b.progressLine(qos, now-start, shown)+"\n")
				} else {
					// A last line, so that a log shows how each run ended.
					fmt.Fprintln(b.progress, b.progressLine(qos, now-start, shown)+"  done")
				}
				return
			}
			now := b.clock.now()
			if now-lastT >= int64(sampleEvery-tickEvery/2) {
				take(now)
			}
			if b.tty {
				fmt.Fprint(b.progress, "\r\033[K"+b.progressLine(qos, now-start, shown))
			} else if now-lastLine >= int64(lineEvery-tickEvery/2) {
				fmt.Fprintln(b.progress, b.progressLine(qos, now-start, shown))
				lastLine = now
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// sample appends to res.Series the figures of the interval of length dt
// ending at t (both since the phase began), in which sent messages were
// published and recv delivered.
func (b *bench) sample(res *PhaseResult, t, dt int64, sent, recv uint64) Sample {
	var h histogram
	for _, s := range b.subs {
		s.mu.Lock()
		h.merge(&s.interval)
		s.interval.reset()
		s.mu.Unlock()
	}
	secs := float64(dt) / 1e9
	smp := Sample{
		T:           float64(t) / 1e9,
		SendRate:    float64(sent) / secs,
		ReceiveRate: float64(recv) / secs,
		P50:         ms(h.quantile(0.5)),
		P99:         ms(h.quantile(0.99)),
		Max:         ms(h.max),
	}
	res.Series = append(res.Series, smp)
	return smp
}

func (b *bench) progressLine(qos byte, elapsed int64, s Sample) string {
	over := fmt.Sprintf("last %.1fs", sampleEvery.Seconds())
	if s.T == 0 && elapsed > 0 {
		// No sample yet: the averages so far.
		secs := float64(elapsed) / 1e9
		s.SendRate, s.ReceiveRate = float64(b.sent.Load())/secs, float64(b.received.Load())/secs
		over = "average so far"
	}
	return fmt.Sprintf("QoS %d  %5.1fs  sent %s (%s/s)  received %s (%s/s)  [rates: %s]  latency p50 %s p99 %s",
		qos, float64(elapsed)/1e9, group(b.sent.Load()), si(s.SendRate), group(b.received.Load()), si(s.ReceiveRate), over,
		fmtMS(s.P50), fmtMS(s.P99))
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

// group formats n with thousands separators: 5,414,232.
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// si formats a rate with a k or M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// fmtMS formats milliseconds with a precision that suits their size.
func fmtMS(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return strconv.FormatFloat(v*1000, 'f', 0, 64) + "µs"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
}

// writeReport prints the final table.
func writeReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\ntern bench: %d publishers (%s), %d subscribers (%s), %d-byte payloads, broker %s",
		r.Publishers, r.Topic, r.Subscribers, r.Filter, r.PayloadSize, r.Target)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", %s msg/s per publisher", si(r.Rate))
	}
	fmt.Fprintf(w, ", %d CPUs\n\n", r.CPUs)
	fmt.Fprintf(w, "%-4s %12s %9s %13s %9s %8s %8s %8s %8s %8s %8s\n",
		"QoS", "sent", "sent/s", "received", "recv/s", "lost", "dup", "p50", "p90", "p99", "max")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-4d %12s %9s %13s %9s %8s %8s %8s %8s %8s %8s\n",
			p.QoS, group(p.Sent), si(p.SendRate), group(p.Received), si(p.ReceiveRate), group(p.Lost), group(p.Duplicates),
			fmtMS(p.Latency.P50), fmtMS(p.Latency.P90), fmtMS(p.Latency.P99), fmtMS(p.Latency.Max))
	}
	var recv, lost, dups uint64
	for _, p := range r.Phases {
		recv, lost, dups = recv+p.Received, lost+p.Lost, dups+p.Duplicates
	}
	fmt.Fprintf(w, "\nsent/s and recv/s are averages over each phase. Every delivery checked by sequence number: %s received, %s lost, %s duplicated.\n", group(recv), group(lost), group(dups))
	for _, p := range r.Phases {
		if p.QoS == 0 && p.Lost > 0 {
			fmt.Fprintf(w, "QoS 0 may lose messages: a broker drops them for subscribers that fall behind.\n")
			break
		}
	}
	for _, p := range r.Phases {
		if p.BrokerDropped != nil && *p.BrokerDropped > 0 {
			fmt.Fprintf(w, "QoS %d: the broker dropped %d messages for subscribers whose queue was full.\n", p.QoS, *p.BrokerDropped)
		}
	}
	if s := r.broken(); s != "" {
		fmt.Fprintf(w, "BROKEN QoS GUARANTEE: %s\n", s)
		if r.Target != "embedded" {
			fmt.Fprintf(w, "Brokers may drop QoS 1 and 2 messages for a subscriber whose queue is full (mosquitto: max_queued_messages, 1000 by default); its log tells.\n")
		}
	}
}

// writeSVGFile writes the plot of r to name.
func writeSVGFile(name string, r *Report) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("-svg: %w", pathErr(err))
	}
	if err := writeSVG(f, r); err != nil {
		f.Close()
		return fmt.Errorf("-svg: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("-svg: %w", pathErr(err))
	}
	return nil
}
