package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBrokerLogsDrops: at -log warn, tern broker logs the messages it drops
// for a full queue, and its last line about them gives their exact total,
// however short the burst.
func TestBrokerLogsDrops(t *testing.T) {
	b, urls := startBrokerProcess(t, []string{"-max-queued", "5"}, "mqtt://127.0.0.1:0")
	conn := []string{"-url", urls[0]}
	// A persistent subscriber that takes one message and goes away.
	sub := startTern(t, append([]string{"sub", "-d", "-c", "-i", "away", "-q", "1", "-t", "drops/#", "-C", "1"}, conn...)...)
	sub.waitFor(t, "the subscription", func() bool { return strings.Contains(sub.stderr.String(), "subscribed to") })
	if r := runTern(t, "", append([]string{"pub", "-t", "drops/first", "-m", "1", "-q", "1"}, conn...)...); r.code != 0 {
		t.Fatalf("tern pub: exit %d: %s", r.code, r.stderr)
	}
	if code := sub.wait(t); code != 0 {
		t.Fatalf("tern sub: exit %d: %s", code, sub.stderr)
	}
	// 50 more while it is away: 5 queued, 45 dropped.
	if r := runTern(t, "", append([]string{"pub", "-t", "drops/x", "-m", "m", "-q", "1", "-repeat", "50"}, conn...)...); r.code != 0 {
		t.Fatalf("tern pub: exit %d: %s", r.code, r.stderr)
	}
	totals := regexp.MustCompile(`queue full[^\n]* dropped=(\d+)`)
	b.waitFor(t, "a log line with all 45 drops", func() bool {
		m := totals.FindAllStringSubmatch(b.stderr.String(), -1)
		return len(m) > 0 && m[len(m)-1][1] == "45"
	})
	time.Sleep(1200 * time.Millisecond) // no line after the last drop's
	if m := totals.FindAllStringSubmatch(b.stderr.String(), -1); m[len(m)-1][1] != "45" || len(m) > 3 {
		t.Fatalf("log lines about drops: %q\nstderr: %s", m, b.stderr)
	}
}
