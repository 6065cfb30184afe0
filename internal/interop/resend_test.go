package interop

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// TestClientsResend: paho-mqtt and MQTT.js with a persistent session
// lose their connection in the middle of a QoS 2 and then a QoS 1 flow (a
// fault-injecting proxy cuts it when the broker's PUBREC, then its PUBACK,
// is on its way), reconnect by themselves and send the PUBLISH again with
// DUP [MQTT-4.4.0-1]. The broker takes the QoS 2 message once
// [MQTT-4.3.3-2] and the QoS 1 message at least once [MQTT-4.3.2-2], and
// each flow completes.
func TestClientsResend(t *testing.T) {
	for _, kind := range scriptKinds {
		for _, b := range brokers {
			t.Run(kind.name+"/"+b.name, func(t *testing.T) {
				tg := b.start(t, true)
				k := kind.name + "-resend"
				obs := observe(t, tg, "observer", "resend/#")
				c := connectCut(t, tg, kind, k, mqtttest.ServerToClient)
				c.do("pubdone", pubCmd("resend/2", "exactly once", 2, false))
				c.do("pubdone", pubCmd("resend/1", "at least once", 1, false))
				c.do("pubdone", pubCmd("resend/end", "", 1, false))
				got := obs.waitFor(t, "resend/end")
				twos, ones := countResent(got, "resend")
				if twos != 1 || ones < 1 || len(got) != twos+ones+1 {
					t.Errorf("observer got %s; want the QoS 2 message once, the QoS 1 message at least once, then the end", list(got))
				}
				c.mu.Lock()
				n := 0
				for _, e := range c.reconnects {
					if e.Ev == "reconnack" {
						n++
						if e.RC != 0 || !e.SP {
							t.Errorf("reconnection: got %s, want CONNACK 0 with session present [MQTT-3.2.2-2]", e.raw)
						}
					}
				}
				c.mu.Unlock()
				if n != 2 {
					t.Errorf("%d reconnections, want 2 (one per cut)", n)
				}
				t.Logf("QoS 1 message delivered %d times", ones)
			})
		}
	}
}

// TestClientsRedelivery: the other way round. paho-mqtt and MQTT.js with a
// persistent session lose their connection when their PUBREC, then their
// PUBACK, is on its way to the broker; they reconnect, and the broker sends
// the unacknowledged PUBLISH again with DUP [MQTT-4.4.0-1]. The client
// delivers the QoS 2 message once and the QoS 1 message at least once.
func TestClientsRedelivery(t *testing.T) {
	for _, kind := range scriptKinds {
		for _, b := range brokers {
			t.Run(kind.name+"/"+b.name, func(t *testing.T) {
				tg := b.start(t, true)
				k := kind.name + "-redeliver"
				pub := observe(t, tg, "publisher", "unused")
				c := connectCut(t, tg, kind, k, mqtttest.ClientToServer)
				if e := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{"redeliver/#", 2}}}); len(e.Granted) != 1 || e.Granted[0] != 2 {
					t.Fatalf("SUBACK: %s", e.raw)
				}
				pub.publish("redeliver/2", "exactly once", 2, false)
				waitReconnects(t, c, 1)
				pub.publish("redeliver/1", "at least once", 1, false)
				waitReconnects(t, c, 2)
				pub.publish("redeliver/end", "", 1, false)
				got := c.waitFor(t, "redeliver/end")
				twos, ones := countResent(got, "redeliver")
				if twos != 1 || ones < 1 || len(got) != twos+ones+1 {
					t.Errorf("client got %s; want the QoS 2 message once, the QoS 1 message at least once, then the end", list(got))
				}
				t.Logf("QoS 1 message delivered %d times", ones)
			})
		}
	}
}

// connectCut connects a scripted client with a persistent session through
// a proxy that cuts the first connection at the PUBREC and the second at the
// PUBACK travelling in direction dir; the client reconnects by itself.
func connectCut(t *testing.T, tg target, kind scriptKind, id string, dir mqtttest.Direction) *scriptClient {
	t.Helper()
	proxy := mqtttest.NewProxy(t, tg.addr)
	proxy.SetFilter(mqtttest.Chain(
		mqtttest.OnConn(0, mqtttest.OnType(dir, packet.PUBREC, mqtttest.Cut)),
		mqtttest.OnConn(1, mqtttest.OnType(dir, packet.PUBACK, mqtttest.Cut)),
	))
	_, port, _ := net.SplitHostPort(proxy.Addr().String())
	c := kind.start(t, id)
	cmd := connectCmd(tg, id, password, "")
	cmd["port"], _ = strconv.Atoi(port)
	cmd["clean"] = false
	cmd["reconnect"] = 200
	if e := c.do("connack", cmd); e.RC != 0 || e.SP {
		t.Fatalf("connect: got %s, want CONNACK 0 without session present", e.raw)
	}
	return c
}

// countResent counts the deliveries of the QoS 2 and QoS 1 messages that
// TestClientsResend and TestClientsRedelivery publish under prefix.
func countResent(got []message, prefix string) (twos, ones int) {
	for _, m := range got {
		switch m {
		case message{prefix + "/2", "exactly once", 2, false}:
			twos++
		case message{prefix + "/1", "at least once", 1, false}:
			ones++
		}
	}
	return twos, ones
}

// waitReconnects waits until the scripted client has reconnected n times
// in all, with its session present.
func waitReconnects(t *testing.T, c *scriptClient, n int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		// Events other than reconnections are not expected meanwhile.
		select {
		case e := <-c.events:
			if e.Ev != "lost" && e.Ev != "reconnack" {
				t.Fatalf("%s: got %s while waiting for a reconnection", c.name, e.raw)
			}
			if e.Ev == "reconnack" && (e.RC != 0 || !e.SP) {
				t.Fatalf("%s: reconnection: got %s, want CONNACK 0 with session present [MQTT-3.2.2-2]", c.name, e.raw)
			}
			c.mu.Lock()
			c.reconnects = append(c.reconnects, e)
			c.mu.Unlock()
		case <-time.After(time.Until(deadline)):
			t.Fatalf("%s: fewer than %d reconnections within %v", c.name, n, timeout)
		}
		c.mu.Lock()
		got := 0
		for _, e := range c.reconnects {
			if e.Ev == "reconnack" {
				got++
			}
		}
		c.mu.Unlock()
		if got >= n {
			return
		}
	}
}
