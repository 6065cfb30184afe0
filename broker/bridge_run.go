package broker

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqttclient "github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/transport"
)

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
	store *bridgeSession // with the Server's store; set with c

	ctx    context.Context // ends when the bridge stops
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	notify chan struct{} // the link went up or down

	// With a store, incoming QoS 1 and 2 messages are acknowledged by
	// acker once a sync covers their local copies: one sync for all the
	// messages published meanwhile.
	ackMu    sync.Mutex
	toAck    []*mqttclient.Message
	ackWake  chan struct{}
	ackerEnd chan struct{} // closed when acker returns; nil without one

	mu     sync.Mutex
	events []mqttclient.Event // link changes not yet handled by run

	up        atomic.Bool
	marked    atomic.Bool // the remote accepted the bridge mark
	forwarded atomic.Int64
	received  atomic.Int64
	dropped   atomic.Int64 // echoes too
	lost      atomic.Int64 // dropped but for echoes: the ones logged

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
		ManualAck:      true, // see acker
		OnEvent:        b.onEvent,
		Logger:         s.log.With("bridge", cfg.Name),
		BatchDelay:     -1, // forwarded at once: a bridge adds no latency of its own
	}
	if !cfg.NoNotifications && !cfg.NotificationsLocalOnly {
		b.opts.Will = &mqttclient.Will{Topic: b.state, Payload: []byte("0"), QoS: 1, Retain: true}
	}
	b.ready = make(chan struct{})
	b.ackWake = make(chan struct{}, 1)
	b.ctx, b.cancel = context.WithCancel(context.Background())

	// The subscriber inside the Server: never in s.clients, so no
	// connection can take it over.
	b.local = &client{id: "$bridge/" + cfg.Name, sink: b}
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
		if st != nil {
			b.store, b.opts.Store = st, st
			b.opts.Transport = &transport.Options{DialContext: st.dial}
		}
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
		// Nothing more is routed to it; what was waits no longer.
		b.local.mu.Lock()
		b.srv.removeAllSubs(b.local)
		b.local.mu.Unlock()
		b.cancel()
		return
	}
	if b.store != nil {
		b.ackerEnd = make(chan struct{})
		go b.acker()
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
		if b.storeFailed(log) {
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
				log.Info("bridge up", "url", ev.URL, "session_present", ev.SessionPresent, "bridge_mark", b.marked.Load())
				b.up.Store(true)
				b.publishState(true)
				b.sendRetained()
			case mqttclient.ConnectionLost:
				log.Warn("bridge down", "url", ev.URL, "err", ev.Err)
				b.up.Store(false)
				b.publishState(false)
			}
		}
		if b.storeFailed(log) {
			return
		}
		if !subscribed && b.up.Load() {
			// Once: the client subscribes again by itself on every
			// connection whose session the broker did not keep.
			subscribed = b.subscribe(log)
		}
	}
}

// storeFailed stops a bridge with a store once the Server's store has
// failed, and reports whether it did. Its queue can no longer be kept, and
// every write to the remote broker would fail (see syncedConn): it would
// reconnect in a loop. A routing that finds the queue's write failed, or
// the client's events, wake run to look.
func (b *bridge) storeFailed(log interface{ Error(string, ...any) }) bool {
	err := b.srv.dur.err()
	if b.store == nil || err == nil {
		return false
	}
	b.local.mu.Lock()
	b.srv.removeAllSubs(b.local)
	b.local.mu.Unlock()
	b.c.Close()
	b.up.Store(false)
	b.publishState(false)
	log.Error("bridge stopped: the store failed", "err", err)
	return true
}

// wake tells run to look at the events and the store.
func (b *bridge) wake() {
	select {
	case b.notify <- struct{}{}:
	default:
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
		if ev.Err != nil && errors.Is(ev.Err, errStoreFailed) {
			b.wake() // a reconnection that failed on the store
		}
		return
	}
	// Set here, not in run, so that forward and incoming see the link as
	// it is.
	if ev.Kind == mqttclient.Connected {
		b.marked.Store(b.c.BridgeMark())
	}
	b.up.Store(ev.Kind == mqttclient.Connected)
	b.mu.Lock()
	b.events = append(b.events, ev)
	b.mu.Unlock()
	b.wake()
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
	if b.ackerEnd != nil {
		<-b.ackerEnd
	}
	c := b.client()
	if c == nil {
		return
	}
	if ctx != nil {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		if b.up.Load() && !b.cfg.NoNotifications && !b.cfg.NotificationsLocalOnly {
			// DISCONNECT discards the will, which would have said 0 on
			// the remote broker [MQTT-3.14.4-3]: say it first.
			c.Publish(dctx, b.state, 1, true, []byte("0"))
		}
		c.Disconnect(dctx)
		cancel()
	}
	c.Close()
	b.up.Store(false)
	b.publishState(false)
}
