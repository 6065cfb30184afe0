package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
)

// remoteBroker is the broker a bridge connects to in a test: tern's or a
// real mosquitto.
type remoteBroker struct {
	name string
	url  string
	tern *mqtttest.Server
	mosq *mosquitto.Broker
}

// remotes starts each kind of remote broker for fn, as subtests.
func eachRemote(t *testing.T, fn func(t *testing.T, r remoteBroker)) {
	t.Run("tern", func(t *testing.T) {
		srv := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true })
		fn(t, remoteBroker{name: "tern", url: srv.URL, tern: srv})
	})
	t.Run("mosquitto", func(t *testing.T) {
		m := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_inflight_messages 0", "max_queued_messages 0"}})
		fn(t, remoteBroker{name: "mosquitto", url: m.URL, mosq: m})
	})
}

// testLogger logs to the test when TERN_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TERN_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// bridged starts a local tern broker bridged to url with the rules.
func bridged(t *testing.T, url string, tune func(*broker.Bridge), rules ...broker.BridgeTopic) *mqtttest.Server {
	t.Helper()
	b := broker.Bridge{
		Name:         "edge",
		URLs:         []string{url},
		ClientID:     "edge-" + strings.ReplaceAll(t.Name(), "/", "-"),
		Topics:       rules,
		ReconnectMin: 50 * time.Millisecond,
		ReconnectMax: 500 * time.Millisecond,
	}
	if tune != nil {
		tune(&b)
	}
	srv := mqtttest.NewServer(t, func(o *broker.Options) {
		o.Bridges = []broker.Bridge{b}
		o.Logger = testLogger(t)
	})
	bwait(t, 10*time.Second, "bridge up", func() bool { return srv.Broker.Stats().Bridges[0].Connected })
	return srv
}

