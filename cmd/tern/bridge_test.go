package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
)

// TestBridgeKill runs `tern broker -data DIR -bridge FILE` as a child
// process bridged to a remote broker (mosquitto, then tern), while a local
// publisher sends QoS 1 and QoS 2 messages out and a remote publisher sends
// as many in; the broker is SIGKILLed and restarted on its data directory
// mid-run. At a subscriber of the remote broker and at a persistent
// subscriber of the local one, no QoS 1 message is missing and no QoS 2
// message arrives twice.
// TERN_BRIDGE_KILL_LONG=1 sends 10,000 of each through three kills.
func TestBridgeKill(t *testing.T) {
	n, kills := 1000, 1
	if os.Getenv("TERN_BRIDGE_KILL_LONG") == "1" {
		n, kills = 10000, 3
	}
	t.Run("mosquitto", func(t *testing.T) {
		m := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_inflight_messages 0", "max_queued_messages 0"}})
		bridgeKill(t, m.URL, m.Addr, n, kills)
	})
	t.Run("tern", func(t *testing.T) {
		// No limit on the queue of the bridge's session while it is away,
		// as mosquitto's max_queued_messages 0 above.
		srv := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true; o.MaxQueued = 1 << 20 })
		bridgeKill(t, srv.URL, srv.Addr, n, kills)
		if d := srv.Broker.Stats().Dropped; d != 0 {
			t.Errorf("the remote dropped %d messages", d)
		}
	})
}

// seqs counts the arrivals of each numbered message of one topic.
type seqs struct {
	mu   sync.Mutex
	seen []int
	all  int // numbers seen at least once
	dups int
}

func (s *seqs) add(payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := int(binary.BigEndian.Uint64(payload))
	if i >= len(s.seen) {
		return
	}
	s.seen[i]++
	if s.seen[i] == 1 {
		s.all++
	} else {
		s.dups++
	}
}

// missing lists the numbers not seen, up to 20.
func (s *seqs) missing() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m []int
	for i, c := range s.seen {
		if c == 0 && len(m) < 20 {
			m = append(m, i)
		}
	}
	return m
}

func (s *seqs) counts() (all, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all, s.dups
}

