package broker_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// tally is a client that counts what it writes and reads, packet by packet,
// so that a test knows exactly what the broker received and sent.
type tally struct {
	t    testing.TB
	name string
	c    net.Conn
	r    *packet.Reader

	mu                            sync.Mutex
	bytesOut, packetsOut          int64
	bytesIn, packetsIn, publishIn int64
	liveIn                        int64 // PUBLISH without RETAIN: routed messages
}

func dialTally(t testing.TB, addr, id string, subs ...packet.Subscription) *tally {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tl := &tally{t: t, name: id, c: c, r: packet.NewReader(c, 0)}
	tl.send(&packet.Connect{ClientID: []byte(id), CleanSession: true})
	if _, ok := tl.recv().(*packet.Connack); !ok {
		t.Fatalf("%s: no CONNACK", id)
	}
	if len(subs) > 0 {
		tl.send(&packet.Subscribe{PacketID: 1, Subscriptions: subs})
		if _, ok := tl.recv().(*packet.Suback); !ok {
			t.Fatalf("%s: no SUBACK", id)
		}
	}
	return tl
}

// send writes p; it may be called from another goroutine than recv.
func (tl *tally) send(p packet.Packet) {
	b, err := p.Append(nil)
	if err != nil {
		tl.t.Errorf("%s: %v", tl.name, err)
		return
	}
	tl.c.SetWriteDeadline(time.Now().Add(scriptTimeout))
	if _, err := tl.c.Write(b); err != nil {
		tl.t.Errorf("%s: write: %v", tl.name, err)
		return
	}
	tl.mu.Lock()
	tl.bytesOut += int64(len(b))
	tl.packetsOut++
	tl.mu.Unlock()
}

// recv reads the next packet, or returns nil at the end of the connection.
func (tl *tally) recv() packet.Packet {
	tl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := tl.r.Next()
	if err != nil {
		if err != io.EOF {
			tl.t.Errorf("%s: read: %v", tl.name, err)
		}
		return nil
	}
	tl.mu.Lock()
	tl.bytesIn += int64(len(b))
	tl.packetsIn++
	tl.mu.Unlock()
	p, err := packet.Decode(b)
	if err != nil {
		tl.t.Fatalf("%s: %v", tl.name, err)
	}
	if pub, ok := p.(*packet.Publish); ok {
		tl.mu.Lock()
		tl.publishIn++
		if !pub.Retain {
			tl.liveIn++
		}
		tl.mu.Unlock()
		return pub.Clone()
	}
	return p
}

// disconnect sends DISCONNECT and reads until the broker closes.
func (tl *tally) disconnect() {
	tl.send(&packet.Disconnect{})
	for tl.recv() != nil {
	}
}

// scrape reads the metrics endpoint and checks the text format: each sample
// after its # HELP and # TYPE lines, counters named _total.
func scrape(t testing.TB, url string) map[string]int64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != broker.MetricsContentType {
		t.Errorf("Content-Type %q", ct)
	}
	m := map[string]int64{}
	help, kind := "", ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "# HELP "):
			help = f[2]
		case strings.HasPrefix(line, "# TYPE "):
			if f[2] != help || (f[3] != "counter" && f[3] != "gauge") {
				t.Fatalf("bad TYPE line %q after HELP of %s", line, help)
			}
			kind = f[3]
		default:
			if len(f) != 2 || f[0] != help || (kind == "counter") != strings.HasSuffix(f[0], "_total") {
				t.Fatalf("bad sample %q (HELP %s, TYPE %s)", line, help, kind)
			}
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("sample %q: %v", line, err)
			}
			m[f[0]] = v
			help, kind = "", ""
		}
	}
	return m
}

