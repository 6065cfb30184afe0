package broker_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// A client that sends packets calling for an answer (here PINGREQ) while it
// reads nothing is not read from faster than the broker can write to it:
// once a few thousand answers wait, the broker stops reading until its
// writer takes them. Before, the broker read on and queued answers without
// end (2.7 GB in 15 s of PINGREQs from one client). Nothing is lost: once
// the client reads, every PINGREQ is answered.
func TestReadsWaitForWriter(t *testing.T) {
	srv := newServer(t)
	v := connectPipe(t, srv, "v") // no kernel buffer: what v does not read blocks the writer
	v.subscribe(1, "t", 0)
	p := connect(t, srv, "p", true, false)
	p.publish(&packet.Publish{Topic: []byte("t"), Payload: []byte("x")}) // the writer now blocks on v

	ping := []byte{0xC0, 0x00}
	sent := 0
	stop := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(stop) && sent < 100_000 {
		v.c.SetWriteDeadline(stop)
		if _, err := v.c.Write(ping); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write: %v", err)
			}
			break
		}
		sent++
	}
	t.Logf("%d PINGREQs read before the broker paused", sent)
	if sent >= 10_000 {
		t.Fatalf("the broker read %d PINGREQs from a client that reads nothing", sent)
	}
	v.c.SetWriteDeadline(time.Time{})

	// v reads now: the message, then an answer for every PINGREQ.
	checkPublish(t, v.expectPublish(), "t", "x", 0, false)
	for i := range sent {
		if got := v.expectPacket(); got.Type() != packet.PINGRESP {
			t.Fatalf("answer %d of %d: got %v, want PINGRESP", i, sent, got)
		}
	}
	v.send(&packet.Pingreq{})
	v.expect(&packet.Pingresp{})
}
