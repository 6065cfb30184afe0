package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/store"
	"github.com/ternmq/mqtt/transport"
)

const brokerUsage = `
Usage: tern broker [-listen URL]... [flags]

Runs an MQTT 3.1.1 broker: QoS 0, 1 and 2, retained messages, wills,
persistent sessions (in memory, or on disk with -data), shared
subscriptions ($share/group/filter).
It prints each address it listens on, then serves until interrupted.

Listeners are URLs (-listen is repeatable; port 0 picks a free port):
  mqtt://HOST:PORT        plain TCP (default mqtt://127.0.0.1:1883)
  mqtts://HOST:PORT       TLS, with -cert and -key
  ws://HOST:PORT/PATH     WebSocket (any path when PATH is empty or /)
  wss://HOST:PORT/PATH    WebSocket over TLS, with -cert and -key
  unix:///PATH            Unix domain socket
An empty HOST (mqtt://:1883) listens on every interface.

Authentication and authorization:
  -passwd FILE   one "user:password" per line; the password in plain text or
                 hashed by mosquitto_passwd ($7$ or $6$), so mosquitto's
                 password files work as they are. Clients without a user
                 name are refused unless -allow-anonymous.
  -acl FILE      mosquitto's ACL format: "user NAME" starts the rules of a
                 user, "topic [read|write|readwrite|deny] FILTER" grants or
                 denies a filter, "pattern ..." does the same for every client
                 with %u (user name) and %c (client id) replaced; rules before
                 the first user line are for clients without a user name.
                 Whatever no rule grants is denied; deny rules win over
                 the others of the user's rules, and the user's rules are
                 applied before the patterns, as in mosquitto 2.0.
                 Each message is delivered to the subscribers that may
                 read its topic (retained messages too): a subscription
                 to # is granted, and receives what the rules let through.
                 A filter none of whose topics may be read is refused
                 (SUBACK 0x80; mosquitto grants it and delivers nothing).
  SIGHUP reloads both files, for the connections that come next (and the
  messages and subscriptions of every client, for -acl).

Bridges (connections to other brokers, forwarding chosen topics):
  -bridge FILE   mosquitto's bridge section: "connection NAME", "address
                 HOST:PORT...", "topic PATTERN [out|in|both [QOS [LOCAL
                 REMOTE]]]", remote_clientid, remote_username,
                 remote_password, cleansession, keepalive_interval,
                 try_private, bridge_cafile, bridge_certfile, bridge_keyfile,
                 bridge_insecure, notifications, notification_topic,
                 restart_timeout...; a key tern does not honour is refused.
                 State: $SYS/broker/connection/CLIENTID/state, 1 up, 0 down.
  -allow-bridges accept clients with the bridge mark (protocol level 0x84,
                 mosquitto's try_private): their own messages are not sent
                 back to them. Without it they are refused (CONNACK 0x01).

Monitoring:
  $SYS/broker/...  the counters under mosquitto's names (clients/connected,
                 messages/received, bytes/sent, retained messages/count...),
                 published retained every -sys-interval; a subscription to
                 $SYS/# gets them (a filter starting with a wildcard does not,
                 as the specification says). Clients cannot publish there.
  -metrics ADDR  serves the same counters at http://ADDR/metrics in the
                 Prometheus text format (tern_..._total counters and gauges).

Examples:
  tern broker
  tern broker -data /var/lib/tern -session-expiry 720h
  tern broker -listen mqtt://:1883 -listen ws://:8080/mqtt
  tern broker -listen mqtts://:8883 -cert server.crt -key server.key
  tern broker -listen mqtts://:8883 -cert server.crt -key server.key -cafile ca.crt -require-cert
  tern broker -passwd users.txt -acl acl.txt -log debug
  tern broker -max-conns 10000 -max-queued 10000 -max-packet 262144
  tern broker -bridge bridges.conf
  tern broker -metrics 127.0.0.1:9234 -sys-interval 60

SIGTERM or SIGINT stops the broker: it stops accepting, writes out what is
queued for the clients connected (for at most 5 s), closes the connections
without publishing wills, and closes the store. A second signal meanwhile
stops it at once.

Exit status: 0 stopped by a signal; 1 error (a listener could not start, a
file could not be read); 2 bad usage.
`

type brokerFlags struct {
	listen         stringsFlag
	certFile       string
	keyFile        string
	caFile         string
	requireCert    bool
	passwdFile     string
	aclFile        string
	allowAnonymous bool
	maxConns       int
	maxPacket      int
	maxInflight    int
	maxQueued      int
	maxQueuedBytes int
	batchDelay     time.Duration
	writeTimeout   time.Duration
	logLevel       string
	sysInterval    time.Duration
	metrics        string
	store          storeFlags
	bridgeFile     string
	allowBridges   bool
}

