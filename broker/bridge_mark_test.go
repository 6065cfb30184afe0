package broker_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// markedConnect is a CONNECT with the bridge mark, level 0x84.
func markedConnect(t *testing.T, id string) []byte {
	t.Helper()
	b, err := (&packet.Connect{Level: 4, Bridge: true, CleanSession: true, ClientID: []byte(id)}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// connackOf sends b on a new connection to addr and returns the CONNACK's
// return code.
func connackOf(t *testing.T, addr string, b []byte) packet.ReturnCode {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(nc, ack[:]); err != nil {
		t.Fatalf("reading CONNACK: %v", err)
	}
	var ca packet.Connack
	if err := ca.Decode(ack[:]); err != nil {
		t.Fatal(err)
	}
	return ca.ReturnCode
}

// TestBridgeMarkOption checks that tern's broker refuses the bridge mark
// with CONNACK 0x01 by default [MQTT-3.1.2-2] and accepts it with
// Options.AllowBridges.
func TestBridgeMarkOption(t *testing.T) {
	off := mqtttest.NewServer(t)
	if rc := connackOf(t, off.Addr, markedConnect(t, "b")); rc != packet.RefusedProtocolVersion {
		t.Errorf("default: CONNACK %v, want 0x01", rc)
	}
	connected := make(chan broker.Client, 1)
	on := mqtttest.NewServer(t, func(o *broker.Options) {
		o.AllowBridges = true
		o.OnEvent = func(e *broker.Event) {
			if e.Kind == broker.EventConnect {
				connected <- *e.Client
			}
		}
	})
	if rc := connackOf(t, on.Addr, markedConnect(t, "b")); rc != packet.Accepted {
		t.Errorf("AllowBridges: CONNACK %v, want 0x00", rc)
	}
	// The event may come just after the CONNACK is written.
	var info *broker.Client
	select {
	case c := <-connected:
		info = &c
	case <-time.After(5 * time.Second):
	}
	if info == nil || !info.Bridge || info.Level != 4 {
		t.Errorf("AllowBridges: connected client %+v, want Bridge true, Level 4", info)
	}
}

// TestBridgeFromMosquitto has mosquitto's own bridge (try_private, level
// 0x84) connect to tern's broker. With AllowBridges, it is accepted as a
// bridge and its messages are not sent back to it: a message published on
// either side is seen once on each. Without it, tern answers CONNACK 0x01
// and mosquitto connects again without the mark.
func TestBridgeFromMosquitto(t *testing.T) {
	for _, allow := range []bool{true, false} {
		name := map[bool]string{true: "allowed", false: "refused"}[allow]
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var events []broker.Event
			tern := mqtttest.NewServer(t, func(o *broker.Options) {
				o.AllowBridges = allow
				o.OnEvent = func(e *broker.Event) {
					if e.Kind == broker.EventConnect || e.Kind == broker.EventRefuse {
						mu.Lock()
						c := *e.Client
						ev := *e
						ev.Client = &c
						events = append(events, ev)
						mu.Unlock()
					}
				}
			})
			m := mosquitto.Start(t, mosquitto.Config{Extra: []string{
				"connection m2t",
				"address " + tern.Addr,
				"remote_clientid m2t",
				"topic m/# both 1",
				"try_private true",
				"cleansession true",
				"restart_timeout 1",
			}})
			bwait(t, 15*time.Second, "mosquitto's bridge connected", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range events {
					if e.Kind == broker.EventConnect && e.Client.ID == "m2t" {
						return true
					}
				}
				return false
			})
			mu.Lock()
			var refused, marked bool
			for _, e := range events {
				// A CONNECT refused for its level is not read further: its
				// client id is unknown. Only mosquitto connects here.
				if e.Kind == broker.EventRefuse && e.ReturnCode == byte(packet.RefusedProtocolVersion) {
					refused = true
				}
				if e.Kind == broker.EventConnect && e.Client.ID == "m2t" && e.Client.Bridge {
					marked = true
				}
			}
			mu.Unlock()
			if allow && (!marked || refused) {
				t.Errorf("allowed: connected with the mark %v, refused %v; want true, false", marked, refused)
			}
			if !allow && (marked || !refused) {
				t.Errorf("refused: connected with the mark %v, refused with 0x01 %v; want false, true", marked, refused)
			}
			if !allow {
				return // without the mark, echoes are mosquitto's problem
			}
			tsub := collect(t, tern.URL, "tsub", "m/#", 1)
			msub := collect(t, m.URL, "msub", "m/#", 1)
			tpub := conn(t, tern.URL, "tpub", nil)
			mpub := conn(t, m.URL, "mpub", nil)
			probe(t, mpub, tsub, "m/probe", "m/probe")
			probe(t, tpub, msub, "m/probe2", "m/probe2")
			publish(t, tpub, "m/from-tern", 1, false, "t")
			publish(t, mpub, "m/from-mosquitto", 1, false, "m")
			bwait(t, 10*time.Second, "both messages on both sides", func() bool {
				return tsub.count("m/from-tern", "t") > 0 && tsub.count("m/from-mosquitto", "m") > 0 &&
					msub.count("m/from-tern", "t") > 0 && msub.count("m/from-mosquitto", "m") > 0
			})
			time.Sleep(300 * time.Millisecond) // time for an echo to come round
			for _, c := range []struct {
				side string
				col  *collector
			}{{"tern", tsub}, {"mosquitto", msub}} {
				for _, tp := range [][2]string{{"m/from-tern", "t"}, {"m/from-mosquitto", "m"}} {
					if n := c.col.count(tp[0], tp[1]); n != 1 {
						t.Errorf("%s side saw %s %d times, want once", c.side, tp[0], n)
					}
				}
			}
		})
	}
}

