package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqttclient "github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
	"github.com/ternmq/mqtt/topic"
)

// Defaults of Bridge.
const (
	DefaultBridgeMaxQueued    = 10000
	DefaultBridgeQueueTimeout = 10 * time.Second
	DefaultBridgeReconnectMin = 5 * time.Second  // mosquitto's restart_timeout base
	DefaultBridgeReconnectMax = 30 * time.Second // mosquitto's restart_timeout cap
)

// BridgeDirection says which way a bridge topic's messages go.
type BridgeDirection uint8

// The directions of a BridgeTopic, as mosquitto names them.
const (
	BridgeOut  BridgeDirection = iota + 1 // local broker to remote broker
	BridgeIn                              // remote broker to local broker
	BridgeBoth                            // both ways
)

// String returns "out", "in" or "both".
func (d BridgeDirection) String() string {
	switch d {
	case BridgeOut:
		return "out"
	case BridgeIn:
		return "in"
	case BridgeBoth:
		return "both"
	}
	return fmt.Sprintf("BridgeDirection(%d)", d)
}

func (d BridgeDirection) out() bool { return d == BridgeOut || d == BridgeBoth }
func (d BridgeDirection) in() bool  { return d == BridgeIn || d == BridgeBoth }

// BridgeTopic is one topic rule of a bridge, mosquitto's
// `topic PATTERN DIRECTION QOS LOCAL-PREFIX REMOTE-PREFIX`.
//
// The bridge subscribes to LocalPrefix+Pattern on the local broker (out)
// and to RemotePrefix+Pattern on the remote one (in), at QoS. A message
// crossing the bridge loses one prefix and gains the other: with prefixes
// "L/" and "R/", local topic L/a/b is remote topic R/a/b. An empty Pattern
// maps the single topic LocalPrefix to RemotePrefix (both then required).
type BridgeTopic struct {
	Pattern      string
	Direction    BridgeDirection
	QoS          byte
	LocalPrefix  string
	RemotePrefix string
}

func (t *BridgeTopic) localFilter() string  { return t.LocalPrefix + t.Pattern }
func (t *BridgeTopic) remoteFilter() string { return t.RemotePrefix + t.Pattern }

