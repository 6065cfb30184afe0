package mqtttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// MaxPacketSize is the largest packet a Proxy frames, fixed header
// included. A longer one ends its connection, as garbage does. It is well
// above what tests send, and low enough that a forged length cannot make the
// proxy hold hundreds of megabytes.
const MaxPacketSize = 16 << 20

// The bounds of a Proxy's frame log: the oldest frames go first when either
// is passed (the newest frame is always kept).
const (
	logMaxFrames = 4096
	logMaxBytes  = 4 << 20
)

// A Proxy is a TCP proxy on 127.0.0.1 that forwards MQTT traffic to a
// target server and injects faults on the way, for testing how clients and
// servers cope with them: dropped, delayed and held packets, connections
// cut at a given packet, torn packets.
//
// It reads each direction of each connection as a sequence of MQTT packets,
// framed by their remaining length alone, so that faults fall on packet
// boundaries and malformed but frameable packets pass unchanged. Bytes that
// cannot be framed (a remaining length longer than four bytes, or a packet
// over MaxPacketSize) end the connection. A Filter decides the fate of each
// packet; Hold pauses traffic; CutAll and Close end connections; Frames
// lists the packets read.
//
// When a peer closes its side, the proxy closes the same side towards the
// other peer and keeps forwarding the other way, as TCP would; a packet
// the peer left torn is passed on as it is.
//
// A Proxy's methods may be called from any goroutine.
type Proxy struct {
	ln     net.Listener
	target string
	dialer net.Dialer
	ctx    context.Context // canceled by Close, to end dials and accept backoff
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and one per connection

	filterMu sync.Mutex // serializes Filter calls

	mu       sync.Mutex
	closed   bool
	filter   Filter
	conns    map[*conn]struct{}
	accepted int
	held     Direction
	release  chan struct{} // closed and replaced by every Release
	log      []Frame
	logBytes int
}

