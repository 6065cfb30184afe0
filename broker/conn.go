package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// Values of conn.stop.
const (
	running   = iota
	graceful  // Shutdown: write out what waits, then close; no will
	immediate // Close: close now; no will
	takenOver // another connection took the client id: close; will published
)

var (
	errTakenOver = errors.New("broker: session taken over by a new connection")
	errShutdown  = errors.New("broker: server shutting down")
)

// conn is one network connection. Its reader goroutine (serve) reads and
// handles packets; its writer goroutine (writeLoop) writes what the session
// has waiting. The writer runs while there is something to write: started by
// wake, it ends when a flush leaves nothing behind, so that an idle connection
// holds one goroutine, not two.
type conn struct {
	srv  *Server
	nc   net.Conn
	info Client
	cl   *client // set once the CONNECT is accepted

	stop        atomic.Int32
	wakePending atomic.Bool   // in some router's wakes list
	done        chan struct{} // made by takeOver, closed when the connection is cleaned up; guarded by srv.mu
	ended       bool          // cleaned up; guarded by srv.mu

	wmu       sync.Mutex
	wrunning  bool          // a writer goroutine runs
	wagain    bool          // woken while running: flush once more
	wclosed   bool          // no writer may start any more
	wgen      uint32        // the generation of the net.Conn wdeadline is for
	wnext     chan struct{} // if set, closed by the running writer when it next takes the session's packets, or ends
	wdeadline time.Duration // when the write deadline was last moved, since the Server started; 0 never
	werr      error         // why the writer failed, if it did; guarded by wmu
	wlost     int           // QoS 0 messages of batches whose write failed; writer only, then finish

	pr     *pooledReader   // lent while there are bytes to read, nil when idle
	will   *packet.Publish // nil without a will, or after DISCONNECT
	router *router         // scratch lent from routerPool, except while parked
	pk     parking         // how an idle connection waits without a goroutine
	gate   *ackGate        // with a store: the acknowledgements wait for routing; else nil
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc}
	if s.dur.st != nil {
		c.gate = new(ackGate)
	}
	return c
}

// shutdown ends the connection on behalf of Shutdown (now false) or Close
// (now true).
func (c *conn) shutdown(now bool) {
	if now {
		c.stop.Store(immediate)
		c.closeNet()
		c.unpark()
		return
	}
	if c.stop.CompareAndSwap(running, graceful) {
		// Wake the reader; connReader sees stop and returns.
		c.interruptRead()
		c.unpark()
	}
}

// takeOver ends the connection because another one connected with the same
// client identifier [MQTT-3.1.4-2], and waits until it is cleaned up.
func (c *conn) takeOver() {
	s := c.srv
	s.mu.Lock()
	if c.ended {
		s.mu.Unlock()
		return
	}
	if c.done == nil {
		c.done = make(chan struct{}) // only now: most connections are never taken over
	}
	done := c.done
	s.mu.Unlock()
	c.stop.CompareAndSwap(running, takenOver)
	c.closeNet()
	c.unpark()
	<-done
}

// serve runs the connection: CONNECT, then the read loop, then cleanup.
func (c *conn) serve() {
	c.srv.nconns.Add(1)
	c.router = getRouter()
	connect, ok := c.readConnect()
	if !ok {
		c.nc.Close()
		c.end()
		return
	}
	if err := c.start(connect); err != nil {
		c.finish(err)
		c.end()
		return
	}
	c.loop()
}

// loop reads packets until the connection ends, then cleans up; or, when
// the connection goes idle and can wait without a goroutine, returns
// leaving it parked: the goroutine that unparks it calls loop again.
func (c *conn) loop() {
	if c.router == nil {
		c.router = getRouter()
	}
	err, parked := c.readLoop()
	if parked {
		return
	}
	c.finish(err)
	c.end()
}

