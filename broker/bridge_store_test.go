package broker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/store"
)

// TestBridgeStore keeps a bridge's outgoing queue in the Server's store:
// messages acknowledged to the local publisher while the remote broker is
// unreachable are sent after the local broker is closed and started again
// on the same store, each QoS 2 one once.
func TestBridgeStore(t *testing.T) {
	const n = 200
	remote := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true })
	proxy := mqtttest.NewProxy(t, remote.URL)
	proxy.SetFilter(mqtttest.OnType(mqtttest.ClientToServer, packet.CONNECT, mqtttest.Cut)) // unreachable
	seq1, seq2 := newSeqCounter(n), newSeqCounter(n)
	rsub := conn(t, remote.URL, "rsub", func(o *client.Options) {
		o.DefaultHandler = func(m *client.Message) {
			if m.Topic == "q1" {
				seq1.add(m.Payload)
			} else {
				seq2.add(m.Payload)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rsub.Subscribe(ctx, client.Subscription{Filter: "+", QoS: 2}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	bridges := []broker.Bridge{{
		Name: "stored", URLs: []string{proxy.URL()}, ClientID: "stored-bridge",
		Topics:       []broker.BridgeTopic{{Pattern: "+", Direction: broker.BridgeOut, QoS: 2}},
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
	}}
	start := func() (*mqtttest.Server, *store.Log) {
		st, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		srv := mqtttest.NewServer(t, func(o *broker.Options) { o.Store = st; o.Bridges = bridges })
		return srv, st
	}
	local, st := start()
	pub := conn(t, local.URL, "lpub", nil)
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		for _, q := range []byte{1, 2} {
			if err := pub.Publish(ctx, map[byte]string{1: "q1", 2: "q2"}[q], q, false, b[:]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := local.Broker.Stats().Bridges[0]; got.Pending != 2*n || got.Connected {
		t.Fatalf("before the restart: %+v, want %d pending, not connected", got, 2*n)
	}
	// The id of a bridge's queue is not a client's to take.
	if rc := connackOf(t, local.Addr, mustAppend(t, &packet.Connect{Level: 4, ClientID: []byte("$bridge/stored")})); rc != packet.RefusedIdentifierRejected {
		t.Errorf("client id $bridge/stored: CONNACK %v, want 0x02", rc)
	}
	pub.Close()
	local.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	proxy.SetFilter(nil)
	local, st = start()
	defer st.Close()
	defer local.Close()
	bwait(t, 20*time.Second, "every message at the remote", func() bool { return seq1.complete() == n && seq2.complete() == n })
	time.Sleep(200 * time.Millisecond)
	seq2.mu.Lock()
	if seq2.dups != 0 || seq2.outOrder != 0 {
		t.Errorf("QoS 2: %d duplicates, %d out of order", seq2.dups, seq2.outOrder)
	}
	seq2.mu.Unlock()
	bwait(t, 5*time.Second, "pending 0", func() bool { return local.Broker.Stats().Bridges[0].Pending == 0 })
}

func mustAppend(t *testing.T, p packet.Packet) []byte {
	t.Helper()
	b, err := p.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBridgeStoreBusy sends QoS 1 and 2 messages from several publishers
// through a bridge whose queue is in the Server's store, with the link up:
// the bridge's client syncs the store while publishers' routings hand it
// messages, and nothing waits on the other (a deadlock of the first
// version). Every message arrives.
func TestBridgeStoreBusy(t *testing.T) {
	const pubs, n = 4, 500
	remote := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true })
	seq := newSeqCounter(pubs * n)
	rsub := conn(t, remote.URL, "rsub", func(o *client.Options) {
		o.DefaultHandler = func(m *client.Message) { seq.add(m.Payload) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rsub.Subscribe(ctx, client.Subscription{Filter: "busy/+", QoS: 2}); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	local := mqtttest.NewServer(t, func(o *broker.Options) {
		o.Store = st
		o.Bridges = []broker.Bridge{{Name: "busy", URLs: []string{remote.URL}, ClientID: "busy-bridge",
			Topics: []broker.BridgeTopic{{Pattern: "busy/+", Direction: broker.BridgeOut, QoS: 2}}}}
	})
	bwait(t, 10*time.Second, "bridge up", func() bool { return local.Broker.Stats().Bridges[0].Connected })
	errs := make(chan error, pubs)
	for p := range pubs {
		pub := conn(t, local.URL, "pub"+string(rune('a'+p)), nil)
		go func() {
			var toks []*client.Token
			for i := range n {
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], uint64(p*n+i))
				toks = append(toks, pub.PublishAsync(ctx, "busy/"+string(rune('a'+p)), byte(1+i%2), false, b[:]))
			}
			for _, tk := range toks {
				if err := tk.Wait(ctx); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range pubs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	bwait(t, 30*time.Second, "every message at the remote", func() bool {
		seq.mu.Lock()
		defer seq.mu.Unlock()
		for _, c := range seq.seen {
			if c == 0 {
				return false
			}
		}
		return true
	})
	if st := local.Broker.Stats().Bridges[0]; st.Dropped != 0 {
		t.Errorf("dropped %d", st.Dropped)
	}
}

// TestBridgeIncomingCrash has a QoS 2 message come in through a bridge
// whose PUBREC never reaches the remote broker, then the local broker
// crash (its store as a kill -9 leaves it) and start again: the remote
// broker sends the PUBLISH again, and the bridge, whose incoming exchange
// was durable before the message was published locally, does not publish
// it a second time.
func TestBridgeIncomingCrash(t *testing.T) {
	remote := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true })
	proxy := mqtttest.NewProxy(t, remote.URL)
	proxy.SetFilter(mqtttest.OnType(mqtttest.ClientToServer, packet.PUBREC, mqtttest.Drop))
	bridges := []broker.Bridge{{
		Name: "in", URLs: []string{proxy.URL()}, ClientID: "in-bridge",
		Topics:       []broker.BridgeTopic{{Pattern: "in/#", Direction: broker.BridgeIn, QoS: 2}},
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
	}}
	fs := newFakeStore(t)
	a := mqtttest.NewServer(t, func(o *broker.Options) { o.Store = fs; o.Bridges = bridges })
	sa := collect(t, a.URL, "sa", "in/#", 2)
	rpub := conn(t, remote.URL, "rpub", nil)
	probe(t, rpub, sa, "in/probe", "in/probe") // subscribed on the remote
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := rpub.PublishAsync(ctx, "in/x", 2, false, []byte("once"))
	bwait(t, 10*time.Second, "the message on the first broker", func() bool { return sa.count("in/x", "once") == 1 })
	time.Sleep(100 * time.Millisecond) // the PUBREC, held back by the proxy, is written and synced
	crashed := fs.crash()
	proxy.SetFilter(mqtttest.OnType(mqtttest.ClientToServer, packet.CONNECT, mqtttest.Cut))
	a.Close()

	b := mqtttest.NewServer(t, func(o *broker.Options) { o.Store = crashed; o.Bridges = bridges })
	sb := collect(t, b.URL, "sb", "in/#", 2)
	proxy.SetFilter(nil) // the bridge connects; the remote sends the PUBLISH again
	if err := tok.Wait(ctx); err != nil {
		t.Fatalf("remote publish: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := sb.count("in/x", "once"); n != 0 {
		t.Errorf("published locally again after the crash (%d times)", n)
	}
	if st := b.Broker.Stats().Bridges[0]; !st.Connected {
		t.Errorf("stats %+v", st)
	}
}

// TestBridgeStoreFailed: a bridge with a store stops once the store fails
// (logged), rather than reconnect in a loop with every write failing; the
// local publisher whose message it could not queue gets no PUBACK.
func TestBridgeStoreFailed(t *testing.T) {
	remote := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true })
	proxy := mqtttest.NewProxy(t, remote.URL)
	fs := newFakeStore(t)
	logs := new(lockedBuffer)
	local := storeServer(t, fs, func(o *broker.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))
		o.Bridges = []broker.Bridge{{
			Name: "b", URLs: []string{proxy.URL()}, ClientID: "b-bridge",
			Topics:       []broker.BridgeTopic{{Pattern: "t", Direction: broker.BridgeOut, QoS: 1}},
			ReconnectMin: 10 * time.Millisecond, ReconnectMax: 20 * time.Millisecond,
		}}
	})
	bwait(t, 10*time.Second, "bridge up", func() bool { return local.Broker.Stats().Bridges[0].Connected })

	fs.breakWith(errors.New("disk gone"))
	p := connect(t, local, "p", true, false)
	p.send(pub("t", "x", 1, 1))
	p.expectClose() // its copy for the bridge could not be queued
	bwait(t, 10*time.Second, "bridge stopped", func() bool {
		return strings.Contains(logs.String(), "bridge stopped: the store failed")
	})
	if local.Broker.Stats().Bridges[0].Connected {
		t.Errorf("bridge still connected after it stopped")
	}
	connects := func() int {
		n := 0
		for _, f := range proxy.Frames() {
			if f.Dir == mqtttest.ClientToServer && f.Type == packet.CONNECT {
				n++
			}
		}
		return n
	}
	before := connects()
	time.Sleep(200 * time.Millisecond) // 10 reconnection delays
	if after := connects(); after != before {
		t.Errorf("bridge connected %d more times after it stopped", after-before)
	}
	if n := strings.Count(logs.String(), "bridge stopped"); n != 1 {
		t.Errorf("%d log lines about the bridge stopping, want 1; log:\n%s", n, logs.String())
	}
}
