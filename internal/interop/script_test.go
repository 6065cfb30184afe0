package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/mosquitto"
)

// A scripted client is an MQTT client library in another language (Python
// paho-mqtt, MQTT.js) running a small script from testdata that takes one
// JSON command a line on stdin and writes one JSON event a line on stdout:
//
//	{"op":"connect","host":H,"port":P,"id":ID,"clean":B,"keepalive":S,
//	 "user":U,"password":PW,"will":{"topic":T,"payload":P,"qos":Q,"retain":B},
//	 "transport":"tcp"|"tls"|"ws"|"wss","path":WS_PATH,"ca":FILE,"cert":FILE,"key":FILE,
//	 "level":3 for MQTT 3.1, else 3.1.1}
//	                                              -> {"ev":"connack","rc":RC,"sp":B}
//	{"op":"sub","filters":[[F,Q],...]}            -> {"ev":"suback","granted":[Q,...]}
//	{"op":"unsub","filters":[F,...]}              -> {"ev":"unsuback"}
//	{"op":"pub","topic":T,"payload":P,"qos":Q,"retain":B}
//	                                              -> {"ev":"pubdone"} once its QoS flow is complete
//	{"op":"disconnect"}                           -> {"ev":"closed"}
//	and at any time                                  {"ev":"msg","topic":T,"payload":P,"qos":Q,"retain":B}
//	                                                 {"ev":"error","error":E}
//	                                                 {"ev":"lost"} the connection was lost
//	                                                 {"ev":"reconnack","rc":RC,"sp":B} reconnected by itself
//
// connect takes "reconnect":MS for MQTT.js to reconnect after MS
// milliseconds (paho always reconnects, after a second). "lost" and
// "reconnack" events are counted, not waited for.
//
// The test sends a command and waits for its event, so commands never
// overlap; messages go to the client's inbox.

// event is one line a script writes.
type event struct {
	Ev      string `json:"ev"`
	RC      int    `json:"rc"`
	SP      bool   `json:"sp"`
	Granted []int  `json:"granted"`
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     byte   `json:"qos"`
	Retain  bool   `json:"retain"`
	Error   string `json:"error"`
	raw     string
}

// scriptClient is a running script.
type scriptClient struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event // everything but messages and errors
	inbox

	stderr     bytes.Buffer // guarded by inbox.mu
	reconnects []event      // "lost" and "reconnack" events, guarded by inbox.mu
	cancel     context.CancelFunc
	exited     chan struct{} // closed when the process has been waited for
}

// processTimeout bounds the life of every external process, so that none
// outlives a stuck test.
const processTimeout = 2 * time.Minute

// startScript runs argv as a scripted client named name.
func startScript(t testing.TB, name string, argv ...string) *scriptClient {
	t.Helper()
	return startProcess(t, name, parseJSON, argv...)
}

// parseJSON reads a line of a scripted client.
func parseJSON(line string) event {
	var e event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		e = event{Ev: "error", Error: fmt.Sprintf("not JSON: %v", err)}
	}
	return e
}

// startProcess runs argv, with parse turning each line it writes into an
// event; "msg" events go to the inbox, the others to c.events.
func startProcess(t testing.TB, name string, parse func(string) event, argv ...string) *scriptClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processTimeout)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c := &scriptClient{t: t, cmd: cmd, events: make(chan event, 64), inbox: newInbox(name), cancel: cancel, exited: make(chan struct{})}
	c.inbox.done = c.exited
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.stderr.Write(p)
	})
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 4<<20) // lines with large payloads
		for sc.Scan() {
			e := parse(sc.Text())
			e.raw = sc.Text()
			switch e.Ev {
			case "msg":
				c.add(message{e.Topic, e.Payload, e.QoS, e.Retain})
			default:
				select {
				case c.events <- e:
				default: // nobody waits for that many: the test fails anyway
				}
			}
		}
	}()
	go func() {
		<-read
		err := cmd.Wait()
		c.mu.Lock()
		c.readErr = fmt.Errorf("process ended: %v", err)
		c.mu.Unlock()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			c.mu.Lock()
			t.Logf("%s stderr:\n%s", name, c.stderr.String())
			c.mu.Unlock()
		}
	})
	return c
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// kill ends the process at once with SIGKILL, as a crash: its connection
// is closed by the kernel without DISCONNECT. It waits for the process.
func (c *scriptClient) kill() {
	c.cmd.Process.Kill()
	c.cancel()
	<-c.exited
}

// do sends a command and waits for the event want, failing on an error
// event or another event.
func (c *scriptClient) do(want string, cmd map[string]any) event {
	c.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("%s: writing %s: %v", c.name, b, err)
	}
	return c.expect(want, string(b))
}

// expect waits for the event want.
func (c *scriptClient) expect(want, after string) event {
	c.t.Helper()
	var e event
	select {
	case e = <-c.events:
	case <-c.exited:
		// Events are queued before the process is waited for: look again.
		select {
		case e = <-c.events:
		default:
			c.t.Fatalf("%s: after %s: %v, while waiting for a %q event", c.name, after, c.err(), want)
		}
	case <-time.After(timeout):
		c.t.Fatalf("%s: after %s: no %q event within %v", c.name, after, want, timeout)
	}
	if e.Ev == "lost" || e.Ev == "reconnack" {
		c.mu.Lock()
		c.reconnects = append(c.reconnects, e)
		c.mu.Unlock()
		return c.expect(want, after)
	}
	if e.Ev != want {
		c.t.Fatalf("%s: after %s: got %s, want a %q event", c.name, after, e.raw, want)
	}
	return e
}

// scriptKind is a client library reached through a script.
type scriptKind struct {
	name  string
	start func(t testing.TB, name string) *scriptClient
}

var scriptKinds = []scriptKind{
	{"paho", func(t testing.TB, name string) *scriptClient {
		t.Helper()
		python := mosquitto.RequirePython(t, "paho.mqtt.client")
		return startScript(t, name, python, "-u", "testdata/paho_client.py")
	}},
	{"mqttjs", func(t testing.TB, name string) *scriptClient {
		t.Helper()
		node := mosquitto.Require(t, "node")
		if _, err := os.Stat("node_modules/mqtt/package.json"); err != nil {
			mosquitto.Missing(t, "MQTT.js is not installed: run `npm ci` in internal/interop (%v)", err)
		}
		return startScript(t, name, node, "testdata/mqttjs_client.js")
	}},
}
