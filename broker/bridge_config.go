package broker

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/mqtt/transport"
)

// ParseBridges reads bridges from a file in the form of mosquitto's bridge
// section, so that a mosquitto bridge configuration carries over:
//
//	connection cloud
//	address broker1.example.com:8883 broker2.example.com:8883
//	remote_clientid gateway-7
//	remote_username gateway-7
//	remote_password secret
//	bridge_cafile /etc/tern/ca.pem
//	cleansession false
//	topic sensors/# out 1 site/ fleet/site-7/
//	topic commands/# in 2 site/ fleet/site-7/
//
// Each `connection NAME` starts a bridge. The keys understood are those of
// mosquitto that mean the same here: address (or addresses), topic,
// remote_clientid (clientid), remote_username (username), remote_password
// (password), cleansession, keepalive_interval, try_private, notifications,
// notifications_local_only, notification_topic, bridge_attempt_unsubscribe,
// bridge_outgoing_retain, restart_timeout, bridge_cafile, bridge_certfile,
// bridge_keyfile, bridge_insecure, bridge_protocol_version (mqttv311 only),
// start_type (automatic only) and round_robin (true only: tern tries the
// addresses in turn from the last that worked). An address is host:port
// (port 1883, or 8883 with TLS, when left out) or, beyond mosquitto, a URL
// of any scheme of package transport (ws://host/mqtt...). tern adds
// bridge_server_name NAME (the TLS server name, when it differs from the
// address) and max_queued N (Bridge.MaxQueued).
//
// Any other key, a key outside a connection, and a value out of range are
// refused with an error naming the line: nothing is ignored. Lines
// starting with # and blank lines are skipped. name is used in errors.
func ParseBridges(r io.Reader, name string) ([]Bridge, error) {
	p := bridgeParser{name: name}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.line++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := p.parse(strings.Fields(line)); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, p.line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	if len(p.out) == 0 {
		return nil, fmt.Errorf("%s: no connection", name)
	}
	return p.out, nil
}

// bridgeParser holds the bridge being read and what its keys left for
// finish.
type bridgeParser struct {
	name string
	line int
	out  []Bridge

	cur      *Bridge
	start    int // line of the current connection
	addrs    []string
	cafile   string
	certfile string
	keyfile  string
	insecure bool
	server   string
	seen     map[string]bool // keys seen in the current connection
}