// NewProxy starts a Proxy to target and closes it when the test ends. The
// target is "host:port" or a URL with the scheme mqtt or tcp (port 1883 by
// default). It fails the test if the proxy cannot listen.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := StartProxy(target)
	if err != nil {
		t.Fatalf("mqtttest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartProxy starts a Proxy to target, as NewProxy does, for use outside
// tests. The caller must Close it.
func StartProxy(target string) (*Proxy, error) {
	addr, err := targetAddr(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:      ln,
		target:  addr,
		ctx:     ctx,
		cancel:  cancel,
		conns:   make(map[*conn]struct{}),
		release: make(chan struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// targetAddr turns a target given as host:port or as an mqtt:// or tcp://
// URL into a host:port to dial.
func targetAddr(target string) (string, error) {
	if !strings.Contains(target, "://") {
		if host, port, err := net.SplitHostPort(target); err != nil || host == "" || port == "" {
			return "", fmt.Errorf("proxy: target %q is neither host:port nor an mqtt:// or tcp:// URL", target)
		}
		return target, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("proxy: target: %w", err)
	}
	if u.Scheme != "mqtt" && u.Scheme != "tcp" {
		return "", fmt.Errorf("proxy: target %q: scheme %q is not mqtt or tcp (the proxy speaks plain TCP)", target, u.Scheme)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("proxy: target %q has no host", target)
	}
	port := u.Port()
	if port == "" {
		port = "1883"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// Addr returns the address the proxy listens on, 127.0.0.1 and a port.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// URL returns the proxy's address as a URL, mqtt://127.0.0.1:port, for a
// client to connect to in place of the target.
func (p *Proxy) URL() string { return "mqtt://" + p.ln.Addr().String() }

// SetFilter makes f decide the fate of every packet read from now on, on
// every connection, replacing the filter before. A nil f forwards every
// packet, which is where a Proxy starts.
func (p *Proxy) SetFilter(f Filter) {
	p.mu.Lock()
	p.filter = f
	p.mu.Unlock()
}

// Hold stops forwarding packets going in dir (ClientToServer,
// ServerToClient or Both), on every connection, new ones included, until
// Release. In each held direction of each connection the proxy reads one
// packet, logs it and asks the filter about it as usual, then waits to
// forward it; a Drop or a Cut takes effect at once. The traffic behind that
// packet is not read: it waits in the proxy's small buffer and in the
// peers' sockets, and a sender that goes on writing is slowed by TCP. A
// packet already being written when Hold is called still arrives.
// Connections are still accepted and dialed while traffic is held.
//
// So a test can wait for a packet to appear in Frames, knowing that the
// proxy holds it and the receiver does not have it, then cut the
// connection or release it.
func (p *Proxy) Hold(dir Direction) {
	p.mu.Lock()
	p.held |= dir & Both
	p.mu.Unlock()
}

// Release resumes forwarding the traffic going in dir stopped by Hold.
func (p *Proxy) Release(dir Direction) {
	p.mu.Lock()
	p.held &^= dir
	close(p.release)
	p.release = make(chan struct{})
	p.mu.Unlock()
}

// CutAll closes both sides of every connection now. The proxy goes on
// accepting new ones.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Accepted returns the number of connections the proxy has accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Frames returns a copy of the log of the packets the proxy has read, in
// the order it read them, whatever their filter's action. The log keeps
// the latest 4096 packets within 4 MiB.
func (p *Proxy) Frames() []Frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	frames := make([]Frame, len(p.log))
	for i, f := range p.log {
		f.Bytes = slices.Clone(f.Bytes)
		frames[i] = f
	}
	return frames
}

// Close stops the proxy: it closes the listener and every connection, and
// returns when every goroutine of the proxy has ended. It may be called
// more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	p.mu.Unlock()
	if first {
		p.cancel()
		p.ln.Close()
		p.CutAll()
	}
	p.wg.Wait()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		nc, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			// Out of file descriptors, most likely: wait and retry, as
			// net/http does, rather than stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			nc.Close()
			return
		}
		c := &conn{p: p, index: p.accepted, client: nc, done: make(chan struct{})}
		p.accepted++
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go c.serve()
	}
}

// appendLog records a copy of f, dropping the oldest frames past the
// log's bounds.
func (p *Proxy) appendLog(f Frame) {
	f.Bytes = slices.Clone(f.Bytes)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, f)
	p.logBytes += len(f.Bytes)
	drop := 0
	for len(p.log)-drop > 1 && (len(p.log)-drop > logMaxFrames || p.logBytes > logMaxBytes) {
		p.logBytes -= len(p.log[drop].Bytes)
		p.log[drop] = Frame{}
		drop++
	}
	p.log = p.log[drop:]
}

// decide returns the filter's action on f.
func (p *Proxy) decide(f Frame) Action {
	p.mu.Lock()
	filter := p.filter
	p.mu.Unlock()
	if filter == nil {
		return Forward
	}
	p.filterMu.Lock()
	defer p.filterMu.Unlock()
	return filter(f)
}

// conn is one proxied connection: the client the proxy accepted and the
// server it dialed for it.
type conn struct {
	p      *Proxy
	index  int
	client net.Conn
	done   chan struct{} // closed by close

	mu     sync.Mutex
	server net.Conn // nil until dialed
	ended  bool
}

// serve dials the target, pumps both ways, and ends the connection when
// both directions have ended.
func (c *conn) serve() {
	defer c.p.wg.Done()
	defer func() {
		c.close()
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	}()
	server, err := c.p.dialer.DialContext(c.p.ctx, "tcp", c.p.target)
	if err != nil {
		return
	}
	if !c.setServer(server) {
		return
	}
	other := make(chan struct{})
	go func() {
		defer close(other)
		c.pump(ServerToClient, server, c.client)
	}()
	c.pump(ClientToServer, c.client, server)
	<-other
}

func (c *conn) setServer(s net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		s.Close()
		return false
	}
	c.server = s
	return true
}

// close closes both sides, once, and wakes the pumps waiting in wait.
func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended = true
	close(c.done)
	c.client.Close()
	if c.server != nil {
		c.server.Close()
	}
}

