// Package mosquitto starts a real mosquitto broker for tests, and holds the
// skip-or-fail rule for every test that needs an outside peer.
//
// A test asks for the listeners it needs and gets their URLs:
//
//	b := mosquitto.Start(t, mosquitto.Config{TLS: true, WebSockets: true})
//	conn, err := transport.Dial(ctx, b.URL, nil)                                          // mqtt://127.0.0.1:P
//	conn, err = transport.Dial(ctx, b.TLSURL, &transport.Options{TLSConfig: b.ClientTLS()}) // mqtts://127.0.0.1:P
//	conn, err = transport.Dial(ctx, b.WSURL, nil)                                          // ws://127.0.0.1:P/mqtt
//
// Config also sets password authentication (Users), extra files such as ACLs
// (Files) and raw config lines (Extra). Broker.Kill, Stop and Restart (same
// ports) serve reconnection and persistence tests; Broker.Log returns what
// the broker logged.
//
// Start writes a config file into t.TempDir (absolute paths), picks free
// loopback ports, runs `mosquitto -c FILE` as a child process, waits until
// every port accepts connections, and stops the broker in t.Cleanup. When
// the test fails, the broker's log is printed. A plain TCP listener is
// always present (mosquitto will not start with only a WebSocket one).
//
// Peers: when the mosquitto binary (or another peer passed to Require) is
// missing, the test is skipped with a message saying what to install,
// unless the environment variable TERN_REQUIRE_PEERS=1 is set (CI sets it),
// in which case the test fails. Set TERN_MOSQUITTO to use a mosquitto
// binary that is not on PATH.
package mosquitto

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/testcert"
)

// Config chooses the broker's listeners and settings. The zero value is a
// broker with one plain TCP listener, anonymous access and no persistence.
type Config struct {
	// TLS adds a TLS listener (Broker.TLSURL, mqtts://).
	TLS bool
	// RequireClientCert makes the TLS listeners demand a client
	// certificate signed by the test CA (Broker.ClientTLS presents one).
	// It implies TLS.
	RequireClientCert bool
	// WebSockets adds a WebSocket listener (Broker.WSURL, ws://).
	WebSockets bool
	// SecureWebSockets adds a WebSocket listener over TLS (Broker.WSSURL,
	// wss://).
	SecureWebSockets bool
	// Certs are the certificates for the TLS listeners; generated when nil
	// and a TLS listener is asked for.
	Certs *testcert.Certs
	// Extra lines are appended to the config file after the defaults
	// (`persistence false`, `allow_anonymous true`), which they may
	// override: e.g. "max_inflight_messages 0", "max_queued_messages 0",
	// or "persistence true" with "persistence_location $DIR/". The text
	// $DIR is replaced by Broker.Dir.
	Extra []string
	// Users, when not empty, turns on password authentication: a password
	// file made with mosquitto_passwd holds these user names and
	// passwords, and anonymous clients are refused (CONNACK return code
	// 5).
	Users map[string]string
	// Files are written into Broker.Dir before the broker starts, readable
	// by the broker: name to content, e.g. an ACL file for
	// "acl_file $DIR/acl".
	Files map[string]string
}

// Broker is a running mosquitto. Its fields are set by Start and must not
// be changed.
type Broker struct {
	URL    string // mqtt://127.0.0.1:P, always present
	Addr   string // 127.0.0.1:P of URL
	TLSURL string // mqtts://127.0.0.1:P when Config.TLS or RequireClientCert
	WSURL  string // ws://127.0.0.1:P/mqtt when Config.WebSockets
	WSSURL string // wss://127.0.0.1:P/mqtt when Config.SecureWebSockets

	Certs *testcert.Certs // the test CA and its certificates, when TLS is used
	Files testcert.Files  // where Certs were written

	Dir        string // the broker's temp directory (config, certificates)
	ConfigFile string // absolute path of the config file

	t    testing.TB
	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	log  *syncBuffer
}

// RequirePeers reports whether TERN_REQUIRE_PEERS=1 is set: missing peers
// then fail tests instead of skipping them.
func RequirePeers() bool { return os.Getenv("TERN_REQUIRE_PEERS") == "1" }

// Missing skips t with the message, or fails it when RequirePeers is true.
// Use it for any peer this package has no Require helper for.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if RequirePeers() {
		t.Fatalf("%s (TERN_REQUIRE_PEERS=1, so this is a failure)", msg)
	}
	t.Skipf("%s (set TERN_REQUIRE_PEERS=1 to fail instead)", msg)
}