// TestSysAndMetrics reads the $SYS topics and the metrics endpoint while
// messages flow, and checks the counters against what the clients sent and
// received, byte for byte and packet for packet.
func TestSysAndMetrics(t *testing.T) {
	start := time.Now()
	srv := newServer(t, func(o *broker.Options) { o.SysInterval = 20 * time.Millisecond })
	web := httptest.NewServer(srv.Broker.MetricsHandler()) // 127.0.0.1
	defer web.Close()

	// m watches $SYS; w holds wildcard filters, which match no $ topic
	// [MQTT-4.7.2-1]; s subscribes to the traffic.
	m := dialTally(t, srv.Addr, "m", packet.Subscription{Filter: []byte("$SYS/#")})
	w := dialTally(t, srv.Addr, "w", packet.Subscription{Filter: []byte("#")}, packet.Subscription{Filter: []byte("+/broker/uptime")})
	s := dialTally(t, srv.Addr, "s", packet.Subscription{Filter: []byte("t/#"), QoS: 1})
	p := dialTally(t, srv.Addr, "p")

	var mu sync.Mutex
	sys := map[string]string{}
	history := map[string][]int64{}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // m
		defer wg.Done()
		for {
			pk := m.recv()
			if pk == nil {
				return
			}
			if _, ok := pk.(*packet.Unsuback); ok {
				continue
			}
			pub := pk.(*packet.Publish)
			if pub.QoS != 0 {
				t.Errorf("$SYS message at QoS %d", pub.QoS)
			}
			mu.Lock()
			sys[string(pub.Topic)] = string(pub.Payload)
			if n, err := strconv.ParseInt(string(pub.Payload), 10, 64); err == nil {
				history[string(pub.Topic)] = append(history[string(pub.Topic)], n)
			}
			mu.Unlock()
		}
	}()
	const n = 300
	go func() { // w: everything but $SYS
		defer wg.Done()
		for {
			pk := w.recv()
			if pk == nil {
				return
			}
			if pub, ok := pk.(*packet.Publish); ok && pub.Topic[0] == '$' {
				t.Errorf("w got %s through a wildcard filter [MQTT-4.7.2-1]", pub.Topic)
			}
		}
	}()
	var acked atomic.Int64 // PUBACKs s has written
	go func() {            // s acknowledges
		defer wg.Done()
		for {
			pk := s.recv()
			if pk == nil {
				return
			}
			if pub, ok := pk.(*packet.Publish); ok {
				s.send(&packet.Puback{PacketID: pub.PacketID})
				acked.Add(1)
			}
		}
	}()

	p.send(&packet.Publish{Topic: []byte("r/1"), Payload: []byte("one"), Retain: true})
	p.send(&packet.Publish{Topic: []byte("r/2"), Payload: []byte("two"), Retain: true})
	// Forged $SYS values are acknowledged and dropped.
	p.send(&packet.Publish{Topic: []byte(broker.SysUptime), Payload: []byte("forged"), QoS: 1, PacketID: 1, Retain: true})
	if pk := p.recv(); pk == nil || pk.Type() != packet.PUBACK {
		t.Fatalf("p: got %v, want PUBACK", pk)
	}
	var scrapes []map[string]int64
	for i := range n {
		p.send(&packet.Publish{Topic: []byte(fmt.Sprintf("t/%d", i%3)), Payload: make([]byte, i%50), QoS: 1, PacketID: uint16(i + 2)})
		if pk := p.recv(); pk == nil || pk.Type() != packet.PUBACK {
			t.Fatalf("p: got %v, want PUBACK", pk)
		}
		if i%50 == 0 {
			scrapes = append(scrapes, scrape(t, web.URL)) // while messages flow
			time.Sleep(25 * time.Millisecond)             // several $SYS publications during the traffic
		}
	}
	// Everything routed: s has acknowledged all (its last PUBACK written,
	// so that the sums below count it; it failed once in CI when only
	// s's reads were awaited), w has read all.
	waitFor(t, "the deliveries", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return acked.Load() == n && w.liveIn == n+2
	})

	// The traffic is over; m only reads. What the broker received is now
	// fixed, and $SYS must show it exactly.
	all := []*tally{m, w, s, p}
	sum := func(f func(*tally) int64) int64 {
		var total int64
		for _, tl := range all {
			tl.mu.Lock()
			total += f(tl)
			tl.mu.Unlock()
		}
		return total
	}
	want := map[string]string{
		broker.SysClientsConnected: "4",
		broker.SysClientsTotal:     "4",
		broker.SysClientsOffline:   "0",
		broker.SysSubscriptions:    "4",
		broker.SysRetainedMessages: "2",
		broker.SysPublishReceived:  strconv.Itoa(n + 2),
		broker.SysPublishDropped:   "0",
		broker.SysMessagesReceived: strconv.FormatInt(sum(func(tl *tally) int64 { return tl.packetsOut }), 10),
		broker.SysBytesReceived:    strconv.FormatInt(sum(func(tl *tally) int64 { return tl.bytesOut }), 10),
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var diff []string
		for k, v := range want {
			if sys[k] != v {
				diff = append(diff, fmt.Sprintf("%s = %q, want %q", k, sys[k], v))
			}
		}
		version, uptime := sys[broker.SysVersion], sys[broker.SysUptime]
		mu.Unlock()
		if len(diff) == 0 {
			if !strings.HasPrefix(version, "tern version ") {
				t.Errorf("%s = %q", broker.SysVersion, version)
			}
			secs, ok := strings.CutSuffix(uptime, " seconds")
			if n, err := strconv.Atoi(secs); !ok || err != nil || n < 0 || n > int(time.Since(start).Seconds()) {
				t.Errorf("%s = %q, want N seconds, N at most the test's time", broker.SysUptime, uptime)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("$SYS after the traffic:\n%s", strings.Join(diff, "\n"))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// m leaves $SYS, so that nothing is sent any more, and everyone
	// disconnects: the counters of both directions are then exact.
	m.send(&packet.Unsubscribe{PacketID: 9, Filters: [][]byte{[]byte("$SYS/#")}})
	for _, tl := range all {
		tl.send(&packet.Disconnect{}) // the readers see the end
	}
	wg.Wait()
	for p.recv() != nil {
	}
	waitFor(t, "the disconnections", func() bool { st := srv.Broker.Stats(); return st.Disconnected == 4 && st.Connections == 0 })
	got := scrape(t, web.URL)
	wantMetrics := map[string]int64{
		"tern_connections":               0,
		"tern_clients_connected":         0,
		"tern_sessions":                  0,
		"tern_subscriptions":             0,
		"tern_retained_messages":         2,
		"tern_messages_received_total":   n + 2,
		"tern_messages_delivered_total":  sum(func(tl *tally) int64 { return tl.liveIn }),
		"tern_messages_dropped_total":    0,
		"tern_messages_discarded_total":  0,
		"tern_messages_sent_total":       sum(func(tl *tally) int64 { return tl.publishIn }),
		"tern_packets_received_total":    sum(func(tl *tally) int64 { return tl.packetsOut }),
		"tern_packets_sent_total":        sum(func(tl *tally) int64 { return tl.packetsIn }),
		"tern_bytes_received_total":      sum(func(tl *tally) int64 { return tl.bytesOut }),
		"tern_bytes_sent_total":          sum(func(tl *tally) int64 { return tl.bytesIn }),
		"tern_connections_refused_total": 0,
		"tern_disconnections_total":      4,
	}
	for k, v := range wantMetrics {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if _, ok := got["tern_uptime_seconds"]; !ok || len(got) != len(wantMetrics)+1 {
		t.Errorf("metrics: %v", got)
	}
	if m.liveIn < 5 {
		t.Errorf("m got %d $SYS updates, want them every 20ms", m.liveIn)
	}

	// Counters never go down, in $SYS as in the scrapes.
	mu.Lock()
	defer mu.Unlock()
	for topic, h := range history {
		for i := 1; i < len(h); i++ {
			if h[i] < h[i-1] && !strings.Contains(topic, "/clients/") && topic != broker.SysSubscriptions {
				t.Errorf("%s went from %d to %d", topic, h[i-1], h[i])
			}
		}
	}
	if len(history[broker.SysMessagesReceived]) < 3 {
		t.Errorf("%s published %d times while messages flowed", broker.SysMessagesReceived, len(history[broker.SysMessagesReceived]))
	}
	scrapes = append(scrapes, got)
	for i := 1; i < len(scrapes); i++ {
		for k, v := range scrapes[i] {
			if strings.HasSuffix(k, "_total") && v < scrapes[i-1][k] {
				t.Errorf("%s went from %d to %d", k, scrapes[i-1][k], v)
			}
		}
	}
	if scrapes[0]["tern_messages_received_total"] >= scrapes[len(scrapes)-2]["tern_messages_received_total"] {
		t.Errorf("the scrapes during the traffic saw no progress: %d then %d", scrapes[0]["tern_messages_received_total"], scrapes[len(scrapes)-2]["tern_messages_received_total"])
	}
}

// TestSysOff: with the zero SysInterval nothing is published on $SYS, and
// clients may publish there.
func TestSysOff(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	s.subscribe(1, "$SYS/#", 0)
	p := connect(t, srv, "p", true, false)
	p.publish(pub(broker.SysUptime, "mine", 0, 0))
	checkPublish(t, s.expectPublish(), broker.SysUptime, "mine", 0, false)
	s.expectNothing()
}

// TestSysRetained: a subscriber to a $SYS topic gets its current value at
// once, with RETAIN set, and the $SYS topics are not counted among the
// clients' retained messages.
func TestSysRetained(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) { o.SysInterval = time.Hour })
	s := connect(t, srv, "s", true, false)
	var got *packet.Publish
	for range 50 { // the first publication may still be on its way
		s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte(broker.SysVersion)}}})
		s.expect(&packet.Suback{PacketID: 1, ReturnCodes: []byte{0}})
		if b, err := s.next(50 * time.Millisecond); err == nil {
			p, _ := packet.Decode(b)
			got = p.(*packet.Publish).Clone()
			break
		}
		s.r = packet.NewReader(s.c, 0)
	}
	if got == nil || !got.Retain || !strings.HasPrefix(string(got.Payload), "tern version ") {
		t.Fatalf("got %v, want the retained version", got)
	}
	if n := srv.Broker.Stats().Retained; n != 0 {
		t.Errorf("Stats.Retained = %d, want 0", n)
	}
}
