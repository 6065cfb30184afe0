package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
	"github.com/ternmq/mqtt/topic"
	"github.com/ternmq/mqtt/transport"
)

// Defaults of Options.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultWriteTimeout   = 30 * time.Second

	// DefaultMaxPacketSize lets payloads of several MiB through (common
	// clients send 1 MiB and more; mosquitto sets no limit) while a
	// client must still send 16 MiB to make the broker hold them.
	DefaultMaxPacketSize = 16 << 20

	// DefaultBatchDelay is Options.BatchDelay's default: under a
	// millisecond of added latency for fast QoS 0 streams, which then
	// cost the broker a read and a wake-up per millisecond rather than
	// per message.
	DefaultBatchDelay = time.Millisecond
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown or
// Close.
var ErrServerClosed = errors.New("broker: server closed")

// Options configures a Server. The zero value is a working broker that lets
// every client in, with the default each field names.
type Options struct {
	// Logger receives connection-level logs. Nil means silence.
	Logger *slog.Logger

	// Transport is passed to transport.Listen by ListenAndServe: the TLS
	// certificate for mqtts:// and wss://, WebSocket settings. Nil means
	// defaults.
	Transport *transport.Options

	// MaxConnections limits the connections served at once; 0 means no
	// limit. A connection over the limit gets CONNACK 0x03 (server
	// unavailable) to its CONNECT.
	MaxConnections int

	// MaxPacketSize limits the size of a packet read from a client, fixed
	// header included; 0 means DefaultMaxPacketSize (16 MiB). A larger
	// packet closes the connection as soon as its fixed header is in.
	//
	// Memory follows the bytes a client actually sends, not the length
	// it announces: a connection's read buffer grows as bytes arrive,
	// doubling, so a packet of n bytes holds at most 2n bytes while it is
	// read (and never more than 1.5 times MaxPacketSize), and an idle
	// connection holds no read buffer at all. Messages routed to
	// subscribers are bounded separately, by MaxQueuedBytes.
	MaxPacketSize int

	// MaxInflight is the number of QoS 1 and 2 messages sent to one client
	// and not yet acknowledged; 0 or less means 20, as mosquitto.
	MaxInflight int

	// MaxQueued is the number of messages waiting for one client behind
	// its inflight window, or for a persistent session's next connection,
	// QoS 0 messages not yet written included. 0 or less means
	// DefaultMaxQueued (1000, as mosquitto's max_queued_messages) for a
	// client that is away, and no bound in messages while it is connected,
	// where MaxQueuedBytes bounds its queue: a subscriber that reads at line
	// rate then loses nothing when a publisher bursts tens of thousands of
	// messages. Messages beyond the bounds are dropped, counted
	// (Stats.Dropped, ClientStats.Dropped) and logged at warn level (one
	// line per second at most).
	MaxQueued int

	// MaxQueuedBytes bounds the same messages in bytes (topic, payload and
	// session.QueuedOverhead each); 0 means DefaultMaxQueuedBytes, a
	// negative value no bound in bytes. One message may always wait, so a
	// client that does not read holds at most the larger of
	// MaxQueuedBytes and one message in its queue, plus its MaxInflight
	// messages in flight (each session holds its own copy), plus the batch its
	// writer is writing (at most as much again) until WriteTimeout closes
	// its connection; the kernel holds what it took of that batch, which
	// a listener made by transport.Listen (ListenAndServe uses one) keeps
	// to about transport.Options.UnsentLimit not yet sent. It also bounds
	// the backlog of retained messages waiting for room in the queue (see
	// the package doc, Slow subscribers).
	MaxQueuedBytes int

	// BatchDelay is how long, at most, the PUBLISHes of a client that
	// publishes fast (several reads in a row bring more than one, or wait
	// less than half the delay), or its acknowledgements of the
	// messages it receives, may collect in its connection before the
	// broker reads them, so that one read and one wake-up take many: under
	// such load it costs up to that much latency, and saves the broker a
	// system call and a goroutine wake-up per message. A lone message is
	// never delayed, a request and its response rarely; a stream is read
	// at once again when pausing would slow it (when each pause fills a
	// window, of QoS 1 or 2 messages or of the application's own, or the
	// rate halves). On Linux a TCP connection's
	// socket does not wake the broker for the bytes that arrive during a
	// pause either (SO_RCVLOWAT, see internal/lowat), and while a client
	// has several messages in flight, its reader waits for half their
	// acknowledgements, up to BatchDelay, rather than wake for each. See
	// internal/pace;
	// the client's Options.BatchDelay paces the same way. 0 means
	// DefaultBatchDelay, a negative value reads every packet as soon as it
	// arrives.
	BatchDelay time.Duration

	// ConnectTimeout bounds the wait for the CONNECT packet (and the TLS
	// handshake) of a new connection; 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// WriteTimeout closes a connection whose writes make no progress for
	// that long (a stuck client that does not read): a batch goes out 64
	// KiB at a time, each with between half of it and all of it to go, so
	// that a client reading a long backlog slowly keeps its connection; 0
	// means DefaultWriteTimeout, a negative value no limit.
	WriteTimeout time.Duration

	// Authenticate decides whether a client may connect, once its
	// CONNECT has been read: it returns packet.Accepted, or the CONNACK
	// return code to refuse with (such as
	// packet.RefusedBadUsernameOrPassword or packet.RefusedNotAuthorized).
	// c describes the client (identifier, user name, TLS state); password
	// is valid only during the call. Nil accepts everyone.
	Authenticate func(c *Client, password []byte) packet.ReturnCode

	// AuthorizePublish decides whether c may publish to topic (valid only
	// during the call). An unauthorized PUBLISH is acknowledged as usual
	// and dropped [MQTT-3.3.5-2]; an unauthorized will is not published.
	// Nil allows everything.
	AuthorizePublish func(c *Client, topic []byte, qos byte, retain bool) bool

	// AuthorizeSubscribe decides whether c may subscribe to filter (valid
	// only during the call, with its "$share/group/" prefix if any) at
	// qos: it returns the QoS to grant, at most qos, or
	// packet.SubackFailure (0x80) to refuse. Nil grants every request.
	AuthorizeSubscribe func(c *Client, filter []byte, qos byte) byte

	// AuthorizeRead decides whether c may receive a message published to
	// topic (valid only during the call). It is asked for every delivery:
	// each subscriber a message is routed to, and each retained message
	// sent for a new subscription. A message c may not read is not
	// delivered to c (nor counted as dropped). With it, AuthorizeSubscribe
	// may grant a filter such as "#" under which some topics are denied,
	// as mosquitto does. It runs on the publisher's goroutine for each
	// subscriber, so it must be fast; c is the subscriber's last
	// connection, also while a persistent session is offline. Nil allows
	// every delivery, at the cost of a nil check.
	AuthorizeRead func(c *Client, topic []byte) bool

	// SysInterval, when positive, is how often the Server publishes its
	// counters on the $SYS/broker/... topics, as mosquitto does (see
	// SysUptime); 0 or less publishes nothing there. DefaultSysInterval is
	// mosquitto's default.
	SysInterval time.Duration

	// OnEvent, when set, is called for connections, disconnections,
	// messages received and messages dropped, for metrics and audit logs.
	// It runs on the connection's goroutine and must return quickly.
	// With a Store, it must not call Server.Publish, which waits for the
	// store to sync the packet being handled.
	OnEvent func(e *Event)

	// Store, when set, keeps the persistent sessions (subscriptions,
	// messages queued and in flight, incoming QoS 2 exchanges) and the
	// retained messages across restarts; nil keeps them in memory only.
	// Clean sessions are never written. The stored state is restored by
	// the first call of Serve (or ListenAndServe, or Publish), which
	// returns the error if it cannot be. The broker acknowledges a
	// message (PUBACK, PUBREC) only once it is durable for every
	// persistent session it was queued for and as retained, a
	// subscription (SUBACK) once it is durable, and sends a PUBREL only
	// once the PUBREC's state is durable [MQTT-4.3.3-1]. Once a write or
	// Sync of the Store fails (logged at error level), the broker keeps
	// that promise by acknowledging nothing that depends on a write made
	// since the last good Sync (the connections waiting for such a packet
	// are closed), refuses persistent sessions (CONNACK 0x03) and stops
	// its bridges; clean sessions go on. The Server does not close the
	// Store: close it after Shutdown or Close returns.
	Store store.Store

	// SessionExpiry deletes a persistent session whose client has not
	// connected for that long (its subscriptions and queued messages;
	// counted in Stats.Expired), like mosquitto's
	// persistent_client_expiration; 0 keeps sessions for ever. Time spent
	// with the Server stopped counts.
	SessionExpiry time.Duration

	// Bridges are connections from this Server to remote brokers, each
	// forwarding chosen topics one way or both (see Bridge). They start
	// with New and stop with Shutdown or Close.
	Bridges []Bridge

	// AllowBridges lets clients connect with the bridge mark (protocol
	// level 0x84, mosquitto's try_private): such a client is not sent its
	// own messages back. Off, the mark is refused with CONNACK 0x01, as
	// MQTT 3.1.1 requires of an unknown level [MQTT-3.1.2-2].
	AllowBridges bool
}

