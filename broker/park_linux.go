package broker

import (
	"container/heap"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ternmq/mqtt/internal/lowat"
)

// An idle connection waits without a goroutine: a goroutine's stack (2 to 8
// KiB) would be most of an idle connection's memory. Its socket is watched by
// the Server's poller (an epoll instance of its own, beside the Go runtime's)
// and its keepalive deadline by the same poller's heap of deadlines; either
// starts a goroutine that reads on. Only plain TCP and Unix connections park: TLS and WebSocket
// connections keep their goroutine, since bytes on the socket need not make
// a readable packet.

// Values of parking.state.
const (
	active = iota // a goroutine runs the connection's reader
	parked        // no goroutine; the poller or the timer starts one
)

// parking is a connection's side of parking.
//
// A connection idle for detachAfter (a new one at once) also gives back its
// net.Conn (detach): the Go runtime's state for a socket (its poll descriptor, 512
// bytes, and the net.Conn's own structures) would be a third of an idle
// connection's memory. It keeps only the socket's descriptor, and makes a
// net.Conn again when bytes come or the writer has something to send
// (attach). mu guards c.nc, fd, closed and gen; it is taken
// before the poller's mu and before c.wmu. The fields are ordered to pack.
type parking struct {
	rc    syscall.RawConn // nil: the connection cannot park
	id    uint64          // its key in the poller, 0 until first parked
	due   int64           // the keepalive deadline in the poller's heap, Unix nanoseconds
	since atomic.Int64    // the last bytes read or written, Unix nanoseconds; 0 until first detached
	mu    sync.Mutex
	state atomic.Int32
	kick  atomic.Bool // woken since the reader last looked
	hidx  int32       // index in the poller's heap, or -1; guarded by the poller's mu
	fd    int32       // the socket while detached (c.nc nil); -1 once closed
	gen   uint32      // counts the net.Conns made: the writer moves its deadline on a new one

	added  bool        // registered with the poller's epoll
	closed bool        // closeNet was called: no net.Conn is made again
	tcp    bool        // the socket is TCP: its wake-ups can be held back (lowat_linux.go)
	mark   lowat.State // raised only while attached: lowered before parking
}

// detachAfter is how long a connection stays parked with its net.Conn
// before detaching: a connection that talks several times a second
// does not pay for making a net.Conn again each time.
var detachAfter = 250 * time.Millisecond

// init makes c able to park if its connection is plain TCP or Unix.
func (pk *parking) init(c *conn) {
	var sc syscall.Conn
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		sc = nc
		pk.tcp = true
	case *net.UnixConn:
		sc = nc
	default:
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		pk.mu.Lock() // the writer, already started, reads pk.rc (netConn)
		pk.rc = rc
		pk.mu.Unlock()
		pk.hidx = -1 // pk.since 0: a new connection detaches when it first parks
	}
}

// raw is the reader's raw connection (see rawio.go), nil where the
// connection cannot park; c.nc's, which it changes with.
func (pk *parking) raw() syscall.RawConn { return pk.rc }

// forget removes a connection that ends from the poller.
func (pk *parking) forget(s *Server) {
	if pk.id != 0 {
		s.park.forget(pk.id)
	}
}

// unpark makes the connection's reader run: at once if it is parked,
// otherwise when it next looks. Anything that needs the reader to see a
// change (bytes, a deadline, a closed connection, Shutdown) calls it.
func (c *conn) unpark() {
	c.pk.kick.Store(true)
	if c.pk.state.CompareAndSwap(parked, active) {
		go c.loop()
	}
}

// shrinkIfParked lets the session of a parked connection give back the
// space of what the writer has just sent (the CONNACK and SUBACK of a
// device that then goes quiet, say).
func (c *conn) shrinkIfParked() {
	pk := &c.pk
	fresh := pk.since.Load() == 0
	pk.busy()
	if pk.state.Load() != parked {
		return
	}
	c.cl.mu.Lock()
	c.cl.sess.Shrink()
	c.cl.mu.Unlock()
	if !fresh {
		return // the poller wakes the reader to detach once idle
	}
	// A new connection detaches at once, but its reader could not while
	// the writer sent the CONNACK: run the reader again here, to park
	// again, detaching.
	pk.mu.Lock()
	wake := c.nc != nil && pk.rc != nil && !pk.closed
	pk.mu.Unlock()
	if wake && pk.state.CompareAndSwap(parked, active) {
		c.loop() // on the writer's goroutine, which ends: one goroutine fewer
	}
}

// parkAfter is how long a connection that has just had bytes waits for more
// in the Go runtime's poller before it parks: parking and waking again cost
// system calls and a goroutine each time, which a busy connection, whose
// socket is empty for microseconds between packets, would pay per packet.
var parkAfter = 100 * time.Millisecond

