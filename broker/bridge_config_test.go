package broker_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/mqtttest"
)

// TestParseBridges reads mosquitto bridge sections into Bridges.
func TestParseBridges(t *testing.T) {
	out := func(p string, q byte) broker.BridgeTopic {
		return broker.BridgeTopic{Pattern: p, Direction: broker.BridgeOut, QoS: q}
	}
	tests := []struct {
		name string
		conf string
		want []broker.Bridge
	}{
		{
			name: "minimal: topic defaults to out at QoS 0, port to 1883",
			conf: "connection a\naddress 10.0.0.1\ntopic #\n",
			want: []broker.Bridge{{Name: "a", URLs: []string{"mqtt://10.0.0.1:1883"}, Topics: []broker.BridgeTopic{out("#", 0)}}},
		},
		{
			name: "every key",
			conf: `# a comment
connection cloud
address broker1.example.com:1884 [::1]:1885
addresses mqtt.example.com
topic sensors/# out 1 site/ fleet/site-7/
topic commands/# in 2 site/ fleet/site-7/
topic chat/+ both 0
topic "" in 1 site/clock fleet/clock
topic # both 2 "" remote/
remote_clientid gateway-7
remote_username user
remote_password secret
cleansession true
keepalive_interval 30
try_private false
notifications false
notifications_local_only true
notification_topic gw/7/state
bridge_attempt_unsubscribe false
bridge_outgoing_retain false
restart_timeout 2 20
bridge_protocol_version mqttv311
start_type automatic
round_robin true
max_queued 500

connection second
address ws://127.0.0.1:8080/mqtt
topic a out
clientid old-style
username u
password p
restart_timeout 3
`,
			want: []broker.Bridge{
				{
					Name:     "cloud",
					URLs:     []string{"mqtt://broker1.example.com:1884", "mqtt://[::1]:1885", "mqtt://mqtt.example.com:1883"},
					ClientID: "gateway-7", Username: "user", Password: []byte("secret"),
					CleanSession: true, KeepAlive: 30 * time.Second, NoBridgeMark: true,
					NoNotifications: true, NotificationsLocalOnly: true, NotificationTopic: "gw/7/state",
					NoUnsubscribe: true, NoOutgoingRetain: true,
					ReconnectMin: 2 * time.Second, ReconnectMax: 20 * time.Second, MaxQueued: 500,
					Topics: []broker.BridgeTopic{
						{Pattern: "sensors/#", Direction: broker.BridgeOut, QoS: 1, LocalPrefix: "site/", RemotePrefix: "fleet/site-7/"},
						{Pattern: "commands/#", Direction: broker.BridgeIn, QoS: 2, LocalPrefix: "site/", RemotePrefix: "fleet/site-7/"},
						{Pattern: "chat/+", Direction: broker.BridgeBoth},
						{Direction: broker.BridgeIn, QoS: 1, LocalPrefix: "site/clock", RemotePrefix: "fleet/clock"},
						{Pattern: "#", Direction: broker.BridgeBoth, QoS: 2, RemotePrefix: "remote/"},
					},
				},
				{
					Name: "second", URLs: []string{"ws://127.0.0.1:8080/mqtt"}, Topics: []broker.BridgeTopic{out("a", 0)},
					ClientID: "old-style", Username: "u", Password: []byte("p"),
					ReconnectMin: 3 * time.Second, ReconnectMax: 3 * time.Second,
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := broker.ParseBridges(strings.NewReader(tt.conf), "bridges.conf")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(broker.Bridge{}, "TLSConfig")); d != "" {
				t.Errorf("ParseBridges (-want +got):\n%s", d)
			}
		})
	}
}

