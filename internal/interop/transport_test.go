package interop

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

// endpoints is a broker listening on every transport: plain TCP (tg), TLS,
// WebSocket and WebSocket over TLS, the TLS ones demanding a client
// certificate signed by the test CA.
type endpoints struct {
	tg    target
	ports map[string]int // "tls", "ws", "wss"
	files testcert.Files // the CA and the client certificate, for the clients

	// tlsCN, for tern's broker, returns the common name of the client
	// certificate its Authenticate hook saw in Client.TLS for a client
	// identifier, and whether Client.TLS was set at all.
	tlsCN func(id string) (string, bool)
}

// clientCN is the common name of testcert's client certificate.
const clientCN = "tern-test-client"

// startTernEverywhere starts tern's broker on the four transports, with
// the test's credentials required, and on TLS also testcert's client
// certificate, checked by the Authenticate hook from Client.TLS.
func startTernEverywhere(t testing.TB) endpoints {
	t.Helper()
	certs := testcert.Must(t)
	files, err := certs.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var seen sync.Map // client id -> common name of its TLS peer certificate
	srv := broker.New(broker.Options{
		Authenticate: func(c *broker.Client, pw []byte) packet.ReturnCode {
			if c.TLS != nil {
				cn := ""
				if len(c.TLS.PeerCertificates) > 0 {
					cn = c.TLS.PeerCertificates[0].Subject.CommonName
				}
				seen.Store(c.ID, cn)
			}
			if !c.HasUsername || c.Username != user || string(pw) != password {
				return packet.RefusedBadUsernameOrPassword
			}
			if c.TLS != nil && (len(c.TLS.PeerCertificates) == 0 || c.TLS.PeerCertificates[0].Subject.CommonName != clientCN) {
				return packet.RefusedNotAuthorized
			}
			return packet.Accepted
		},
	})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	listen := func(rawURL string, opts *transport.Options) int {
		t.Helper()
		l, err := transport.Listen(rawURL, opts)
		if err != nil {
			t.Fatalf("listen %s: %v", rawURL, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); !errors.Is(err, broker.ErrServerClosed) {
				t.Errorf("Serve %s: %v", rawURL, err)
			}
		}()
		return l.Addr().(*net.TCPAddr).Port
	}
	tlsOpts := &transport.Options{TLSConfig: certs.ServerConfig(true)}
	e := endpoints{ports: map[string]int{}, files: files, tlsCN: func(id string) (string, bool) {
		cn, ok := seen.Load(id)
		s, _ := cn.(string)
		return s, ok
	}}
	port := listen("mqtt://127.0.0.1:0", nil)
	e.tg = newTarget(t, "tern", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), packet.RefusedBadUsernameOrPassword)
	e.ports["tls"] = listen("mqtts://127.0.0.1:0", tlsOpts)
	e.ports["ws"] = listen("ws://127.0.0.1:0/mqtt", nil)
	e.ports["wss"] = listen("wss://127.0.0.1:0/mqtt", tlsOpts)
	return e
}

// startMosquittoEverywhere starts mosquitto the same way.
func startMosquittoEverywhere(t testing.TB) endpoints {
	t.Helper()
	b := mosquitto.Start(t, mosquitto.Config{
		RequireClientCert: true, WebSockets: true, SecureWebSockets: true,
		Extra: []string{"allow_anonymous false", "password_file " + passwordFile(t)},
	})
	e := endpoints{ports: map[string]int{}, files: b.Files}
	e.tg = newTarget(t, "mosquitto", b.Addr, packet.RefusedNotAuthorized)
	for name, u := range map[string]string{"tls": b.TLSURL, "ws": b.WSURL, "wss": b.WSSURL} {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		e.ports[name], _ = strconv.Atoi(pu.Port())
	}
	return e
}

var everywhere = []struct {
	name  string
	start func(testing.TB) endpoints
}{
	{"tern", startTernEverywhere},
	{"mosquitto", startMosquittoEverywhere},
}

// TestClientTransports runs paho-mqtt and MQTT.js over TLS with a client
// certificate, WebSocket and WebSocket over TLS [MQTT-6.0.0-3], and
// mosquitto_pub and mosquitto_sub over TLS, against tern's broker (and
// mosquitto, to prove the test): each connects with credentials and a
// will, gets its own QoS 1 message back, is seen by a plain TCP client,
// and leaves its will when killed.
func TestClientTransports(t *testing.T) {
	for _, b := range everywhere {
		for _, kind := range scriptKinds {
			for _, tr := range []string{"tls", "ws", "wss"} {
				t.Run(b.name+"/"+kind.name+"/"+tr, func(t *testing.T) {
					e := b.start(t)
					testScriptTransport(t, kind, e, tr)
				})
			}
		}
		t.Run(b.name+"/mosquitto_sub/tls", func(t *testing.T) {
			subBin := mosquitto.Require(t, "mosquitto_sub")
			pubBin := mosquitto.Require(t, "mosquitto_pub")
			testCLITLS(t, b.start(t), subBin, pubBin)
		})
	}
}

