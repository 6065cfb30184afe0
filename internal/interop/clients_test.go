package interop

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/packet"
)

// observe connects a raw client with the test's credentials and subscribes
// it to filter at QoS 2: it sees exactly what the broker forwards.
func observe(t testing.TB, tg target, id, filter string) *rawClient {
	t.Helper()
	o := dialRaw(t, tg.addr, tg.name+"/"+id)
	o.mustConnect(&packet.Connect{ClientID: []byte(id), CleanSession: true, HasUsername: true, Username: []byte(user), HasPassword: true, Password: []byte(password)}, false)
	if got := o.subscribe(filter, 2); got[0] != 2 {
		t.Fatalf("%s: SUBACK %v", o.name, got)
	}
	return o
}

// noRetained subscribes a new raw client to topic and checks that no
// retained message comes: the client then publishes to a sentinel topic
// it is also subscribed to, which must be the first message it gets, since
// retained messages are sent on subscribing, before anything published
// later [MQTT-3.3.1-6].
func noRetained(t testing.TB, tg target, id, topic string) {
	t.Helper()
	o := observe(t, tg, id, topic)
	sentinel := "sentinel/" + id
	o.subscribe(sentinel, 1)
	o.publish(sentinel, "", 1, false)
	if got := o.waitFor(t, sentinel); len(got) != 1 {
		t.Fatalf("%s: got %s, want no retained message on %s", o.name, list(got), topic)
	}
}

// connectCmd is the connect command of a scripted client with the test's
// credentials and a will on willTopic (none when empty).
func connectCmd(tg target, id, pw, willTopic string) map[string]any {
	cmd := map[string]any{"op": "connect", "host": tg.host, "port": tg.port, "id": id, "clean": true, "keepalive": 30, "user": user, "password": pw}
	if willTopic != "" {
		cmd["will"] = map[string]any{"topic": willTopic, "payload": id + " gone", "qos": 1, "retain": false}
	}
	return cmd
}

func pubCmd(topic, payload string, qos byte, retain bool) map[string]any {
	return map[string]any{"op": "pub", "topic": topic, "payload": payload, "qos": qos, "retain": retain}
}

// TestClients runs the client libraries people use (Python paho-mqtt,
// MQTT.js) against tern's broker, and against mosquitto to prove the test:
// credentials and will on connect, QoS 0, 1 and 2 both ways, retained
// messages, unsubscribe, and the will when the client is killed.
func TestClients(t *testing.T) {
	for _, kind := range scriptKinds {
		for _, b := range brokers {
			t.Run(kind.name+"/"+b.name, func(t *testing.T) {
				testClient(t, kind, b.start(t, true))
			})
		}
	}
}

