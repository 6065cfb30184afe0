package main

// Tests that run tern sub and mosquitto_sub (and tern pub and
// mosquitto_pub) side by side against the same mosquitto, and compare what
// they print and their exit codes: scripts written for mosquitto's clients
// must work with tern's.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/mosquitto"
)

// lookMosquitto returns the path of one of mosquitto's clients (skipping
// or failing the test as mosquitto.Require does when it is missing).
func lookMosquitto(t *testing.T, name string) string {
	t.Helper()
	return mosquitto.Require(t, name)
}

// runBin runs a program to completion within 30 seconds.
func runBin(t *testing.T, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s %s: %v", bin, strings.Join(args, " "), err)
	}
	return r
}

// port returns the port of an mqtt:// URL.
func port(url string) string {
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(url, "mqtt://"))
	return p
}

// twins runs the same sub (or pub) arguments with tern and with
// mosquitto's client, against the broker at url (user and password
// optional).
type twins struct {
	t        *testing.T
	url      string
	mosqSub  string
	mosqPub  string
	userArgs []string
}

func (w *twins) sub(args ...string) (tern, mosq result) {
	w.t.Helper()
	return w.run("sub", w.mosqSub, args)
}

func (w *twins) pub(args ...string) (tern, mosq result) {
	w.t.Helper()
	return w.run("pub", w.mosqPub, args)
}

// run runs both at once, so that they see the same live messages.
func (w *twins) run(cmd, mosqBin string, args []string) (tern, mosq result) {
	w.t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		mosq = runBin(w.t, mosqBin, append(append([]string{"-h", "127.0.0.1", "-p", port(w.url)}, w.userArgs...), args...)...)
	}()
	tern = runTern(w.t, "", append(append([]string{cmd, "-L", w.url}, w.userArgs...), args...)...)
	wg.Wait()
	return tern, mosq
}

