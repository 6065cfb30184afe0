package broker_test

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// seqCounter checks a stream of numbered messages: every number arrives,
// and the first arrivals come in order (a QoS 1 message sent again after a
// cut may arrive a second time, behind later ones).
type seqCounter struct {
	mu       sync.Mutex
	seen     []int
	next     int // numbers 0..next-1 have all arrived
	outOrder int // first arrivals of a number beyond next
	dups     int
}

func newSeqCounter(n int) *seqCounter { return &seqCounter{seen: make([]int, n)} }

func (c *seqCounter) add(payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(payload) < 8 {
		c.outOrder++
		return
	}
	i := int(binary.BigEndian.Uint64(payload))
	if i >= len(c.seen) {
		c.outOrder++
		return
	}
	c.seen[i]++
	switch {
	case c.seen[i] > 1:
		c.dups++
	case i == c.next:
		for c.next < len(c.seen) && c.seen[c.next] > 0 {
			c.next++
		}
	default:
		c.outOrder++
	}
}

func (c *seqCounter) complete() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next
}

// TestBridgeOutage cuts the link for several seconds while a local
// publisher sends 10,000 QoS 1 messages: all of them reach a subscriber of
// the remote broker, in order. The state topic goes 1, 0, 1.
func TestBridgeOutage(t *testing.T) {
	const n = 10000
	eachRemote(t, func(t *testing.T, r remoteBroker) {
		proxy := mqtttest.NewProxy(t, r.url)
		local := bridged(t, proxy.URL(), nil,
			broker.BridgeTopic{Pattern: "seq", Direction: broker.BridgeOut, QoS: 1, RemotePrefix: "edge/"})
		state := "$SYS/broker/connection/edge-TestBridgeOutage-" + r.name + "/state"
		states := collect(t, local.URL, "states", state, 1)

		seq := newSeqCounter(n)
		sub := conn(t, r.url, "rsub", func(o *client.Options) {
			o.KeepSession = true
			o.DefaultHandler = func(m *client.Message) { seq.add(m.Payload) }
		})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "edge/seq", QoS: 1}); err != nil {
			t.Fatal(err)
		}
		pub := conn(t, local.URL, "lpub", func(o *client.Options) { o.MaxInflight = 100 })
		var toks []*client.Token
		send := func(from, to int) {
			for i := from; i < to; i++ {
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], uint64(i))
				toks = append(toks, pub.PublishAsync(ctx, "seq", 1, false, b[:]))
			}
		}
		send(0, n/4)
		// Cut the link, and every new connection at its CONNECT, for
		// three seconds while the rest is published.
		proxy.SetFilter(mqtttest.OnType(mqtttest.ClientToServer, packet.CONNECT, mqtttest.Cut))
		proxy.CutAll()
		bwait(t, 5*time.Second, "bridge down", func() bool { return !local.Broker.Stats().Bridges[0].Connected })
		cutAt := time.Now()
		send(n/4, n)
		for _, tk := range toks {
			if err := tk.Wait(ctx); err != nil {
				t.Fatalf("local publish: %v", err)
			}
		}
		st := local.Broker.Stats().Bridges[0]
		t.Logf("published %d while the link was down for %v; bridge pending %d", n, time.Since(cutAt).Round(time.Millisecond), st.Pending)
		time.Sleep(time.Until(cutAt.Add(3 * time.Second)))
		proxy.SetFilter(nil)
		bwait(t, 30*time.Second, "all messages at the remote subscriber", func() bool { return seq.complete() == n })
		seq.mu.Lock()
		t.Logf("remote subscriber: %d complete, %d duplicates, %d out of order", seq.next, seq.dups, seq.outOrder)
		if seq.outOrder != 0 {
			t.Errorf("%d messages arrived out of order", seq.outOrder)
		}
		seq.mu.Unlock()
		bwait(t, 10*time.Second, "pending 0", func() bool { return local.Broker.Stats().Bridges[0].Pending == 0 })
		if st := local.Broker.Stats().Bridges[0]; st.Forwarded < n || st.Dropped != 0 {
			t.Errorf("stats %+v: want %d forwarded, none dropped", st, n)
		}
		// The local state topic: 1 when up, 0 when cut, 1 again.
		bwait(t, 5*time.Second, "state 1 again", func() bool {
			ms := states.all()
			return len(ms) >= 3 && string(ms[len(ms)-1].Payload) == "1"
		})
		var got []string
		for _, m := range states.all() {
			got = append(got, string(m.Payload))
		}
		if got[0] != "1" || !contains(got, "0") {
			t.Errorf("state messages %q: want 1, then 0, then 1", got)
		}
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
