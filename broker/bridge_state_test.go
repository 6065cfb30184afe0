package broker_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// TestBridgeState checks what shows the state of a bridge: the retained
// notification, 1 up and 0 down, on the local broker and on the remote one
// (where 0 is the bridge's will), the log lines with the cause, and Stats.
func TestBridgeState(t *testing.T) {
	// With $SYS published, clients still may publish a bridge's state
	// there, as with mosquitto.
	remote := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true; o.SysInterval = time.Hour })
	proxy := mqtttest.NewProxy(t, remote.URL)
	var logs lockedBuffer
	local := mqtttest.NewServer(t, func(o *broker.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Bridges = []broker.Bridge{{
			Name: "up", URLs: []string{proxy.URL()}, ClientID: "state-bridge",
			Topics:       []broker.BridgeTopic{{Pattern: "a", Direction: broker.BridgeOut}},
			ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
		}}
	})
	const topic = "$SYS/broker/connection/state-bridge/state"
	bwait(t, 10*time.Second, "bridge up", func() bool { return local.Broker.Stats().Bridges[0].Connected })
	lstate := collect(t, local.URL, "lstate", topic, 1)
	rstate := collect(t, remote.URL, "rstate", topic, 1)
	payloads := func(c *collector) string {
		var s []string
		for _, m := range c.all() {
			s = append(s, string(m.Payload))
		}
		return strings.Join(s, ",")
	}
	bwait(t, 5*time.Second, "state 1 on both sides", func() bool { return payloads(lstate) == "1" && payloads(rstate) == "1" })
	if m := lstate.all()[0]; !m.Retain {
		t.Error("local state not retained")
	}

	proxy.SetFilter(mqtttest.OnType(mqtttest.ClientToServer, packet.CONNECT, mqtttest.Cut))
	proxy.CutAll()
	bwait(t, 5*time.Second, "state 0 on both sides", func() bool {
		return payloads(lstate) == "1,0" && payloads(rstate) == "1,0" // remote: the will
	})
	if st := local.Broker.Stats().Bridges[0]; st.Connected || st.Name != "up" {
		t.Errorf("stats while down: %+v", st)
	}
	proxy.SetFilter(nil)
	bwait(t, 5*time.Second, "state 1 again", func() bool {
		return strings.HasSuffix(payloads(lstate), ",1") && strings.HasSuffix(payloads(rstate), ",1")
	})
	log := logs.String()
	for _, want := range []string{`msg="bridge up" bridge=up url=` + proxy.URL(), `msg="bridge down" bridge=up url=` + proxy.URL() + " err="} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q:\n%s", want, log)
		}
	}

	// A clean stop says 0 on the remote too: its DISCONNECT discards the
	// will that would have [MQTT-3.14.4-3].
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := local.Broker.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	bwait(t, 5*time.Second, "state 0 on the remote after a clean stop", func() bool {
		return strings.HasSuffix(payloads(rstate), ",1,0")
	})
}

// TestBridgeRetainedOnConnect checks that the local retained messages of
// outgoing topics are sent on every connection, as mosquitto's bridge does:
// one retained while the link was down (QoS 0, so not queued, and counted
// as dropped) is retained on the remote broker once the link is up.
func TestBridgeRetainedOnConnect(t *testing.T) {
	remote := mqtttest.NewServer(t, func(o *broker.Options) { o.AllowBridges = true })
	proxy := mqtttest.NewProxy(t, remote.URL)
	proxy.SetFilter(mqtttest.OnType(mqtttest.ClientToServer, packet.CONNECT, mqtttest.Cut))
	local := mqtttest.NewServer(t, func(o *broker.Options) {
		o.Bridges = []broker.Bridge{{
			Name: "ret", URLs: []string{proxy.URL()}, ClientID: "ret-bridge",
			Topics:       []broker.BridgeTopic{{Pattern: "s/#", Direction: broker.BridgeOut, QoS: 1, RemotePrefix: "r/"}},
			ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond,
		}}
	})
	if err := local.Broker.Publish(&packet.Publish{Topic: []byte("s/sticky"), Payload: []byte("kept"), Retain: true}); err != nil {
		t.Fatal(err)
	}
	if st := local.Broker.Stats().Bridges[0]; st.Dropped != 1 || st.Connected {
		t.Fatalf("stats %+v: want the QoS 0 message dropped while down", st)
	}
	proxy.SetFilter(nil)
	// Retained on the remote: the bridge's state and the message.
	bwait(t, 10*time.Second, "two retained messages on the remote", func() bool { return remote.Broker.Stats().Retained == 2 })
	late := collect(t, remote.URL, "late", "r/#", 1)
	bwait(t, 10*time.Second, "the retained message on the remote", func() bool { return late.count("r/s/sticky", "kept") == 1 })
	if m, _ := late.find("r/s/sticky", "kept"); !m.Retain {
		t.Error("not retained on the remote")
	}
}