// TestParseBridgesRefused checks that what tern cannot do as mosquitto
// would is refused with the line, never ignored.
func TestParseBridgesRefused(t *testing.T) {
	const head = "connection a\naddress h\ntopic #\n"
	tests := []struct {
		conf string
		want string // in the error
	}{
		{"", "no connection"},
		{"# only a comment\n", "no connection"},
		{"address h\n", ":1: address: outside a connection"},
		{"listener 1883\n", ":1: listener: outside a connection"},
		{head + "listener 1883\n", ":4: listener: unknown key"},
		{head + "foo bar\n", ":4: foo: unknown key"},
		{"connection\n", ":1: connection: want one name"},
		{"connection a b\n", ":1: connection: want one name"},
		{"connection a/b\naddress h\ntopic #\n", "must be non-empty, without / + #"},
		{head + "connection a\naddress h\ntopic #\n", ":4: connection a: a second connection"},
		{"connection a\ntopic #\n", ":1: connection a: no address"},
		{"connection a\naddress h\n", "no topic"},
		{head + "address\n", ":4: address: want"},
		{head + "address h:0\n", "bad port"},
		{head + "address h:x\n", "bad port"},
		{head + "address ::1\n", "IPv6 address needs [brackets]"},
		{head + "address foo://h:1\n", "unknown URL scheme"},
		{head + "address mqtt://h:99999\n", "out of range"},
		{head + "address mqtt://h:1883\nbridge_insecure true\n", "TLS keys (bridge_cafile...) given with a URL that is not TLS"},
		{head + "address ws://h/mqtt\nbridge_insecure true\n", "not TLS"},
		{head + "topic\n", ":4: topic: want"},
		{head + "topic a up\n", `direction "up" is not out, in or both`},
		{head + "topic a out 3\n", `QoS "3" is not 0, 1 or 2`},
		{head + "topic a out 1 L/\n", ":4: topic: want"},
		{head + "topic a out 1 L/ R/ extra\n", ":4: topic: want"},
		{head + "topic a/#/b out\n", "local filter"},
		{head + "topic a out 1 L/+/ R/\n", "prefix contains a wildcard"},
		{head + `topic "" out 1 L/ ""` + "\n", "empty pattern needs both prefixes"},
		{head + `topic "" out 1 "" ""` + "\n", "empty pattern needs both prefixes"},
		{head + "cleansession yes\n", `cleansession: "yes" is not true or false`},
		{head + "cleansession\n", "cleansession: want one value"},
		{head + "cleansession true\ncleansession false\n", ":5: cleansession: given twice"},
		{head + "keepalive_interval 4\n", "keepalive_interval: \"4\" is not a number of seconds from 5"},
		{head + "restart_timeout 10 5\n", "cap is below the base"},
		{head + "restart_timeout 0\n", "not a positive number"},
		{head + "remote_password p\n", "a password needs a username"},
		{head + "bridge_protocol_version mqttv50\n", "mqttv311 only"},
		{head + "bridge_protocol_version mqttv31\n", "mqttv311 only"},
		{head + "start_type lazy\n", `start_type: "lazy" is not supported`},
		{head + "round_robin false\n", "round_robin: false is not supported"},
		{head + "local_clientid x\n", "local_clientid: not supported"},
		{head + "local_username x\n", "local_username: not supported"},
		{head + "bridge_capath /etc/ssl\n", "bridge_capath: not supported"},
		{head + "bridge_psk 00\n", "bridge_psk: not supported"},
		{head + "bridge_max_packet_size 10\n", "bridge_max_packet_size: not supported"},
		{head + "bridge_cafile /nonexistent/ca.pem\n", "bridge_cafile: open /nonexistent/ca.pem"},
		{head + "bridge_certfile c.pem\n", "bridge_certfile and bridge_keyfile go together"},
		{head + "notification_topic a/+\n", "notification topic"},
		{head + "max_queued 0\n", "max_queued"},
	}
	for _, tt := range tests {
		_, err := broker.ParseBridges(strings.NewReader(tt.conf), "bridges.conf")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseBridges(%q) = %v, want an error with %q", tt.conf, err, tt.want)
		}
	}
}

// TestParseBridgesTLS checks that the TLS keys load the CA and the client
// certificate, and that an address then defaults to mqtts:// on 8883.
func TestParseBridgesTLS(t *testing.T) {
	certs := testcert.Must(t)
	dir := t.TempDir()
	files, err := certs.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	conf := "connection a\naddress h\ntopic #\nbridge_cafile " + files.CACert +
		"\nbridge_certfile " + files.ClientCert + "\nbridge_keyfile " + files.ClientKey +
		"\nbridge_server_name localhost\n"
	got, err := broker.ParseBridges(strings.NewReader(conf), "b.conf")
	if err != nil {
		t.Fatal(err)
	}
	b := got[0]
	if b.URLs[0] != "mqtts://h:8883" {
		t.Errorf("URL = %s, want mqtts://h:8883", b.URLs[0])
	}
	if c := b.TLSConfig; c == nil || c.RootCAs == nil || len(c.Certificates) != 1 || c.ServerName != "localhost" || c.InsecureSkipVerify {
		t.Errorf("TLSConfig = %+v", c)
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := broker.ParseBridges(strings.NewReader("connection a\naddress h\ntopic #\nbridge_cafile "+bad+"\n"), "b.conf"); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without PEM: %v", err)
	}
}

