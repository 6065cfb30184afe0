package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/mqtt/topic"
)

// The tern bench command: its usage and flags, their checks, and runBench,
// which starts the embedded broker when there is no -url, runs the bench
// (bench_run.go) and prints its report (bench_report.go).

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