// end forgets the connection once it is cleaned up.
func (c *conn) end() {
	s := c.srv
	c.pk.forget(s)
	c.router.pending, c.router.readErr = nil, nil
	c.router.evs = c.router.evs[:0]
	putRouter(c.router)
	c.router = nil
	s.nconns.Add(-1)
	s.mu.Lock()
	delete(s.conns, c)
	c.ended = true
	if c.done != nil {
		close(c.done)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// readConnect reads and checks the CONNECT, answers a refusal, and attaches
// the connection to the client's session. It reports whether the connection
// goes on.
func (c *conn) readConnect() (*packet.Connect, bool) {
	s := c.srv
	c.info.RemoteAddr = compactAddr(c.nc.RemoteAddr())
	deadline := time.Now().Add(s.opts.ConnectTimeout)
	c.nc.SetReadDeadline(deadline)
	if c.stop.Load() != running {
		return nil, false
	}
	if tc := tlsConn(c.nc); tc != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.log.Debug("tls handshake failed", "remote", c.info.RemoteAddr, "err", err)
			return nil, false
		}
		st := tc.ConnectionState()
		c.info.TLS = &st
	}
	pr := s.getReader(c)
	p, err := s.readConnect(pr.r)
	if err != nil {
		// The codec tells which refusals have a return code; every other
		// broken CONNECT closes the connection without CONNACK
		// [MQTT-3.1.4-1] [MQTT-3.2.2-6].
		switch {
		case errors.Is(err, packet.ErrUnsupportedVersion):
			c.refuse(packet.RefusedProtocolVersion) // [MQTT-3.1.2-2]
		case errors.Is(err, packet.ErrIdentifierRejected):
			c.refuse(packet.RefusedIdentifierRejected) // [MQTT-3.1.3-8] [MQTT-3.1.3-9]
		default:
			s.log.Debug("bad connect", "remote", c.info.RemoteAddr, "err", err)
		}
		return nil, false
	}
	s.traffic.packetsIn.Add(1)
	cp, ok := p.(*packet.Connect)
	if !ok {
		// The first packet must be CONNECT [MQTT-3.1.0-1].
		s.log.Debug("first packet not CONNECT", "remote", c.info.RemoteAddr, "type", p.Type())
		return nil, false
	}
	c.info.CleanSession = cp.CleanSession
	c.info.KeepAlive = cp.KeepAlive
	c.info.Level = cp.Level
	c.info.Bridge = cp.Bridge
	c.info.HasUsername = cp.HasUsername
	c.info.Username = string(cp.Username)
	if len(cp.ClientID) == 0 {
		// CleanSession 0 with an empty id was refused by the codec
		// [MQTT-3.1.3-8]; CleanSession 1 gets a fresh id [MQTT-3.1.3-6].
		c.info.ID = s.newClientID()
	} else {
		c.info.ID = string(cp.ClientID)
	}
	if s.reservedID(c.info.ID) {
		c.refuse(packet.RefusedIdentifierRejected)
		return nil, false
	}
	if limit := s.opts.MaxConnections; limit > 0 && s.nconns.Load() > int64(limit) {
		c.refuse(packet.RefusedServerUnavailable)
		return nil, false
	}
	if s.opts.Authenticate != nil {
		if rc := s.opts.Authenticate(&c.info, cp.Password); rc != packet.Accepted {
			if rc > packet.RefusedNotAuthorized {
				rc = packet.RefusedNotAuthorized
			}
			c.refuse(rc)
			return nil, false
		}
	}
	if cp.Will && tooDeep(cp.WillTopic) {
		s.log.Debug("bad connect", "remote", c.info.RemoteAddr, "err", errTooDeep)
		return nil, false
	}
	if cp.Will {
		w := &packet.Publish{QoS: cp.WillQoS, Retain: cp.WillRetain, Topic: cp.WillTopic, Payload: cp.WillMessage}
		c.will = w.Clone()
	}
	cl, present, err := s.attach(c, cp.CleanSession)
	if err != nil {
		if !errors.Is(err, errShutdown) {
			s.log.Warn("cannot create session", "client", c.info.ID, "err", err)
			c.refuse(packet.RefusedServerUnavailable)
		}
		return nil, false
	}
	c.cl = cl
	c.pr = pr
	cl.bridge.Store(cp.Bridge) // and it gets RETAIN as published, as from mosquitto
	// The CONNACK and the session's resends wait in the session; the
	// writer sends them first [MQTT-3.2.0-1].
	cl.mu.Lock()
	err = cl.sess.Accept(cp, present, time.Now()) // [MQTT-3.1.4-3] [MQTT-3.1.4-4] [MQTT-3.2.2-1..3]
	for _, ok := cl.sess.NextEvent(); ok; _, ok = cl.sess.NextEvent() {
		// EventDropped of a session that CleanSession reset: nothing
		// waits for them here.
	}
	cl.mu.Unlock()
	if err != nil {
		s.log.Warn("cannot accept session", "client", c.info.ID, "err", err)
		c.finish(err)
		return nil, false
	}
	return cp, true
}