// TestBridgeTransports connects bridges read from files to mosquitto over
// TLS with a client certificate (bridge_cafile, bridge_certfile,
// bridge_keyfile) and over WebSocket (an address given as a ws:// URL), and
// forwards a message over each.
func TestBridgeTransports(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Config{RequireClientCert: true, WebSockets: true})
	cases := []struct{ name, conf string }{
		{"tls", "address " + strings.TrimPrefix(m.TLSURL, "mqtts://") +
			"\nbridge_cafile " + m.Files.CACert + "\nbridge_certfile " + m.Files.ClientCert +
			"\nbridge_keyfile " + m.Files.ClientKey + "\n"},
		{"tls-wrong-ca", "address " + strings.TrimPrefix(m.TLSURL, "mqtts://") +
			"\nbridge_cafile " + wrongCA(t) + "\nbridge_certfile " + m.Files.ClientCert +
			"\nbridge_keyfile " + m.Files.ClientKey + "\n"},
		{"ws", "address " + m.WSURL + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf := "connection " + tc.name + "\nremote_clientid bridge-" + tc.name +
				"\ntopic t/# out 1 \"\" " + tc.name + "/\nrestart_timeout 1\n" + tc.conf
			bs, err := broker.ParseBridges(strings.NewReader(conf), "b.conf")
			if err != nil {
				t.Fatal(err)
			}
			local := mqtttest.NewServer(t, func(o *broker.Options) { o.Bridges = bs })
			if tc.name == "tls-wrong-ca" {
				time.Sleep(time.Second)
				if st := local.Broker.Stats().Bridges[0]; st.Connected {
					t.Fatal("connected to a server whose certificate the CA did not sign")
				}
				return
			}
			bwait(t, 10*time.Second, "bridge up", func() bool { return local.Broker.Stats().Bridges[0].Connected })
			rsub := collect(t, m.URL, "rsub-"+tc.name, tc.name+"/#", 1)
			lpub := conn(t, local.URL, "lpub", nil)
			probe(t, lpub, rsub, "t/x", tc.name+"/t/x")
		})
	}
}

// wrongCA writes the certificate of a CA that signed nothing mosquitto has.
func wrongCA(t *testing.T) string {
	files, err := testcert.Must(t).WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return files.CACert
}

// TestBridgeAuth connects bridges read from files to a mosquitto that
// checks passwords: remote_username and remote_password get in, a wrong
// password does not, and the refusal is logged.
func TestBridgeAuth(t *testing.T) {
	m := mosquitto.Start(t, mosquitto.Config{Users: map[string]string{"gw": "s3cret"}})
	for _, pw := range []string{"s3cret", "wrong"} {
		t.Run(pw, func(t *testing.T) {
			conf := "connection auth\naddress " + m.Addr + "\nremote_clientid auth-" + pw +
				"\nremote_username gw\nremote_password " + pw + "\ntopic t out 1\nrestart_timeout 1\n"
			bs, err := broker.ParseBridges(strings.NewReader(conf), "b.conf")
			if err != nil {
				t.Fatal(err)
			}
			var logs lockedBuffer
			local := mqtttest.NewServer(t, func(o *broker.Options) {
				o.Bridges = bs
				o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			if pw == "wrong" {
				bwait(t, 10*time.Second, "the refusal logged", func() bool {
					return strings.Contains(logs.String(), "refused the connection")
				})
				if local.Broker.Stats().Bridges[0].Connected {
					t.Error("connected with a wrong password")
				}
				return
			}
			bwait(t, 10*time.Second, "bridge up", func() bool { return local.Broker.Stats().Bridges[0].Connected })
		})
	}
}
