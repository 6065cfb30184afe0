package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/topic"
)

// fakeNet is an in-memory broker for the bench engine: publishAsync
// delivers at once to the matching subscribers, except what fault says to
// drop (0 copies) or duplicate (2 copies).
type fakeNet struct {
	mu    sync.Mutex
	conns []*fakeConn
	fault func(pub uint32, seq uint64, sub int) (copies int)
	stuck uint64 // when non-zero, flows from this sequence number on never complete
}

type fakeConn struct {
	net     *fakeNet
	id      int // subscriber number, from the client id
	onMsg   func(message)
	filters []string
}

func (n *fakeNet) dial(ctx context.Context, d *dialConfig, o connOptions) (mqttConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := &fakeConn{net: n, onMsg: o.onMessage, id: -1}
	if i := strings.LastIndex(d.clientID, "-s"); i >= 0 {
		var id int
		for _, r := range d.clientID[i+2:] {
			id = id*10 + int(r-'0')
		}
		c.id = id
	}
	n.conns = append(n.conns, c)
	return c, nil
}

func (c *fakeConn) publish(ctx context.Context, tp string, payload []byte, qos byte, retain bool) error {
	w, _ := c.publishAsync(ctx, tp, payload, qos, retain)
	return w(ctx)
}

func (c *fakeConn) publishAsync(ctx context.Context, tp string, payload []byte, qos byte, retain bool) (func(context.Context) error, error) {
	h, _ := parseBenchHeader(payload)
	c.net.mu.Lock()
	conns := append([]*fakeConn(nil), c.net.conns...)
	c.net.mu.Unlock()
	for _, s := range conns {
		for _, f := range s.filters {
			if !topic.Match(f, tp) {
				continue
			}
			copies := 1
			if c.net.fault != nil {
				copies = c.net.fault(h.pub, h.seq, s.id)
			}
			for range copies {
				s.onMsg(message{topic: tp, payload: payload, qos: qos})
			}
			break
		}
	}
	if c.net.stuck != 0 && h.seq >= c.net.stuck {
		return func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}, nil
	}
	return func(context.Context) error { return nil }, nil
}

func (c *fakeConn) subscribe(ctx context.Context, subs []subscription) error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	for _, s := range subs {
		c.filters = append(c.filters, s.filter)
	}
	return nil
}

func (c *fakeConn) messages() <-chan message             { return nil }
func (c *fakeConn) err() error                           { return nil }
func (c *fakeConn) disconnect(ctx context.Context) error { return nil }
func (c *fakeConn) close()                               {}

func testBenchConfig(pubs, subs, count int, qos ...byte) *benchConfig {
	return &benchConfig{
		dial: &dialConfig{url: "mqtt://fake"}, pubs: pubs, subs: subs, qos: qos, size: 40,
		count: count, timeout: 10 * time.Second, topic: "bench/%i", filter: "bench/#",
	}
}

// TestBenchCounts injects known losses and duplicates and checks that the
// report counts exactly those.
func TestBenchCounts(t *testing.T) {
	n := &fakeNet{fault: func(pub uint32, seq uint64, sub int) int {
		switch {
		case pub == 1 && sub == 0 && seq%10 == 3: // 10 losses of 100
			return 0
		case pub == 2 && sub == 1 && seq < 7: // 7 duplicates
			return 2
		}
		return 1
	}}
	b := newBench(testBenchConfig(3, 2, 100, 1, 2), n.dial)
	rep, err := b.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Phases) != 2 {
		t.Fatalf("%d phases", len(rep.Phases))
	}
	for _, p := range rep.Phases {
		if p.Sent != 300 || p.Expected != 600 || p.Received != 600-10+7 || p.Lost != 10 || p.Duplicates != 7 || p.Stray != 0 {
			t.Errorf("QoS %d: sent %d expected %d received %d lost %d dup %d stray %d; want 300 600 597 10 7 0",
				p.QoS, p.Sent, p.Expected, p.Received, p.Lost, p.Duplicates, p.Stray)
		}
	}
	if got, want := rep.broken(), "10 messages lost at QoS 1, 10 messages lost at QoS 2, 7 duplicates at QoS 2"; got != want {
		t.Errorf("broken() = %q, want %q", got, want)
	}
}

