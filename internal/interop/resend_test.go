package interop

import (
	"net"
	"strconv"
	"testing"

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
				proxy := mqtttest.NewProxy(t, tg.addr)
				proxy.SetFilter(mqtttest.Chain(
					mqtttest.OnConn(0, mqtttest.OnType(mqtttest.ServerToClient, packet.PUBREC, mqtttest.Cut)),
					mqtttest.OnConn(1, mqtttest.OnType(mqtttest.ServerToClient, packet.PUBACK, mqtttest.Cut)),
				))
				_, port, _ := net.SplitHostPort(proxy.Addr().String())

				c := kind.start(t, k)
				cmd := connectCmd(tg, k, password, "")
				cmd["port"], _ = strconv.Atoi(port)
				cmd["clean"] = false
				cmd["reconnect"] = 200
				if e := c.do("connack", cmd); e.RC != 0 || e.SP {
					t.Fatalf("connect: got %s, want CONNACK 0 without session present", e.raw)
				}
				c.do("pubdone", pubCmd("resend/2", "exactly once", 2, false))
				c.do("pubdone", pubCmd("resend/1", "at least once", 1, false))
				c.do("pubdone", pubCmd("resend/end", "", 1, false))
				got := obs.waitFor(t, "resend/end")
				var twos, ones int
				for _, m := range got {
					switch m {
					case message{"resend/2", "exactly once", 2, false}:
						twos++
					case message{"resend/1", "at least once", 1, false}:
						ones++
					}
				}
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
