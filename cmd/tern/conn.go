package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ternmq/mqtt/topic"
)

// connFlags are the connection flags pub and sub share, named as in
// mosquitto_pub and mosquitto_sub where they mean the same thing.
type connFlags struct {
	host, url      string
	port           int
	clientID       string
	username       string
	password       string
	keepalive      time.Duration
	connectTimeout time.Duration

	willTopic   string
	willPayload string
	willQoS     int
	willRetain  bool

	tlsOn    bool
	caFile   string
	certFile string
	keyFile  string
	insecure bool

	set map[string]bool // every flag given on the command line, by name
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.host, "h", "localhost", "broker `host`")
	fs.IntVar(&c.port, "p", 0, "broker `port` (default 1883, or 8883 with TLS)")
	fs.StringVar(&c.url, "L", "", "broker `URL`: mqtt://, mqtts://, ws://, wss://, unix://; mqtt[s]://[user[:password]@]host[:port]/topic sets the topic too, as in mosquitto_pub")
	fs.StringVar(&c.url, "url", "", "same as -L")
	fs.StringVar(&c.clientID, "i", "", "client `id` (default: generated)")
	fs.StringVar(&c.username, "u", "", "`username`")
	fs.StringVar(&c.password, "P", "", "`password`")
	fs.Var((*secondsFlag)(&c.keepalive), "k", "keepalive in `seconds` (or a duration such as 30s); 0 disables it")
	c.keepalive = 60 * time.Second
	fs.Var((*secondsFlag)(&c.connectTimeout), "connect-timeout", "give up connecting after this many `seconds` (or a duration)")
	c.connectTimeout = 10 * time.Second

	fs.StringVar(&c.willTopic, "will-topic", "", "`topic` of the will message, published by the broker if the connection is lost")
	fs.StringVar(&c.willPayload, "will-payload", "", "`payload` of the will message")
	fs.IntVar(&c.willQoS, "will-qos", 0, "QoS `level` of the will message")
	fs.BoolVar(&c.willRetain, "will-retain", false, "retain the will message")

	fs.BoolVar(&c.tlsOn, "tls", false, "use TLS with the system's certificate authorities (implied by -cafile, -cert, -insecure)")
	fs.StringVar(&c.caFile, "cafile", "", "PEM `file` of the certificate authorities to trust (implies TLS)")
	fs.StringVar(&c.certFile, "cert", "", "PEM `file` of the client certificate (with -key)")
	fs.StringVar(&c.keyFile, "key", "", "PEM `file` of the client private key (with -cert)")
	fs.BoolVar(&c.insecure, "insecure", false, "do not verify the server's certificate (for testing only)")
}

// visit records which flags were given, after parsing.
func (c *connFlags) visit(fs *flag.FlagSet) {
	c.set = make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
}

// dialConfig is everything needed to connect, checked and resolved from the
// flags.
type dialConfig struct {
	url       string // with no user info and, for mqtt(s), no path
	topic     string // the path of an mqtt(s) URL, if any
	clientID  string
	username  string
	password  string
	hasPass   bool
	keepalive time.Duration
	timeout   time.Duration
	tls       *tls.Config
	will      *willConfig
}