// pump forwards the packets going in dir from src to dst until the stream
// ends or the connection is cut.
func (c *conn) pump(dir Direction, src, dst net.Conn) {
	fr := framer{r: bufio.NewReader(src)}
	f := Frame{Conn: c.index, Dir: dir}
	for ; ; f.Index++ {
		b, err := fr.next()
		switch {
		case err == io.EOF:
			// A clean end between packets: pass the half-close on.
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return
			}
			c.close()
			return
		case err == io.ErrUnexpectedEOF:
			// The sender stopped inside a packet: deliver the torn packet
			// as it is, as a plain TCP proxy would.
			if c.wait(dir, time.Time{}) {
				if _, err := dst.Write(b); err == nil {
					if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
						return
					}
				}
			}
			c.close()
			return
		case err != nil:
			// A read error, or bytes that are not MQTT.
			c.close()
			return
		}
		f.Time = time.Now()
		f.Type = packet.Type(b[0] >> 4)
		f.Bytes = b
		c.p.appendLog(f)
		a := c.p.decide(f)
		f.Offset += int64(len(b))

		var until time.Time
		switch a.op {
		case opDrop:
			continue
		case opCut:
			c.close()
			return
		case opDelay:
			until = f.Time.Add(a.delay)
		case opTear:
			b = b[:min(a.keep, len(b))]
		}
		if !c.wait(dir, until) {
			return
		}
		if _, err := dst.Write(b); err != nil || a.op == opCutAfter || a.op == opTear {
			c.close()
			return
		}
	}
}

// wait returns when traffic in dir is not held and the time until has
// passed, true, or when the connection is cut, false.
func (c *conn) wait(dir Direction, until time.Time) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.p.mu.Lock()
		held := c.p.held&dir != 0
		released := c.p.release
		c.p.mu.Unlock()
		left := time.Until(until)
		if !held && left <= 0 {
			select {
			case <-c.done:
				return false
			default:
				return true
			}
		}
		var expired <-chan time.Time
		if left > 0 {
			if timer == nil {
				timer = time.NewTimer(left)
			} else {
				timer.Reset(left)
			}
			expired = timer.C
		}
		select {
		case <-released:
		case <-expired:
		case <-c.done:
			return false
		}
	}
}

// errUnframeable reports bytes that cannot be cut into MQTT packets.
var errUnframeable = errors.New("proxy: bytes are not MQTT packets")

// framer cuts a byte stream into MQTT packets by their remaining length
// alone, checking nothing else, so that malformed packets pass through a
// Proxy unchanged.
type framer struct {
	r   *bufio.Reader
	buf []byte // the packet returned by the last call to next
}

// next returns the next packet, valid until the next call. At the end of
// the stream it returns io.EOF; inside a packet, the bytes read of it and
// io.ErrUnexpectedEOF. Other errors are read errors and errUnframeable.
func (fr *framer) next() ([]byte, error) {
	fr.buf = fr.buf[:0]
	c, err := fr.r.ReadByte()
	if err != nil {
		return nil, err
	}
	fr.buf = append(fr.buf, c)
	n := 0
	for i := 0; ; i++ {
		if i == 4 {
			return nil, errUnframeable
		}
		c, err := fr.r.ReadByte()
		if err != nil {
			return fr.buf, unexpected(err)
		}
		fr.buf = append(fr.buf, c)
		n |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			break
		}
	}
	if len(fr.buf)+n > MaxPacketSize {
		return nil, errUnframeable
	}
	// Grow with the bytes that arrive, not with the length announced.
	for n > 0 {
		if len(fr.buf) == cap(fr.buf) {
			fr.buf = slices.Grow(fr.buf, min(n, max(len(fr.buf), 512)))
		}
		k := min(n, cap(fr.buf)-len(fr.buf))
		got, err := io.ReadFull(fr.r, fr.buf[len(fr.buf):len(fr.buf)+k])
		fr.buf = fr.buf[:len(fr.buf)+got]
		n -= got
		if err != nil {
			return fr.buf, unexpected(err)
		}
	}
	return fr.buf, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
