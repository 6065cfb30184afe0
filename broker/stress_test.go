package broker_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// Many clients at once publish, subscribe, unsubscribe, vanish, take each
// other's ids over and come back, with small queues so that messages are
// dropped: the broker must not deadlock (a client that behaves keeps being
// served), and Close must leave no goroutine behind. Run it with -race.
func TestStress(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := newServer(t, func(o *broker.Options) {
		o.MaxInflight = 4
		o.MaxQueued = 8
	})
	const (
		workers = 12
		rounds  = 30
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range rounds {
				chaos(srv.Addr, rng)
			}
		}()
	}
	// Meanwhile a well-behaved client must keep getting its messages.
	probe := connect(t, srv, "probe", true, false)
	probe.subscribe(1, "probe/me", 1)
	p := connect(t, srv, "probe-pub", true, false)
	for i := range 20 {
		p.publish(pub("probe/me", fmt.Sprint(i), 1, uint16(i+1)))
		got := probe.expectPublish()
		if string(got.Payload) != fmt.Sprint(i) {
			t.Fatalf("probe: got %q, want %d", got.Payload, i)
		}
		probe.ack(got)
	}
	wg.Wait()
	srv.Close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// chaos runs one random client life against the broker at addr. Errors are
// expected (connections are cut, taken over); only hangs would matter, and
// every step has a deadline.
func chaos(addr string, rng *rand.Rand) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	go func() {
		// Read and discard, acknowledging nothing: a slow client.
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	w := packet.NewWriter(c)
	id := fmt.Sprint("chaos", rng.IntN(6)) // shared ids: takeovers
	w.WritePacket(&packet.Connect{ClientID: []byte(id), CleanSession: rng.IntN(2) == 0, KeepAlive: 5,
		Will: rng.IntN(2) == 0, WillTopic: []byte("chaos/will"), WillMessage: []byte(id), WillRetain: rng.IntN(4) == 0})
	filters := []string{"chaos/#", "chaos/+", "$share/g/chaos/#", "chaos/a", "#"}
	for i := range 1 + rng.IntN(40) {
		switch rng.IntN(6) {
		case 0:
			f := filters[rng.IntN(len(filters))]
			w.WritePacket(&packet.Subscribe{PacketID: uint16(i + 1), Subscriptions: []packet.Subscription{{Filter: []byte(f), QoS: byte(rng.IntN(3))}}})
		case 1:
			f := filters[rng.IntN(len(filters))]
			w.WritePacket(&packet.Unsubscribe{PacketID: uint16(i + 1), Filters: [][]byte{[]byte(f)}})
		default:
			qos := byte(rng.IntN(3))
			var id uint16
			if qos > 0 {
				id = uint16(i + 1)
			}
			w.WritePacket(&packet.Publish{Topic: []byte("chaos/a"), Payload: make([]byte, rng.IntN(2000)), QoS: qos, PacketID: id, Retain: rng.IntN(8) == 0})
		}
		if rng.IntN(4) == 0 {
			w.Flush()
		}
	}
	switch rng.IntN(3) {
	case 0:
		w.WritePacket(&packet.Disconnect{})
		w.Flush()
	case 1:
		w.Flush() // then vanish
	case 2:
		w.Flush()
		c.Write([]byte{0x30, 0xff}) // a torn packet
	}
	time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
}