// Stats are counters of a Server since it was created.
type Stats struct {
	Connections  int64 // connections open now, CONNECT done or not
	Sessions     int64 // sessions held now, connected or persistent
	Received     int64 // PUBLISH packets taken from clients (authorized)
	Delivered    int64 // messages handed to sessions for sending or queueing
	Dropped      int64 // messages dropped because a session's queue was full
	Discarded    int64 // messages undelivered when their connection ended: held by its clean session (queued, or unacknowledged in flight), or QoS 0 in a write that failed
	Refused      int64 // CONNECTs refused with a non-zero CONNACK
	Retained     int64 // retained messages held now
	Disconnected int64 // connections that ended after an accepted CONNECT
	Expired      int64 // persistent sessions deleted by Options.SessionExpiry

	Connected       int64         // clients connected now, CONNECT accepted
	Subscriptions   int64         // subscriptions held now, shared ones included
	PacketsReceived int64         // control packets of any type read from clients
	PacketsSent     int64         // control packets of any type written to clients
	PublishSent     int64         // PUBLISH packets written to clients, resends included
	BytesReceived   int64         // bytes read from clients (MQTT packets, before any decoding)
	BytesSent       int64         // bytes of MQTT packets written to clients
	Uptime          time.Duration // since New

	Bridges []BridgeStats // one per Options.Bridges, in order
}