// TestBenchTopology checks per-publisher topics and filters: subscriber i
// gets publisher i's messages only.
func TestBenchTopology(t *testing.T) {
	n := &fakeNet{}
	cfg := testBenchConfig(3, 2, 50, 0)
	cfg.filter = "bench/%i"
	b := newBench(cfg, n.dial)
	rep, err := b.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Phases[0]
	if p.Sent != 150 || p.Expected != 100 || p.Received != 100 || p.Lost != 0 {
		t.Errorf("sent %d expected %d received %d lost %d; want 150 100 100 0", p.Sent, p.Expected, p.Received, p.Lost)
	}
	if rep.broken() != "" {
		t.Errorf("broken() = %q", rep.broken())
	}
}

// TestBenchStray checks that messages of another run or phase are counted
// apart and not as deliveries.
func TestBenchStray(t *testing.T) {
	b := newBench(testBenchConfig(1, 1, 1, 0), (&fakeNet{}).dial)
	b.pubs = []*benchPub{{idx: 0, wake: make(chan struct{}, 1)}}
	b.match = [][]bool{{true}}
	s := &benchSub{b: b, phase: 2, seqs: make([]seqSet, 1)}
	payload := make([]byte, benchHeaderLen)
	for _, h := range []benchHeader{{phase: 1}, {phase: 2, pub: 5}, {phase: 2, seq: 9}} {
		h.put(payload)
		s.record(payload)
	}
	s.record([]byte("not a bench message at all"))
	if s.stray != 3 || s.received != 1 {
		t.Errorf("stray %d, received %d; want 3, 1", s.stray, s.received)
	}
}

// TestBenchWindow checks that a publisher whose messages do not come back
// waits for its window, then goes on after the stall time.
func TestBenchWindow(t *testing.T) {
	n := &fakeNet{fault: func(pub uint32, seq uint64, sub int) int { return 0 }} // everything lost
	cfg := testBenchConfig(1, 1, 12, 0)
	cfg.window = 5
	b := newBench(cfg, n.dial)
	start := time.Now()
	rep, err := b.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Messages 5 to 11 each wait windowStall: at least 7 stalls.
	if d := time.Since(start); d < 7*windowStall {
		t.Errorf("run took %v, less than 7 stalls of %v", d, windowStall)
	}
	if p := rep.Phases[0]; p.Lost != 12 || p.Received != 0 {
		t.Errorf("lost %d received %d", p.Lost, p.Received)
	}
}

// TestBenchTimeout checks that a broker that stops acknowledging ends the
// run at -timeout with the figures so far and an error that says so.
func TestBenchTimeout(t *testing.T) {
	n := &fakeNet{stuck: 30}
	cfg := testBenchConfig(2, 1, 100, 1, 2)
	cfg.duration, cfg.timeout = 100*time.Millisecond, 200*time.Millisecond
	b := newBench(cfg, n.dial)
	rep, err := b.run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the QoS 1 run did not end within") {
		t.Fatalf("err = %v", err)
	}
	if len(rep.Phases) != 1 || rep.Phases[0].Sent != 60 {
		t.Errorf("phases %+v; want one, with the 60 flows that completed", rep.Phases)
	}
}

func TestBenchDialError(t *testing.T) {
	want := errors.New("connect to mqtt://fake: connection refused")
	b := newBench(testBenchConfig(2, 2, 1, 0), func(context.Context, *dialConfig, connOptions) (mqttConn, error) { return nil, want })
	if _, err := b.run(context.Background()); !errors.Is(err, want) {
		t.Errorf("err = %v, want %v", err, want)
	}
}