// refuse writes a CONNACK with a non-zero return code; the caller then
// closes the connection [MQTT-3.2.2-5], acting on nothing else the client
// sent [MQTT-3.1.4-5].
func (c *conn) refuse(rc packet.ReturnCode) {
	s := c.srv
	s.refused.Add(1)
	var b [4]byte
	out, _ := (&packet.Connack{ReturnCode: rc}).Append(b[:0])
	c.nc.SetWriteDeadline(time.Now().Add(s.opts.ConnectTimeout))
	if _, err := c.nc.Write(out); err == nil {
		s.traffic.countOut(out)
	}
	s.log.Debug("connect refused", "client", c.info.ID, "remote", c.info.RemoteAddr, "code", rc)
	if s.opts.OnEvent != nil {
		s.emit(&Event{Kind: EventRefuse, Client: &c.info, ReturnCode: byte(rc)})
	}
}

// attach makes c the connection of the session of its client identifier,
// creating the session if there is none and taking over from a connection
// already serving it [MQTT-3.1.4-2]. present tells whether a session was kept
// from before [MQTT-3.2.2-2] [MQTT-3.2.2-3].
func (s *Server) attach(c *conn, clean bool) (cl *client, present bool, err error) {
	for {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return nil, false, errShutdown
		}
		cl = s.clients[c.info.ID]
		if cl == nil {
			cl, err = s.newSession(c.info.ID, clean)
			if err != nil {
				s.mu.Unlock()
				return nil, false, err
			}
			s.clients[c.info.ID] = cl
		} else {
			present = true
		}
		cl.mu.Lock()
		old := cl.conn
		if old == nil {
			if err := s.attached(cl, clean); err != nil {
				cl.mu.Unlock()
				s.mu.Unlock()
				return nil, false, err
			}
			cl.conn = c
			cl.info = &c.info
			cl.on.Store(true)
			s.traffic.connected.Add(1)
			if clean && present {
				// A clean connection ends the kept session
				// [MQTT-3.1.2-6]; Accept resets the session
				// state, the subscriptions (and the retained
				// messages waiting for them) go here.
				s.removeAllSubs(cl)
			}
			cl.mu.Unlock()
			s.mu.Unlock()
			return cl, present && !clean, nil
		}
		cl.mu.Unlock()
		s.mu.Unlock()
		s.log.Debug("client taken over", "client", c.info.ID, "old", old.info.RemoteAddr, "new", c.info.RemoteAddr)
		old.takeOver()
		present = false
	}
}

// start starts the writer and the keepalive of an accepted connection.
func (c *conn) start(connect *packet.Connect) error {
	s := c.srv
	cl := c.cl
	c.wake()
	if s.opts.OnEvent != nil {
		s.emit(&Event{Kind: EventConnect, Client: &c.info})
	}
	s.log.Debug("client connected", "client", c.info.ID, "remote", c.info.RemoteAddr, "clean", connect.CleanSession)

	cl.mu.Lock()
	deadline := cl.sess.Deadline()
	cl.mu.Unlock()
	c.nc.SetReadDeadline(deadline) // zero: keepalive 0, no limit
	if c.stop.Load() != running {
		return errShutdown
	}
	c.pk.init(c)
	return nil
}