func testClient(t *testing.T, kind scriptKind, tg target) {
	k := kind.name
	prefix := "interop/" + k
	willTopic := prefix + "/will"

	// A wrong password is refused with the broker's return code
	// [MQTT-3.1.4-1] [MQTT-3.2.2-5].
	bad := kind.start(t, k+"-bad")
	if e := bad.do("connack", connectCmd(tg, k+"-bad", "wrong", "")); packet.ReturnCode(e.RC) != tg.refused || e.SP {
		t.Fatalf("wrong password: got %s, want CONNACK %d without session present", e.raw, tg.refused)
	}
	bad.kill()

	obs := observe(t, tg, "observer", prefix+"/#")
	obs.publish(prefix+"/retained", "r1", 1, true)
	obs.take(t, "own retained message, forwarded with RETAIN 0 [MQTT-3.3.1-9]", message{prefix + "/retained", "r1", 1, false})

	c := kind.start(t, k)
	if e := c.do("connack", connectCmd(tg, k, password, willTopic)); e.RC != 0 || e.SP {
		t.Fatalf("connect: got %s, want CONNACK 0 without session present [MQTT-3.2.2-1]", e.raw)
	}
	e := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{prefix + "/q/#", 2}, {prefix + "/retained", 1}}})
	if d := cmp.Diff([]int{2, 1}, e.Granted); d != "" {
		t.Fatalf("SUBACK granted (-want +got):\n%s", d)
	}
	// The retained message, at the subscription's QoS, RETAIN 1
	// [MQTT-3.3.1-6] [MQTT-3.3.1-8].
	c.take(t, "retained message on subscribing", message{prefix + "/retained", "r1", 1, true})

	// The client publishes at QoS 0, 1 and 2; the broker forwards to the
	// observer and back to the client itself at the same QoS, RETAIN 0.
	var sent []message
	for qos := byte(0); qos <= 2; qos++ {
		m := message{prefix + "/q/c" + string('0'+qos), k + " sends at QoS " + string('0'+qos), qos, false}
		c.do("pubdone", pubCmd(m.Topic, m.Payload, m.QoS, false))
		sent = append(sent, m)
	}
	c.take(t, "own messages", sent...)
	obs.take(t, "the client's messages", sent...)

	// The observer publishes at QoS 0, 1 and 2; the client gets them at
	// the same QoS.
	var got []message
	for qos := byte(0); qos <= 2; qos++ {
		m := message{prefix + "/q/o" + string('0'+qos), "to " + k + " at QoS " + string('0'+qos), qos, false}
		obs.publish(m.Topic, m.Payload, m.QoS, false)
		got = append(got, m)
	}
	c.take(t, "messages from the observer", got...)
	obs.take(t, "own messages", got...)

	// QoS 2 to a QoS 1 subscription arrives at QoS 1 [MQTT-3.8.4-6].
	obs.publish(prefix+"/retained", "down", 2, false)
	c.take(t, "QoS 2 message on a QoS 1 subscription", message{prefix + "/retained", "down", 1, false})
	obs.take(t, "own message", message{prefix + "/retained", "down", 2, false})

	// The client replaces the retained message: forwarded with RETAIN 0
	// [MQTT-3.3.1-9], stored with its QoS for new subscriptions.
	c.do("pubdone", pubCmd(prefix+"/retained", "r2", 2, true))
	c.take(t, "own retained message", message{prefix + "/retained", "r2", 1, false})
	obs.take(t, "the client's retained message", message{prefix + "/retained", "r2", 2, false})
	late := observe(t, tg, "late", prefix+"/retained")
	late.take(t, "the replaced retained message [MQTT-3.3.1-5]", message{prefix + "/retained", "r2", 2, true})

	// An empty retained message clears it [MQTT-3.3.1-10] [MQTT-3.3.1-11],
	// and is forwarded like any other.
	c.do("pubdone", pubCmd(prefix+"/retained", "", 0, true))
	c.take(t, "empty retained message", message{prefix + "/retained", "", 0, false})
	obs.take(t, "empty retained message", message{prefix + "/retained", "", 0, false})
	noRetained(t, tg, "later", prefix+"/retained")

	// Unsubscribe: nothing more on prefix/q/#; the other subscription
	// stays [MQTT-3.10.4-1].
	c.do("unsuback", map[string]any{"op": "unsub", "filters": []string{prefix + "/q/#"}})
	obs.publish(prefix+"/q/gone", "not for "+k, 1, false)
	obs.publish(prefix+"/retained", "sentinel", 1, false)
	c.take(t, "after unsubscribing", message{prefix + "/retained", "sentinel", 1, false})
	obs.skipTo(t, prefix+"/retained")

	// Killed, the client leaves its will to the broker [MQTT-3.1.2-8].
	c.kill()
	obs.take(t, "will of the killed client", message{willTopic, k + " gone", 1, false})

	// No will after DISCONNECT [MQTT-3.1.2-10] [MQTT-3.14.4-3]: the
	// observer's next message is its own sentinel.
	polite := kind.start(t, k+"-polite")
	if e := polite.do("connack", connectCmd(tg, k+"-polite", password, prefix+"/will2")); e.RC != 0 {
		t.Fatalf("connect: got %s", e.raw)
	}
	polite.do("closed", map[string]any{"op": "disconnect"})
	polite.kill()
	obs.publish(prefix+"/end", "", 1, false)
	obs.take(t, "no will after DISCONNECT", message{prefix + "/end", "", 1, false})
}

// TestClientSessions: paho-mqtt and MQTT.js with CleanSession 0 against
// tern's broker (and mosquitto): a session kept while the client is away
// gets the QoS 1 and 2 messages published meanwhile, not the QoS 0 ones
// [MQTT-3.1.2-4] [MQTT-3.1.2-5], and says so in CONNACK [MQTT-3.2.2-2];
// CleanSession 1 ends it [MQTT-3.1.2-6].
func TestClientSessions(t *testing.T) {
	for _, kind := range scriptKinds {
		for _, b := range brokers {
			t.Run(kind.name+"/"+b.name, func(t *testing.T) {
				testClientSession(t, kind, b.start(t, true))
			})
		}
	}
}

func testClientSession(t *testing.T, kind scriptKind, tg target) {
	k := kind.name
	prefix := "sess/" + k
	pub := observe(t, tg, "publisher", "unused")
	connect := func(c *scriptClient, clean, sessionPresent bool) {
		t.Helper()
		cmd := connectCmd(tg, k+"-session", password, "")
		cmd["clean"] = clean
		if e := c.do("connack", cmd); e.RC != 0 || e.SP != sessionPresent {
			t.Fatalf("connect with clean session %v: got %s, want CONNACK 0 with session present %v", clean, e.raw, sessionPresent)
		}
	}

	c := kind.start(t, k)
	connect(c, false, false)
	if e := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{prefix + "/#", 2}}}); len(e.Granted) != 1 || e.Granted[0] != 2 {
		t.Fatalf("SUBACK: %s", e.raw)
	}
	c.do("closed", map[string]any{"op": "disconnect"})
	c.kill()

	for qos := byte(0); qos <= 2; qos++ {
		pub.publish(prefix+"/away", "while away at QoS "+string('0'+qos), qos, false)
	}
	c = kind.start(t, k)
	connect(c, false, true)
	c.take(t, "messages kept for the session",
		message{prefix + "/away", "while away at QoS 1", 1, false},
		message{prefix + "/away", "while away at QoS 2", 2, false})
	pub.publish(prefix+"/back", "back", 1, false)
	c.take(t, "live message", message{prefix + "/back", "back", 1, false})
	c.do("closed", map[string]any{"op": "disconnect"})
	c.kill()

	// CleanSession 1 discards the session and its subscription.
	c = kind.start(t, k)
	connect(c, true, false)
	pub.publish(prefix+"/gone", "not delivered", 1, false)
	if e := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{prefix + "/end", 1}}}); len(e.Granted) != 1 || e.Granted[0] != 1 {
		t.Fatalf("SUBACK: %s", e.raw)
	}
	pub.publish(prefix+"/end", "end", 1, false)
	c.take(t, "only the message after the clean start", message{prefix + "/end", "end", 1, false})
}

