package broker_test

import (
	"log/slog"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// TestDropLogAccountsForBurst drops a burst of messages, shorter than the
// interval between log lines about drops, for an offline persistent
// session: the log is rate-limited, but its last line about drops gives the
// same total as Stats, so that no drop goes unlogged.
func TestDropLogAccountsForBurst(t *testing.T) {
	logs := new(lockedBuffer)
	srv := newServer(t, func(o *broker.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		o.MaxQueued = 10
	})
	c := connect(t, srv, "away", false, false)
	c.subscribe(1, "burst/#", 1)
	c.disconnect()
	waitFor(t, "the subscriber gone", func() bool { return srv.Broker.Stats().Connected == 0 })

	const n = 500
	for i := range n {
		if err := srv.Broker.Publish(&packet.Publish{Topic: []byte("burst/" + strconv.Itoa(i)), QoS: 1, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	dropped := srv.Broker.Stats().Dropped
	if dropped < n-10 {
		t.Fatalf("Stats().Dropped = %d after %d messages for a queue of 10", dropped, n)
	}
	totals := regexp.MustCompile(`queue full[^\n]* dropped=(\d+)`)
	var lines [][]string
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines = totals.FindAllStringSubmatch(logs.String(), -1)
		if len(lines) > 0 && lines[len(lines)-1][1] == strconv.FormatInt(dropped, 10) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(lines) == 0 {
		t.Fatalf("no log line about drops; log:\n%s", logs.String())
	}
	if last := lines[len(lines)-1][1]; last != strconv.FormatInt(dropped, 10) {
		t.Fatalf("last log line about drops says dropped=%s, Stats says %d; log:\n%s", last, dropped, logs.String())
	}
	if len(lines) > 3 {
		t.Errorf("%d log lines about %d drops in a burst: not rate-limited", len(lines), dropped)
	}
}
