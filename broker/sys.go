package broker

import (
	"bytes"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/topic"
)

// DefaultSysInterval is mosquitto's default sys_interval, and tern broker's
// default -sys-interval. The zero Options publishes no $SYS topics.
const DefaultSysInterval = 10 * time.Second

// The $SYS topics the Server publishes when Options.SysInterval is set,
// under the names mosquitto 2.0 gives them, retained and at QoS 2 as
// mosquitto does (each subscriber receives them at the QoS of its
// subscription). Once the Server serves, it publishes all of them, then
// every Options.SysInterval the uptime and the values that changed. Only
// filters that start with "$SYS" receive them: a filter starting with a
// wildcard matches no topic starting with '$' [MQTT-4.7.2-1].
// Options.AuthorizeRead applies to them as to any message. They are kept
// apart from the clients' retained messages (Stats.Retained does not count
// them; mosquitto's count does).
//
// While they are published, clients may not publish under $SYS/broker/:
// such a PUBLISH (or will) is acknowledged and dropped, as an unauthorized
// one (mosquitto refuses every client PUBLISH under $SYS), except on
// $SYS/broker/connection/+/state, where bridges publish their state (as
// mosquitto allows). mosquitto's
// other $SYS topics (clients/maximum, load/..., heap/..., store/...) are
// not published.
const (
	SysVersion           = "$SYS/broker/version"                   // "tern version V" (the module's version), published once
	SysUptime            = "$SYS/broker/uptime"                    // "N seconds" since New
	SysClientsTotal      = "$SYS/broker/clients/total"             // Stats.Sessions: connected and persistent offline
	SysClientsConnected  = "$SYS/broker/clients/connected"         // Stats.Connected
	SysClientsOffline    = "$SYS/broker/clients/disconnected"      // Sessions - Connected
	SysMessagesReceived  = "$SYS/broker/messages/received"         // Stats.PacketsReceived: packets of every type, as mosquitto
	SysMessagesSent      = "$SYS/broker/messages/sent"             // Stats.PacketsSent
	SysPublishReceived   = "$SYS/broker/publish/messages/received" // Stats.Received
	SysPublishSent       = "$SYS/broker/publish/messages/sent"     // Stats.PublishSent
	SysPublishDropped    = "$SYS/broker/publish/messages/dropped"  // Stats.Dropped
	SysBytesReceived     = "$SYS/broker/bytes/received"            // Stats.BytesReceived
	SysBytesSent         = "$SYS/broker/bytes/sent"                // Stats.BytesSent
	SysSubscriptions     = "$SYS/broker/subscriptions/count"       // Stats.Subscriptions
	SysRetainedMessages  = "$SYS/broker/retained messages/count"   // Stats.Retained ($SYS topics not included)
	sysPrefix            = "$SYS/broker/"
	sysUptimeUnit        = " seconds"
	sysVersionPrefixText = "tern version "
)

// ioCounters are the counters of the hot path. Readers and writers run on
// different goroutines: their counters sit on different cache lines.
type ioCounters struct {
	bytesIn   atomic.Int64
	packetsIn atomic.Int64
	_         [48]byte

	bytesOut   atomic.Int64
	packetsOut atomic.Int64
	publishOut atomic.Int64
	_          [40]byte

	connected atomic.Int64
	subs      atomic.Int64
}

// countOut counts the packets of buf, a batch of whole packets the Server
// encoded, once written.
func (k *ioCounters) countOut(buf []byte) {
	var n, pubs int64
	for i := 0; i+1 < len(buf); i = packetEnd(buf, i) {
		n++
		if buf[i]>>4 == byte(packet.PUBLISH) {
			pubs++
		}
	}
	k.bytesOut.Add(int64(len(buf)))
	k.packetsOut.Add(n)
	if pubs > 0 {
		k.publishOut.Add(pubs)
	}
}

// packetEnd returns where the packet that starts at buf[i] ends, for a
// batch the Server encoded (its remaining lengths are well formed); i+1 is
// within buf.
func packetEnd(buf []byte, i int) int {
	// The remaining length: 1 to 4 bytes of 7 bits, low first; one
	// byte below 128.
	if l := buf[i+1]; l < 0x80 {
		return i + 2 + int(l)
	}
	length, shift, j := 0, 0, i+1
	for ; j < len(buf) && j < i+5; j++ {
		length |= int(buf[j]&0x7f) << shift
		shift += 7
		if buf[j] < 0x80 {
			break
		}
	}
	return j + 1 + length
}