// install says what provides each known peer.
var install = map[string]string{
	"mosquitto":     "apt-get install -y mosquitto",
	"mosquitto_pub": "apt-get install -y mosquitto-clients",
	"mosquitto_sub": "apt-get install -y mosquitto-clients",
	"python3":       "apt-get install -y python3",
	"node":          "apt-get install -y nodejs",
}

// Require returns the path of the executable binary, looked up on PATH and
// then in /usr/sbin and /usr/local/sbin (where Debian puts mosquitto).
// When it is not found, it calls Missing.
func Require(t testing.TB, binary string) string {
	t.Helper()
	if path, err := lookPath(binary); err == nil {
		return path
	}
	hint := install[binary]
	if hint == "" {
		hint = "install it"
	}
	Missing(t, "peer %q not found on PATH: %s", binary, hint)
	return ""
}

func lookPath(binary string) (string, error) {
	if binary == "mosquitto" {
		if p := os.Getenv("TERN_MOSQUITTO"); p != "" {
			return exec.LookPath(p)
		}
	}
	path, err := exec.LookPath(binary)
	if err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		if p, err2 := exec.LookPath(filepath.Join(dir, binary)); err2 == nil {
			return p, nil
		}
	}
	return "", err
}

// RequirePython returns /usr/bin/python3 after checking that it can import
// module (e.g. "paho.mqtt.client", from apt-get install -y
// python3-paho-mqtt). Debian's packages install for that interpreter only,
// not for another python3 that may come first on PATH. When either is
// missing it calls Missing.
func RequirePython(t testing.TB, module string) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		Missing(t, "peer %s not found: apt-get install -y python3", python)
		return ""
	}
	if out, err := exec.Command(python, "-c", "import "+module).CombinedOutput(); err != nil {
		Missing(t, "%s cannot import %s (%v: %s): install it, e.g. apt-get install -y python3-paho-mqtt", python, module, err, bytes.TrimSpace(out))
		return ""
	}
	return python
}

// Start runs a mosquitto configured by cfg for the rest of the test, or
// skips the test when mosquitto is not installed (see Missing). It fails
// the test if the broker does not come up within 10 seconds.
func Start(t testing.TB, cfg Config) *Broker {
	t.Helper()
	bin := Require(t, "mosquitto")
	dir := t.TempDir()
	// mosquitto started as root drops to user mosquitto before reading its
	// files: open the temp dir (and its 0700 parent) to it.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
	}
	b := &Broker{t: t, bin: bin, Dir: dir, ConfigFile: filepath.Join(dir, "mosquitto.conf"), log: new(syncBuffer)}
	if cfg.RequireClientCert {
		cfg.TLS = true
	}
	if cfg.TLS || cfg.SecureWebSockets {
		b.Certs = cfg.Certs
		if b.Certs == nil {
			b.Certs = testcert.Must(t)
		}
		files, err := b.Certs.WriteFiles(dir)
		if err != nil {
			t.Fatalf("mosquitto: writing certificates: %v", err)
		}
		b.Files = files
	}
	for name, content := range cfg.Files {
		if err := writePublic(filepath.Join(dir, name), []byte(content)); err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
	}
	if len(cfg.Users) > 0 {
		pwfile := filepath.Join(dir, "passwd")
		passwd := Require(t, "mosquitto_passwd")
		create := "-c"
		for user, pass := range cfg.Users {
			args := []string{"-b", pwfile, user, pass}
			if create != "" {
				args = append([]string{create}, args...)
				create = ""
			}
			if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd %s: %v: %s", user, err, out)
			}
		}
		if err := os.Chmod(pwfile, 0o644); err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
		cfg.Extra = append([]string{"password_file " + pwfile, "allow_anonymous false"}, cfg.Extra...)
	}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("mosquitto log (%s):\n%s", b.ConfigFile, b.Log())
		}
	})

	// Free ports are picked by listening on :0 and closing; another process
	// may grab one before mosquitto binds it, so retry with fresh ports.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if err := b.configure(cfg); err != nil {
			t.Fatalf("mosquitto: %v", err)
		}
		lastErr = b.start()
		if lastErr == nil {
			return b
		}
		if !strings.Contains(b.Log(), "in use") {
			break
		}
	}
	t.Fatalf("mosquitto: %v\nconfig %s:\n%s\nlog:\n%s", lastErr, b.ConfigFile, readFile(b.ConfigFile), b.Log())
	return nil
}

