package interop

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
)

// The credentials the brokers of the interoperability tests accept.
const (
	user     = "alice"
	password = "s3cret-pässword"
)

// target is a broker under test, tern's or mosquitto.
type target struct {
	name string
	addr string // 127.0.0.1:PORT
	host string
	port int
	// refused is the CONNACK return code the broker sends for a wrong
	// password: tern's broker is configured to say 4 (bad user name or
	// password); mosquitto 2.0 says 5 (not authorized) for MQTT 3.1.1.
	refused packet.ReturnCode

	// level, for tern's broker, returns the protocol level of the last
	// CONNECT with the client identifier id that its Authenticate hook saw,
	// or 0.
	level func(id string) byte
}

func (tg target) url() string { return "mqtt://" + tg.addr }

func newTarget(t testing.TB, name, addr string, refused packet.ReturnCode) target {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return target{name: name, addr: addr, host: host, port: port, refused: refused}
}

// startTern starts tern's broker for the test; with auth, it accepts only
// user and password.
func startTern(t testing.TB, auth bool) target {
	t.Helper()
	var levels sync.Map // client id -> protocol level
	srv := mqtttest.NewServer(t, func(o *broker.Options) {
		if auth {
			o.Authenticate = func(c *broker.Client, pw []byte) packet.ReturnCode {
				levels.Store(c.ID, c.Level)
				if !c.HasUsername || c.Username != user || string(pw) != password {
					return packet.RefusedBadUsernameOrPassword
				}
				return packet.Accepted
			}
		}
	})
	tg := newTarget(t, "tern", srv.Addr, packet.RefusedBadUsernameOrPassword)
	tg.level = func(id string) byte {
		l, _ := levels.Load(id)
		b, _ := l.(byte)
		return b
	}
	return tg
}

// startMosquitto starts a mosquitto for the test; with auth, it accepts
// only user and password (a password_file, anonymous clients refused).
func startMosquitto(t testing.TB, auth bool) target {
	t.Helper()
	var cfg mosquitto.Config
	if auth {
		cfg.Extra = []string{"allow_anonymous false", "password_file " + passwordFile(t)}
	}
	b := mosquitto.Start(t, cfg)
	return newTarget(t, "mosquitto", b.Addr, packet.RefusedNotAuthorized)
}

// passwordFile writes a mosquitto password file holding user and password.
// The "$6$" form, base64 of a salt and of SHA-512(password || salt), is one
// mosquitto 2.0 reads (mosquitto_passwd writes the PBKDF2 "$7$" form), so
// no outside tool is needed to make it.
func passwordFile(t testing.TB) string {
	t.Helper()
	salt := make([]byte, 12)
	rand.Read(salt)
	sum := sha512.Sum512(append([]byte(password), salt...))
	line := user + ":$6$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
	dir := t.TempDir()
	// mosquitto started as root drops to user mosquitto before reading it.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "passwd")
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// brokers are the brokers every interoperability test runs against:
// mosquitto proves the test itself, tern's broker is what is tested.
var brokers = []struct {
	name  string
	start func(testing.TB, bool) target
}{
	{"tern", startTern},
	{"mosquitto", startMosquitto},
}