func (p *bridgeParser) parse(f []string) error {
	key, args := f[0], f[1:]
	if key == "connection" {
		if len(args) != 1 {
			return errors.New("connection: want one name")
		}
		if err := p.finish(); err != nil {
			return err
		}
		for _, b := range p.out {
			if b.Name == args[0] {
				return fmt.Errorf("connection %s: a second connection of that name", args[0])
			}
		}
		p.cur = &Bridge{Name: args[0]}
		p.start = p.line
		p.addrs, p.cafile, p.certfile, p.keyfile, p.insecure, p.server = nil, "", "", "", false, ""
		p.seen = make(map[string]bool)
		return nil
	}
	if p.cur == nil {
		return fmt.Errorf("%s: outside a connection (start one with `connection NAME`)", key)
	}
	b := p.cur
	one := func() (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("%s: want one value", key)
		}
		return args[0], nil
	}
	boolean := func() (bool, error) {
		v, err := one()
		if err != nil {
			return false, err
		}
		switch v {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return false, fmt.Errorf("%s: %q is not true or false", key, v)
	}
	if key != "topic" && key != "address" && key != "addresses" {
		if p.seen[key] {
			return fmt.Errorf("%s: given twice in connection %s", key, b.Name)
		}
		p.seen[key] = true
	}
	var err error
	switch key {
	case "address", "addresses":
		if len(args) == 0 {
			return fmt.Errorf("%s: want host:port or a URL", key)
		}
		p.addrs = append(p.addrs, args...)
	case "topic":
		t, err := parseBridgeTopic(args)
		if err != nil {
			return err
		}
		b.Topics = append(b.Topics, t)
	case "remote_clientid", "clientid":
		b.ClientID, err = one()
	case "remote_username", "username":
		b.Username, err = one()
	case "remote_password", "password":
		var v string
		v, err = one()
		b.Password = []byte(v)
	case "cleansession":
		b.CleanSession, err = boolean()
	case "keepalive_interval":
		var v string
		if v, err = one(); err == nil {
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 5 || n > 65535 {
				return fmt.Errorf("keepalive_interval: %q is not a number of seconds from 5 to 65535", v)
			}
			b.KeepAlive = time.Duration(n) * time.Second
		}
	case "try_private":
		var v bool
		v, err = boolean()
		b.NoBridgeMark = !v
	case "notifications":
		var v bool
		v, err = boolean()
		b.NoNotifications = !v
	case "notifications_local_only":
		b.NotificationsLocalOnly, err = boolean()
	case "notification_topic":
		b.NotificationTopic, err = one()
	case "bridge_attempt_unsubscribe":
		var v bool
		v, err = boolean()
		b.NoUnsubscribe = !v
	case "bridge_outgoing_retain":
		var v bool
		v, err = boolean()
		b.NoOutgoingRetain = !v
	case "restart_timeout":
		if len(args) < 1 || len(args) > 2 {
			return errors.New("restart_timeout: want `restart_timeout SECONDS` or `restart_timeout BASE CAP`")
		}
		var d [2]time.Duration
		for i, a := range args {
			n, perr := strconv.Atoi(a)
			if perr != nil || n < 1 {
				return fmt.Errorf("restart_timeout: %q is not a positive number of seconds", a)
			}
			d[i] = time.Duration(n) * time.Second
		}
		if len(args) == 1 {
			d[1] = d[0]
		}
		if d[1] < d[0] {
			return errors.New("restart_timeout: the cap is below the base")
		}
		b.ReconnectMin, b.ReconnectMax = d[0], d[1]
	case "bridge_cafile":
		p.cafile, err = one()
	case "bridge_certfile":
		p.certfile, err = one()
	case "bridge_keyfile":
		p.keyfile, err = one()
	case "bridge_insecure":
		p.insecure, err = boolean()
	case "bridge_server_name":
		p.server, err = one()
	case "max_queued":
		var v string
		if v, err = one(); err == nil {
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 1 {
				return fmt.Errorf("max_queued: %q is not a positive number", v)
			}
			b.MaxQueued = n
		}
	case "bridge_protocol_version":
		var v string
		if v, err = one(); err == nil && v != "mqttv311" {
			return fmt.Errorf("bridge_protocol_version: %q is not supported: tern's bridge speaks mqttv311 only", v)
		}
	case "start_type":
		var v string
		if v, err = one(); err == nil && v != "automatic" {
			return fmt.Errorf("start_type: %q is not supported: tern's bridges start with the broker and reconnect (automatic)", v)
		}
	case "round_robin":
		var v bool
		if v, err = boolean(); err == nil && !v {
			return errors.New("round_robin: false is not supported: tern tries the addresses in turn from the last one that worked (round_robin true)")
		}
	case "local_clientid", "local_username", "local_password", "local_cleansession":
		return fmt.Errorf("%s: not supported: tern's bridge is inside the broker, not a client of it", key)
	case "bridge_capath", "bridge_identity", "bridge_psk", "bridge_alpn", "bridge_bind_address",
		"bridge_max_packet_size", "bridge_require_ocsp", "bridge_tls_version", "idle_timeout", "threshold":
		return fmt.Errorf("%s: not supported by tern's bridge", key)
	default:
		return fmt.Errorf("%s: unknown key (not a bridge setting tern knows)", key)
	}
	return err
}