// configure picks ports, sets the URLs and writes the config file.
func (b *Broker) configure(cfg Config) error {
	n := 1
	for _, on := range []bool{cfg.TLS, cfg.WebSockets, cfg.SecureWebSockets} {
		if on {
			n++
		}
	}
	ports, err := freePorts(n)
	if err != nil {
		return err
	}
	var c strings.Builder
	fmt.Fprintf(&c, "# written by internal/mosquitto for %s\n", b.t.Name())
	c.WriteString("persistence false\nallow_anonymous true\n")
	c.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n")

	port := func() int { p := ports[0]; ports = ports[1:]; return p }
	tlsLines := func() {
		fmt.Fprintf(&c, "cafile %s\ncertfile %s\nkeyfile %s\n", b.Files.CACert, b.Files.ServerCert, b.Files.ServerKey)
		if cfg.RequireClientCert {
			c.WriteString("require_certificate true\n")
		}
	}
	p := port()
	b.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	b.URL = "mqtt://" + b.Addr
	fmt.Fprintf(&c, "\nlistener %d 127.0.0.1\n", p)
	if cfg.TLS {
		p = port()
		b.TLSURL = fmt.Sprintf("mqtts://127.0.0.1:%d", p)
		fmt.Fprintf(&c, "\nlistener %d 127.0.0.1\n", p)
		tlsLines()
	}
	// mosquitto 2.0.11 ignores the address of a websockets listener and
	// binds every interface; the interface name "lo" keeps it on loopback.
	if cfg.WebSockets {
		p = port()
		b.WSURL = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", p)
		fmt.Fprintf(&c, "\nlistener %d lo\nprotocol websockets\n", p)
	}
	if cfg.SecureWebSockets {
		p = port()
		b.WSSURL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", p)
		fmt.Fprintf(&c, "\nlistener %d lo\nprotocol websockets\n", p)
		tlsLines()
	}
	if len(cfg.Extra) > 0 {
		c.WriteString("\n# Config.Extra\n")
		for _, line := range cfg.Extra {
			c.WriteString(strings.ReplaceAll(line, "$DIR", b.Dir) + "\n")
		}
	}
	return writePublic(b.ConfigFile, []byte(c.String()))
}

// writePublic writes a file the broker can read after dropping privileges.
func writePublic(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	return os.Chmod(path, 0o644) // whatever the umask
}

// start runs the process and waits until every listener accepts.
func (b *Broker) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return fmt.Errorf("already running")
	}
	if b.log.Len() > 0 {
		b.log.Write([]byte("--- restart ---\n"))
	}
	cmd := exec.Command(b.bin, "-c", b.ConfigFile)
	cmd.Dir = b.Dir
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	b.cmd, b.done = cmd, done

	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range b.addrs() {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-done:
				b.cmd = nil
				return fmt.Errorf("mosquitto exited during startup (%v)", cmd.ProcessState)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				b.stopLocked(syscall.SIGKILL)
				return fmt.Errorf("%s not accepting connections after 10s", addr)
			}
		}
	}
	return nil
}

// addrs lists host:port of every listener.
func (b *Broker) addrs() []string {
	var out []string
	for _, u := range []string{b.URL, b.TLSURL, b.WSURL, b.WSSURL} {
		if u == "" {
			continue
		}
		hostport := u[strings.Index(u, "://")+3:]
		if i := strings.IndexByte(hostport, '/'); i >= 0 {
			hostport = hostport[:i]
		}
		out = append(out, hostport)
	}
	return out
}

// ClientTLS returns a TLS config for clients: it trusts the test CA and
// presents the client certificate. Nil when the broker has no TLS.
func (b *Broker) ClientTLS() *tls.Config {
	if b.Certs == nil {
		return nil
	}
	return b.Certs.ClientConfig()
}

// Stop ends the broker gracefully (SIGTERM, then SIGKILL after 5 seconds)
// and waits for it. Clients see their connections closed. Stopping a
// stopped broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked(syscall.SIGTERM)
}

// Kill ends the broker abruptly with SIGKILL and waits for it, as a crash
// or power loss would.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked(syscall.SIGKILL)
}

func (b *Broker) stopLocked(sig syscall.Signal) {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// Restart stops the broker if it runs and starts it again with the same
// config on the same ports, for reconnection and persistence tests. It
// fails the test if the broker does not come back.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	var err error
	// The old process has exited, but give the kernel a moment should a
	// port still be held.
	for attempt := 0; attempt < 20; attempt++ {
		if err = b.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("mosquitto: restart: %v\nlog:\n%s", err, b.Log())
}

// Log returns what the broker has logged (connections, errors), across
// restarts.
func (b *Broker) Log() string { return b.log.String() }

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// syncBuffer is a bytes.Buffer safe for the process's writers and the
// test's readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}