// Bridge is a connection from the Server to a remote broker, as mosquitto's
// bridges are: the Server holds a client connection (tern's client package,
// with its reconnection and resend) and forwards chosen topics one way or
// both.
//
// Going out, the bridge is a subscriber inside the Server: each matching
// message is taken into the bridge's queue, QoS 1 and 2 ones until the
// remote broker acknowledges them, through outages of the link. A QoS 0
// message is sent if the link is up, and dropped (counted) if not.
// Messages keep their RETAIN flag as published, as mosquitto's bridges do
// (Remote retained messages stay right), unless NoOutgoingRetain.
//
// Coming in, a message is published on the local broker as if a client had
// published it, with its RETAIN flag as received: a remote broker that
// accepted the bridge mark (mosquitto, or tern with AllowBridges) sends it as
// published, another one only sets it on the retained messages sent when the
// bridge subscribes. A message that came in through a bridge never goes out
// through the same bridge.
//
// Loops: with the bridge mark (the default, mosquitto's try_private), the
// remote broker does not send the bridge's own messages back. A broker that
// refuses the mark with CONNACK 0x01 is connected to without it; the
// bridge then drops incoming messages that equal (topic and payload) one it
// forwarded recently, which also drops a genuine copy published on the
// remote side meanwhile.
//
// QoS 2 is exactly once end to end as far as MQTT 3.1.1 allows: the queue
// and the exchange with the remote broker survive a restart when the Server
// has a durable store and the remote session is kept (CleanSession false,
// the default); with CleanSession true, a message in flight when the link
// breaks is sent again as a new message, and may arrive twice.
type Bridge struct {
	// Name names the bridge (mosquitto's `connection`): in logs, Stats,
	// and the default ClientID. Unique among a Server's bridges.
	Name string
	// URLs of the remote broker, tried in turn: every scheme of package
	// transport (mqtt, tcp, mqtts, ssl, tls, ws, wss, unix).
	URLs []string
	// ClientID on the remote broker; empty means "HOSTNAME.NAME", as
	// mosquitto.
	ClientID string
	// Username and Password authenticate to the remote broker; Password nil
	// sends none.
	Username string
	Password []byte
	// TLSConfig is used for mqtts, ssl, tls and wss URLs.
	TLSConfig *tls.Config
	// KeepAlive of the remote connection; 0 means 60 seconds.
	KeepAlive time.Duration
	// CleanSession starts a clean session on every connection. The zero
	// value keeps the remote session (mosquitto's default,
	// cleansession false).
	CleanSession bool
	// Topics are the topic rules, at least one.
	Topics []BridgeTopic
	// NoBridgeMark connects without the bridge mark (mosquitto's
	// try_private false).
	NoBridgeMark bool
	// NoNotifications turns off the state messages; NotificationsLocalOnly
	// publishes them on the local broker only. NotificationTopic is where
	// they go: "1" retained when the bridge is up, "0" when it is down;
	// empty means $SYS/broker/connection/CLIENTID/state, as mosquitto. On
	// the remote broker, "0" is the bridge's will.
	NoNotifications        bool
	NotificationsLocalOnly bool
	NotificationTopic      string
	// NoUnsubscribe keeps the bridge from unsubscribing on the remote
	// broker from the topics that go out only (mosquitto's
	// bridge_attempt_unsubscribe false).
	NoUnsubscribe bool
	// NoOutgoingRetain clears RETAIN on every outgoing message (mosquitto's
	// bridge_outgoing_retain false).
	NoOutgoingRetain bool
	// ReconnectMin and ReconnectMax bound the wait between connection
	// attempts (mosquitto's restart_timeout); 0 means
	// DefaultBridgeReconnectMin and DefaultBridgeReconnectMax.
	ReconnectMin, ReconnectMax time.Duration
	// MaxInflight is the number of messages awaiting the remote's
	// acknowledgement; 0 means 20.
	MaxInflight int
	// MaxQueued bounds the outgoing messages waiting behind the inflight
	// window or for the link; 0 means DefaultBridgeMaxQueued. When it is
	// full, a local publisher waits (up to QueueTimeout; 0 means
	// DefaultBridgeQueueTimeout), then the message is dropped for this
	// bridge, logged and counted.
	MaxQueued    int
	QueueTimeout time.Duration
}

// BridgeStats are the counters of one bridge.
type BridgeStats struct {
	Name      string
	Connected bool  // the link is up
	Marked    bool  // the remote broker accepted the bridge mark
	Forwarded int64 // messages taken to go out
	Pending   int   // of those, QoS 1 and 2 ones not yet acknowledged by the remote broker
	Received  int64 // messages that came in and were published locally
	Dropped   int64 // messages not forwarded: queue full, QoS 0 while down, echoes
}

// validate checks what can be judged before connecting.
func (b *Bridge) validate() error {
	if b.Name == "" || strings.ContainsAny(b.Name, "/+#") {
		return fmt.Errorf("bridge %q: the name must be non-empty, without / + #", b.Name)
	}
	if len(b.URLs) == 0 {
		return fmt.Errorf("bridge %s: no address", b.Name)
	}
	if len(b.Topics) == 0 {
		return fmt.Errorf("bridge %s: no topic", b.Name)
	}
	if b.Password != nil && b.Username == "" {
		return fmt.Errorf("bridge %s: a password needs a username", b.Name)
	}
	for i := range b.Topics {
		if err := b.Topics[i].validate(); err != nil {
			return fmt.Errorf("bridge %s: topic %q: %w", b.Name, b.Topics[i].Pattern, err)
		}
	}
	if b.NotificationTopic != "" {
		if err := topic.ValidName([]byte(b.NotificationTopic)); err != nil {
			return fmt.Errorf("bridge %s: notification topic: %w", b.Name, err)
		}
	}
	return nil
}