// parseBridgeTopic reads `PATTERN [[[out|in|both] QOS] LOCAL REMOTE]`.
func parseBridgeTopic(args []string) (BridgeTopic, error) {
	t := BridgeTopic{Direction: BridgeOut}
	if len(args) < 1 || len(args) > 5 || len(args) == 4 {
		return t, errors.New("topic: want `topic PATTERN [[[out|in|both] QOS] LOCAL-PREFIX REMOTE-PREFIX]`")
	}
	empty := func(s string) string {
		if s == `""` {
			return ""
		}
		return s
	}
	t.Pattern = empty(args[0])
	if len(args) >= 2 {
		switch args[1] {
		case "out":
			t.Direction = BridgeOut
		case "in":
			t.Direction = BridgeIn
		case "both":
			t.Direction = BridgeBoth
		default:
			return t, fmt.Errorf("topic %s: direction %q is not out, in or both", args[0], args[1])
		}
	}
	if len(args) >= 3 {
		switch args[2] {
		case "0", "1", "2":
			t.QoS = args[2][0] - '0'
		default:
			return t, fmt.Errorf("topic %s: QoS %q is not 0, 1 or 2", args[0], args[2])
		}
	}
	if len(args) == 5 {
		t.LocalPrefix, t.RemotePrefix = empty(args[3]), empty(args[4])
	}
	if err := t.validate(); err != nil {
		return t, fmt.Errorf("topic %s: %w", args[0], err)
	}
	return t, nil
}

// finish completes the current connection: its URLs, TLS, and checks.
func (p *bridgeParser) finish() error {
	b := p.cur
	if b == nil {
		return nil
	}
	p.cur = nil
	fail := func(err error) error {
		return fmt.Errorf("%s:%d: connection %s: %w", p.name, p.start, b.Name, err)
	}
	if len(p.addrs) == 0 {
		return fail(errors.New("no address"))
	}
	tlsOn := p.cafile != "" || p.certfile != "" || p.keyfile != "" || p.insecure || p.server != ""
	if tlsOn {
		cfg, err := p.tlsConfig()
		if err != nil {
			return fail(err)
		}
		b.TLSConfig = cfg
	}
	for _, a := range p.addrs {
		u, err := bridgeURL(a, tlsOn)
		if err != nil {
			return fail(err)
		}
		b.URLs = append(b.URLs, u)
	}
	if err := b.validate(); err != nil {
		return fmt.Errorf("%s:%d: %w", p.name, p.start, err)
	}
	p.out = append(p.out, *b)
	return nil
}

// bridgeURL turns a mosquitto address (host, host:port, [v6]:port) into a
// URL; a URL is kept as it is, once checked: with TLS keys given, it must
// be one of TLS (mqtts://, wss://...), not a plain one that would leave
// them unused.
func bridgeURL(a string, tlsOn bool) (string, error) {
	if scheme, _, ok := strings.Cut(a, "://"); ok {
		if err := transport.CheckURL(a); err != nil {
			return "", err
		}
		if s := strings.ToLower(scheme); tlsOn && s != "mqtts" && s != "ssl" && s != "tls" && s != "wss" {
			return "", fmt.Errorf("address %q: TLS keys (bridge_cafile...) given with a URL that is not TLS", a)
		}
		return a, nil
	}
	scheme, port := "mqtt://", "1883"
	if tlsOn {
		scheme, port = "mqtts://", "8883"
	}
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		if strings.Count(a, ":") > 1 {
			return "", fmt.Errorf("address %q: an IPv6 address needs [brackets] and a port", a)
		}
		host, p = a, port
	}
	if host == "" {
		return "", fmt.Errorf("address %q: no host", a)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("address %q: bad port", a)
	}
	return scheme + net.JoinHostPort(host, p), nil
}

// tlsConfig builds the TLS settings from bridge_cafile, bridge_certfile,
// bridge_keyfile, bridge_insecure and bridge_server_name.
func (p *bridgeParser) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: p.server}
	if p.cafile != "" {
		pem, err := os.ReadFile(p.cafile)
		if err != nil {
			return nil, fmt.Errorf("bridge_cafile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bridge_cafile %s: no PEM certificate in it", p.cafile)
		}
		cfg.RootCAs = pool
	}
	if (p.certfile == "") != (p.keyfile == "") {
		return nil, errors.New("bridge_certfile and bridge_keyfile go together")
	}
	if p.certfile != "" {
		cert, err := tls.LoadX509KeyPair(p.certfile, p.keyfile)
		if err != nil {
			return nil, fmt.Errorf("bridge_certfile/bridge_keyfile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if p.insecure {
		// mosquitto's bridge_insecure skips the host name check only;
		// Go's InsecureSkipVerify skips the chain too, so the chain is
		// checked here against the CA.
		cfg.InsecureSkipVerify = true
		roots := cfg.RootCAs
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			if len(certs) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return cfg, nil
}