func bwait(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// conn connects a client to url; it is closed when the test ends.
func conn(t testing.TB, url, id string, tune func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{Servers: []string{url}, ClientID: id, MaxPending: 1000}
	if tune != nil {
		tune(&o)
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// msg is a message as a collector keeps it.
type msg struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// collector records the messages a client receives.
type collector struct {
	mu   sync.Mutex
	msgs []msg
}

func collect(t testing.TB, url, id, filter string, qos byte) *collector {
	t.Helper()
	col := new(collector)
	c := conn(t, url, id, func(o *client.Options) {
		o.DefaultHandler = func(m *client.Message) {
			col.mu.Lock()
			col.msgs = append(col.msgs, msg{Topic: m.Topic, Payload: append([]byte(nil), m.Payload...), QoS: m.QoS, Retain: m.Retain})
			col.mu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, client.Subscription{Filter: filter, QoS: qos}); err != nil {
		t.Fatal(err)
	}
	return col
}

func (c *collector) all() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]msg(nil), c.msgs...)
}

// count returns how many messages have topic and payload.
func (c *collector) count(topic, payload string) int {
	n := 0
	for _, m := range c.all() {
		if m.Topic == topic && string(m.Payload) == payload {
			n++
		}
	}
	return n
}

// find returns the first message on topic with payload.
func (c *collector) find(topic, payload string) (msg, bool) {
	for _, m := range c.all() {
		if m.Topic == topic && string(m.Payload) == payload {
			return m, true
		}
	}
	return msg{}, false
}

func publish(t testing.TB, c *client.Client, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Publish(ctx, topic, qos, retain, []byte(payload)); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// probe publishes on topic through pub until col sees it: the bridge's
// subscriptions are in place.
func probe(t testing.TB, pub *client.Client, col *collector, topic, seen string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		payload := fmt.Sprintf("probe-%d", i)
		publish(t, pub, topic, 1, false, payload)
		end := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(end) {
			if col.count(seen, payload) > 0 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe on %s never seen as %s", topic, seen)
		}
	}
}

// TestBridgeTopics checks topics out, in and both, with prefixes, at QoS
// 0, 1 and 2, against tern's broker and mosquitto as the remote: each
// message arrives once, on its mapped topic, at its QoS, and nothing comes
// back to the side it was published on. The bridging broker is a client of
// the remote and a server to its own clients, and each side of every flow
// is checked [MQTT-7.0.0-1].
func TestBridgeTopics(t *testing.T) {
	eachRemote(t, func(t *testing.T, r remoteBroker) {
		local := bridged(t, r.url, nil,
			broker.BridgeTopic{Pattern: "up/#", Direction: broker.BridgeOut, QoS: 2, LocalPrefix: "site/", RemotePrefix: "fleet/a/"},
			broker.BridgeTopic{Pattern: "down/#", Direction: broker.BridgeIn, QoS: 2, LocalPrefix: "site/", RemotePrefix: "fleet/a/"},
			broker.BridgeTopic{Pattern: "chat/#", Direction: broker.BridgeBoth, QoS: 2},
			broker.BridgeTopic{Direction: broker.BridgeIn, QoS: 1, LocalPrefix: "site/clock", RemotePrefix: "fleet/clock"},
		)
		lsub := collect(t, local.URL, "lsub", "#", 2)
		rsub := collect(t, r.url, "rsub", "#", 2)
		lpub := conn(t, local.URL, "lpub", nil)
		rpub := conn(t, r.url, "rpub", nil)
		probe(t, rpub, lsub, "fleet/a/down/probe", "site/down/probe")
		probe(t, lpub, rsub, "site/up/probe", "fleet/a/up/probe")

		for qos := byte(0); qos <= 2; qos++ {
			q := fmt.Sprint(qos)
			publish(t, lpub, "site/up/x", qos, false, "out"+q)
			publish(t, rpub, "fleet/a/down/y", qos, false, "in"+q)
			publish(t, lpub, "chat/l", qos, false, "bothL"+q)
			publish(t, rpub, "chat/r", qos, false, "bothR"+q)
			publish(t, rpub, "fleet/clock", qos, false, "clock"+q)
		}
		type want struct {
			col           *collector
			topic, prefix string
			qos           func(byte) byte
		}
		same := func(q byte) byte { return q }
		atMost1 := func(q byte) byte { return min(q, 1) }
		wants := []want{
			{rsub, "fleet/a/up/x", "out", same},
			{lsub, "site/down/y", "in", same},
			{rsub, "chat/l", "bothL", same},
			{lsub, "chat/r", "bothR", same},
			{lsub, "site/clock", "clock", atMost1},
		}
		bwait(t, 10*time.Second, "every message", func() bool {
			for _, w := range wants {
				for qos := byte(0); qos <= 2; qos++ {
					if w.col.count(w.topic, w.prefix+fmt.Sprint(qos)) == 0 {
						return false
					}
				}
			}
			return true
		})
		time.Sleep(200 * time.Millisecond) // time for a duplicate or an echo to show
		for _, w := range wants {
			for qos := byte(0); qos <= 2; qos++ {
				p := w.prefix + fmt.Sprint(qos)
				m, _ := w.col.find(w.topic, p)
				if n := w.col.count(w.topic, p); n != 1 {
					t.Errorf("%s %q: seen %d times, want 1", w.topic, p, n)
				}
				if m.QoS != w.qos(qos) {
					t.Errorf("%s %q: QoS %d, want %d", w.topic, p, m.QoS, w.qos(qos))
				}
			}
		}
		// Nothing went the wrong way or came back.
		for _, m := range lsub.all() {
			if strings.HasPrefix(m.Topic, "fleet/") || m.Topic == "chat/l" && lsub.count(m.Topic, string(m.Payload)) != 1 {
				t.Errorf("local subscriber got %s %q", m.Topic, m.Payload)
			}
		}
		for _, m := range rsub.all() {
			if strings.HasPrefix(m.Topic, "site/") || m.Topic == "chat/r" && rsub.count(m.Topic, string(m.Payload)) != 1 {
				t.Errorf("remote subscriber got %s %q", m.Topic, m.Payload)
			}
		}
		st := local.Broker.Stats().Bridges[0]
		if st.Forwarded < 6 || st.Received < 9 || st.Name != "edge" || !st.Connected {
			t.Errorf("stats %+v: want at least 6 forwarded and 9 received", st)
		}
	})
}

// TestBridgeParentLevel: the filter "a/#" matches "a" too [MQTT-4.7.1-2].
// Under the prefixes "a/" and "b/" a bridge maps it to "b/a", and "b"
// coming in to "a/b", as mosquitto's bridge does; taking the prefix off a
// name shorter than it crashed the broker, in the publisher's reader (out)
// or the bridge's client (in).
func TestBridgeParentLevel(t *testing.T) {
	eachRemote(t, func(t *testing.T, r remoteBroker) {
		local := bridged(t, r.url, nil, broker.BridgeTopic{Pattern: "#", Direction: broker.BridgeBoth, QoS: 1, LocalPrefix: "a/", RemotePrefix: "b/"})
		lsub := collect(t, local.URL, "lsub", "#", 1)
		rsub := collect(t, r.url, "rsub", "#", 1)
		lpub := conn(t, local.URL, "lpub", nil)
		rpub := conn(t, r.url, "rpub", nil)
		probe(t, lpub, rsub, "a/probe", "b/probe")
		probe(t, rpub, lsub, "b/probe", "a/probe")
		publish(t, lpub, "a", 1, false, "out")
		publish(t, rpub, "b", 1, false, "in")
		bwait(t, 10*time.Second, `"a" out as "b/a" and "b" in as "a/b"`, func() bool {
			return rsub.count("b/a", "out") == 1 && lsub.count("a/b", "in") == 1
		})
	})
}

// TestBridgeRetain checks that RETAIN crosses the bridge as published, as
// with mosquitto's bridges: a retained message published on either side is
// kept as retained on the other, for subscribers that come later. Coming in,
// this needs a remote that accepted the bridge mark (both remotes here).
func TestBridgeRetain(t *testing.T) {
	eachRemote(t, func(t *testing.T, r remoteBroker) {
		local := bridged(t, r.url, nil,
			broker.BridgeTopic{Pattern: "r/#", Direction: broker.BridgeBoth, QoS: 1, LocalPrefix: "l/", RemotePrefix: "x/"})
		lsub := collect(t, local.URL, "lsub", "l/#", 1)
		rsub := collect(t, r.url, "rsub", "x/#", 1)
		lpub := conn(t, local.URL, "lpub", nil)
		rpub := conn(t, r.url, "rpub", nil)
		probe(t, rpub, lsub, "x/r/probe", "l/r/probe")
		publish(t, lpub, "l/r/from-local", 1, true, "L")
		publish(t, rpub, "x/r/from-remote", 1, true, "R")
		bwait(t, 10*time.Second, "both live", func() bool {
			return rsub.count("x/r/from-local", "L") == 1 && lsub.count("l/r/from-remote", "R") == 1
		})
		// Live, the subscribers of the far side get RETAIN 0 [MQTT-3.3.1-9];
		// late subscribers get the retained copies [MQTT-3.3.1-6].
		late := collect(t, r.url, "rlate", "x/r/from-local", 1)
		llate := collect(t, local.URL, "llate", "l/r/from-remote", 1)
		bwait(t, 10*time.Second, "retained copies", func() bool {
			return late.count("x/r/from-local", "L") == 1 && llate.count("l/r/from-remote", "R") == 1
		})
		if m, _ := late.find("x/r/from-local", "L"); !m.Retain {
			t.Error("remote late subscriber: RETAIN 0, want 1")
		}
		if m, _ := llate.find("l/r/from-remote", "R"); !m.Retain {
			t.Error("local late subscriber: RETAIN 0, want 1")
		}
		if m, _ := rsub.find("x/r/from-local", "L"); m.Retain {
			t.Error("remote live subscriber: RETAIN 1, want 0")
		}
	})
}