// finish cleans up after the read loop: stops the writer, closes the
// connection, detaches the session (ending it if it was clean) and publishes
// the will if the connection was lost [MQTT-3.1.2-8].
func (c *conn) finish(why error) {
	s := c.srv
	cl := c.cl
	stop := c.stop.Load()
	c.wmu.Lock()
	if c.werr != nil {
		// The writer failed first (a write timeout), and closed the
		// connection under the reader: its error is the cause.
		why = c.werr
	}
	c.wmu.Unlock()
	c.releaseAcks()
	// Routers stop choosing this session for shared subscriptions before
	// the client can see its connection closed: once it has, the group's
	// messages go to the members still connected. No other connection can
	// attach to cl until cl.conn is cleared below.
	cl.on.Store(false)
	if stop == graceful {
		// Shutdown: write out what waits (bounded by WriteTimeout and
		// by Shutdown's context), then close.
		c.stopWriter()
		c.flush()
		c.closeNet()
	} else {
		// Closing first unblocks a writer stuck on a client that
		// does not read.
		c.closeNet()
		c.stopWriter()
	}
	switch stop {
	case graceful, immediate:
		why = errShutdown
	case takenOver:
		why = errTakenOver
	}

	var ended bool
	discarded := c.wlost // the writer has stopped
	s.mu.Lock()
	cl.mu.Lock()
	discarded += cl.sess.PendingQoS0()
	cl.sess.Disconnected()
	for _, ok := cl.sess.NextEvent(); ok; _, ok = cl.sess.NextEvent() {
	}
	cl.conn = nil
	cl.on.Store(false)
	s.traffic.connected.Add(-1)
	if c.info.CleanSession && s.clients[cl.id] == cl {
		// A clean session ends with its connection [MQTT-3.1.2-6].
		delete(s.clients, cl.id)
		ended = true
	} else if s.clients[cl.id] == cl {
		s.detached(cl, time.Now())
		if cl.info == &c.info {
			// The session outlives the connection: a copy of what
			// it says of the client, so that the session does not
			// keep the connection, its socket and its read buffer
			// (4.4 KB of the 6.9 KB an offline session cost).
			info := c.info
			cl.info = &info
		}
	}
	cl.mu.Unlock()
	s.mu.Unlock()
	if ended {
		cl.mu.Lock()
		if cl.ret != nil {
			discarded += cl.ret.waiting()
		}
		s.removeAllSubs(cl) // and the backlog
		discarded += cl.sess.Queued() + cl.sess.Inflight()
		cl.sess.Reset()
		for _, ok := cl.sess.NextEvent(); ok; _, ok = cl.sess.NextEvent() {
		}
		cl.mu.Unlock()
	}

	if w := c.will; w != nil && stop != graceful && stop != immediate {
		c.will = nil
		if !s.sysReserved(w.Topic) && (s.opts.AuthorizePublish == nil || s.opts.AuthorizePublish(&c.info, w.Topic, w.QoS, w.Retain)) {
			// Published as sent: retained or not [MQTT-3.1.2-16]
			// [MQTT-3.1.2-17].
			c.router.route(s, w)
		}
	}
	c.router.flushWakes(nil)
	if why == io.EOF {
		why = io.ErrUnexpectedEOF // the client went away without DISCONNECT
	}
	if discarded > 0 {
		total := s.discarded.Add(int64(discarded))
		s.log.Warn("connection ended: undelivered messages discarded", "client", c.info.ID, "remote", c.info.RemoteAddr,
			"messages", discarded, "discarded", total, "err", why)
	}
	s.log.Debug("client disconnected", "client", c.info.ID, "remote", c.info.RemoteAddr, "err", why)
	if s.opts.OnEvent != nil {
		s.emit(&Event{Kind: EventDisconnect, Client: &c.info, Err: why})
	}
	s.ended.Add(1) // after the event, so that a test waiting on Stats sees it
}

// tlsConn returns the TLS connection under nc (mqtts://, or wss:// under a
// WebSocket), or nil.
func tlsConn(nc net.Conn) *tls.Conn {
	switch v := nc.(type) {
	case *tls.Conn:
		return v
	case interface{ NetConn() net.Conn }:
		if tc, ok := v.NetConn().(*tls.Conn); ok {
			return tc
		}
	}
	return nil
}
