package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/store"
)

// groupHold is a store.Log whose group, once marked, stays open until
// released: its End waits. A crash meanwhile (the files copied) finds the
// group begun and not ended, and recovery cuts the log at its beginning,
// with every write made after it by anyone.
type groupHold struct {
	*store.Log

	mu      sync.Mutex
	marked  bool // the next Begin's group is the one held
	holding bool
	group   store.Group
	held    chan struct{} // closed when the held group's End is called
	release chan struct{}
	freed   sync.Once
}

// free lets the held group end.
func (g *groupHold) free() { g.freed.Do(func() { close(g.release) }) }

func newGroupHold(l *store.Log) *groupHold {
	return &groupHold{Log: l, held: make(chan struct{}), release: make(chan struct{})}
}

func (g *groupHold) holdNext() {
	g.mu.Lock()
	g.marked = true
	g.mu.Unlock()
}

func (g *groupHold) Begin() store.Group {
	gr := g.Log.Begin()
	g.mu.Lock()
	if g.marked {
		g.group, g.marked, g.holding = gr, false, true
	}
	g.mu.Unlock()
	return gr
}

func (g *groupHold) End(gr store.Group) {
	g.mu.Lock()
	hold := g.holding && gr == g.group
	g.mu.Unlock()
	if hold {
		close(g.held)
		<-g.release
	}
	g.Log.End(gr)
}

// waitHeld waits until the held group's routing is done and only its End
// is left.
func (g *groupHold) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-g.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held group never reached its End")
	}
}

// within polls ok for up to d and reports whether it became true.
func within(d time.Duration, ok func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return true
		}
	}
	return ok()
}

// TestBridgeCrashOpenGroup: a bridge sends the remote broker nothing that
// depends on a write a crash could still take back. A write is taken back
// when a group of the store's (a QoS 2 PUBLISH being routed) began before
// it and has not ended at the crash: recovery cuts the log at the group's
// beginning. A routing's group may wait for the bridge's client, so the
// client cannot wait for the group while it holds its lock; before the
// fix it did not wait at all (the store's Flush), and a kill -9 of tern
// broker in TestBridgeKill (cmd/tern) duplicated QoS 2 messages at the
// remote. Each case holds a routing's group open, lets the bridge act,
// "crashes" (copies the store's files and cuts the bridge's link, so that
// nothing more leaves), and restarts on the copy: the subscriber at the
// far end must have the message exactly once. [MQTT-4.3.3-1]
// [MQTT-4.3.3-2]
func TestBridgeCrashOpenGroup(t *testing.T) {
	t.Run("publish", func(t *testing.T) {
		// A QoS 2 message routed to the bridge after the group began: its
		// copy and the publisher's packet id are cut by the crash, so the
		// publisher's resend is routed again. The bridge must not have
		// sent the first copy.
		crashOpenGroup(t, func(t *testing.T, h *crashHarness) {
			pb := connect(t, h.local, "pb", false, false)
			h.hold.holdNext()
			h.pubA()
			pb.send(&packet.Publish{QoS: 2, PacketID: 7, Topic: []byte("out/b"), Payload: []byte("b")})
			h.settle(func() bool { return h.rsub.count("out/b", "b") > 0 })
		}, func(t *testing.T, h *crashHarness) {
			// The publisher's session is present or not, as the crash
			// left it; either way the resend must be taken once.
			pb := dial(t, h.local, "pb")
			pb.send(&packet.Connect{ClientID: []byte("pb")})
			if ca, ok := pb.expectPacket().(*packet.Connack); !ok || ca.ReturnCode != packet.Accepted {
				t.Fatalf("pb: no CONNACK 0: %v", ca)
			}
			pb.send(&packet.Publish{QoS: 2, Dup: true, PacketID: 7, Topic: []byte("out/b"), Payload: []byte("b")})
			pb.expect(&packet.Pubrec{PacketID: 7})
			pb.send(&packet.Pubrel{PacketID: 7})
			pb.expect(&packet.Pubcomp{PacketID: 7})
			h.remoteOnce("out/b", "b")
		})
	})
	t.Run("release", func(t *testing.T) {
		// A QoS 2 message the remote has, whose PUBREC reaches the bridge
		// after the group began: the bridge's record of it is cut by the
		// crash, so after the restart the bridge sends the PUBLISH again.
		// The bridge must not have sent the PUBREL, or the remote, having
		// released the packet id, takes the resend for a new message.
		crashOpenGroup(t, func(t *testing.T, h *crashHarness) {
			pc := conn(t, h.local.URL, "pc", nil)
			h.proxy.Hold(mqtttest.ServerToClient)
			publish(t, pc, "out/c", 2, false, "c")
			bwait(t, 10*time.Second, "out/c at the remote", func() bool { return h.rsub.count("out/c", "c") == 1 })
			h.hold.holdNext()
			h.pubA()
			h.proxy.Release(mqtttest.ServerToClient) // the PUBREC
			h.settle(func() bool {
				for _, f := range h.proxy.Frames() {
					if f.Dir == mqtttest.ClientToServer && f.Type == packet.PUBREL {
						return true
					}
				}
				return false
			})
		}, func(t *testing.T, h *crashHarness) { h.remoteOnce("out/c", "c") })
	})
	t.Run("incoming", func(t *testing.T) {
		// A QoS 2 message from the remote, published locally after the
		// group began: its local copy and the bridge's record of the
		// exchange are cut by the crash, so the remote's resend is
		// published again. Neither the local subscriber's copy nor the
		// bridge's PUBREC may have left.
		var lsub1, lsub2 collector
		var tok *client.Token
		persistent := func(col *collector) func(*client.Options) {
			return func(o *client.Options) {
				o.KeepSession = true
				o.DefaultHandler = func(m *client.Message) {
					col.mu.Lock()
					col.msgs = append(col.msgs, msg{Topic: m.Topic, Payload: append([]byte(nil), m.Payload...), QoS: m.QoS})
					col.mu.Unlock()
				}
			}
		}
		crashOpenGroup(t, func(t *testing.T, h *crashHarness) {
			ls := conn(t, h.local.URL, "lsub", persistent(&lsub1))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := ls.Subscribe(ctx, client.Subscription{Filter: "in/#", QoS: 2}); err != nil {
				t.Fatal(err)
			}
			rpub := conn(t, h.remoteURL, "rpub", func(o *client.Options) { o.KeepSession = true })
			probe(t, rpub, &lsub1, "in/probe", "in/probe") // the bridge's subscription is in place
			h.hold.holdNext()
			h.pubA()
			tok = rpub.PublishAsync(context.Background(), "in/d", 2, false, []byte("d"))
			h.settle(func() bool {
				if lsub1.count("in/d", "d") > 0 {
					return true
				}
				for _, f := range h.proxy.Frames() {
					if f.Dir == mqtttest.ClientToServer && f.Type == packet.PUBREC {
						return true
					}
				}
				return false
			})
			ls.Close()
		}, func(t *testing.T, h *crashHarness) {
			conn(t, h.local.URL, "lsub", persistent(&lsub2))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tok.Wait(ctx); err != nil {
				t.Fatalf("the remote publisher's QoS 2 exchange: %v", err)
			}
			bwait(t, 10*time.Second, "in/d at the local subscriber", func() bool { return lsub1.count("in/d", "d")+lsub2.count("in/d", "d") > 0 })
			time.Sleep(200 * time.Millisecond) // time for a late duplicate
			if n1, n2 := lsub1.count("in/d", "d"), lsub2.count("in/d", "d"); n1+n2 != 1 {
				t.Errorf("the local subscriber got in/d %d times before the crash and %d after, want once in all", n1, n2)
			}
		})
	})
}

