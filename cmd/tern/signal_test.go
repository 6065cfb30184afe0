package main

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// SIGTERM lets the broker write out what is queued for up to 5 s; a second
// signal stops it at once (before, it always waited the 5 s out while a
// client did not read), still closing cleanly: exit 0 and the summary.
func TestBrokerSecondSignal(t *testing.T) {
	bp, urls := startBrokerProcess(t, nil, "mqtt://127.0.0.1:0")
	addr := strings.TrimPrefix(urls[0], "mqtt://")
	raw := func(pkts ...packet.Packet) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		for _, p := range pkts {
			b, err := p.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	// A subscriber that never reads, and 16 MiB for it: the broker's
	// writes to it stall once the socket buffers are full.
	raw(&packet.Connect{ClientID: []byte("stuck"), CleanSession: true},
		&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("big"), QoS: 0}}})
	time.Sleep(200 * time.Millisecond) // the subscription is in place
	pub := raw(&packet.Connect{ClientID: []byte("pub"), CleanSession: true})
	payload := make([]byte, 64<<10)
	for range 256 {
		b, _ := (&packet.Publish{Topic: []byte("big"), Payload: payload}).Append(nil)
		if _, err := pub.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // routed and queued
	bp.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	second := time.Now()
	bp.cmd.Process.Signal(syscall.SIGTERM)
	if code := bp.exitWithin(t, second, 2*time.Second); code != 0 || !strings.Contains(bp.stdout.String(), "tern broker: stopped") {
		t.Errorf("exit %d, stdout %q; want 0 and the summary", code, bp.stdout)
	}
}
