package main

// tern bench against its embedded broker, run as a user would (see
// e2e_test.go).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/internal/mosquitto"
)

// TestBenchNoLoss runs bench against its embedded broker at every QoS with
// a fixed count and checks the JSON report: every message delivered once to
// every subscriber.
func TestBenchNoLoss(t *testing.T) {
	const pubs, subs, count = 3, 2, 2000
	svg := filepath.Join(t.TempDir(), "bench.svg")
	r := runTern(t, "", "bench", "-count", fmt.Sprint(count), "-pub", fmt.Sprint(pubs), "-sub", fmt.Sprint(subs),
		"-qos", "0,1,2", "-size", "100", "-json", "-svg", svg)
	if r.code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("bench -json printed %q: %v", r.stdout, err)
	}
	if rep.Target != "embedded" || rep.Publishers != pubs || rep.Subscribers != subs || rep.PayloadSize != 100 {
		t.Errorf("report header %+v", rep)
	}
	if len(rep.Phases) != 3 {
		t.Fatalf("%d phases, want 3", len(rep.Phases))
	}
	for i, p := range rep.Phases {
		want := uint64(pubs * subs * count)
		if p.QoS != byte(i) || p.Sent != pubs*count || p.Expected != want || p.Received != want || p.Lost != 0 || p.Duplicates != 0 || p.Stray != 0 {
			t.Errorf("QoS %d: sent %d expected %d received %d lost %d dup %d stray %d; want %d sent, %d received, no loss",
				p.QoS, p.Sent, p.Expected, p.Received, p.Lost, p.Duplicates, p.Stray, pubs*count, want)
		}
		if !(p.Latency.P50 > 0 && p.Latency.P50 <= p.Latency.P90 && p.Latency.P90 <= p.Latency.P99 && p.Latency.P99 <= p.Latency.Max) {
			t.Errorf("QoS %d: latency %+v out of order", p.QoS, p.Latency)
		}
		if p.SendRate <= 0 || p.ReceiveRate <= 0 {
			t.Errorf("QoS %d: rates %v %v", p.QoS, p.SendRate, p.ReceiveRate)
		}
	}
	// Progress goes to stderr with -json, as plain lines (not a terminal).
	if strings.Contains(r.stderr, "\r") || !strings.Contains(r.stderr, "QoS 2") {
		t.Errorf("progress on stderr = %q", r.stderr)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	checkSVG(t, b)
}

// TestBenchText checks the table of a short run of the default shape.
func TestBenchText(t *testing.T) {
	r := runTern(t, "", "bench", "-duration", "300ms", "-pub", "2", "-sub", "2")
	if r.code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"QoS", "sent/s", "p99", "\n0 ", "\n1 ", "\n2 ", "broker embedded"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "\r") || strings.Contains(r.stdout, "[rates:") {
		t.Error("progress on standard output")
	}
	if !strings.Contains(r.stderr, "[rates: last 0.5s]") || strings.Contains(r.stderr, "\r") {
		t.Errorf("progress on standard error, plain lines with labelled rates: %q", r.stderr)
	}
}

// TestBenchURL runs bench against tern broker and mosquitto by URL.
func TestBenchURL(t *testing.T) {
	urls := startBroker(t, []string{"-max-queued", "100000"}, "mqtt://127.0.0.1:0", "ws://127.0.0.1:0/mqtt")
	t.Run("tern", func(t *testing.T) { benchURL(t, urls[0]) })
	t.Run("tern-ws", func(t *testing.T) { benchURL(t, urls[1]) })
	t.Run("mosquitto", func(t *testing.T) {
		b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_inflight_messages 0", "max_queued_messages 0"}})
		benchURL(t, b.URL)
	})
}

func benchURL(t *testing.T, url string) {
	r := runTern(t, "", "bench", "-url", url, "-count", "500", "-qos", "1,2", "-json", "-quiet", "-conns", "20")
	if r.code != 0 {
		t.Fatalf("bench: exit %d\n%s", r.code, r.stderr)
	}
	var rep Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Target != url || rep.Connections != 28 {
		t.Errorf("target %q, %d connections", rep.Target, rep.Connections)
	}
	for _, p := range rep.Phases {
		if p.Lost != 0 || p.Duplicates != 0 || p.Received != 500*4*4 {
			t.Errorf("QoS %d: received %d, lost %d, dup %d", p.QoS, p.Received, p.Lost, p.Duplicates)
		}
	}
	if r.stderr != "" {
		t.Errorf("-quiet printed %q", r.stderr)
	}
}