// copyFiles copies the files of directory from into directory to.
func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// crashHarness is a local broker on a store.Log, bridged through a proxy to
// a remote broker with a subscriber.
type crashHarness struct {
	t         *testing.T
	local     *mqtttest.Server
	hold      *groupHold
	remoteURL string
	proxy     *mqtttest.Proxy
	rsub      *collector
}

// remoteOnce waits until the bridge has sent everything and checks that the
// remote's subscriber got topic and payload exactly once.
func (h *crashHarness) remoteOnce(topic, payload string) {
	t := h.t
	t.Helper()
	bwait(t, 10*time.Second, "the bridge's queue empty", func() bool {
		st := h.local.Broker.Stats().Bridges[0]
		return st.Pending == 0 && h.rsub.count(topic, payload) > 0
	})
	time.Sleep(200 * time.Millisecond) // time for a late duplicate
	if n := h.rsub.count(topic, payload); n != 1 {
		t.Errorf("the remote's subscriber got %s %q %d times, want once", topic, payload, n)
	}
}

// pubA publishes a QoS 2 message that no one takes, and waits for its
// routing's group to be held open.
func (h *crashHarness) pubA() {
	pa := conn(h.t, h.local.URL, "pa", nil)
	pa.PublishAsync(context.Background(), "other/a", 2, false, []byte("a"))
	h.hold.waitHeld(h.t)
}

// settle gives the bridge time to act on what it has: until done reports
// that it did what it must not, or 500 ms.
func (h *crashHarness) settle(done func() bool) {
	if within(500*time.Millisecond, done) {
		h.t.Log("the bridge acted while the group was open")
	}
}

// crashOpenGroup runs before on a local broker, then crashes it (see
// TestBridgeCrashOpenGroup), restarts it on the copy of its store, and
// runs after, which checks the outcome.
func crashOpenGroup(t *testing.T, before, after func(*testing.T, *crashHarness)) {
	remote := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true })
	h := &crashHarness{t: t, remoteURL: remote.URL, proxy: mqtttest.NewProxy(t, remote.URL)}
	h.rsub = collect(t, remote.URL, "rsub", "out/#", 2)
	bridges := []broker.Bridge{{
		Name: "crash", URLs: []string{h.proxy.URL()}, ClientID: "crash-bridge",
		Topics: []broker.BridgeTopic{
			{Pattern: "out/#", Direction: broker.BridgeOut, QoS: 2},
			{Pattern: "in/#", Direction: broker.BridgeIn, QoS: 2},
		},
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
	}}
	dir, crashed := t.TempDir(), t.TempDir()
	l, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.hold = newGroupHold(l)
	h.local = mqtttest.NewServer(t, func(o *broker.Options) { o.Store = h.hold; o.Bridges = bridges })
	t.Cleanup(h.hold.free) // before the server's Close, if the test stops early
	bwait(t, 10*time.Second, "the bridge up", func() bool { return h.local.Broker.Stats().Bridges[0].Connected })

	before(t, h)

	// The crash: the files as they are now, and nothing more leaves for
	// the remote.
	copyFiles(t, dir, crashed)
	h.proxy.SetFilter(mqtttest.OnType(mqtttest.ClientToServer, packet.CONNECT, mqtttest.Cut))
	h.proxy.CutAll()
	h.hold.free()
	h.local.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2, err := store.Open(crashed, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	h.local = mqtttest.NewServer(t, func(o *broker.Options) { o.Store = l2; o.Bridges = bridges })
	defer h.local.Close()
	h.proxy.SetFilter(nil)
	bwait(t, 10*time.Second, "the bridge up again", func() bool { return h.local.Broker.Stats().Bridges[0].Connected })
	after(t, h)
}
