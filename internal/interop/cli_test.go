package interop

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/packet"
)

// mosquitto_sub prints each message as one line in this format; the payload
// comes last, so it may hold spaces.
const subFormat = "MSG %t %q %r %p"

// parseCLI reads a line of mosquitto_sub or mosquitto_pub: a message in
// subFormat, or any other line (debug output with -d).
func parseCLI(line string) event {
	if rest, ok := strings.CutPrefix(line, "MSG "); ok {
		f := strings.SplitN(rest, " ", 4)
		if len(f) == 4 {
			qos, err1 := strconv.Atoi(f[1])
			retain, err2 := strconv.Atoi(f[2])
			if err1 == nil && err2 == nil {
				return event{Ev: "msg", Topic: f[0], QoS: byte(qos), Retain: retain == 1, Payload: f[3]}
			}
		}
	}
	return event{Ev: "line"}
}

// lineBuffered returns the command that runs bin with its standard output
// line buffered (stdbuf -oL), so that its debug lines (-d) arrive as they
// are written: the mosquitto clients flush only after messages.
func lineBuffered(t testing.TB, bin string) []string {
	t.Helper()
	stdbuf := mosquitto.Require(t, "stdbuf")
	return []string{stdbuf, "-oL", bin}
}

// waitLine waits for a line of output holding s, skipping the others.
func (c *scriptClient) waitLine(s string) string {
	c.t.Helper()
	for {
		e := c.expect("line", "waiting for "+strconv.Quote(s))
		if strings.Contains(e.raw, s) {
			return e.raw
		}
	}
}

// cliArgs are the arguments every mosquitto client of the test gets:
// where the broker is, and who the client is.
func cliArgs(tg target, id, pw string) []string {
	return []string{"-h", tg.host, "-p", strconv.Itoa(tg.port), "-i", id, "-u", user, "-P", pw}
}

// refusalText is how mosquitto's clients print CONNACK return codes 4 and 5.
var refusalText = map[packet.ReturnCode]string{
	packet.RefusedBadUsernameOrPassword: "Connection Refused: bad user name or password",
	packet.RefusedNotAuthorized:         "Connection Refused: not authorised",
}

