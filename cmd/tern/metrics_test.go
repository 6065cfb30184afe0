package main

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/packet"
)

// TestBrokerMetrics runs tern broker with -metrics and -sys-interval, sends
// messages, and reads the counters at /metrics and on $SYS.
func TestBrokerMetrics(t *testing.T) {
	p, urls := startBrokerProcess(t, []string{"-metrics", "127.0.0.1:0", "-sys-interval", "0.05"}, "mqtt://127.0.0.1:0")
	var metricsURL string
	p.waitFor(t, "the metrics line", func() bool {
		for _, line := range strings.Split(p.stdout.String(), "\n") {
			if u, ok := strings.CutPrefix(line, "tern broker: metrics on "); ok {
				metricsURL = u
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") || !strings.HasSuffix(metricsURL, "/metrics") {
		t.Fatalf("metrics URL %q", metricsURL)
	}
	addr := strings.TrimPrefix(urls[0], "mqtt://")

	sys := dialMQTT(t, addr, "sys", "", "")
	sys.subscribe("$SYS/broker/publish/messages/received", "$SYS/broker/version")
	pub := dialMQTT(t, addr, "pub", "", "")
	const n = 25
	for i := range n {
		pub.publish(fmt.Sprintf("t/%d", i), "x", 1, false)
	}
	// The $SYS value reaches n: read until it does (published every 50ms).
	version := ""
	for seen := ""; seen != strconv.Itoa(n); {
		var m *packet.Publish
		if len(sys.pending) > 0 {
			m, sys.pending = sys.pending[0], sys.pending[1:]
		} else {
			m, _ = sys.recv().(*packet.Publish)
		}
		if m == nil {
			t.Fatal("sys: got a packet that is not PUBLISH")
		}
		switch string(m.Topic) {
		case "$SYS/broker/version":
			version = string(m.Payload)
		default:
			seen = string(m.Payload)
		}
	}
	if !strings.HasPrefix(version, "tern version ") {
		t.Errorf("$SYS/broker/version = %q", version)
	}

	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			got[f[0]] = f[1]
		}
	}
	for k, v := range map[string]string{
		"tern_messages_received_total": strconv.Itoa(n),
		"tern_clients_connected":       "2",
		"tern_subscriptions":           "2",
		"tern_messages_dropped_total":  "0",
	} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if resp, err := http.Get(strings.TrimSuffix(metricsURL, "metrics") + "other"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("/other: %s", resp.Status)
		}
	}
}

// sysTopics subscribes to $SYS/# at addr and returns the retained values
// that come at once, by topic.
func sysTopics(t *testing.T, addr string) map[string]string {
	t.Helper()
	c := dialMQTT(t, addr, "sys-names", "", "")
	c.subscribe("$SYS/#")
	got := map[string]string{}
	take := func(p *packet.Publish) {
		if p.QoS != 1 {
			t.Errorf("%s at QoS %d, want 1: the subscription's", p.Topic, p.QoS)
		}
		c.send(&packet.Puback{PacketID: p.PacketID})
		if p.Retain {
			got[string(p.Topic)] = string(p.Payload)
		}
	}
	for _, p := range c.pending {
		take(p)
	}
	for {
		c.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		p, err := c.r.ReadPacket()
		if err != nil {
			return got // quiet: the retained values are in
		}
		if pub, ok := p.(*packet.Publish); ok {
			take(pub)
		}
	}
}

// TestSysNamesAsMosquitto checks that every $SYS topic tern broker publishes
// is one mosquitto 2.0.11 publishes too, under the same name, with a value
// of the same form, retained, at the QoS of the subscription (both store
// them at QoS 2).
func TestSysNamesAsMosquitto(t *testing.T) {
	mq := mosquitto.Start(t, mosquitto.Config{})
	_, urls := startBrokerProcess(t, nil, "mqtt://127.0.0.1:0")
	mosq := sysTopics(t, mq.Addr)
	tern := sysTopics(t, strings.TrimPrefix(urls[0], "mqtt://"))
	if len(tern) < 14 {
		t.Errorf("tern published %d $SYS topics: %v", len(tern), tern)
	}
	uptime := regexp.MustCompile(`^[0-9]+ seconds$`)
	for topic, v := range tern {
		mv, ok := mosq[topic]
		switch {
		case !ok:
			t.Errorf("%s = %q: mosquitto has no such topic", topic, v)
		case topic == "$SYS/broker/version":
			if !strings.HasPrefix(v, "tern version ") || !strings.HasPrefix(mv, "mosquitto version ") {
				t.Errorf("%s: tern %q, mosquitto %q", topic, v, mv)
			}
		case topic == "$SYS/broker/uptime":
			if !uptime.MatchString(v) || !uptime.MatchString(mv) {
				t.Errorf("%s: tern %q, mosquitto %q", topic, v, mv)
			}
		default:
			_, err1 := strconv.ParseInt(v, 10, 64)
			_, err2 := strconv.ParseInt(mv, 10, 64)
			if err1 != nil || err2 != nil {
				t.Errorf("%s: tern %q, mosquitto %q: want integers", topic, v, mv)
			}
		}
	}
}