func (t *BridgeTopic) validate() error {
	if t.Direction < BridgeOut || t.Direction > BridgeBoth {
		return errors.New("direction not out, in or both")
	}
	if t.QoS > 2 {
		return errors.New("QoS over 2")
	}
	if strings.ContainsAny(t.LocalPrefix, "+#") || strings.ContainsAny(t.RemotePrefix, "+#") {
		return errors.New("a prefix contains a wildcard")
	}
	if t.Pattern == "" && (t.LocalPrefix == "" || t.RemotePrefix == "") {
		return errors.New("an empty pattern needs both prefixes (the local and the remote topic)")
	}
	if err := topic.ValidFilter([]byte(t.localFilter())); err != nil {
		return fmt.Errorf("local filter %q: %w", t.localFilter(), err)
	}
	if err := topic.ValidFilter([]byte(t.remoteFilter())); err != nil {
		return fmt.Errorf("remote filter %q: %w", t.remoteFilter(), err)
	}
	return nil
}

// bridge is a running Bridge.
type bridge struct {
	srv   *Server
	cfg   Bridge
	id    string  // client identifier on the remote broker
	state string  // the notification topic
	local *client // the subscriber inside the Server
	rules []bridgeRule
	opts  mqttclient.Options

	// c is made by run once the Server's store is restored, and ready
	// closed then: c may be used only after ready is.
	c     *mqttclient.Client
	ready chan struct{}

	ctx    context.Context // ends when the bridge stops
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	notify chan struct{} // the link went up or down

	mu     sync.Mutex
	events []mqttclient.Event // link changes not yet handled by run

	up        atomic.Bool
	marked    atomic.Bool // the remote accepted the bridge mark
	forwarded atomic.Int64
	received  atomic.Int64
	dropped   atomic.Int64

	echo echoFilter
}

// bridgeRule is a BridgeTopic with its filters made once.
type bridgeRule struct {
	BridgeTopic
	local, remote string // the filters
}

// startBridges starts the bridges of Options; one that cannot start is
// logged and left out.
func (s *Server) startBridges() {
	names := make(map[string]bool)
	for _, cfg := range s.opts.Bridges {
		if names[cfg.Name] {
			s.log.Error("bridge not started: duplicate name", "bridge", cfg.Name)
			continue
		}
		names[cfg.Name] = true
		b, err := newBridge(s, cfg)
		if err != nil {
			s.log.Error("bridge not started", "bridge", cfg.Name, "err", err)
			continue
		}
		s.bridges = append(s.bridges, b)
		go b.run()
	}
}

// stopBridges stops the bridges, bounded by ctx (nil: at once).
func (s *Server) stopBridges(ctx context.Context) {
	for _, b := range s.bridges {
		b.stop(ctx)
	}
}

func (s *Server) bridgeStats() []BridgeStats {
	if len(s.bridges) == 0 {
		return nil
	}
	st := make([]BridgeStats, len(s.bridges))
	for i, b := range s.bridges {
		st[i] = BridgeStats{
			Name:      b.cfg.Name,
			Connected: b.up.Load(),
			Marked:    b.marked.Load(),
			Forwarded: b.forwarded.Load(),
			Pending:   pending(b.client()),
			Received:  b.received.Load(),
			Dropped:   b.dropped.Load(),
		}
	}
	return st
}

func pending(c *mqttclient.Client) int {
	if c == nil {
		return 0
	}
	return c.Pending()
}