func bridgeKill(t *testing.T, remoteURL, remoteAddr string, n, kills int) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "bridges.conf")
	os.WriteFile(conf, []byte(strings.Join([]string{
		"connection kill",
		"address " + remoteAddr,
		"remote_clientid kill-bridge",
		"cleansession false",
		"restart_timeout 1",
		// No limit on the bridge's queue either: in the long run its
		// backlog passes the default 10,000 after the last restart.
		"max_queued 1000000",
		"topic k/# out 2",
		"topic i/# in 2",
		"",
	}, "\n")), 0o600)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := "mqtt://" + l.Addr().String()
	l.Close()
	// -max-queued: the local subscriber's session must not drop what
	// arrives while it reconnects.
	args := []string{"broker", "-log", "warn", "-listen", listen, "-data", filepath.Join(dir, "data"), "-bridge", conf, "-max-queued", "1000000"}

	q1, q2 := &seqs{seen: make([]int, n)}, &seqs{seen: make([]int, n)}
	sub, err := client.New(client.Options{
		Servers: []string{remoteURL}, ClientID: "kill-sub", KeepSession: true, MaxPending: 1000,
		DefaultHandler: func(m *client.Message) {
			if m.Topic == "k/q1" {
				q1.add(m.Payload)
			} else if m.Topic == "k/q2" {
				q2.add(m.Payload)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := sub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "k/#", QoS: 2}); err != nil {
		t.Fatal(err)
	}

	p := startTern(t, args...)
	p.waitFor(t, "listening", func() bool { return strings.Contains(p.stdout.String(), "listening on") })
	in1, in2 := &seqs{seen: make([]int, n)}, &seqs{seen: make([]int, n)}
	var probed atomic.Bool
	lsub, err := client.New(client.Options{
		Servers: []string{listen}, ClientID: "kill-lsub", KeepSession: true, MaxPending: 1000,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		DefaultHandler: func(m *client.Message) {
			if m.Topic == "i/probe" {
				probed.Store(true)
			} else if m.Topic == "i/q1" {
				in1.add(m.Payload)
			} else if m.Topic == "i/q2" {
				in2.add(m.Payload)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := lsub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer lsub.Close()
	if _, err := lsub.Subscribe(ctx, client.Subscription{Filter: "i/#", QoS: 2}); err != nil {
		t.Fatal(err)
	}
	rpub, err := client.New(client.Options{Servers: []string{remoteURL}, ClientID: "kill-rpub"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rpub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer rpub.Close()
	// The bridge's subscription on the remote is in place once a probe
	// comes through.
	bwait(t, 30*time.Second, "the bridge's incoming subscription", func() bool {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n-1))
		rpub.Publish(ctx, "i/probe", 1, false, b[:])
		time.Sleep(50 * time.Millisecond)
		return probed.Load()
	})
	pub, err := client.New(client.Options{
		Servers: []string{listen}, ClientID: "kill-pub", KeepSession: true,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	var acked sync.WaitGroup
	var mu sync.Mutex
	var done int
	var pubErr error
	send := func(c *client.Client, prefix string) {
		for i := range n {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(i))
			for _, q := range []byte{1, 2} {
				tk := c.PublishAsync(ctx, fmt.Sprintf("%s/q%d", prefix, q), q, false, b[:])
				acked.Add(1)
				go func() {
					defer acked.Done()
					err := tk.Wait(ctx)
					mu.Lock()
					done++
					if err != nil && pubErr == nil {
						pubErr = err
					}
					mu.Unlock()
				}()
			}
		}
	}
	go send(pub, "k")
	go send(rpub, "i")
	acks := func() int {
		mu.Lock()
		defer mu.Unlock()
		return done
	}
	for k := 1; k <= kills; k++ {
		at := 4 * n * k / (kills + 1)
		bwait(t, 2*time.Minute, fmt.Sprintf("%d acknowledgements", at), func() bool { return acks() >= at })
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		all1, _ := q1.counts()
		all2, _ := q2.counts()
		t.Logf("kill %d after %d acknowledgements; remote had %d QoS 1 and %d QoS 2", k, acks(), all1, all2)
		time.Sleep(300 * time.Millisecond)
		p = startTern(t, args...)
		p.waitFor(t, "listening", func() bool { return strings.Contains(p.stdout.String(), "listening on") })
	}
	bwait(t, 2*time.Minute, "every acknowledgement", func() bool { return acks() == 4*n })
	acked.Wait()
	if pubErr != nil {
		t.Fatalf("local publish: %v", pubErr)
	}
	for _, side := range []struct {
		name   string
		q1, q2 *seqs
	}{{"remote", q1, q2}, {"local", in1, in2}} {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			a1, _ := side.q1.counts()
			a2, _ := side.q2.counts()
			if a1 == n && a2 == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s subscriber: QoS 1 messages missing: %v; QoS 2: %v", side.name, side.q1.missing(), side.q2.missing())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(500 * time.Millisecond) // time for a late duplicate
	for _, side := range []struct {
		name   string
		q1, q2 *seqs
	}{{"remote", q1, q2}, {"local", in1, in2}} {
		a1, d1 := side.q1.counts()
		a2, d2 := side.q2.counts()
		t.Logf("%s subscriber: QoS 1 %d of %d (%d duplicates), QoS 2 %d of %d (%d duplicates)", side.name, a1, n, d1, a2, n, d2)
		side.q2.mu.Lock()
		for i, c := range side.q2.seen {
			if c > 1 {
				t.Errorf("%s: QoS 2 message %d arrived %d times", side.name, i, c)
			}
		}
		side.q2.mu.Unlock()
	}
}

func bwait(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBridgeFileRefused checks that tern broker refuses a bridge file with
// a key it cannot honour, naming the line, and starts nothing.
func TestBridgeFileRefused(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "bridges.conf")
	os.WriteFile(conf, []byte("connection a\naddress 127.0.0.1:1\ntopic # out\nlocal_username x\n"), 0o600)
	r := runTern(t, "", "broker", "-listen", "mqtt://127.0.0.1:0", "-bridge", conf)
	if r.code != 1 || !strings.Contains(r.stderr, "bridges.conf:4: local_username: not supported") || strings.Contains(r.stdout, "listening") {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1 and the line", r.code, r.stdout, r.stderr)
	}
}