type willConfig struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// resolve checks the flags and builds the dial configuration.
func (c *connFlags) resolve() (*dialConfig, error) {
	d := &dialConfig{
		clientID:  c.clientID,
		username:  c.username,
		password:  c.password,
		hasPass:   c.set["P"],
		keepalive: c.keepalive,
		timeout:   c.connectTimeout,
	}
	if d.keepalive < 0 || d.keepalive > 65535*time.Second {
		return nil, usagef("-k %v: keepalive must be between 0 and 65535 seconds", d.keepalive)
	}
	if d.timeout <= 0 {
		return nil, usagef("-connect-timeout must be positive")
	}
	if d.keepalive > 0 && d.keepalive < time.Second {
		d.keepalive = time.Second
	}
	useTLS := c.tlsOn || c.caFile != "" || c.certFile != "" || c.insecure
	if c.url != "" {
		if c.set["h"] || c.set["p"] {
			return nil, usagef("give either -L/-url or -h/-p, not both")
		}
		u, err := parseBrokerURL(c.url)
		if err != nil {
			return nil, err
		}
		if u.User != nil {
			if d.username == "" {
				d.username = u.User.Username()
			}
			if p, ok := u.User.Password(); ok && !d.hasPass {
				d.password, d.hasPass = p, true
			}
			u.User = nil
		}
		switch u.Scheme {
		case "mqtt", "tcp", "mqtts", "ssl", "tls":
			// As in mosquitto_pub -L, the path names the topic.
			d.topic = strings.TrimPrefix(u.Path, "/")
			u.Path, u.RawPath = "", ""
		}
		if isTLSScheme(u.Scheme) {
			useTLS = true
		} else if useTLS {
			return nil, usagef("TLS flags given with the non-TLS URL %s", redact(c.url))
		}
		d.url = u.String()
	} else {
		port := c.port
		if port == 0 {
			port = 1883
			if useTLS {
				port = 8883
			}
		}
		if port < 1 || port > 65535 {
			return nil, usagef("-p %d: port must be between 1 and 65535", port)
		}
		scheme := "mqtt"
		if useTLS {
			scheme = "mqtts"
		}
		d.url = scheme + "://" + net.JoinHostPort(c.host, strconv.Itoa(port))
	}
	if d.hasPass && d.username == "" {
		// MQTT 3.1.1 has no password without a username [MQTT-3.1.2-22].
		return nil, usagef("-P needs -u: MQTT 3.1.1 allows no password without a username")
	}
	if useTLS {
		cfg, err := clientTLS(c.caFile, c.certFile, c.keyFile, c.insecure)
		if err != nil {
			return nil, err
		}
		d.tls = cfg
	}
	if c.willTopic != "" {
		if err := topic.ValidName(c.willTopic); err != nil {
			return nil, usagef("-will-topic %q: %v", c.willTopic, err)
		}
		q, err := checkQoS("-will-qos", c.willQoS)
		if err != nil {
			return nil, err
		}
		d.will = &willConfig{topic: c.willTopic, payload: []byte(c.willPayload), qos: q, retain: c.willRetain}
	} else if c.set["will-payload"] || c.set["will-qos"] || c.set["will-retain"] {
		return nil, usagef("-will-payload, -will-qos and -will-retain need -will-topic")
	}
	return d, nil
}

// parseBrokerURL parses and checks a broker URL, with errors that say what
// is wrong in one line.
func parseBrokerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, usagef("bad URL %q: %v", redact(raw), err)
	}
	switch u.Scheme {
	case "mqtt", "tcp", "mqtts", "ssl", "tls", "ws", "wss":
		if u.Host == "" {
			return nil, usagef("bad URL %q: no host", redact(raw))
		}
		if p := u.Port(); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 65535 {
				return nil, usagef("bad URL %q: port %q", redact(raw), p)
			}
		}
	case "unix":
		// As the transport reads it: unix:///absolute/path, or
		// unix://relative/path.
		if u.Opaque != "" {
			return nil, usagef("bad URL %q: write unix:///absolute/path or unix://relative/path", redact(raw))
		}
		if u.Host+u.Path == "" {
			return nil, usagef("bad URL %q: no socket path", redact(raw))
		}
	case "":
		return nil, usagef("bad URL %q: no scheme (use mqtt://, mqtts://, ws://, wss:// or unix://)", redact(raw))
	default:
		return nil, usagef("bad URL %q: unknown scheme %q (use mqtt://, mqtts://, ws://, wss:// or unix://)", redact(raw), u.Scheme)
	}
	return u, nil
}

// redact hides the password of a URL for error messages, even in a URL
// that does not parse.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err == nil {
		if u.User == nil {
			return raw
		}
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
		return raw
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority, path, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(authority[:at], ":")
	if !hasPass {
		return raw
	}
	s := scheme + "://" + user + ":xxxxx" + authority[at:]
	if len(rest) > len(authority) {
		s += "/" + path
	}
	return s
}

func isTLSScheme(s string) bool {
	switch s {
	case "mqtts", "ssl", "tls", "wss":
		return true
	}
	return false
}

// clientTLS builds the client TLS configuration from the flag values.
func clientTLS(caFile, certFile, keyFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-cafile: %w", pathErr(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cafile %s: no PEM certificate found", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, usagef("-cert and -key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", pathErr(err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// pathErr shortens *os.PathError to "open FILE: reason" without the
// operation's Go details.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

func checkQoS(name string, q int) (byte, error) {
	if q < 0 || q > 2 {
		return 0, usagef("%s %d: QoS must be 0, 1 or 2", name, q)
	}
	return byte(q), nil
}

// secondsFlag is a duration flag that also takes a plain number of seconds,
// as mosquitto's -k and -W do ("60", "0.5", "1m30s").
type secondsFlag time.Duration

func (s *secondsFlag) String() string {
	if s == nil {
		return "0"
	}
	d := time.Duration(*s)
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return d.String()
}

func (s *secondsFlag) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f > 1e9 || f != f {
			return errors.New("out of range")
		}
		*s = secondsFlag(time.Duration(f * float64(time.Second)))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want seconds or a duration such as 1.5s or 2m")
	}
	if d < 0 {
		return errors.New("negative duration")
	}
	*s = secondsFlag(d)
	return nil
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ", ") }
func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}