// linger prepares the reader, about to read the next packet with nothing
// buffered, to wait for it up to parkAfter in the Go runtime's poller, into
// its read buffer (connReader returns errLinger when the time passes). It
// reports false when the connection should give back its read buffer and
// wait as an idle one instead: it cannot park (it waits that way anyway),
// it is new (a device that connects and goes quiet parks at once), or it
// has just lingered in vain.
func (c *conn) linger() bool {
	pk := &c.pk
	r := c.router
	if pk.rc == nil || pk.since.Load() == 0 || c.nc == nil || r.lingered {
		r.lingered = false
		return false
	}
	cl := c.cl
	cl.mu.Lock()
	d := cl.sess.Deadline()
	cl.mu.Unlock()
	until := time.Now().Add(parkAfter)
	if !d.IsZero() && d.Before(until) {
		until = d // the keepalive comes first: connReader runs it
	} else {
		r.lingering, r.lingerUntil = true, until
	}
	c.nc.SetReadDeadline(until)
	return true
}

// idleRead waits for the next bytes of an idle connection, into
// c.router.idle. It
// reports parked when the connection is left waiting without a goroutine.
func (c *conn) idleRead() (int, error, bool) {
	// Bytes must wake the poller that c is about to wait in.
	if err := c.lowerLowat(); err != nil {
		return 0, err, false
	}
	for {
		if err := c.attachReader(); err != nil {
			return 0, err, false
		}
		if c.pk.rc == nil {
			n, err := (*connReader)(c).Read(c.router.idle[:])
			return n, err, false
		}
		if err := c.router.readErr; err != nil {
			return 0, err, false // came with the last bytes
		}
		c.pk.kick.Store(false)
		n, err, empty := c.tryRead(c.router.idle[:])
		if !empty {
			c.pk.busy()
			return n, err, false
		}
		if c.stop.Load() != running {
			return 0, errShutdown, false
		}
		// Every packet read so far is handled: wake the writers that
		// have something to send before waiting.
		c.router.flushWakes(c)
		now := time.Now()
		cl := c.cl
		cl.mu.Lock()
		d := cl.sess.Deadline()
		var terr error
		if !d.IsZero() && !now.Before(d) {
			terr = cl.sess.Tick(now) // [MQTT-3.1.2-24]
			d = cl.sess.Deadline()
		}
		cl.mu.Unlock()
		if terr != nil {
			return 0, terr, false
		}
		// The deadline bounds the wait for the rest of a packet, once
		// bytes come (connReader), and checks tryRead's reads.
		c.nc.SetReadDeadline(d)
		if c.park(d) {
			return 0, nil, true
		}
	}
}

// tryRead reads what the socket holds into p without waiting; empty reports
// that it holds nothing.
func (c *conn) tryRead(p []byte) (n int, err error, empty bool) {
	n, err, empty = c.router.raw.ReadNow(c.pk.rc, p) // a passed deadline: empty, idleRead runs the keepalive
	if n > 0 {
		c.srv.traffic.bytesIn.Add(int64(n))
	}
	return n, opError("read", c.nc, err), empty
}

// park leaves c waiting for bytes or for the keepalive deadline d (none if
// zero) without a goroutine. It reports false if c must go on reading
// instead: parking is not possible, or c was woken meanwhile.
func (c *conn) park(d time.Time) bool {
	pk := &c.pk
	// Scratch memory of the reader, regrown or lent again by the next
	// packets.
	putRouter(c.router)
	c.router = nil
	c.cl.mu.Lock()
	c.cl.sess.Shrink()
	c.cl.mu.Unlock()
	pk.mu.Lock()
	due := d
	if !c.detach() {
		// Detach later: the poller wakes the reader, which parks again.
		now := time.Now().UnixNano()
		at := pk.since.Load() + int64(detachAfter)
		if at <= now {
			at = now + int64(detachAfter) // the writer ran: try again later
		}
		if t := time.Unix(0, at); d.IsZero() || t.Before(d) {
			due = t
		}
	}
	err := c.srv.park.arm(c, due)
	if err != nil && c.nc == nil {
		err = errors.Join(err, c.attach())
	}
	if err != nil {
		// Read with a goroutine from now on. Under the lock: the
		// writer reads rc (netConn).
		pk.rc = nil
	}
	pk.mu.Unlock()
	if err != nil {
		c.srv.log.Debug("cannot park connection", "client", c.info.ID, "err", err)
		c.router = getRouter()
		return false
	}
	pk.state.Store(parked)
	// A wake between the last read and the state change saw the reader
	// active and left it to look: look.
	if (pk.kick.Load() || c.stop.Load() != running) && pk.state.CompareAndSwap(parked, active) {
		c.router = getRouter()
		return false
	}
	return true
}

// poller watches the sockets of parked connections with an epoll instance
// and a goroutine that unparks them; it starts with the first parked
// connection and stops with the Server.
type poller struct {
	mu      sync.Mutex
	started bool
	closed  bool
	epfd    int
	pipe    [2]int   // a byte written to pipe[1] wakes the goroutine
	conns   []*conn  // by id-1: a slice, not a map, costs a parked connection 8 bytes
	free    []uint64 // ids of forgotten connections, given again
	due     []*conn  // parked connections with a deadline, earliest first (a heap)
	done    chan struct{}
}

var errPollerClosed = errors.New("broker: poller closed")