// wholePackets returns the length of the packets of buf that its first n
// bytes hold whole.
func wholePackets(buf []byte, n int) int {
	i := 0
	for i+1 < len(buf) {
		end := packetEnd(buf, i)
		if end > n {
			break
		}
		i = end
	}
	return i
}

// countQoS0 returns the number of QoS 0 PUBLISH packets in buf.
func countQoS0(buf []byte) int {
	n := 0
	for i := 0; i+1 < len(buf); i = packetEnd(buf, i) {
		if buf[i]>>4 == byte(packet.PUBLISH) && buf[i]&0x06 == 0 {
			n++
		}
	}
	return n
}

// sysState is the $SYS publisher's.
type sysState struct {
	start    time.Time
	stop     chan struct{} // closed by beginClose
	started  bool          // guarded by Server.mu
	retained topic.Retained[*retainedMsg]
	last     map[string]int64 // the values published, for the sys goroutine only
}

// startSys starts the $SYS publisher, once. s.mu is held, and the Server is
// not closing.
func (s *Server) startSys() {
	if s.sys.started || s.opts.SysInterval <= 0 {
		return
	}
	s.sys.started = true
	s.wg.Add(1)
	go s.sysLoop(s.opts.SysInterval)
}

func (s *Server) sysLoop(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	s.sysPublish(SysVersion, sysVersionText())
	s.publishSys()
	for {
		select {
		case <-s.sys.stop:
			return
		case <-t.C:
			s.publishSys()
		}
	}
}

// publishSys publishes the uptime and the counters that changed since the
// last time.
func (s *Server) publishSys() {
	st := s.Stats()
	var b [32]byte
	up := strconv.AppendInt(b[:0], int64(st.Uptime/time.Second), 10)
	s.sysPublish(SysUptime, append(up, sysUptimeUnit...))
	if s.sys.last == nil {
		s.sys.last = make(map[string]int64)
	}
	for _, v := range [...]struct {
		topic string
		n     int64
	}{
		{SysClientsTotal, st.Sessions},
		{SysClientsConnected, st.Connected},
		{SysClientsOffline, max(st.Sessions-st.Connected, 0)},
		{SysMessagesReceived, st.PacketsReceived},
		{SysMessagesSent, st.PacketsSent},
		{SysPublishReceived, st.Received},
		{SysPublishSent, st.PublishSent},
		{SysPublishDropped, st.Dropped},
		{SysBytesReceived, st.BytesReceived},
		{SysBytesSent, st.BytesSent},
		{SysSubscriptions, st.Subscriptions},
		{SysRetainedMessages, st.Retained},
	} {
		if last, ok := s.sys.last[v.topic]; ok && last == v.n {
			continue
		}
		s.sys.last[v.topic] = v.n
		s.sysPublish(v.topic, strconv.AppendInt(b[:0], v.n, 10))
	}
}

// sysPublish stores a $SYS message, apart from the clients' retained
// messages, and routes it to the subscribers.
func (s *Server) sysPublish(name string, payload []byte) {
	m := newRetainedMsg([]byte(name), payload, 2)
	s.sys.retained.Set(name, m)
	r := getRouter()
	r.route(s, &packet.Publish{Topic: m.topic(), Payload: m.payload(), QoS: m.qos})
	r.flushWakes(nil)
	putRouter(r)
}

// sysReserved reports whether name is under $SYS/broker/ while the Server
// publishes there: clients may not publish such topics, but for the state
// of bridges, $SYS/broker/connection/+/state, which mosquitto lets them
// write (a bridge publishes it, and makes it its will).
func (s *Server) sysReserved(name []byte) bool {
	return len(name) > 0 && name[0] == '$' && s.opts.SysInterval > 0 && bytes.HasPrefix(name, []byte(sysPrefix)) &&
		!topic.Match(bridgeStateFilter, name)
}

// sysVersionText is "tern version V", V the version of this module in the
// build, or "(devel)".
func sysVersionText() []byte {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == modulePath && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == modulePath && d.Version != "" {
				v = d.Version
			}
		}
	}
	return []byte(sysVersionPrefixText + v)
}

const modulePath = "github.com/ternmq/mqtt"