func newBridge(s *Server, cfg Bridge) (*bridge, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Topics = append([]BridgeTopic(nil), cfg.Topics...)
	b := &bridge{srv: s, cfg: cfg, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	b.id = cfg.ClientID
	if b.id == "" {
		host, _ := os.Hostname()
		b.id = host + "." + cfg.Name
	}
	for _, t := range cfg.Topics {
		b.rules = append(b.rules, bridgeRule{t, t.localFilter(), t.remoteFilter()})
	}
	b.state = cfg.NotificationTopic
	if b.state == "" {
		b.state = "$SYS/broker/connection/" + b.id + "/state"
	}
	b.opts = mqttclient.Options{
		Servers:        cfg.URLs,
		ClientID:       b.id,
		KeepSession:    !cfg.CleanSession,
		KeepAlive:      cfg.KeepAlive,
		Username:       cfg.Username,
		Password:       cfg.Password,
		TLSConfig:      cfg.TLSConfig,
		ReconnectMin:   orDefault(cfg.ReconnectMin, DefaultBridgeReconnectMin),
		ReconnectMax:   orDefault(cfg.ReconnectMax, DefaultBridgeReconnectMax),
		MaxInflight:    cfg.MaxInflight,
		MaxQueued:      orDefault(cfg.MaxQueued, DefaultBridgeMaxQueued),
		BridgeMark:     !cfg.NoBridgeMark,
		DefaultHandler: b.incoming,
		OnEvent:        b.onEvent,
		Logger:         s.log.With("bridge", cfg.Name),
		BatchDelay:     -1, // forwarded at once: a bridge adds no latency of its own
	}
	if !cfg.NoNotifications && !cfg.NotificationsLocalOnly {
		b.opts.Will = &mqttclient.Will{Topic: b.state, Payload: []byte("0"), QoS: 1, Retain: true}
	}
	b.ready = make(chan struct{})
	b.ctx, b.cancel = context.WithCancel(context.Background())

	// The subscriber inside the Server: never in s.clients, so no
	// connection can take it over.
	b.local = &client{id: "$bridge/" + cfg.Name, subs: make(map[string]byte), sink: b}
	b.local.on.Store(true)
	for _, t := range b.rules {
		if t.Direction.out() {
			if err := s.addSub(b.local, []byte(t.local), t.QoS); err != nil {
				s.removeAllSubs(b.local)
				b.cancel()
				return nil, err
			}
		}
	}
	return b, nil
}

// start makes the client, on the bridge's store once the Server's store is
// restored, and reports whether the bridge can run.
func (b *bridge) start(log interface{ Error(string, ...any) }) bool {
	s := b.srv
	if err := s.dur.ready(s); err != nil {
		log.Error("bridge not started: the store is not restored", "err", err)
		return false
	}
	st, err := s.bridgeStore(b.cfg.Name)
	if err == nil {
		b.opts.Store = st
		b.c, err = mqttclient.New(b.opts)
	}
	if err != nil {
		log.Error("bridge not started", "err", err)
		return false
	}
	close(b.ready)
	b.publishState(false)
	return true
}

// client returns the bridge's client, or nil before it is made.
func (b *bridge) client() *mqttclient.Client {
	select {
	case <-b.ready:
		return b.c
	default:
		return nil
	}
}

func orDefault[T int | time.Duration](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

// run connects, subscribes on the remote broker, and reports the link's
// changes, until the bridge stops.
func (b *bridge) run() {
	defer close(b.done)
	log := b.srv.log.With("bridge", b.cfg.Name)
	if !b.start(log) {
		return
	}
	wait := orDefault(b.cfg.ReconnectMin, DefaultBridgeReconnectMin)
	maxWait := orDefault(b.cfg.ReconnectMax, DefaultBridgeReconnectMax)
	// The client reconnects on its own once it has connected; the first
	// connection is this loop's.
	for {
		err := b.c.Connect(b.ctx)
		if err == nil {
			break
		}
		if b.ctx.Err() != nil {
			return
		}
		log.Warn("bridge down", "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return
		}
		wait = min(2*wait, maxWait)
	}
	subscribed := false
	for {
		select {
		case <-b.notify:
		case <-b.ctx.Done():
			return
		}
		b.mu.Lock()
		evs := b.events
		b.events = nil
		b.mu.Unlock()
		for _, ev := range evs {
			switch ev.Kind {
			case mqttclient.Connected:
				b.marked.Store(b.c.BridgeMark())
				log.Info("bridge up", "url", ev.URL, "session_present", ev.SessionPresent, "bridge_mark", b.marked.Load())
				b.up.Store(true)
				b.publishState(true)
			case mqttclient.ConnectionLost:
				log.Warn("bridge down", "url", ev.URL, "err", ev.Err)
				b.up.Store(false)
				b.publishState(false)
			}
		}
		if !subscribed && b.up.Load() {
			// Once: the client subscribes again by itself on every
			// connection whose session the broker did not keep.
			subscribed = b.subscribe(log)
		}
	}
}

// subscribe asks the remote broker for the incoming topics, and drops the
// subscriptions of outgoing-only ones a kept session may hold. It reports
// whether it got its answers.
func (b *bridge) subscribe(log interface{ Warn(string, ...any) }) bool {
	ctx, cancel := context.WithTimeout(b.ctx, DefaultConnectTimeout)
	defer cancel()
	var subs []mqttclient.Subscription
	var unsubs []string
	for _, t := range b.rules {
		if t.Direction.in() {
			subs = append(subs, mqttclient.Subscription{Filter: t.remote, QoS: t.QoS})
		} else if !b.cfg.NoUnsubscribe {
			unsubs = append(unsubs, t.remote)
		}
	}
	if len(unsubs) > 0 {
		if err := b.c.Unsubscribe(ctx, unsubs...); err != nil {
			log.Warn("bridge unsubscribe failed", "err", err)
			return false
		}
	}
	if len(subs) > 0 {
		if _, err := b.c.Subscribe(ctx, subs...); err != nil {
			log.Warn("bridge subscribe failed", "err", err)
			return !errors.Is(err, mqttclient.ErrConnectionLost) && ctx.Err() == nil
		}
	}
	return true
}

// onEvent hands the client's connection events to run.
func (b *bridge) onEvent(ev mqttclient.Event) {
	if ev.Kind != mqttclient.Connected && ev.Kind != mqttclient.ConnectionLost {
		return
	}
	// Set here, not in run, so that forward sees the link as it is.
	b.up.Store(ev.Kind == mqttclient.Connected)
	b.mu.Lock()
	b.events = append(b.events, ev)
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// publishState publishes the notification: locally, and on the remote
// broker when the link is up.
func (b *bridge) publishState(up bool) {
	if b.cfg.NoNotifications {
		return
	}
	v := []byte("0")
	if up {
		v[0] = '1'
	}
	p := packet.Publish{QoS: 1, Retain: true, Topic: []byte(b.state), Payload: v}
	b.publishLocal(&p)
	if c := b.client(); up && c != nil && !b.cfg.NotificationsLocalOnly {
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		c.PublishAsync(ctx, b.state, 1, true, v)
		cancel()
	}
}

// stop stops the bridge: the subscriber leaves the Server, the client
// disconnects (bounded by ctx; nil: at once), and the state goes to 0.
func (b *bridge) stop(ctx context.Context) {
	s := b.srv
	b.local.mu.Lock()
	s.removeAllSubs(b.local)
	b.local.mu.Unlock()
	b.cancel()
	<-b.done
	c := b.client()
	if c == nil {
		return
	}
	if ctx != nil {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c.Disconnect(dctx)
		cancel()
	}
	c.Close()
	b.up.Store(false)
	b.publishState(false)
}

// forward takes a message routed to the bridge's subscriber. It runs in
// the publisher's router, before the publisher's acknowledgement: a QoS 1
// or 2 message is in the bridge's queue (and its store) when it returns.
func (b *bridge) forward(r *router, p *packet.Publish) bool {
	var rule *bridgeRule
	for i := range b.rules {
		t := &b.rules[i]
		if t.Direction.out() && topic.Match(t.local, p.Topic) {
			rule = t
			break
		}
	}
	if rule == nil {
		return false
	}
	remote := rule.RemotePrefix + string(p.Topic[len(rule.LocalPrefix):])
	if rule.Pattern == "" {
		remote = rule.RemotePrefix
	}
	retain := r.src != nil && r.src.Retain && !b.cfg.NoOutgoingRetain
	if b.client() == nil {
		// Routed before run made the client: the store is being
		// restored. Wait for it, as for room in a full queue.
		t := time.NewTimer(orDefault(b.cfg.QueueTimeout, DefaultBridgeQueueTimeout))
		select {
		case <-b.ready:
		case <-t.C:
		case <-b.ctx.Done():
		}
		t.Stop()
		if b.client() == nil {
			b.drop("bridge not started", remote, p.QoS)
			return false
		}
	}
	if p.QoS == 0 && !b.up.Load() {
		b.drop("link down", remote, 0)
		return false
	}
	if !b.marked.Load() {
		b.echo.add(remote, p.Payload)
	}
	// A first try that does not wait: the common case allocates no
	// context; a full queue then waits up to QueueTimeout.
	t := b.c.PublishAsync(doneCtx, remote, p.QoS, retain, p.Payload)
	if err := t.Err(); errors.Is(err, context.Canceled) {
		ctx, cancel := context.WithTimeout(b.ctx, orDefault(b.cfg.QueueTimeout, DefaultBridgeQueueTimeout))
		t = b.c.PublishAsync(ctx, remote, p.QoS, retain, p.Payload)
		cancel()
	}
	if err := t.Err(); err != nil {
		b.drop(err.Error(), remote, p.QoS)
		return false
	}
	b.forwarded.Add(1)
	return true
}

// doneCtx is a context that has ended: PublishAsync with it fails at once
// rather than wait for room.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (b *bridge) drop(why, remote string, qos byte) {
	n := b.dropped.Add(1)
	if n == 1 || n%1000 == 0 {
		b.srv.log.Warn("bridge dropped a message", "bridge", b.cfg.Name, "why", why, "topic", remote, "qos", qos, "dropped", n)
	}
}

// incoming publishes a message from the remote broker on the local one.
func (b *bridge) incoming(m *mqttclient.Message) {
	if !b.marked.Load() && b.echo.take(m.Topic, m.Payload) {
		b.dropped.Add(1)
		return
	}
	var rule *bridgeRule
	for i := range b.rules {
		t := &b.rules[i]
		if t.Direction.in() && topic.Match(t.remote, m.Topic) {
			rule = t
			break
		}
	}
	if rule == nil {
		return // a subscription the remote session kept from an older configuration
	}
	local := rule.LocalPrefix + m.Topic[len(rule.RemotePrefix):]
	if rule.Pattern == "" {
		local = rule.LocalPrefix
	}
	if err := topic.ValidName([]byte(local)); err != nil {
		b.drop("bad local topic: "+err.Error(), local, m.QoS)
		return
	}
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: []byte(local), Payload: m.Payload}
	b.publishLocal(&p)
	b.received.Add(1)
	if m.QoS > 0 {
		// Durable for the local persistent sessions before the client
		// acknowledges it to the remote broker when this returns.
		if err := b.srv.dur.syncAll(); err != nil {
			b.srv.log.Error("bridge: store failed", "bridge", b.cfg.Name, "err", err)
		}
	}
}

// publishLocal routes p on the local broker as from the bridge: it does
// not go back out through it.
func (b *bridge) publishLocal(p *packet.Publish) {
	s := b.srv
	r := getRouter()
	r.noLocal = b.local
	r.route(s, p)
	r.noLocal = nil
	r.flushWakes()
	putRouter(r)
}

// bridgeStore returns the session store of bridge name's client: in the
// Server's store as session "$bridge/NAME", or nil (in memory) without one.
func (s *Server) bridgeStore(name string) (session.Store, error) {
	d := s.dur
	if d.st == nil {
		return nil, nil
	}
	id := bridgeIDPrefix + name
	s.mu.Lock()
	st := s.bridgeStores[id]
	delete(s.bridgeStores, id)
	s.mu.Unlock()
	if st == nil {
		var err error
		if st, err = d.st.Session(id); err != nil {
			return nil, d.fail(err)
		}
	}
	return bridgeSession{&storedSession{d: d, st: st}}, nil
}

// reservedID reports whether a client may not use id: with a store, the
// ids of bridges' queues are kept for them.
func (s *Server) reservedID(id string) bool {
	return s.dur.st != nil && strings.HasPrefix(id, bridgeIDPrefix)
}

// bridgeIDPrefix starts the store's session id of a bridge's queue.
const bridgeIDPrefix = "$bridge/"

// bridgeSession is a bridge's client session in the Server's store. Its
// writes are counted like a client session's, so that a local publisher's
// acknowledgement waits until the message is durable in the bridge's
// queue; its Sync is real, since the bridge's client acknowledges and
// releases messages of its own.
type bridgeSession struct{ *storedSession }

// Sync makes every write to the Server's store durable.
func (b bridgeSession) Sync() error { return b.d.syncAll() }

// bridgeSession keeps the stored session of a bridge's queue found while
// the store is restored, for the bridge to take, and reports whether id is
// a bridge's. s.mu is held.
func (s *Server) bridgeSession(id string, st store.Session) bool {
	if !strings.HasPrefix(id, bridgeIDPrefix) {
		return false
	}
	if s.bridgeStores == nil {
		s.bridgeStores = make(map[string]store.Session)
	}
	s.bridgeStores[id] = st
	configured := false
	for _, b := range s.opts.Bridges {
		configured = configured || bridgeIDPrefix+b.Name == id
	}
	if !configured {
		s.log.Warn("stored queue of a bridge that is not configured: kept, not sent", "bridge", id[len(bridgeIDPrefix):])
	}
	return true
}

// readConnect reads the first packet of a connection, with the bridge mark
// accepted when Options.AllowBridges is set.
func (s *Server) readConnect(r *packet.Reader) (packet.Packet, error) {
	if !s.opts.AllowBridges {
		return r.ReadPacket()
	}
	b, err := r.Next()
	if err != nil {
		return nil, err
	}
	if packet.Type(b[0]>>4) != packet.CONNECT {
		return packet.Decode(b)
	}
	cp := new(packet.Connect)
	return cp, cp.DecodeBridge(b)
}

// echoFilter remembers the latest messages a bridge forwarded without the
// bridge mark, so that their echoes from the remote broker are dropped.
type echoFilter struct {
	mu    sync.Mutex
	ring  [echoSize]uint64
	next  int
	count map[uint64]int
}

const echoSize = 4096

func echoKey(topic string, payload []byte) uint64 {
	// FNV-1a of topic, a separator that cannot be in a topic, payload.
	h := uint64(14695981039346656037)
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint64(topic[i])) * 1099511628211
	}
	h = (h ^ 0) * 1099511628211
	for _, c := range payload {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h | 1 // never 0, the empty slot
}

func (f *echoFilter) add(topic string, payload []byte) {
	k := echoKey(topic, payload)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count == nil {
		f.count = make(map[uint64]int)
	}
	if old := f.ring[f.next]; old != 0 {
		f.forget(old)
	}
	f.ring[f.next] = k
	f.next = (f.next + 1) % echoSize
	f.count[k]++
}

func (f *echoFilter) forget(k uint64) {
	if f.count[k] <= 1 {
		delete(f.count, k)
	} else {
		f.count[k]--
	}
}

// take reports whether topic and payload are an echo, and forgets one.
func (f *echoFilter) take(topic string, payload []byte) bool {
	k := echoKey(topic, payload)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.count[k] == 0 {
		return false
	}
	f.forget(k)
	// Its slot in the ring stays; forget of a key gone is harmless.
	return true
}