// arm registers c's socket for one readiness event (EPOLLONESHOT), and its
// deadline d (none if zero). c.pk.mu is held.
func (p *poller) arm(c *conn, d time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errPollerClosed
	}
	if !p.started {
		if err := p.start(); err != nil {
			p.closed = true
			return err
		}
	}
	pk := &c.pk
	if pk.id == 0 {
		if n := len(p.free); n > 0 {
			pk.id = p.free[n-1]
			p.free = p.free[:n-1]
		} else {
			p.conns = append(p.conns, nil)
			pk.id = uint64(len(p.conns))
		}
		p.conns[pk.id-1] = c
	}
	p.setDue(c, d)
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(pk.id)),
		Pad:    int32(uint32(pk.id >> 32)),
	}
	if c.nc == nil {
		// Detached: the descriptor is the connection's own.
		err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(pk.fd), &ev)
		pk.added = err == nil
		return err
	}
	var err error
	cerr := pk.rc.Control(func(fd uintptr) {
		if pk.added {
			err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
			if err != syscall.ENOENT {
				return
			}
		}
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		pk.added = err == nil
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// start makes the epoll instance and starts the goroutine. p.mu is held.
func (p *poller) start() error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.Pipe2(p.pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.pipe[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p.pipe[0])
		syscall.Close(p.pipe[1])
		return err
	}
	p.epfd = epfd
	p.done = make(chan struct{})
	p.started = true
	go p.run()
	return nil
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, p.timeout())
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return // cannot happen with a valid epfd
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				var b [64]byte
				syscall.Read(p.pipe[0], b[:])
				p.mu.Lock()
				closed := p.closed
				p.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			// An event fetched before its connection was forgotten
			// may find the id given to another: a spurious unpark,
			// after which the reader finds nothing and parks again.
			var c *conn
			p.mu.Lock()
			if id <= uint64(len(p.conns)) {
				c = p.conns[id-1]
			}
			p.mu.Unlock()
			if c != nil {
				c.unpark()
			}
		}
		p.expire()
	}
}

// del removes descriptor fd from the epoll set, before it is closed: a
// registration outlives a closed descriptor while a duplicate of it is open.
func (p *poller) del(fd int) {
	p.mu.Lock()
	if p.started {
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	}
	p.mu.Unlock()
}

func (p *poller) forget(id uint64) {
	p.mu.Lock()
	if id <= uint64(len(p.conns)) {
		if c := p.conns[id-1]; c != nil && c.pk.hidx >= 0 {
			heap.Remove((*dueHeap)(&p.due), int(c.pk.hidx))
		}
		p.conns[id-1] = nil
		p.free = append(p.free, id)
	}
	p.mu.Unlock()
}

// stop ends the goroutine, once no connection is left.
func (p *poller) stop() {
	p.mu.Lock()
	p.closed = true
	started := p.started
	p.started = false
	p.mu.Unlock()
	if !started {
		return
	}
	syscall.Write(p.pipe[1], []byte{1})
	<-p.done
	clear(p.due)
	p.due = nil
	p.mu.Lock()
	p.conns, p.free = nil, nil
	p.mu.Unlock()
	syscall.Close(p.epfd)
	syscall.Close(p.pipe[0])
	syscall.Close(p.pipe[1])
}

// setDue sets c's deadline in the heap, and wakes the goroutine if it
// becomes the earliest. p.mu is held.
func (p *poller) setDue(c *conn, d time.Time) {
	pk := &c.pk
	h := (*dueHeap)(&p.due)
	if d.IsZero() {
		if pk.hidx >= 0 {
			heap.Remove(h, int(pk.hidx))
		}
		return
	}
	pk.due = d.UnixNano()
	if pk.hidx >= 0 {
		heap.Fix(h, int(pk.hidx))
	} else {
		heap.Push(h, c)
	}
	if pk.hidx == 0 {
		syscall.Write(p.pipe[1], []byte{0}) // a full pipe wakes it as well
	}
}

// timeout returns how long EpollWait may wait: until the earliest
// deadline, in milliseconds rounded up, or -1 for none.
func (p *poller) timeout() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.due) == 0 {
		return -1
	}
	d := p.due[0].pk.due - time.Now().UnixNano()
	if d <= 0 {
		return 0
	}
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// expire unparks the connections whose deadline has passed.
func (p *poller) expire() {
	now := time.Now().UnixNano()
	var due []*conn
	p.mu.Lock()
	for len(p.due) > 0 && p.due[0].pk.due <= now {
		due = append(due, heap.Pop((*dueHeap)(&p.due)).(*conn))
	}
	p.mu.Unlock()
	for _, c := range due {
		c.unpark()
	}
}

// dueHeap orders parked connections by deadline (container/heap).
type dueHeap []*conn

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].pk.due < h[j].pk.due }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pk.hidx = int32(i)
	h[j].pk.hidx = int32(j)
}
func (h *dueHeap) Push(x any) {
	c := x.(*conn)
	c.pk.hidx = int32(len(*h))
	*h = append(*h, c)
}
func (h *dueHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.pk.hidx = -1
	return c
}