// runCLI runs a mosquitto client to its end, with a time limit, and
// returns its combined output.
func runCLI(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// mustPub runs mosquitto_pub with args after the client's, expecting
// success.
func mustPub(t testing.TB, pubBin string, tg target, id string, args ...string) {
	t.Helper()
	if out, err := runCLI(t, pubBin, append(cliArgs(tg, id, password), args...)...); err != nil {
		t.Fatalf("mosquitto_pub %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestMosquittoClients runs mosquitto_sub and mosquitto_pub (Debian's
// mosquitto-clients) against tern's broker, and against mosquitto to prove
// the test: credentials and will on connect, QoS 0, 1 and 2 both ways,
// retained messages set and cleared, unsubscribe, and the will when the
// client is killed.
func TestMosquittoClients(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			subBin := mosquitto.Require(t, "mosquitto_sub")
			pubBin := mosquitto.Require(t, "mosquitto_pub")
			testCLI(t, b.start(t, true), subBin, pubBin)
		})
	}
}

func testCLI(t *testing.T, tg target, subBin, pubBin string) {
	const prefix = "interop/cli"

	// A wrong password is refused with the broker's return code
	// [MQTT-3.1.4-1] [MQTT-3.2.2-5].
	for bin, args := range map[string][]string{
		subBin: {"-t", prefix + "/bad", "-W", "5"},
		pubBin: {"-t", prefix + "/bad", "-m", "x"},
	} {
		out, err := runCLI(t, bin, append(cliArgs(tg, "cli-bad", "wrong"), args...)...)
		if err == nil || !strings.Contains(out, refusalText[tg.refused]) {
			t.Errorf("%s with a wrong password: %v, output %q; want a failure saying %q", bin, err, out, refusalText[tg.refused])
		}
	}

	obs := observe(t, tg, "observer", prefix+"/#")
	obs.publish(prefix+"/retained", "r1", 1, true)
	obs.take(t, "own retained message", message{prefix + "/retained", "r1", 1, false})

	sub := startProcess(t, "mosquitto_sub", parseCLI, append(append(lineBuffered(t, subBin), "-d", "-k", "30", "-q", "2",
		"-t", prefix+"/q/#", "-t", prefix+"/retained", "-F", subFormat,
		"--will-topic", prefix+"/will", "--will-payload", "cli-sub gone", "--will-qos", "1"),
		cliArgs(tg, "cli-sub", password)...)...)
	sub.waitLine("received CONNACK (0)")
	if line := sub.waitLine("Subscribed (mid:"); !strings.HasSuffix(line, ": 2, 2") {
		t.Fatalf("mosquitto_sub: %q, want QoS 2 granted twice", line)
	}
	// The retained message, at the message's QoS 1 (below the
	// subscription's), RETAIN 1 [MQTT-3.3.1-6] [MQTT-3.3.1-8].
	sub.take(t, "retained message on subscribing", message{prefix + "/retained", "r1", 1, true})

	// mosquitto_pub publishes at QoS 0, 1 and 2; the subscribers get the
	// messages at that QoS, RETAIN 0.
	var sent []message
	for qos := byte(0); qos <= 2; qos++ {
		q := string('0' + qos)
		m := message{prefix + "/q/p" + q, "mosquitto_pub at QoS " + q, qos, false}
		mustPub(t, pubBin, tg, "cli-pub", "-q", q, "-t", m.Topic, "-m", m.Payload)
		sent = append(sent, m)
	}
	sub.take(t, "mosquitto_pub's messages", sent...)
	obs.take(t, "mosquitto_pub's messages", sent...)

	// The observer publishes at QoS 0, 1 and 2; mosquitto_sub gets them
	// at that QoS.
	var got []message
	for qos := byte(0); qos <= 2; qos++ {
		q := string('0' + qos)
		m := message{prefix + "/q/o" + q, "raw at QoS " + q, qos, false}
		obs.publish(m.Topic, m.Payload, m.QoS, false)
		got = append(got, m)
	}
	sub.take(t, "the observer's messages", got...)
	obs.take(t, "own messages", got...)

	// mosquitto_pub -r replaces the retained message: forwarded with
	// RETAIN 0 [MQTT-3.3.1-9], stored for new subscriptions
	// [MQTT-3.3.1-5].
	mustPub(t, pubBin, tg, "cli-pub", "-r", "-q", "1", "-t", prefix+"/retained", "-m", "r2")
	sub.take(t, "retained message", message{prefix + "/retained", "r2", 1, false})
	obs.take(t, "retained message", message{prefix + "/retained", "r2", 1, false})
	late := observe(t, tg, "late", prefix+"/retained")
	late.take(t, "the replaced retained message", message{prefix + "/retained", "r2", 1, true})

	// mosquitto_pub -r -n clears it [MQTT-3.3.1-10] [MQTT-3.3.1-11].
	mustPub(t, pubBin, tg, "cli-pub", "-r", "-n", "-t", prefix+"/retained")
	sub.take(t, "empty retained message", message{prefix + "/retained", "", 0, false})
	obs.take(t, "empty retained message", message{prefix + "/retained", "", 0, false})
	noRetained(t, tg, "later", prefix+"/retained")

	// mosquitto_sub -U unsubscribes after subscribing: nothing more on
	// prefix/q/#, the other subscription stays [MQTT-3.10.4-1].
	unsub := startProcess(t, "mosquitto_sub -U", parseCLI, append(append(lineBuffered(t, subBin), "-d", "-q", "1",
		"-t", prefix+"/q/#", "-t", prefix+"/retained", "-U", prefix+"/q/#", "-F", subFormat),
		cliArgs(tg, "cli-unsub", password)...)...)
	unsub.waitLine("received UNSUBACK")
	obs.publish(prefix+"/q/gone", "not for cli-unsub", 1, false)
	obs.publish(prefix+"/retained", "sentinel", 1, false)
	unsub.take(t, "after unsubscribing", message{prefix + "/retained", "sentinel", 1, false})
	sub.take(t, "both messages", message{prefix + "/q/gone", "not for cli-unsub", 1, false}, message{prefix + "/retained", "sentinel", 1, false})
	obs.skipTo(t, prefix+"/retained")
	unsub.kill() // it had no will

	// Killed, mosquitto_sub leaves its will [MQTT-3.1.2-8].
	sub.kill()
	obs.take(t, "will of the killed mosquitto_sub", message{prefix + "/will", "cli-sub gone", 1, false})

	// mosquitto_pub -l stays connected, publishing the lines of its input;
	// killed, it leaves its will, here a retained one: forwarded with
	// RETAIN 0 and kept for new subscriptions [MQTT-3.1.2-17].
	lines := startProcess(t, "mosquitto_pub -l", parseCLI, append(append(lineBuffered(t, pubBin), "-d", "-l", "-q", "1", "-t", prefix+"/lines",
		"--will-topic", prefix+"/pubwill", "--will-payload", "cli-pub gone", "--will-qos", "2", "--will-retain"),
		cliArgs(tg, "cli-lines", password)...)...)
	lines.waitLine("received CONNACK (0)")
	if _, err := lines.stdin.Write([]byte("hello from stdin\n")); err != nil {
		t.Fatal(err)
	}
	obs.take(t, "mosquitto_pub -l's line", message{prefix + "/lines", "hello from stdin", 1, false})
	lines.kill()
	obs.take(t, "will of the killed mosquitto_pub", message{prefix + "/pubwill", "cli-pub gone", 2, false})
	retained := observe(t, tg, "retained-will", prefix+"/pubwill")
	retained.take(t, "the retained will", message{prefix + "/pubwill", "cli-pub gone", 2, true})

	// mosquitto_pub ends with DISCONNECT: no will [MQTT-3.1.2-10]
	// [MQTT-3.14.4-3]. The observer's next messages are mosquitto_pub's
	// and its own sentinel.
	mustPub(t, pubBin, tg, "cli-polite", "--will-topic", prefix+"/will2", "--will-payload", "not sent", "-q", "1", "-t", prefix+"/bye", "-m", "bye")
	obs.publish(prefix+"/end", "", 1, false)
	obs.take(t, "no will after DISCONNECT", message{prefix + "/bye", "bye", 1, false}, message{prefix + "/end", "", 1, false})
}
