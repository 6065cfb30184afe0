package main

// These tests run the tern binary, built once per test binary, as a user
// would: tern sub receiving what tern pub sends through tern broker or
// mosquitto, over TCP, TLS and WebSocket; bench against its embedded broker;
// exit codes and one-line errors.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/internal/testcert"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// ternBin builds the command once and returns the binary's path.
func ternBin(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "tern-cmd-test")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "tern")
		args := []string{"build", "-o", build.bin}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("go build: %v\n%s", build.err, build.out)
	}
	return build.bin
}

// result is what a finished tern process did.
type result struct {
	code           int
	stdout, stderr string
}

// runTern runs tern with args to completion, within 60 seconds.
func runTern(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ternBin(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
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
		t.Fatalf("tern %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// process is a tern running in the background.
type process struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startTern starts tern in the background; it is interrupted, then
// killed, at the end of the test if still running.
func startTern(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(ternBin(t), args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("tern %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

// waitFor waits until cond holds, for at most 15 seconds.
func (p *process) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		select {
		case <-p.done:
			if cond() {
				return
			}
			t.Fatalf("tern exited (%v) before %s\nstdout: %s\nstderr: %s", p.err, what, p.stdout, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\nstdout: %s\nstderr: %s", what, p.stdout, p.stderr)
		}
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("tern did not exit\nstdout: %s\nstderr: %s", p.stdout, p.stderr)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

// startBroker runs tern broker with the listener URLs given (port 0) and
// returns the URLs it printed, with their ports.
func startBroker(t *testing.T, extra []string, listen ...string) []string {
	t.Helper()
	_, urls := startBrokerProcess(t, extra, listen...)
	return urls
}

// startBrokerProcess is startBroker that returns the process too.
func startBrokerProcess(t *testing.T, extra []string, listen ...string) (*process, []string) {
	t.Helper()
	args := []string{"broker", "-log", "warn"}
	for _, l := range listen {
		args = append(args, "-listen", l)
	}
	p := startTern(t, append(args, extra...)...)
	var urls []string
	p.waitFor(t, "the listening lines", func() bool {
		urls = nil
		for _, line := range strings.Split(p.stdout.String(), "\n") {
			if u, ok := strings.CutPrefix(line, "tern broker: listening on "); ok {
				urls = append(urls, u)
			}
		}
		return len(urls) == len(listen)
	})
	return p, urls
}

// certFiles writes a test CA with server and client certificates.
func certFiles(t *testing.T) testcert.Files {
	t.Helper()
	files, err := testcert.Must(t).WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// pubSubRoundTrip runs tern sub, waits until it has subscribed, publishes
// with tern pub in the ways pub reads messages, and checks what sub printed.
func pubSubRoundTrip(t *testing.T, connArgs []string) {
	t.Helper()
	topicName := fmt.Sprintf("tern/test/%d", time.Now().UnixNano())
	dir := t.TempDir()
	file := filepath.Join(dir, "msg")
	if err := os.WriteFile(file, []byte{0xff, 0x00, 'x'}, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := startTern(t, append([]string{"sub", "-d", "-t", topicName, "-t", topicName + "/+", "-q", "2", "-C", "5", "-F", "json"}, connArgs...)...)
	sub.waitFor(t, "the subscription", func() bool { return strings.Contains(sub.stderr.String(), "subscribed to") })

	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{"", []string{"-t", topicName, "-m", "hello", "-q", "1"}},
		{"line one\nline two\r\n", []string{"-t", topicName + "/lines", "-l", "-q", "2"}},
		{"", []string{"-t", topicName, "-f", file}},
		{"whole\nstdin\n", []string{"-t", topicName, "-s", "-q", "2"}},
	} {
		r := runTern(t, c.stdin, append(append([]string{"pub"}, c.args...), connArgs...)...)
		if r.code != 0 {
			t.Fatalf("tern pub %v: exit %d: %s", c.args, r.code, r.stderr)
		}
	}
	if code := sub.wait(t); code != 0 {
		t.Fatalf("tern sub: exit %d: %s", code, sub.stderr)
	}
	var got []jsonMessage
	sc := bufio.NewScanner(strings.NewReader(sub.stdout.String()))
	for sc.Scan() {
		var m jsonMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("sub printed %q: %v", sc.Text(), err)
		}
		got = append(got, m)
	}
	str := func(s string) *string { return &s }
	want := []jsonMessage{
		{Topic: topicName, QoS: 1, Payload: str("hello")},
		{Topic: topicName + "/lines", QoS: 2, Payload: str("line one")},
		{Topic: topicName + "/lines", QoS: 2, Payload: str("line two")},
		{Topic: topicName, QoS: 0, PayloadBase64: str("/wB4")}, // not UTF-8
		{Topic: topicName, QoS: 2, Payload: str("whole\nstdin\n")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sub printed (-want +got):\n%s", diff)
	}
}

func TestPubSubTernBroker(t *testing.T) {
	certs := certFiles(t)
	sock := "unix://" + filepath.Join(t.TempDir(), "mqtt.sock")
	urls := startBroker(t, []string{"-cert", certs.ServerCert, "-key", certs.ServerKey},
		"mqtt://127.0.0.1:0", "mqtts://127.0.0.1:0", "ws://127.0.0.1:0/mqtt", sock, "wss://127.0.0.1:0/mqtt")
	if urls[3] != sock {
		t.Errorf("broker printed %q for %q", urls[3], sock)
	}
	t.Run("tcp", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", urls[0]}) })
	t.Run("tcp-host-port", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(strings.TrimPrefix(urls[0], "mqtt://"))
		pubSubRoundTrip(t, []string{"-h", host, "-p", port})
	})
	t.Run("tls", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", urls[1], "-cafile", certs.CACert}) })
	t.Run("tls-client-cert", func(t *testing.T) {
		pubSubRoundTrip(t, []string{"-L", urls[1], "-cafile", certs.CACert, "-cert", certs.ClientCert, "-key", certs.ClientKey})
	})
	t.Run("ws", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", urls[2]}) })
	t.Run("unix", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", urls[3]}) })
	t.Run("wss", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", urls[4], "-cafile", certs.CACert}) })

	t.Run("tls-unknown-ca", func(t *testing.T) {
		r := runTern(t, "", "pub", "-L", urls[1], "-t", "x", "-m", "y")
		if r.code != exitError || !strings.Contains(r.stderr, "certificate") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("exit %d, stderr %q; want 1 and one line about the certificate", r.code, r.stderr)
		}
	})
	t.Run("tls-insecure", func(t *testing.T) {
		r := runTern(t, "", "pub", "-L", urls[1], "-insecure", "-t", "x", "-m", "y")
		if r.code != 0 {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
	})
}

// TestBrokerClientCert checks -cafile and -require-cert of tern broker.
func TestBrokerClientCert(t *testing.T) {
	certs := certFiles(t)
	url := startBroker(t, []string{"-cert", certs.ServerCert, "-key", certs.ServerKey, "-cafile", certs.CACert, "-require-cert"},
		"mqtts://127.0.0.1:0")[0]
	r := runTern(t, "", "pub", "-L", url, "-cafile", certs.CACert, "-t", "x", "-m", "y")
	if r.code != exitError || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("without a client certificate: exit %d, %q; want 1 and one line", r.code, r.stderr)
	}
	pubSubRoundTrip(t, []string{"-L", url, "-cafile", certs.CACert, "-cert", certs.ClientCert, "-key", certs.ClientKey})
}

func TestPubSubMosquitto(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{TLS: true, WebSockets: true, SecureWebSockets: true})
	t.Run("tcp", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", b.URL}) })
	t.Run("tls", func(t *testing.T) {
		pubSubRoundTrip(t, []string{"-L", b.TLSURL, "-cafile", b.Files.CACert, "-cert", b.Files.ClientCert, "-key", b.Files.ClientKey})
	})
	t.Run("ws", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", b.WSURL}) })
	t.Run("wss", func(t *testing.T) { pubSubRoundTrip(t, []string{"-L", b.WSSURL, "-cafile", b.Files.CACert}) })
}

// TestRetainedAndSession checks -r, -c, -E and -R against tern broker.
func TestRetainedAndSession(t *testing.T) {
	url := startBroker(t, nil, "mqtt://127.0.0.1:0")[0]
	// A retained message reaches a later subscriber, flagged as retained
	// [MQTT-3.3.1-5] [MQTT-3.3.1-8].
	if r := runTern(t, "", "pub", "-L", url, "-t", "r/1", "-m", "kept", "-r", "-q", "1"); r.code != 0 {
		t.Fatalf("pub: %d %s", r.code, r.stderr)
	}
	r := runTern(t, "", "sub", "-L", url, "-t", "r/+", "-C", "1", "-W", "10", "-F", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != `{"topic":"r/1","qos":0,"retain":true,"payload":"kept"}` {
		t.Errorf("sub: exit %d, printed %q (%s)", r.code, r.stdout, r.stderr)
	}
	// -R skips it: nothing comes within -W 1, so exit status 4 with -C.
	r = runTern(t, "", "sub", "-L", url, "-t", "r/+", "-R", "-C", "1", "-W", "1")
	if r.code != exitTimeout || r.stdout != "" {
		t.Errorf("sub -R: exit %d, printed %q; want %d and nothing", r.code, r.stdout, exitTimeout)
	}
	// -n -r clears it [MQTT-3.3.1-10].
	if r := runTern(t, "", "pub", "-L", url, "-t", "r/1", "-n", "-r"); r.code != 0 {
		t.Fatalf("pub -n: %d %s", r.code, r.stderr)
	}
	r = runTern(t, "", "sub", "-L", url, "-t", "r/+", "-C", "1", "-W", "1")
	if r.code != exitTimeout {
		t.Errorf("sub after clearing: exit %d, printed %q; want %d", r.code, r.stdout, exitTimeout)
	}

	// A persistent session queues QoS 1 messages while its client is away
	// [MQTT-3.1.2-5].
	if r := runTern(t, "", "sub", "-L", url, "-t", "s/q", "-q", "1", "-c", "-i", "keeper", "-E"); r.code != 0 {
		t.Fatalf("sub -E: %d %s", r.code, r.stderr)
	}
	if r := runTern(t, "", "pub", "-L", url, "-t", "s/q", "-m", "while away", "-q", "1", "-repeat", "2", "-repeat-delay", "0.01"); r.code != 0 {
		t.Fatalf("pub: %d %s", r.code, r.stderr)
	}
	r = runTern(t, "", "sub", "-L", url, "-t", "s/q", "-q", "1", "-c", "-i", "keeper", "-C", "2", "-W", "10", "-v")
	if r.code != 0 || r.stdout != "s/q while away\ns/q while away\n" {
		t.Errorf("sub -c: exit %d, printed %q (%s)", r.code, r.stdout, r.stderr)
	}
}

// TestPubLines sends many lines with -l, more than are in flight at once,
// and checks that all arrive in order.
func TestPubLines(t *testing.T) {
	const n = 3000
	url := startBroker(t, []string{"-max-queued", "10000"}, "mqtt://127.0.0.1:0")[0]
	sub := startTern(t, "sub", "-d", "-L", url, "-t", "lines", "-q", "1", "-C", fmt.Sprint(n))
	sub.waitFor(t, "the subscription", func() bool { return strings.Contains(sub.stderr.String(), "subscribed") })
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	if r := runTern(t, in.String(), "pub", "-L", url, "-t", "lines", "-l", "-q", "1"); r.code != 0 {
		t.Fatalf("pub -l: exit %d: %s", r.code, r.stderr)
	}
	if code := sub.wait(t); code != 0 {
		t.Fatalf("sub: exit %d", code)
	}
	if got := sub.stdout.String(); got != in.String() {
		t.Errorf("sub printed %d bytes, want the %d bytes sent, in order", len(got), in.Len())
	}
}

// TestWill kills a subscriber with a will and sees the broker publish it.
func TestWill(t *testing.T) {
	url := startBroker(t, nil, "mqtt://127.0.0.1:0")[0]
	watcher := startTern(t, "sub", "-d", "-L", url, "-t", "wills/#", "-C", "1", "-v")
	watcher.waitFor(t, "the watcher", func() bool { return strings.Contains(watcher.stderr.String(), "subscribed") })
	victim := startTern(t, "sub", "-d", "-L", url, "-t", "x", "-will-topic", "wills/victim", "-will-payload", "gone", "-will-qos", "1")
	victim.waitFor(t, "the victim", func() bool { return strings.Contains(victim.stderr.String(), "subscribed") })
	victim.cmd.Process.Signal(syscall.SIGKILL) // no DISCONNECT: the will goes out [MQTT-3.1.2-8]
	if code := watcher.wait(t); code != 0 || watcher.stdout.String() != "wills/victim gone\n" {
		t.Errorf("watcher: exit %d, printed %q", code, watcher.stdout)
	}
}

// TestErrors checks exit codes and that errors are one clear line.
func TestErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"pub", "-L", "mqtt://" + closed, "-t", "a", "-m", "x"}, exitError, "connection refused"},
		{[]string{"sub", "-L", "mqtt://" + closed, "-t", "a"}, exitError, "connection refused"},
		{[]string{"bench", "-url", "mqtt://" + closed}, exitError, "connection refused"},
		// pub and sub: bad usage exits 1, as with mosquitto_pub and mosquitto_sub.
		{[]string{"pub", "-L", "http://x", "-t", "a", "-m", "x"}, exitError, `unknown scheme "http"`},
		{[]string{"pub", "-L", "mqtt://x:99999", "-t", "a", "-m", "x"}, exitError, "bad URL"},
		{[]string{"pub", "-t", "a/+", "-m", "x"}, exitError, "wildcard"},
		{[]string{"pub", "-t", "a"}, exitError, "no message"},
		{[]string{"pub", "-t", "a", "-m", "x", "-q", "3"}, exitError, "QoS must be 0, 1 or 2"},
		{[]string{"pub", "-t", "a", "-f", "/nonexistent/file"}, exitError, "/nonexistent/file: no such file or directory"},
		{[]string{"sub"}, exitError, "no topic filter"},
		{[]string{"sub", "-t", "a/#/b"}, exitError, "-t \"a/#/b\""},
		{[]string{"sub", "-t", "a", "-c"}, exitError, "-c needs a client id"},
		{[]string{"pub", "-nosuchflag"}, exitError, "flag provided but not defined: -nosuchflag"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"broker", "-listen", "mqtts://127.0.0.1:0"}, exitUsage, "needs -cert and -key"},
		{[]string{"broker", "-listen", "mqtt://" + occupied(t)}, exitError, "address already in use"},
		{[]string{"broker", "-passwd", "/nonexistent"}, exitError, "-passwd: /nonexistent: no such file or directory"},
		{[]string{"bench", "-size", "10"}, exitUsage, "at least 24 bytes"},
		{[]string{"bench", "-qos", "1,4"}, exitUsage, "-qos"},
	} {
		r := runTern(t, "", c.args...)
		first, _, _ := strings.Cut(r.stderr, "\n")
		if c.args[0] == "bench" && c.code == exitError {
			// After bench's header line, on standard error with its progress.
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			first = lines[len(lines)-1]
		}
		if r.code != c.code || !strings.Contains(first, c.stderr) || strings.Contains(r.stderr, "goroutine") {
			t.Errorf("tern %s: exit %d, stderr %q; want %d and %q on the first line", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.stderr)
		}
		// A runtime error is one line (bench's comes after its header); a
		// usage error of pub and sub (exit 1, as mosquitto's) adds the hint.
		usage := strings.HasSuffix(r.stderr, "-help' for usage.\n") && strings.Count(r.stderr, "\n") == 2
		if c.code == exitError && c.args[0] != "bench" && !usage && strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("tern %s: stderr %q is not one line", strings.Join(c.args, " "), r.stderr)
		}
	}
	// -W with -C: status 4 when the messages did not come in time.
	url := startBroker(t, nil, "mqtt://127.0.0.1:0")[0]
	r := runTern(t, "", "sub", "-L", url, "-t", "quiet", "-C", "1", "-W", "0.5")
	if r.code != exitTimeout || !strings.Contains(r.stderr, "-W 500ms elapsed") {
		t.Errorf("sub -W: exit %d, %q", r.code, r.stderr)
	}
	// Without -C too, as mosquitto_sub.
	r = runTern(t, "", "sub", "-L", url, "-t", "quiet", "-W", "1")
	if r.code != exitTimeout {
		t.Errorf("sub -W without -C: exit %d, %q", r.code, r.stderr)
	}
}

// TestSilentServer checks the timeouts against a server that accepts
// connections and never answers.
func TestSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	url := "mqtt://" + l.Addr().String()
	r := runTern(t, "", "sub", "-L", url, "-t", "x", "-W", "0.5")
	if r.code != exitTimeout || r.stderr != "tern sub: -W 500ms elapsed while connecting\n" {
		t.Errorf("sub -W: exit %d, %q", r.code, r.stderr)
	}
	// -connect-timeout ending first is a connect timeout, not -W's.
	r = runTern(t, "", "sub", "-L", url, "-t", "x", "-W", "60", "-connect-timeout", "0.5")
	if r.code != exitError || r.stderr != "tern sub: connect to "+url+": timed out\n" {
		t.Errorf("sub -W 60 -connect-timeout 0.5: exit %d, %q", r.code, r.stderr)
	}
	r = runTern(t, "", "pub", "-L", url, "-t", "x", "-m", "y", "-connect-timeout", "0.5")
	if r.code != exitError || r.stderr != "tern pub: connect to "+url+": timed out\n" {
		t.Errorf("pub -connect-timeout: exit %d, %q", r.code, r.stderr)
	}
}

// occupied returns the address of a listener held for the test.
func occupied(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// TestHelp checks that every command's -help prints its examples to
// standard output and exits 0, and that the main help lists the exit codes.
func TestHelp(t *testing.T) {
	r := runTern(t, "", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Exit status:") || !strings.Contains(r.stdout, "bench") {
		t.Errorf("tern --help: exit %d, %q", r.code, r.stdout)
	}
	for _, c := range commands {
		if c.name == "version" {
			continue
		}
		for _, h := range []string{"-help", "--help"} {
			r := runTern(t, "", c.name, h)
			if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "tern "+c.name) || r.stderr != "" {
				t.Errorf("tern %s %s: exit %d, stdout %.80q, stderr %q", c.name, h, r.code, r.stdout, r.stderr)
			}
		}
	}
	if r := runTern(t, ""); r.code != exitUsage || !strings.Contains(r.stderr, "Commands:") {
		t.Errorf("tern: exit %d, %q", r.code, r.stderr)
	}
	if r := runTern(t, "", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "tern ") {
		t.Errorf("tern version: exit %d, %q", r.code, r.stdout)
	}
}

var _ = io.EOF