// TestClientsMQTT31: paho-mqtt, MQTT.js and mosquitto_pub/mosquitto_sub
// speaking MQTT 3.1 (protocol name MQIsdp, level 3), which tern's broker
// accepts besides 3.1.1: connect with credentials, subscribe, and a QoS 2
// message both ways.
func TestClientsMQTT31(t *testing.T) {
	for _, b := range brokers {
		for _, kind := range scriptKinds {
			t.Run(kind.name+"/"+b.name, func(t *testing.T) {
				tg := b.start(t, true)
				k := kind.name + "-31"
				obs := observe(t, tg, "observer", "v31/#")
				c := kind.start(t, k)
				cmd := connectCmd(tg, k, password, "")
				cmd["level"] = 3
				if e := c.do("connack", cmd); e.RC != 0 {
					t.Fatalf("connect with MQTT 3.1: got %s, want CONNACK 0", e.raw)
				}
				if tg.level != nil && tg.level(k) != packet.Level31 {
					t.Fatalf("the broker saw protocol level %d, want %d", tg.level(k), packet.Level31)
				}
				if e := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{"v31/" + k, 2}}}); len(e.Granted) != 1 || e.Granted[0] != 2 {
					t.Fatalf("SUBACK: %s", e.raw)
				}
				m := message{"v31/" + k, "3.1 says hello", 2, false}
				c.do("pubdone", pubCmd(m.Topic, m.Payload, 2, false))
				c.take(t, "own message", m)
				obs.take(t, "the client's message", m)
				obs.publish(m.Topic, "hello 3.1", 2, false)
				c.take(t, "message from a 3.1.1 client", message{m.Topic, "hello 3.1", 2, false})
			})
		}
		t.Run("mosquitto_pub/"+b.name, func(t *testing.T) {
			subBin := mosquitto.Require(t, "mosquitto_sub")
			pubBin := mosquitto.Require(t, "mosquitto_pub")
			tg := b.start(t, true)
			sub := startProcess(t, "mosquitto_sub", parseCLI, append(append(lineBuffered(t, subBin), "-V", "mqttv31", "-d", "-q", "2", "-t", "v31/cli", "-F", subFormat),
				cliArgs(tg, "cli-31-sub", password)...)...)
			sub.waitLine("Subscribed (mid:")
			mustPub(t, pubBin, tg, "cli-31-pub", "-V", "mqttv31", "-q", "2", "-t", "v31/cli", "-m", "3.1 from the shell")
			sub.take(t, "mosquitto_pub's 3.1 message", message{"v31/cli", "3.1 from the shell", 2, false})
			if tg.level != nil {
				for _, id := range []string{"cli-31-sub", "cli-31-pub"} {
					if l := tg.level(id); l != packet.Level31 {
						t.Errorf("%s: the broker saw protocol level %d, want %d", id, l, packet.Level31)
					}
				}
			}
		})
	}
}

// TestClientsKeepAlive: paho-mqtt and MQTT.js with a keepalive of one
// second stay idle for four: their PINGREQs are answered [MQTT-3.12.4-1],
// they do not lose the connection, and the broker does not close it
// [MQTT-3.1.2-24].
func TestClientsKeepAlive(t *testing.T) {
	for _, kind := range scriptKinds {
		for _, b := range brokers {
			t.Run(kind.name+"/"+b.name, func(t *testing.T) {
				tg := b.start(t, true)
				k := kind.name + "-idle"
				c := kind.start(t, k)
				cmd := connectCmd(tg, k, password, "")
				cmd["keepalive"] = 1
				if e := c.do("connack", cmd); e.RC != 0 {
					t.Fatalf("connect: %s", e.raw)
				}
				if e := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{"idle/" + k, 1}}}); len(e.Granted) != 1 || e.Granted[0] != 1 {
					t.Fatalf("SUBACK: %s", e.raw)
				}
				time.Sleep(4 * time.Second)
				c.do("pubdone", pubCmd("idle/"+k, "still here", 1, false))
				c.take(t, "own message after idling", message{"idle/" + k, "still here", 1, false})
				c.mu.Lock()
				defer c.mu.Unlock()
				if len(c.reconnects) > 0 {
					t.Errorf("connection lost while idle: %v", c.reconnects[0].raw)
				}
			})
		}
	}
}