// A Server is an MQTT broker. Create it with New; it serves listeners with
// Serve and ListenAndServe until Shutdown or Close.
type Server struct {
	opts Options
	log  *slog.Logger

	subs     topic.Tree[sub]
	retained topic.Retained[*retainedMsg]

	mu        sync.Mutex
	clients   map[string]*client // by client identifier
	conns     map[*conn]struct{}
	listeners map[net.Listener]struct{}
	closing   bool
	wg        sync.WaitGroup // connection goroutines

	nconns    atomic.Int64
	received  atomic.Int64
	delivered atomic.Int64
	dropped   atomic.Int64
	discarded atomic.Int64
	refused   atomic.Int64
	ended     atomic.Int64
	dropLog   atomic.Int64 // when a drop was last logged, in Unix nanoseconds
	// dropLogged is the drop count at the last log line about drops;
	// dropTail is set while dropTimer is to log the drops since.
	dropLogged atomic.Int64
	dropTail   atomic.Bool
	dropMu     sync.Mutex  // guards dropTimer and dropStop; taken under client locks, so it takes none
	dropTimer  *time.Timer // logs the drops since dropLogged
	dropStop   bool        // the Server is closing: no more dropTimer

	traffic ioCounters // bytes and packets in and out, connected clients, subscriptions
	sys     sysState   // $SYS topics

	idPrefix string
	idSeq    atomic.Uint64

	dur *durable // Options.Store and SessionExpiry

	bufPool sync.Pool // *[]byte write buffers
	readers sync.Pool // *pooledReader
	park    poller    // waits for parked connections' bytes

	bridges      []*bridge
	bridgeStores map[string]store.Session // restored, for the bridges to take; under mu
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.MaxPacketSize <= 0 {
		opts.MaxPacketSize = DefaultMaxPacketSize
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = session.DefaultMaxInflight
	}
	if opts.MaxQueuedBytes == 0 {
		opts.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if opts.BatchDelay == 0 {
		opts.BatchDelay = DefaultBatchDelay
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	s := &Server{
		dur:       newDurable(&opts, log),
		opts:      opts,
		log:       log,
		clients:   make(map[string]*client),
		conns:     make(map[*conn]struct{}),
		listeners: make(map[net.Listener]struct{}),
		idPrefix:  "tern-" + hex.EncodeToString(rnd[:]) + "-",
		sys:       sysState{start: time.Now(), stop: make(chan struct{})},
	}
	s.startBridges()
	return s
}

// ListenAndServe listens on rawURL with transport.Listen (mqtt://, tcp://,
// mqtts://, ws://, wss://, unix://), using Options.Transport, and serves the
// listener until Shutdown or Close, when it returns ErrServerClosed.
func (s *Server) ListenAndServe(rawURL string) error {
	l, err := transport.Listen(rawURL, s.opts.Transport)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Serve accepts connections on l and serves each in its own goroutines,
// until Shutdown or Close, when it closes l and returns ErrServerClosed.
// Any other error from l.Accept ends Serve and is returned; l is closed.
//
// The first Serve starts the publication of the $SYS/broker/... topics if
// Options.SysInterval asks for it; Shutdown and Close stop it.
func (s *Server) Serve(l net.Listener) error {
	if err := s.dur.ready(s); err != nil {
		l.Close()
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.startSys()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if acceptRetry(err) {
				// Temporary trouble: wait a little, as net/http does,
				// rather than spin, and go on serving.
				if delay == 0 {
					s.log.Error("accept failed, retrying", "addr", l.Addr().String(), "err", err)
				}
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// acceptRetry reports whether an error of Accept is one to wait out: a
// timeout, or a lack of resources that connections closing will end (too
// many open files in the process or the system, no buffer space, no
// memory), or a connection reset before it was taken. Running out of file
// descriptors under a flood of connections must not stop the server.
func acceptRetry(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// beginClose stops the listeners and returns the open connections.
func (s *Server) beginClose() []*conn {
	s.dur.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		close(s.sys.stop)
	}
	s.closing = true
	s.stopDropLog()
	for l := range s.listeners {
		l.Close()
	}
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

// Shutdown stops accepting connections, then ends every connection after
// writing out what its session has waiting (no will is published), and waits
// for every goroutine of the Server to end. If ctx ends first, the remaining
// connections are closed at once as by Close, and ctx's error is returned
// once they are gone.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopBridges(ctx)
	for _, c := range s.beginClose() {
		c.shutdown(false)
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.park.stop()
		s.discardBacklogs()
		return s.dur.syncAll()
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops the listeners, closes every connection at once (no will is
// published) and waits for every goroutine of the Server to end.
func (s *Server) Close() error {
	s.stopBridges(nil)
	for _, c := range s.beginClose() {
		c.shutdown(true)
	}
	s.wg.Wait()
	s.park.stop()
	s.discardBacklogs()
	return s.dur.syncAll()
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	sessions := int64(len(s.clients))
	s.mu.Unlock()
	return Stats{
		Connections:  s.nconns.Load(),
		Sessions:     sessions,
		Received:     s.received.Load(),
		Delivered:    s.delivered.Load(),
		Dropped:      s.dropped.Load(),
		Discarded:    s.discarded.Load(),
		Refused:      s.refused.Load(),
		Retained:     int64(s.retained.Len()),
		Disconnected: s.ended.Load(),
		Expired:      s.dur.expired.Load(),
		Bridges:      s.bridgeStats(),

		Connected:       s.traffic.connected.Load(),
		Subscriptions:   s.traffic.subs.Load(),
		PacketsReceived: s.traffic.packetsIn.Load(),
		PacketsSent:     s.traffic.packetsOut.Load(),
		PublishSent:     s.traffic.publishOut.Load(),
		BytesReceived:   s.traffic.bytesIn.Load(),
		BytesSent:       s.traffic.bytesOut.Load(),
		Uptime:          time.Since(s.sys.start),
	}
}

// Publish routes a message from the application embedding the Server to the
// subscribers, as if a client had published it (no authorization hook is
// called). With p.Retain set it is also stored, or cleared with an empty
// payload. p is not kept: it may be reused when Publish returns. With
// Options.Store, Publish returns once what it stored is durable. After
// Shutdown or Close it returns ErrServerClosed: nobody is left to deliver to.
func (s *Server) Publish(p *packet.Publish) error {
	if s.isClosing() {
		return ErrServerClosed
	}
	if err := s.dur.ready(s); err != nil {
		return err
	}
	if p.QoS > 2 {
		return &packet.Error{Kind: packet.ErrMalformed, Type: packet.PUBLISH, Rule: "MQTT-3.3.1-4", Reason: "QoS 3"}
	}
	if err := topic.ValidName(p.Topic); err != nil {
		return err
	}
	if tooDeep(p.Topic) {
		return errTooDeep
	}
	r := getRouter()
	r.route(s, p)
	r.flushWakes(nil)
	putRouter(r)
	return s.dur.syncAll()
}

// newClientID returns an identifier for a client that sent an empty one
// [MQTT-3.1.3-6]: unique in this Server, and unlikely to be chosen by any
// client.
func (s *Server) newClientID() string {
	n := s.idSeq.Add(1)
	var b [20]byte
	d := appendUint(b[:0], n)
	return s.idPrefix + string(d)
}

func appendUint(b []byte, n uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

func (s *Server) emit(e *Event) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(e)
	}
}

// getBuf and putBuf keep write buffers between batches so that idle
// connections hold none.
func (s *Server) getBuf() *writeBuf {
	if b, ok := s.bufPool.Get().(*writeBuf); ok {
		return b
	}
	return &writeBuf{b: make([]byte, 0, 4096)}
}

func (s *Server) putBuf(b *writeBuf) {
	if cap(b.b) > 256<<10 {
		return // one huge message must not pin memory
	}
	b.b = b.b[:0]
	s.bufPool.Put(b)
}
