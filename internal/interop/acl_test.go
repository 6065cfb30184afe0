package interop

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// The access rules of TestClientsDenied: the test's user may read and
// write acl/open/#, only read acl/ro/#, and nothing else under acl/.
const (
	aclOpen   = "acl/open/"
	aclRead   = "acl/ro/"
	aclSecret = "acl/secret/"
)

// startTernACL starts tern's broker with the credentials check and the
// access rules in its authorization hooks.
func startTernACL(t testing.TB) target {
	t.Helper()
	srv := mqtttest.NewServer(t, func(o *broker.Options) {
		o.Authenticate = func(c *broker.Client, pw []byte) packet.ReturnCode {
			if !c.HasUsername || c.Username != user || string(pw) != password {
				return packet.RefusedBadUsernameOrPassword
			}
			return packet.Accepted
		}
		o.AuthorizeSubscribe = func(c *broker.Client, filter []byte, qos byte) byte {
			if bytes.HasPrefix(filter, []byte(aclOpen)) || bytes.HasPrefix(filter, []byte(aclRead)) {
				return qos
			}
			return packet.SubackFailure
		}
		o.AuthorizePublish = func(c *broker.Client, topic []byte, qos byte, retain bool) bool {
			return bytes.HasPrefix(topic, []byte(aclOpen))
		}
	})
	return newTarget(t, "tern", srv.Addr, packet.RefusedBadUsernameOrPassword)
}

// startMosquittoACL starts mosquitto with the same rules in an acl_file.
func startMosquittoACL(t testing.TB) target {
	t.Helper()
	acl := filepath.Join(filepath.Dir(passwordFile(t)), "acl")
	rules := "user " + user + "\ntopic readwrite " + aclOpen + "#\ntopic read " + aclRead + "#\n"
	if err := os.WriteFile(acl, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"allow_anonymous false", "password_file " + passwordFile(t), "acl_file " + acl}})
	return newTarget(t, "mosquitto", b.Addr, packet.RefusedNotAuthorized)
}

// TestClientsDenied: what paho-mqtt, MQTT.js and mosquitto_sub see of
// refusals by the broker's access rules. A refused subscription gets the
// SUBACK failure code 0x80 [MQTT-3.9.3-2] (mosquitto 2.0.11 grants it
// instead and then delivers nothing: the test expects that of mosquitto,
// as shared/mosquitto.md says); a refused PUBLISH is acknowledged as usual
// and dropped [MQTT-3.3.5-2].
func TestClientsDenied(t *testing.T) {
	for _, b := range []struct {
		name  string
		start func(testing.TB) target
	}{{"tern", startTernACL}, {"mosquitto", startMosquittoACL}} {
		// What the broker grants for a refused QoS 1 subscription.
		denied := packet.SubackFailure
		if b.name == "mosquitto" {
			denied = 1
		}
		for _, kind := range scriptKinds {
			t.Run(kind.name+"/"+b.name, func(t *testing.T) {
				tg := b.start(t)
				k := kind.name
				obs := observe(t, tg, "observer", aclRead+"#")
				c := kind.start(t, k)
				if e := c.do("connack", connectCmd(tg, k, password, "")); e.RC != 0 {
					t.Fatalf("connect: %s", e.raw)
				}
				e := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{aclSecret + "#", 1}, {aclOpen + k, 1}}})
				if len(e.Granted) != 2 || e.Granted[0] != int(denied) || e.Granted[1] != 1 {
					t.Fatalf("SUBACK granted %v, want [%d 1]", e.Granted, denied)
				}
				// Refused: acknowledged, not delivered.
				c.do("pubdone", pubCmd(aclRead+k, "refused", 1, false))
				c.do("pubdone", pubCmd(aclOpen+k, "allowed", 1, false))
				c.take(t, "the allowed message", message{aclOpen + k, "allowed", 1, false})
				obs.publish(aclRead+"sentinel", "", 1, false) // the observer may not publish there either
				obs.publish(aclOpen+k, "open", 1, false)
				c.take(t, "the observer's message", message{aclOpen + k, "open", 1, false})
				// Everything routed to the observer before its own
				// sync message has arrived with it.
				obs.subscribe(aclOpen+"sync", 1)
				obs.publish(aclOpen+"sync", "", 1, false)
				if got := obs.waitFor(t, aclOpen+"sync"); len(got) != 1 {
					t.Errorf("observer of %s# got %s, want nothing: every PUBLISH there was refused", aclRead, list(got[:len(got)-1]))
				}
			})
		}
		t.Run("mosquitto_sub/"+b.name, func(t *testing.T) {
			subBin := mosquitto.Require(t, "mosquitto_sub")
			tg := b.start(t)
			sub := startProcess(t, "mosquitto_sub", parseCLI, append(append(lineBuffered(t, subBin), "-d", "-q", "1",
				"-t", aclSecret+"#", "-t", aclOpen+"cli", "-F", subFormat), cliArgs(tg, "cli-acl", password)...)...)
			want := "Subscribed (mid: 1): 128, 1"
			if b.name == "mosquitto" {
				want = "Subscribed (mid: 1): 1, 1"
			}
			if line := sub.waitLine("Subscribed (mid:"); !strings.HasSuffix(line, want) {
				t.Fatalf("mosquitto_sub: %q, want %q", line, want)
			}
		})
	}
}
