package mosquitto_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/mosquitto"
)

// connect is CONNECT for MQTT 3.1.1 with clean session and an empty client
// id; connack is its acceptance (return code 0).
var (
	connect = []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}
	connack = []byte{0x20, 0x02, 0x00, 0x00}
)

// handshake sends CONNECT on c and returns the 4-byte answer.
func handshake(t *testing.T, c net.Conn) []byte {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading CONNACK: %v", err)
	}
	return got
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStartTCPAndTLS(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{TLS: true, WebSockets: true})
	if !strings.HasPrefix(b.URL, "mqtt://127.0.0.1:") || !strings.HasPrefix(b.TLSURL, "mqtts://127.0.0.1:") ||
		!strings.HasPrefix(b.WSURL, "ws://127.0.0.1:") || !strings.HasSuffix(b.WSURL, "/mqtt") || b.WSSURL != "" {
		t.Fatalf("URLs %q %q %q %q", b.URL, b.TLSURL, b.WSURL, b.WSSURL)
	}
	if got := handshake(t, dial(t, b.Addr)); !bytes.Equal(got, connack) {
		t.Fatalf("plain: got % x, want % x", got, connack)
	}
	tc, err := tls.Dial("tcp", strings.TrimPrefix(b.TLSURL, "mqtts://"), &tls.Config{RootCAs: b.Certs.Pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if got := handshake(t, tc); !bytes.Equal(got, connack) {
		t.Fatalf("tls: got % x, want % x", got, connack)
	}
	// The config holds absolute paths only, and the broker logged the
	// connections.
	conf, _ := os.ReadFile(b.ConfigFile)
	for _, line := range strings.Split(string(conf), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[0], "file") && !strings.HasPrefix(f[1], "/") {
			t.Errorf("relative path in config: %q", line)
		}
	}
	if !strings.Contains(b.Log(), "New client connected") {
		t.Errorf("broker log lacks the connections:\n%s", b.Log())
	}
}

func TestExtraLinesOverrideDefaults(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"allow_anonymous false"}})
	// Return code 5: not authorized.
	if got := handshake(t, dial(t, b.Addr)); !bytes.Equal(got, []byte{0x20, 0x02, 0x00, 0x05}) {
		t.Fatalf("got % x, want CONNACK refused (5)", got)
	}
}

func TestRestartAndKill(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{})
	c := dial(t, b.Addr)
	handshakeOpen(t, c)
	b.Kill()
	// The client sees its connection end.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection survived the broker's death")
	}
	c.Close()
	if _, err := net.DialTimeout("tcp", b.Addr, time.Second); err == nil {
		t.Fatal("port still accepts after Kill")
	}
	b.Restart()
	if got := handshake(t, dial(t, b.Addr)); !bytes.Equal(got, connack) {
		t.Fatalf("after restart: got % x", got)
	}
	b.Stop()
	b.Stop() // idempotent
	b.Restart()
	if got := handshake(t, dial(t, b.Addr)); !bytes.Equal(got, connack) {
		t.Fatalf("after second restart: got % x", got)
	}
	if !strings.Contains(b.Log(), "--- restart ---") {
		t.Errorf("log does not mark restarts:\n%s", b.Log())
	}
}

func handshakeOpen(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(connect)
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, connack) {
		t.Fatalf("CONNACK % x, %v", got, err)
	}
	c.SetDeadline(time.Time{})
}

// recorder catches Skip and Fatal calls of the helpers.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func run(tb testing.TB, fn func(testing.TB)) *recorder {
	r := &recorder{TB: tb}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

func TestRequireMissingPeer(t *testing.T) {
	t.Setenv("TERN_REQUIRE_PEERS", "")
	r := run(t, func(tb testing.TB) { mosquitto.Require(tb, "no-such-peer-xyz") })
	if !strings.Contains(r.skipped, `"no-such-peer-xyz" not found`) || r.failed != "" {
		t.Fatalf("without TERN_REQUIRE_PEERS: skipped %q, failed %q; want a skip", r.skipped, r.failed)
	}
	t.Setenv("TERN_REQUIRE_PEERS", "1")
	r = run(t, func(tb testing.TB) { mosquitto.Require(tb, "no-such-peer-xyz") })
	if !strings.Contains(r.failed, "TERN_REQUIRE_PEERS=1") || r.skipped != "" {
		t.Fatalf("with TERN_REQUIRE_PEERS=1: skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
	r = run(t, func(tb testing.TB) { mosquitto.RequirePython(tb, "no_such_module_xyz") })
	if !strings.Contains(r.failed, "no_such_module_xyz") {
		t.Fatalf("missing python module: failed %q", r.failed)
	}
	// A peer that exists is found, with /usr/sbin searched too.
	r = run(t, func(tb testing.TB) {
		if p := mosquitto.Require(tb, "sh"); !strings.HasSuffix(p, "/sh") {
			tb.Fatalf("Require(sh) = %q", p)
		}
	})
	if r.failed != "" || r.skipped != "" {
		t.Fatalf("Require(sh): %q %q", r.failed, r.skipped)
	}
}

func TestUsersAndFiles(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{
		Users: map[string]string{"alice": "wonderland", "bob": "builder"},
		Files: map[string]string{"acl": "user alice\ntopic readwrite #\n"},
		Extra: []string{"acl_file $DIR/acl"},
	})
	// CONNECT with user name and password: flags 0xc2.
	login := func(user, pass string) []byte {
		body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xc2, 0x00, 0x3c, 0x00, 0x00}
		body = append(body, 0, byte(len(user)))
		body = append(body, user...)
		body = append(body, 0, byte(len(pass)))
		body = append(body, pass...)
		c := dial(t, b.Addr)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(append([]byte{0x10, byte(len(body))}, body...))
		got := make([]byte, 4)
		io.ReadFull(c, got)
		return got
	}
	for _, tt := range []struct {
		user, pass string
		code       byte
	}{{"alice", "wonderland", 0}, {"bob", "builder", 0}, {"alice", "wrong", 5}} {
		if got := login(tt.user, tt.pass); !bytes.Equal(got, []byte{0x20, 0x02, 0x00, tt.code}) {
			t.Errorf("%s/%s: got % x, want return code %d", tt.user, tt.pass, got, tt.code)
		}
	}
	if got := handshake(t, dial(t, b.Addr)); !bytes.Equal(got, []byte{0x20, 0x02, 0x00, 0x05}) {
		t.Errorf("anonymous: got % x, want refused (5)", got)
	}
	conf, _ := os.ReadFile(b.ConfigFile)
	if !strings.Contains(string(conf), "acl_file "+b.Dir+"/acl") {
		t.Errorf("$DIR not expanded:\n%s", conf)
	}
}