// TestBridgeLoop bridges two brokers both ways on #: one message published
// on each side is seen exactly once on each side. The remote is tern with
// the bridge mark accepted, tern refusing it (the bridge falls back to
// level 4 and drops echoes itself), and mosquitto.
func TestBridgeLoop(t *testing.T) {
	cases := []struct {
		name   string
		remote func(t *testing.T) (url string)
		marked bool
	}{
		{"tern-marked", func(t *testing.T) string {
			return mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true }).URL
		}, true},
		{"tern-unmarked", func(t *testing.T) string { return mqtttest.NewServer(t).URL }, false},
		{"mosquitto", func(t *testing.T) string { return mosquitto.Start(t, mosquitto.Config{}).URL }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.remote(t)
			local := bridged(t, url, nil, broker.BridgeTopic{Pattern: "#", Direction: broker.BridgeBoth, QoS: 1})
			lsub := collect(t, local.URL, "lsub", "#", 1)
			rsub := collect(t, url, "rsub", "#", 1)
			lpub := conn(t, local.URL, "lpub", nil)
			rpub := conn(t, url, "rpub", nil)
			probe(t, rpub, lsub, "probe/in", "probe/in")
			probe(t, lpub, rsub, "probe/out", "probe/out")
			if got := local.Broker.Stats().Bridges[0]; !got.Connected || got.Marked != tc.marked {
				t.Fatalf("stats %+v: want connected, marked %v", got, tc.marked)
			}
			publish(t, lpub, "loop/local", 1, false, "L")
			publish(t, rpub, "loop/remote", 1, false, "R")
			bwait(t, 10*time.Second, "both messages on both sides", func() bool {
				return lsub.count("loop/local", "L") > 0 && lsub.count("loop/remote", "R") > 0 &&
					rsub.count("loop/local", "L") > 0 && rsub.count("loop/remote", "R") > 0
			})
			time.Sleep(500 * time.Millisecond) // time for a loop to show
			for _, c := range []struct {
				side string
				col  *collector
			}{{"local", lsub}, {"remote", rsub}} {
				for _, tp := range [][2]string{{"loop/local", "L"}, {"loop/remote", "R"}} {
					if n := c.col.count(tp[0], tp[1]); n != 1 {
						t.Errorf("%s side saw %s %d times, want once", c.side, tp[0], n)
					}
				}
				for _, m := range c.col.all() {
					if !strings.HasPrefix(m.Topic, "loop/") && !strings.HasPrefix(m.Topic, "probe/") {
						t.Errorf("%s side saw %s %q", c.side, m.Topic, m.Payload)
					}
				}
			}
		})
	}
}
