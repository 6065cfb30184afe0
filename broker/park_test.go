//go:build linux

package broker_test

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// On Linux an idle TCP connection holds no goroutine (it is parked), and
// a parked connection still reads, answers, keeps its keepalive and ends.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	srv := newServer(t)
	const n = 200
	base := runtime.NumGoroutine()
	conns := make([]*script, n)
	for i := range conns {
		conns[i] = connect(t, srv, "idle"+string(rune('a'+i%26))+string(rune('a'+i/26)), true, false)
	}
	var extra int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if extra = runtime.NumGoroutine() - base; extra < n/10 {
			break
		}
	}
	if extra >= n/10 {
		t.Fatalf("%d idle connections hold %d goroutines", n, extra)
	}
	// Parked connections wake for their bytes.
	conns[0].subscribe(1, "t", 1)
	conns[1].publish(pub("t", "hello", 1, 1))
	checkPublish(t, conns[0].expectPublish(), "t", "hello", 1, false)
	for _, c := range conns {
		c.sendRaw([]byte{0xc0, 0x00}) // PINGREQ
	}
	for _, c := range conns {
		c.expect(&packet.Pingresp{})
	}
}

// A connection that sends part of a packet and stops holds a goroutine
// waiting for the rest, bounded by its keepalive [MQTT-3.1.2-24]: the will
// is published when 1.5 periods pass.
func TestPartialPacketKeepAlive(t *testing.T) {
	srv := newServer(t)
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "will", 0)
	s := dial(t, srv, "slow")
	s.send(&packet.Connect{ClientID: []byte("slow"), CleanSession: true, KeepAlive: 1, Will: true, WillTopic: []byte("will"), WillMessage: []byte("late")})
	s.expect(&packet.Connack{})
	time.Sleep(300 * time.Millisecond)  // parked meanwhile
	s.sendRaw([]byte{0x30, 0x10, 0x00}) // a PUBLISH cut after 3 of its 18 bytes
	s.expectClose()                     // within scriptTimeout, 5 s
	checkPublish(t, w.expectPublish(), "will", "late", 0, false)
}

// A parked connection taken over by a new one with its client identifier
// is closed and its will published [MQTT-3.1.4-2]; Shutdown ends parked
// connections without their wills.
func TestParkedTakeOverAndShutdown(t *testing.T) {
	srv := newServer(t)
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "will/#", 0)
	old := dial(t, srv, "old")
	old.send(&packet.Connect{ClientID: []byte("dev"), CleanSession: true, Will: true, WillTopic: []byte("will/dev"), WillMessage: []byte("taken")})
	old.expect(&packet.Connack{})
	time.Sleep(100 * time.Millisecond) // parked meanwhile
	neu := dial(t, srv, "new")
	neu.send(&packet.Connect{ClientID: []byte("dev"), CleanSession: true})
	neu.expect(&packet.Connack{})
	old.expectClose()
	checkPublish(t, w.expectPublish(), "will/dev", "taken", 0, false)

	raw, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(100 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- srv.Broker.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close does not end parked connections")
	}
	neu.expectClose()
}

// A subscriber that only receives is parked between the batches written
// to it, and its session shrunk after each; the memory of its outbox is
// reused from batch to batch, not allocated again (it was about 360 bytes
// a message here; under 1 since).
func TestParkedSubscriberAllocates(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop what it is given")
	}
	srv := newServer(t)
	sub := connect(t, srv, "sub", true, false)
	sub.subscribe(1, "t", 0)
	pub := connect(t, srv, "pub", true, false)
	const batch = 50
	var out []byte
	for range batch {
		out, _ = (&packet.Publish{Topic: []byte("t"), Payload: make([]byte, 64)}).Append(out)
	}
	send := func(n int) {
		for range n {
			pub.sendRaw(out)
			for i := range batch {
				b, err := sub.next(scriptTimeout)
				if err != nil || len(b) != 2+3+64 {
					t.Fatalf("message %d of a batch: % x, %v", i, b, err)
				}
			}
		}
	}
	// Long enough for the subscriber's connection to park (it parks after
	// 100 ms without a byte from its client) and for buffers to grow.
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		send(1)
	}
	const n = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	send(n)
	runtime.ReadMemStats(&after)
	if per := float64(after.TotalAlloc-before.TotalAlloc) / (n * batch); per > 32 {
		t.Errorf("%.0f bytes allocated per message to a parked subscriber, want at most 32", per)
	}
}