// timeShapes replaces the times mosquitto_sub prints (%I, %U, the tst of
// %j, @ fields) with their shape, for outputs that differ by the clock.
var timeShapes = []struct {
	re    *regexp.Regexp
	shape string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}`), "TST"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}`), "ISO8601"},
	{regexp.MustCompile(`\d{10}\.\d{9}`), "UNIXNS"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9}`), "STRFTIME"},
}

func shape(s string) string {
	for _, ts := range timeShapes {
		s = ts.re.ReplaceAllString(s, ts.shape)
	}
	return s
}

// TestFormatsLikeMosquittoSub runs -F formats and flags with tern sub and
// mosquitto_sub against the same mosquitto, and compares their output byte
// for byte (times by their shape) and their exit codes.
func TestFormatsLikeMosquittoSub(t *testing.T) {
	t.Parallel() // each with its own brokers; after the sequential tests
	w := &twins{t: t, mosqSub: lookMosquitto(t, "mosquitto_sub"), mosqPub: lookMosquitto(t, "mosquitto_pub")}
	b := mosquitto.Start(t, mosquitto.Config{})
	w.url = b.URL
	// Retained messages: they come first, in the same order to both.
	for _, m := range []struct{ topic, payload, qos string }{
		{"f/1", "he said \"hi\"\ttab\x01 é", "1"},
		{"f/2", "\xff\xfe\x7f binary", "0"},
		{"f/3", `{"temperature": 21.5, "tags": ["a", "b"]}`, "2"},
		{"f/long/topic/name", "x", "1"},
	} {
		if r := runTern(t, "", "pub", "-L", b.URL, "-t", m.topic, "-m", m.payload, "-q", m.qos, "-r"); r.code != 0 {
			t.Fatalf("pub: %d %s", r.code, r.stderr)
		}
	}
	// A live message every 50 ms, for the flags that wait for one.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				runTern(t, "", "pub", "-L", b.URL, "-t", "f/live", "-m", "live", "-q", "1")
				runTern(t, "", "pub", "-L", b.URL, "-t", "empty", "-n")
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	for _, args := range [][]string{
		{"-C", "4"},
		{"-C", "4", "-v"},
		{"-C", "4", "-N"},
		{"-C", "4", "-v", "-N"},
		{"-C", "4", "-F", "%t %p"},
		{"-C", "4", "-F", "%t|%q|%r|%l|%m"},
		{"-C", "4", "-F", "%x %X"},
		{"-C", "4", "-F", "%10t|%-10t|%5l|%05l|%-05l|%5m|%.3t|%5.4t|%5q|%05r"},
		{"-C", "4", "-F", "%j"},
		{"-C", "4", "-F", "%J"},
		{"-C", "4", "-F", "%I|%U|%-30I|%.10I"},
		{"-C", "4", "-F", `a\tb\\c\e[0m\0\a\r%%@@`},
		{"-C", "4", "-F", "@Y-@m-@d @H:@M:@S.@N"},
		{"-C", "4", "-F", "%t", "-N"},
		{"-C", "4", "-F", "%A%C%D%E%F%P%R%S."},
		{"-C", "3", "-T", "f/2"},
		{"-C", "1", "-T", "f/+", "-v"},
		{"-C", "1", "-R", "-v"},
		{"--retained-only", "-v", "-W", "10"},
		{"-C", "4", "-q", "2", "-T", "f/live", "-F", "%t %q %r"},
		{"-C", "2", "-t", "empty"},
		{"-C", "2", "-t", "empty", "-v"},
		{"-C", "2", "-t", "empty", "-v", "-N"},
		{"-C", "2", "-t", "empty", "-F", "%t:%p:%l:%x|%j"},
		{"-C", "1", "-W", "1", "-t", "nothing/here"},
		{"-W", "1", "-t", "nothing/here"},
		{"-F", "%z"},
		{"-F", "50%"},
		{"-F", `\q`},
	} {
		full := args
		if !slices.Contains(args, "-t") {
			full = append([]string{"-t", "f/#"}, full...)
		}
		if !slices.Contains(args, "-q") {
			full = append([]string{"-q", "1"}, full...)
		}
		tr, mr := w.sub(full...)
		if slices.Contains(full, "2") {
			// mosquitto_sub prints a QoS 2 message once its PUBREL has
			// come, tern sub when the PUBLISH has: the order may differ.
			tr.stdout, mr.stdout = sortLines(tr.stdout), sortLines(mr.stdout)
		}
		if tr.code != mr.code {
			t.Errorf("sub %q: exit %d, mosquitto_sub %d (stderr %q / %q)", full, tr.code, mr.code, tr.stderr, mr.stderr)
		}
		if got, want := shape(tr.stdout), shape(mr.stdout); got != want {
			t.Errorf("sub %q printed\n%q\nmosquitto_sub\n%q", full, got, want)
		}
	}
}

// TestRemoveRetainedLikeMosquittoSub: --remove-retained clears what it
// prints, as mosquitto_sub's does.
func TestRemoveRetainedLikeMosquittoSub(t *testing.T) {
	t.Parallel() // each with its own brokers; after the sequential tests
	w := &twins{t: t, mosqSub: lookMosquitto(t, "mosquitto_sub"), mosqPub: lookMosquitto(t, "mosquitto_pub")}
	b := mosquitto.Start(t, mosquitto.Config{})
	w.url = b.URL
	var outs [2]result
	for i, tool := range []string{"tern", "mosquitto"} {
		for _, tp := range []string{"rm/1", "rm/2/x"} {
			if r := runTern(t, "", "pub", "-L", b.URL, "-t", tp, "-m", "v "+tp, "-r"); r.code != 0 {
				t.Fatal(r.stderr)
			}
		}
		// Not -C: mosquitto_sub 2.0.11 --remove-retained does not exit
		// after -C messages (tern sub does). It gets its own clearing
		// messages back, empty: -v prints them "(null)".
		args := []string{"-t", "rm/#", "-v", "--remove-retained", "-W", "2"}
		if tool == "tern" {
			outs[i] = runTern(t, "", append([]string{"sub", "-L", b.URL}, args...)...)
		} else {
			outs[i] = runBin(t, w.mosqSub, append([]string{"-h", "127.0.0.1", "-p", port(b.URL)}, args...)...)
		}
		// Nothing retained is left.
		if r := runTern(t, "", "sub", "-L", b.URL, "-t", "rm/#", "-C", "1", "-W", "1"); r.code != exitTimeout || r.stdout != "" {
			t.Errorf("%s --remove-retained left %q (exit %d)", tool, r.stdout, r.code)
		}
	}
	if outs[0].code != outs[1].code || outs[0].stdout != outs[1].stdout || outs[0].code != exitTimeout {
		t.Errorf("tern sub %+v, mosquitto_sub %+v", outs[0], outs[1])
	}
}

// TestUnsubscribeLikeMosquittoSub: -U removes a subscription from a
// persistent session, which then queues nothing for it.
func TestUnsubscribeLikeMosquittoSub(t *testing.T) {
	t.Parallel() // each with its own brokers; after the sequential tests
	w := &twins{t: t, mosqSub: lookMosquitto(t, "mosquitto_sub"), mosqPub: lookMosquitto(t, "mosquitto_pub")}
	b := mosquitto.Start(t, mosquitto.Config{})
	w.url = b.URL
	for _, tool := range []string{"tern", "mosquitto"} {
		id := "u-" + tool
		run := func(args ...string) result {
			if tool == "tern" {
				return runTern(t, "", append([]string{"sub", "-L", b.URL, "-c", "-i", id, "-q", "1"}, args...)...)
			}
			return runBin(t, w.mosqSub, append([]string{"-h", "127.0.0.1", "-p", port(b.URL), "-c", "-i", id, "-q", "1"}, args...)...)
		}
		if r := run("-t", "u/x", "-t", "u/y", "-E"); r.code != 0 {
			t.Fatalf("%s -E: %d %s", tool, r.code, r.stderr)
		}
		if r := run("-U", "u/x", "-t", "u/y", "-E"); r.code != 0 {
			t.Fatalf("%s -U: %d %s", tool, r.code, r.stderr)
		}
		runTern(t, "", "pub", "-L", b.URL, "-t", "u/x", "-m", "dropped", "-q", "1")
		runTern(t, "", "pub", "-L", b.URL, "-t", "u/y", "-m", "kept", "-q", "1")
		if r := run("-t", "u/y", "-C", "2", "-W", "1"); r.code != exitTimeout || r.stdout != "kept\n" {
			t.Errorf("%s after -U: exit %d, printed %q; want %d and only the message for u/y", tool, r.code, r.stdout, exitTimeout)
		}
	}
}

// TestExitCodesLikeMosquitto compares the exit codes of tern and
// mosquitto's clients for refusals and timeouts against one mosquitto.
func TestExitCodesLikeMosquitto(t *testing.T) {
	t.Parallel() // each with its own brokers; after the sequential tests
	w := &twins{t: t, mosqSub: lookMosquitto(t, "mosquitto_sub"), mosqPub: lookMosquitto(t, "mosquitto_pub")}
	b := mosquitto.Start(t, mosquitto.Config{
		Users: map[string]string{"alice": "secret"},
		Files: map[string]string{"acl": "user alice\ntopic readwrite a/#\n"},
		Extra: []string{"acl_file $DIR/acl"},
	})
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "mqtt://" + l.Addr().String()
	}()
	for _, c := range []struct {
		name string
		url  string
		user []string
		cmd  string
		args []string
		code int
	}{
		// mosquitto 2.0.11 answers a wrong password with 5, not 4.
		{"bad password", b.URL, []string{"-u", "alice", "-P", "wrong"}, "sub", []string{"-t", "a/x", "-C", "1"}, 5},
		{"bad password, pub", b.URL, []string{"-u", "alice", "-P", "wrong"}, "pub", []string{"-t", "a/x", "-m", "x"}, 5},
		{"not authorized", b.URL, nil, "sub", []string{"-t", "a/x", "-C", "1"}, 5},
		{"not authorized, pub", b.URL, nil, "pub", []string{"-t", "a/x", "-m", "x"}, 5},
		{"connection refused", closed, nil, "sub", []string{"-t", "a/x", "-C", "1"}, 1},
		{"connection refused, pub", closed, nil, "pub", []string{"-t", "a/x", "-m", "x"}, 1},
		{"timeout with -W", b.URL, []string{"-u", "alice", "-P", "secret"}, "sub", []string{"-t", "a/x", "-C", "1", "-W", "1"}, exitTimeout},
		// mosquitto 2.0.11 grants a subscription its ACL denies and sends
		// nothing on it: both wait, and -W ends them.
		{"denied subscription", b.URL, []string{"-u", "alice", "-P", "secret"}, "sub", []string{"-t", "b/x", "-C", "1", "-W", "1"}, exitTimeout},
		// mosquitto acknowledges a publication its ACL denies, and drops it.
		{"denied publication", b.URL, []string{"-u", "alice", "-P", "secret"}, "pub", []string{"-t", "b/x", "-m", "x", "-q", "1"}, 0},
		{"bad usage", b.URL, nil, "sub", []string{"-t", "a/#/b"}, 1},
	} {
		w.url, w.userArgs = c.url, c.user
		tr, mr := w.run(c.cmd, map[string]string{"sub": w.mosqSub, "pub": w.mosqPub}[c.cmd], c.args)
		if tr.code != c.code || mr.code != c.code {
			t.Errorf("%s: tern %s exit %d (%q), mosquitto_%s %d (%q); want %d", c.name, c.cmd, tr.code, tr.stderr, c.cmd, mr.code, mr.stderr, c.code)
		}
	}
}

// TestDeniedSubscriptionTernBroker: tern's broker refuses a subscription its
// ACL denies with SUBACK 0x80. mosquitto_sub 2.0.11 then says "All
// subscription requests were denied." and exits 0; tern sub exits 1 with
// the filters refused, since it can receive nothing. With one filter
// granted, both go on.
func TestDeniedSubscriptionTernBroker(t *testing.T) {
	t.Parallel() // each with its own brokers; after the sequential tests
	mosqSub := lookMosquitto(t, "mosquitto_sub")
	dir := t.TempDir()
	pw, acl := dir+"/passwd", dir+"/acl"
	writeFile(t, pw, "alice:secret\n")
	writeFile(t, acl, "user alice\ntopic readwrite a/#\n")
	url := startBroker(t, []string{"-passwd", pw, "-acl", acl}, "mqtt://127.0.0.1:0")[0]
	user := []string{"-u", "alice", "-P", "secret"}
	r := runTern(t, "", append([]string{"sub", "-L", url, "-t", "b/x", "-C", "1", "-W", "2"}, user...)...)
	if r.code != exitError || !strings.Contains(r.stderr, "every subscription was refused by the server: b/x") {
		t.Errorf("tern sub: exit %d, %q", r.code, r.stderr)
	}
	m := runBin(t, mosqSub, append([]string{"-h", "127.0.0.1", "-p", port(url), "-t", "b/x", "-C", "1", "-W", "2"}, user...)...)
	if m.code != 0 || !strings.Contains(m.stderr, "All subscription requests were denied") {
		t.Errorf("mosquitto_sub: exit %d, %q (the test documents 0)", m.code, m.stderr)
	}
	// One granted: both wait for it (and -W ends them).
	r = runTern(t, "", append([]string{"sub", "-L", url, "-t", "b/x", "-t", "a/x", "-C", "1", "-W", "1"}, user...)...)
	m = runBin(t, mosqSub, append([]string{"-h", "127.0.0.1", "-p", port(url), "-t", "b/x", "-t", "a/x", "-C", "1", "-W", "1"}, user...)...)
	if r.code != exitTimeout || m.code != exitTimeout || !strings.Contains(r.stderr, "subscription refused by the server: b/x") {
		t.Errorf("one of two refused: tern exit %d (%q), mosquitto_sub %d", r.code, r.stderr, m.code)
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sortLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "")
}