func testScriptTransport(t *testing.T, kind scriptKind, e endpoints, tr string) {
	name := kind.name + "-" + tr
	prefix := "tr/" + name
	obs := observe(t, e.tg, "observer", prefix+"/#")

	c := kind.start(t, name)
	cmd := connectCmd(e.tg, name, password, prefix+"/will")
	cmd["port"] = e.ports[tr]
	cmd["transport"] = tr
	if tr == "ws" || tr == "wss" {
		cmd["path"] = "/mqtt"
	}
	if tr == "tls" || tr == "wss" {
		cmd["ca"], cmd["cert"], cmd["key"] = e.files.CACert, e.files.ClientCert, e.files.ClientKey
	}
	if ev := c.do("connack", cmd); ev.RC != 0 {
		t.Fatalf("connect over %s: got %s, want CONNACK 0", tr, ev.raw)
	}
	if e.tlsCN != nil {
		cn, ok := e.tlsCN(name)
		if secure := tr == "tls" || tr == "wss"; ok != secure || cn != map[bool]string{true: clientCN}[secure] {
			t.Errorf("Authenticate saw Client.TLS %v with peer certificate %q; want TLS %v with %q", ok, cn, secure, map[bool]string{true: clientCN}[secure])
		}
	}
	if ev := c.do("suback", map[string]any{"op": "sub", "filters": [][]any{{prefix + "/m", 1}}}); len(ev.Granted) != 1 || ev.Granted[0] != 1 {
		t.Fatalf("SUBACK: %s", ev.raw)
	}
	m := message{prefix + "/m", "over " + tr + " from " + kind.name, 1, false}
	c.do("pubdone", pubCmd(m.Topic, m.Payload, 1, false))
	c.take(t, "own message", m)
	obs.take(t, "the client's message", m)
	obs.publish(m.Topic, "from tcp", 1, false)
	c.take(t, "message from a TCP client", message{m.Topic, "from tcp", 1, false})
	obs.take(t, "own message", message{m.Topic, "from tcp", 1, false})

	// A large message, many WebSocket frames or TLS records long, and a
	// burst of small ones, which the broker may batch into one write.
	big := message{m.Topic, strings.Repeat("0123456789abcdef", 4<<10), 1, false}
	c.do("pubdone", pubCmd(big.Topic, big.Payload, 1, false))
	c.take(t, "own large message", big)
	obs.take(t, "the client's large message", big)
	var burst []message
	for i := range 50 {
		burst = append(burst, message{m.Topic, "burst " + strconv.Itoa(i), 0, false})
		obs.publish(m.Topic, burst[i].Payload, 0, false)
	}
	c.take(t, "a burst of small messages", burst...)
	obs.take(t, "own burst", burst...)

	c.kill()
	obs.take(t, "will", message{prefix + "/will", name + " gone", 1, false})
}

func testCLITLS(t *testing.T, e endpoints, subBin, pubBin string) {
	const prefix = "tr/cli-tls"
	obs := observe(t, e.tg, "observer", prefix+"/#")
	tlsArgs := func(id string) []string {
		return append(cliArgs(e.tg, id, password), "-p", strconv.Itoa(e.ports["tls"]),
			"--cafile", e.files.CACert, "--cert", e.files.ClientCert, "--key", e.files.ClientKey)
	}
	sub := startProcess(t, "mosquitto_sub", parseCLI, append(append(lineBuffered(t, subBin), "-d", "-q", "1", "-t", prefix+"/m", "-F", subFormat,
		"--will-topic", prefix+"/will", "--will-payload", "cli gone", "--will-qos", "1"), tlsArgs("cli-tls-sub")...)...)
	sub.waitLine("Subscribed (mid:")
	if out, err := runCLI(t, pubBin, append(tlsArgs("cli-tls-pub"), "-q", "1", "-t", prefix+"/m", "-m", "over tls")...); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	m := message{prefix + "/m", "over tls", 1, false}
	sub.take(t, "mosquitto_pub's message over TLS", m)
	obs.take(t, "mosquitto_pub's message over TLS", m)
	sub.kill()
	obs.take(t, "will", message{prefix + "/will", "cli gone", 1, false})

	// Without a client certificate the TLS handshake fails.
	if out, err := runCLI(t, pubBin, append(cliArgs(e.tg, "cli-nocert", password), "-p", strconv.Itoa(e.ports["tls"]),
		"--cafile", e.files.CACert, "-t", prefix+"/m", "-m", "x")...); err == nil {
		t.Errorf("mosquitto_pub without a client certificate succeeded:\n%s", out)
	}
}