// TestBenchProgress checks the live line on a terminal (redrawn in place)
// and plain lines otherwise.
func TestBenchProgress(t *testing.T) {
	for _, tty := range []bool{false, true} {
		cfg := testBenchConfig(1, 1, 0, 1)
		cfg.duration = 1300 * time.Millisecond
		cfg.rate = 200
		b := newBench(cfg, (&fakeNet{}).dial)
		var out bytes.Buffer
		b.progress, b.tty = &out, tty
		rep, err := b.run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s := out.String()
		if tty != strings.Contains(s, "\r\033[K") {
			t.Errorf("tty %v: output %q", tty, s)
		}
		if !strings.Contains(s, "QoS 1") || !strings.Contains(s, "received") || !strings.HasSuffix(s, "\n") {
			t.Errorf("tty %v: output %q", tty, s)
		}
		if len(rep.Phases[0].Series) < 1 {
			t.Errorf("tty %v: no samples", tty)
		}
		// -rate 200 for 1.3 s: about 260 messages, not thousands.
		if p := rep.Phases[0]; p.Sent < 100 || p.Sent > 300 {
			t.Errorf("tty %v: sent %d at -rate 200 in 1.3 s", tty, p.Sent)
		}
	}
}

func TestWriteReport(t *testing.T) {
	rep := &Report{Target: "embedded", Publishers: 2, Subscribers: 3, PayloadSize: 64, Topic: "bench/%i", Filter: "bench/#", CPUs: 2,
		Phases: []PhaseResult{
			{QoS: 0, Sent: 1000, Received: 2990, Lost: 10, SendRate: 12345, ReceiveRate: 1.5e6, Latency: Latency{P50: 0.25, P90: 1.5, P99: 12.25, Max: 1500}},
			{QoS: 2, Sent: 1000, Received: 3001, Duplicates: 1},
		}}
	var out bytes.Buffer
	writeReport(&out, rep)
	s := out.String()
	for _, want := range []string{
		"2 publishers (bench/%i), 3 subscribers (bench/#), 64-byte payloads, broker embedded",
		"0           1,000     12.3k         2,990     1.50M       10        0    250µs   1.50ms   12.2ms    1.50s",
		"Every delivery checked by sequence number: 5,991 received, 10 lost, 1 duplicated.",
		"QoS 0 may lose messages",
		"BROKEN QoS GUARANTEE: 1 duplicates at QoS 2",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

func TestSVG(t *testing.T) {
	rep := &Report{Target: "<embedded & co>", Publishers: 1, Subscribers: 1, PayloadSize: 64,
		Phases: []PhaseResult{
			{QoS: 0, Seconds: 2, start: 0, Series: []Sample{{T: 1, SendRate: 1000, ReceiveRate: 900, P50: 1, P99: 3}, {T: 2, SendRate: 1100, ReceiveRate: 1000, P50: 1.2, P99: 4}}},
			{QoS: 1, Seconds: 1, start: 2.5, Series: []Sample{{T: 1, SendRate: 500, ReceiveRate: 500, P50: 2, P99: 5}}},
		}}
	var out bytes.Buffer
	if err := writeSVG(&out, rep); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, out.Bytes())
	if n := strings.Count(out.String(), "<polyline"); n != 8 { // 4 series × 2 phases
		t.Errorf("%d polylines, want 8", n)
	}
	// Nothing recorded: still a valid picture.
	out.Reset()
	if err := writeSVG(&out, &Report{}); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, out.Bytes())
}

// checkSVG checks that b is well-formed XML with an svg root and no NaN.
func checkSVG(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("root element %q", root)
	}
	if bytes.Contains(b, []byte("NaN")) || bytes.Contains(b, []byte("Inf")) {
		t.Errorf("SVG holds NaN or Inf:\n%s", b)
	}
}

func TestAxis(t *testing.T) {
	for _, c := range []struct {
		v         float64
		max, step float64
	}{
		{0, 1, 0.2},
		{1, 1, 0.2},
		{7, 8, 2},
		{95000, 100000, 20000},
		{123456, 150000, 50000},
		{0.003, 0.003, 0.001},
	} {
		a := newAxis(c.v)
		if !near(a.max, c.max) || !near(a.step, c.step) {
			t.Errorf("newAxis(%v) = %+v, want max %v step %v", c.v, a, c.max, c.step)
		}
		if n := len(a.ticks()); n < 2 || n > 11 {
			t.Errorf("newAxis(%v): %d ticks", c.v, n)
		}
	}
	if got := (axis{}).label(150000); got != "150k" {
		t.Errorf("label = %q", got)
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 5414232: "5,414,232", 18446744073709551615: "18,446,744,073,709,551,615"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