func runBroker(ctx context.Context, e *env, args []string) error {
	var f brokerFlags
	fs := newFlagSet(e, "broker", strings.Replace(brokerUsage, "\nExamples:", storeUsage+"\nExamples:", 1))
	fs.Var(&f.listen, "listen", "listener `URL` (repeatable): mqtt://, mqtts://, ws://, wss://, unix://")
	fs.StringVar(&f.certFile, "cert", "", "PEM `file` of the server certificate, for mqtts:// and wss://")
	fs.StringVar(&f.keyFile, "key", "", "PEM `file` of the server private key")
	fs.StringVar(&f.caFile, "cafile", "", "PEM `file` of the authorities that sign client certificates, which are then verified")
	fs.BoolVar(&f.requireCert, "require-cert", false, "refuse TLS clients without a certificate signed by -cafile")
	fs.StringVar(&f.passwdFile, "passwd", "", "password `file` (see above)")
	fs.StringVar(&f.aclFile, "acl", "", "ACL `file` (see above)")
	fs.BoolVar(&f.allowAnonymous, "allow-anonymous", false, "with -passwd, accept clients that send no user name too")
	fs.IntVar(&f.maxConns, "max-conns", 0, "maximum simultaneous `connections`; 0 for no limit")
	fs.IntVar(&f.maxPacket, "max-packet", 0, "maximum packet size in `bytes` from a client; 0 for 16 MiB (memory follows the bytes sent, not this limit)")
	fs.IntVar(&f.maxInflight, "max-inflight", 0, "QoS 1 and 2 `messages` in flight to each client; 0 for 20")
	fs.IntVar(&f.maxQueued, "max-queued", 0, "`messages` queued for each client beyond its inflight window, dropped (counted, logged at warn) beyond; 0 for 1000 while a client is away and no bound but -max-queued-bytes while it is connected")
	fs.IntVar(&f.maxQueuedBytes, "max-queued-bytes", 0, "`bytes` of messages queued for each client, dropped beyond; 0 for 16 MiB, -1 for no bound in bytes")
	fs.DurationVar(&f.batchDelay, "batch-delay", broker.DefaultBatchDelay, "let a fast client's messages collect this long, at most, between two reads; negative reads each at once")
	fs.DurationVar(&f.writeTimeout, "write-timeout", broker.DefaultWriteTimeout, "close a connection whose writes make no progress for this long; what its clean session held is discarded (counted, logged at warn); negative never")
	fs.StringVar(&f.logLevel, "log", "info", "log `level`: debug, info (connections), warn or error")
	f.sysInterval = broker.DefaultSysInterval
	fs.Var((*secondsFlag)(&f.sysInterval), "sys-interval", "publish the $SYS topics every this many `seconds` (or a duration); 0 turns them off")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (host:port)")
	f.store.register(fs)
	fs.StringVar(&f.bridgeFile, "bridge", "", "bridge configuration `file` (see above)")
	fs.BoolVar(&f.allowBridges, "allow-bridges", false, "accept bridges that connect with the bridge mark (see above)")
	if err := parseFlags(e, fs, args, false); err != nil {
		return err
	}
	b, err := newBrokerServer(&f, e)
	if err != nil {
		return err
	}
	if err := b.listen(); err != nil {
		b.close()
		return err
	}
	for _, u := range b.urls {
		fmt.Fprintf(e.stdout, "tern broker: listening on %s\n", u)
	}
	if f.metrics != "" {
		m, err := startMetrics(f.metrics, b.srv)
		if err != nil {
			b.close()
			return err
		}
		defer m.close()
		fmt.Fprintf(e.stdout, "tern broker: metrics on %s\n", m.url)
	}
	errc := make(chan error, len(b.listeners))
	for _, l := range b.listeners {
		go func() { errc <- b.srv.Serve(l) }()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var serveErr error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case serveErr = <-errc:
			break wait
		case <-hup:
			if b.passwdFile == "" && b.aclFile == "" {
				continue
			}
			if err := b.reload(); err != nil {
				fmt.Fprintf(e.stderr, "tern broker: reload: %v (rules in force unchanged)\n", oneLine(err.Error()))
			} else {
				fmt.Fprintln(e.stdout, "tern broker: reloaded the password and ACL files")
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A second signal cuts the wait for queued messages short.
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	go func() {
		select {
		case <-again:
			cancel()
		case <-sctx.Done():
		}
	}()
	if err := b.srv.Shutdown(sctx); err != nil {
		b.srv.Close()
	}
	if b.store != nil {
		if err := b.store.Close(); err != nil && serveErr == nil {
			serveErr = fmt.Errorf("-data: closing the store: %w", err)
		}
	}
	if serveErr != nil && !errors.Is(serveErr, broker.ErrServerClosed) {
		return serveErr
	}
	st := b.srv.Stats()
	fmt.Fprintf(e.stdout, "tern broker: stopped; %d connections served, %d messages received, %d delivered, %d dropped\n",
		st.Disconnected, st.Received, st.Delivered, st.Dropped)
	return nil
}

// brokerServer is a broker.Server with its listeners, built from the flags.
type brokerServer struct {
	srv       *broker.Server
	listenURL []string
	tls       *tls.Config
	listeners []net.Listener
	urls      []string   // where it listens, with the ports chosen
	store     *store.Log // of -data, closed after the server

	// The password and ACL files, reloaded on SIGHUP.
	passwdFile, aclFile string
	passwd              atomic.Pointer[passwords]
	acl                 atomic.Pointer[acl]
}

// reload reads the password and ACL files again. A file that does not
// parse leaves the rules in force as they were.
func (b *brokerServer) reload() error {
	var errs []error
	if b.passwdFile != "" {
		if pw, err := loadFile(b.passwdFile, "-passwd", parsePasswords); err != nil {
			errs = append(errs, err)
		} else {
			b.passwd.Store(&pw)
		}
	}
	if b.aclFile != "" {
		if a, err := loadFile(b.aclFile, "-acl", parseACL); err != nil {
			errs = append(errs, err)
		} else {
			b.acl.Store(a)
		}
	}
	return errors.Join(errs...)
}

func newBrokerServer(f *brokerFlags, e *env) (*brokerServer, error) {
	level, err := parseLogLevel(f.logLevel)
	if err != nil {
		return nil, err
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"-max-conns", f.maxConns}, {"-max-packet", f.maxPacket}, {"-max-inflight", f.maxInflight}, {"-max-queued", f.maxQueued}} {
		if n.v < 0 {
			return nil, usagef("%s %d: must not be negative", n.name, n.v)
		}
	}
	if f.maxInflight > 65535 {
		return nil, usagef("-max-inflight %d: at most 65535 (the packet identifiers)", f.maxInflight)
	}
	if f.maxPacket > packet.MaxRemainingLength+5 {
		return nil, usagef("-max-packet %d: at most %d", f.maxPacket, packet.MaxRemainingLength+5)
	}
	b := &brokerServer{listenURL: f.listen}
	if len(b.listenURL) == 0 {
		b.listenURL = []string{"mqtt://127.0.0.1:1883"}
	}
	needTLS := false
	for _, raw := range b.listenURL {
		u, err := parseBrokerURL(raw)
		if err != nil {
			return nil, err
		}
		if isTLSScheme(u.Scheme) {
			needTLS = true
		}
	}
	if (f.certFile == "") != (f.keyFile == "") {
		return nil, usagef("-cert and -key go together")
	}
	if needTLS && f.certFile == "" {
		return nil, usagef("a TLS listener needs -cert and -key")
	}
	if f.requireCert && f.caFile == "" {
		return nil, usagef("-require-cert needs -cafile")
	}
	if f.certFile != "" {
		cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("-cert/-key: %w", pathErr(err))
		}
		b.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if f.caFile != "" {
			pem, err := os.ReadFile(f.caFile)
			if err != nil {
				return nil, fmt.Errorf("-cafile: %w", pathErr(err))
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-cafile %s: no PEM certificate found", f.caFile)
			}
			b.tls.ClientCAs = pool
			b.tls.ClientAuth = tls.VerifyClientCertIfGiven
			if f.requireCert {
				b.tls.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
	}

	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	opts := broker.Options{
		MaxConnections: f.maxConns,
		MaxPacketSize:  f.maxPacket,
		MaxInflight:    f.maxInflight,
		MaxQueued:      f.maxQueued,
		MaxQueuedBytes: f.maxQueuedBytes,
		BatchDelay:     f.batchDelay,
		WriteTimeout:   f.writeTimeout,
		Transport:      &transport.Options{TLSConfig: b.tls},
		SysInterval:    f.sysInterval,
	}
	// The broker's own lines (drops, bridges, store failures, and at debug
	// every disconnection) go through the same level filter.
	opts.Logger = log
	if level <= slog.LevelInfo {
		opts.OnEvent = eventLogger(log)
	}
	if f.passwdFile != "" {
		pw, err := loadFile(f.passwdFile, "-passwd", parsePasswords)
		if err != nil {
			return nil, err
		}
		b.passwd.Store(&pw)
		b.passwdFile = f.passwdFile
		anon := f.allowAnonymous
		opts.Authenticate = func(c *broker.Client, password []byte) packet.ReturnCode {
			if !c.HasUsername {
				if anon {
					return packet.Accepted
				}
				return packet.RefusedNotAuthorized
			}
			if !(*b.passwd.Load()).check(c.Username, password) {
				return packet.RefusedBadUsernameOrPassword
			}
			return packet.Accepted
		}
	} else if f.allowAnonymous {
		return nil, usagef("-allow-anonymous goes with -passwd (without it everyone is allowed)")
	}
	if f.aclFile != "" {
		a, err := loadFile(f.aclFile, "-acl", parseACL)
		if err != nil {
			return nil, err
		}
		b.acl.Store(a)
		b.aclFile = f.aclFile
		opts.AuthorizePublish = func(c *broker.Client, topic []byte, qos byte, retain bool) bool {
			return b.acl.Load().canPublish(aclClientOf(c), topic)
		}
		opts.AuthorizeSubscribe = func(c *broker.Client, filter []byte, qos byte) byte {
			if b.acl.Load().canSubscribe(aclClientOf(c), string(filter)) {
				return qos
			}
			return packet.SubackFailure
		}
		opts.AuthorizeRead = func(c *broker.Client, topic []byte) bool {
			return b.acl.Load().canRead(aclClientOf(c), topic)
		}
	}
	if err := f.bridges(&opts, log); err != nil {
		return nil, err
	}
	if b.store, err = f.store.open(&opts, log); err != nil {
		return nil, err
	}
	b.srv = broker.New(opts)
	return b, nil
}

func aclClientOf(c *broker.Client) aclClient {
	return aclClient{user: c.Username, hasUser: c.HasUsername, id: c.ID}
}

// loadFile opens name and parses it.
func loadFile[T any](name, flagName string, parse func(r io.Reader, name string) (T, error)) (T, error) {
	var zero T
	fh, err := os.Open(name)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", flagName, pathErr(err))
	}
	defer fh.Close()
	return parse(fh, name)
}

// listen opens every listener; on error the ones opened stay in
// b.listeners for close.
func (b *brokerServer) listen() error {
	for _, raw := range b.listenURL {
		l, err := transport.Listen(raw, &transport.Options{TLSConfig: b.tls})
		if err != nil {
			return fmt.Errorf("listen %s: %v", raw, unwrapNet(err))
		}
		b.listeners = append(b.listeners, l)
		b.urls = append(b.urls, listenerURL(raw, l.Addr()))
	}
	return nil
}

// close closes the listeners and the server.
func (b *brokerServer) close() {
	for _, l := range b.listeners {
		l.Close()
	}
	b.srv.Close()
	if b.store != nil {
		b.store.Close()
	}
}

// listenerURL is raw with the port the system chose, for the banner.
func listenerURL(raw string, addr net.Addr) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "unix" {
		return raw
	}
	if ta, ok := addr.(*net.TCPAddr); ok {
		host := u.Hostname()
		if host == "" {
			host = ta.IP.String()
			if ta.IP.IsUnspecified() {
				host = "0.0.0.0"
			}
		}
		u.Host = net.JoinHostPort(host, fmt.Sprint(ta.Port))
	}
	return u.String()
}

func parseLogLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, usagef("-log %q: want debug, info, warn or error", s)
}

// eventLogger logs connections and refusals at level info. Drops the
// broker logs itself, at warn, rate-limited with their totals.
func eventLogger(log *slog.Logger) func(*broker.Event) {
	return func(ev *broker.Event) {
		switch ev.Kind {
		case broker.EventConnect:
			log.Info("connect", "client", ev.Client.ID, "user", ev.Client.Username, "addr", ev.Client.RemoteAddr, "clean", ev.Client.CleanSession)
		case broker.EventDisconnect:
			if ev.Err != nil {
				log.Info("disconnect", "client", ev.Client.ID, "err", ev.Err)
			} else {
				log.Info("disconnect", "client", ev.Client.ID)
			}
		case broker.EventRefuse:
			if c := ev.Client; c != nil {
				log.Info("refuse", "client", c.ID, "user", c.Username, "addr", c.RemoteAddr, "code", packet.ReturnCode(ev.ReturnCode).String())
			}
		}
	}
}

// unwrapNet shortens "listen tcp 127.0.0.1:1883: bind: address already in
// use" style errors to their last, telling part.
func unwrapNet(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
