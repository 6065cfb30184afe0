package transport

import (
	"bufio"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Close status codes a WebSocketConn sends or reports (RFC 6455 section 7.4.1).
const (
	StatusNormalClosure   = 1000 // the purpose of the connection is fulfilled
	StatusGoingAway       = 1001 // the endpoint is shutting down
	StatusProtocolError   = 1002 // the peer broke RFC 6455
	StatusUnsupportedData = 1003 // a text frame arrived [MQTT-6.0.0-1]
	StatusNoStatus        = 1005 // reported when a close frame carried no code; never sent
	StatusInvalidPayload  = 1007 // a close reason was not UTF-8
	StatusMessageTooBig   = 1009 // a frame exceeded Options.MaxFrameSize
)

// DefaultMaxFrameSize is the frame payload limit when Options.MaxFrameSize is
// zero: the largest MQTT packet (remaining length 268,435,455 plus a 5-byte
// fixed header), so any peer that sends one packet per frame is accepted.
// A WebSocketConn never buffers a data frame (its payload is read straight
// into the caller's buffer), so the limit bounds nothing in memory; it only
// rejects absurd headers early, such as one announcing 2^62 bytes.
const DefaultMaxFrameSize = 268435455 + 5

// writeBufferLimit caps the per-connection write buffer. Messages up to this
// size go out as one frame in one write call; larger ones are still one
// frame, streamed through the buffer in pieces.
const writeBufferLimit = 64<<10 + maxHeaderLen

// maxHeaderLen is the longest frame header: 2 bytes, an 8-byte extended
// length and a 4-byte masking key.
const maxHeaderLen = 14

// controlTimeout is the least time a control frame gets to go out: a pong
// or close that Read sends, whatever the caller's write deadline, and the
// close frame Close sends to a peer that does not read.
const controlTimeout = time.Second

// Errors reported by WebSocketConn.Read. They wrap more detail; test with
// errors.Is.
var (
	// ErrProtocol reports a frame that breaks RFC 6455 (reserved bits or
	// opcodes, a bad mask bit, a fragmented or long control frame, a bad
	// continuation, a bad close payload).
	ErrProtocol = errors.New("transport: websocket protocol error")
	// ErrFrameTooLarge reports a frame longer than the configured maximum.
	ErrFrameTooLarge = errors.New("transport: websocket frame too large")
	// ErrNotBinary reports a text frame: MQTT travels in binary frames only,
	// and any other data frame closes the connection [MQTT-6.0.0-1].
	ErrNotBinary = errors.New("transport: websocket text frame, MQTT needs binary frames")
)

// CloseError is returned by Read when the peer closed the WebSocket with a
// status other than a normal one (1000, 1001 or none, which read as io.EOF).
type CloseError struct {
	Code   int    // status code from the peer's close frame
	Reason string // UTF-8 reason from the peer's close frame, often empty
}

// Error reports the status and reason.
func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("transport: websocket closed by peer with status %d", e.Code)
	}
	return fmt.Sprintf("transport: websocket closed by peer with status %d: %s", e.Code, e.Reason)
}

// frameError is a read failure that also decides the close status sent to
// the peer before giving up.
type frameError struct {
	status int
	err    error
}

func (e *frameError) Error() string { return e.err.Error() }
func (e *frameError) Unwrap() error { return e.err }

func protocolError(format string, args ...any) error {
	return &frameError{StatusProtocolError, fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)}
}

// WebSocketConn is a net.Conn carrying a byte stream in WebSocket binary
// frames, as MQTT over WebSocket does (chapter 6 of MQTT 3.1.1).
//
// Read returns payload bytes regardless of frame boundaries: one frame may
// hold several packets or part of one [MQTT-6.0.0-2]. Ping is answered with
// pong, and a close frame is echoed and then reads as io.EOF. Each Write
// sends one binary frame. Read and Write may be called from different
// goroutines; Close unblocks both.
//
// Steady-state Read and Write do not allocate: payloads are read into the
// caller's buffer and unmasked in place, and writes reuse one buffer per
// connection.
type WebSocketConn struct {
	conn        net.Conn
	br          *bufio.Reader
	client      bool
	subprotocol string
	req         *http.Request // the upgrade request, server side only
	maxFrame    uint64

	rmu       sync.Mutex
	remaining uint64  // payload bytes left in the current data frame
	rkey      [4]byte // masking key of the current data frame
	rpos      int     // index into rkey of the next payload byte
	rmasked   bool
	inMessage bool // the last data frame had FIN clear: continuations follow
	rerr      error
	hdr       [maxHeaderLen]byte
	hdrN      int // header bytes read so far; reads resume after a timeout
	ctrl      [125]byte
	ctrlN     int

	wmu       sync.Mutex
	wbuf      []byte
	cbuf      [2 + 4 + 125]byte // control frames, so they never touch wbuf
	werr      error
	closeSent bool
	rng       *rand.ChaCha8 // masking keys; client side only

	// dmu guards the caller's write deadline, which a control frame sent by
	// Read stretches while it goes out and then restores.
	dmu       sync.Mutex
	wdeadline time.Time
	inControl bool

	closeOnce sync.Once
	closeErr  error
}

// NewWebSocketConn wraps c, on which a WebSocket opening handshake is
// already complete, as the client end (client true: frames sent are masked,
// frames received must not be) or the server end. Dial and the listeners do
// the handshake themselves; this is for callers who did their own, and for
// tests and fuzzing of the frame layer. opts may be nil; only MaxFrameSize
// is used.
func NewWebSocketConn(c net.Conn, client bool, opts *Options) *WebSocketConn {
	return newWebSocketConn(c, nil, client, "", opts)
}

// newWebSocketConn is NewWebSocketConn with a reader that may hold bytes
// buffered during the handshake.
func newWebSocketConn(c net.Conn, br *bufio.Reader, client bool, subprotocol string, opts *Options) *WebSocketConn {
	if br == nil {
		br = bufio.NewReaderSize(c, 4096)
	}
	w := &WebSocketConn{conn: c, br: br, client: client, subprotocol: subprotocol, maxFrame: DefaultMaxFrameSize}
	if opts != nil && opts.MaxFrameSize > 0 {
		w.maxFrame = uint64(opts.MaxFrameSize)
	}
	if client {
		// RFC 6455 section 5.3: masking keys must be unpredictable. A
		// ChaCha8 stream seeded from crypto/rand is, and costs no system
		// call per frame.
		var seed [32]byte
		crand.Read(seed[:])
		w.rng = rand.NewChaCha8(seed)
	}
	return w
}

// Subprotocol returns the WebSocket subprotocol agreed in the handshake,
// normally "mqtt" [MQTT-6.0.0-4]; empty for a connection made by
// NewWebSocketConn.
func (c *WebSocketConn) Subprotocol() string { return c.subprotocol }

// Request returns the HTTP upgrade request of a server-side connection
// made by Listen, WebSocketHandler or UpgradeWebSocket (its headers,
// cookies, URL query, for authentication or logging), and nil otherwise.
// Its body is not readable.
func (c *WebSocketConn) Request() *http.Request { return c.req }

// NetConn returns the underlying connection: a *net.TCPConn, or a
// *tls.Conn for wss (see ConnectionState for client certificates).
func (c *WebSocketConn) NetConn() net.Conn { return c.conn }

// LocalAddr returns the local network address.
func (c *WebSocketConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *WebSocketConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying connection.
func (c *WebSocketConn) SetDeadline(t time.Time) error {
	if err := c.conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline of the underlying connection. A Read
// that times out in the middle of a frame header resumes where it stopped.
func (c *WebSocketConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the underlying connection. A
// Write that times out after sending part of a frame breaks the connection,
// since the frame cannot be finished. The deadline bounds the caller's
// writes only: a pong or close that Read sends gets at least a second of
// its own, so that a deadline left in the past by the last write of a
// connection idle since does not keep a ping unanswered.
func (c *WebSocketConn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdeadline = t
	if c.inControl {
		return nil // set when the control frame is out
	}
	return c.conn.SetWriteDeadline(t)
}

// Read reads payload bytes of binary frames into p, across frame boundaries.
func (c *WebSocketConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return 0, c.rerr
	}
	if len(p) == 0 {
		return 0, nil
	}
	for c.remaining == 0 {
		if err := c.nextFrame(); err != nil {
			return 0, c.readFailed(err)
		}
	}
	if uint64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.br.Read(p)
	if c.rmasked {
		c.rpos = maskBytes(c.rkey, c.rpos, p[:n])
	}
	c.remaining -= uint64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		err = c.readFailed(err)
	}
	return n, err
}

// readFailed records err as final unless it is a timeout, which leaves the
// connection usable once the deadline is moved. Frame errors are reported
// to the peer with a close frame first.
func (c *WebSocketConn) readFailed(err error) error {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return err
	}
	var fe *frameError
	if errors.As(err, &fe) {
		c.sendClose(fe.status, "")
		err = fe.err
	}
	c.rerr = err
	return err
}

// nextFrame reads one frame header. For a data frame it sets up the payload
// for Read; a control frame it reads and handles whole. It returns io.EOF
// for a close handshake or a connection closed between frames.
func (c *WebSocketConn) nextFrame() error {
	if err := c.readHeader(); err != nil {
		return err
	}
	b0, b1 := c.hdr[0], c.hdr[1]
	fin, op, masked := b0&0x80 != 0, b0&0x0f, b1&0x80 != 0
	var length uint64
	i := 2
	switch l := b1 & 0x7f; l {
	case 126:
		length = uint64(binary.BigEndian.Uint16(c.hdr[2:]))
		i += 2
	case 127:
		length = binary.BigEndian.Uint64(c.hdr[2:])
		i += 8
		if length>>63 != 0 {
			return protocolError("64-bit frame length with the most significant bit set")
		}
	default:
		length = uint64(l)
	}
	var key [4]byte
	if masked {
		copy(key[:], c.hdr[i:i+4])
	}
	if op >= opClose {
		return c.controlFrame(op, key, masked, int(length))
	}
	c.hdrN = 0
	if length > c.maxFrame {
		return &frameError{StatusMessageTooBig, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, length, c.maxFrame)}
	}
	c.inMessage = !fin
	c.remaining, c.rkey, c.rpos, c.rmasked = length, key, 0, masked
	return nil
}

// readHeader reads the frame header into c.hdr, validating the first two
// bytes as soon as they arrive so garbage fails without waiting for more.
func (c *WebSocketConn) readHeader() error {
	for {
		need := 2
		if c.hdrN >= 2 {
			need = headerLen(c.hdr[1])
		}
		if c.hdrN >= need {
			return nil
		}
		// bufio.Reader.Read returns either bytes or an error, never both.
		n, err := c.br.Read(c.hdr[c.hdrN:need])
		if err != nil {
			if err == io.EOF && c.hdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		before := c.hdrN
		c.hdrN += n
		if before < 2 && c.hdrN >= 2 {
			if err := c.checkStart(); err != nil {
				return err
			}
		}
	}
}

// headerLen returns the header length announced by the second header byte.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// checkStart validates the first two header bytes (RFC 6455 section 5.2).
func (c *WebSocketConn) checkStart() error {
	b0, b1 := c.hdr[0], c.hdr[1]
	fin, op, masked, len7 := b0&0x80 != 0, b0&0x0f, b1&0x80 != 0, b1&0x7f
	if b0&0x70 != 0 {
		return protocolError("reserved bits set (no extension was negotiated)")
	}
	if masked == c.client {
		if c.client {
			return protocolError("masked frame from server")
		}
		return protocolError("unmasked frame from client")
	}
	switch op {
	case opContinuation:
		if !c.inMessage {
			return protocolError("continuation frame with no fragmented message open")
		}
	case opText, opBinary:
		if c.inMessage {
			return protocolError("new data frame inside a fragmented message")
		}
		if op == opText {
			// [MQTT-6.0.0-1]
			return &frameError{StatusUnsupportedData, ErrNotBinary}
		}
	case opClose, opPing, opPong:
		if !fin {
			return protocolError("fragmented control frame")
		}
		if len7 > 125 {
			return protocolError("control frame payload longer than 125 bytes")
		}
	default:
		return protocolError("reserved opcode %#x", op)
	}
	return nil
}

// controlFrame reads the payload of a control frame and acts on it.
func (c *WebSocketConn) controlFrame(op byte, key [4]byte, masked bool, length int) error {
	for c.ctrlN < length {
		n, err := c.br.Read(c.ctrl[c.ctrlN:length])
		c.ctrlN += n
		if err != nil && c.ctrlN < length {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	c.hdrN, c.ctrlN = 0, 0
	payload := c.ctrl[:length]
	if masked {
		maskBytes(key, 0, payload)
	}
	switch op {
	case opPing:
		return c.writeControl(opPong, payload)
	case opPong:
		return nil // unsolicited pongs are allowed and ignored
	}
	// Close: check the payload, echo the status, report the end.
	code := StatusNoStatus
	var reason string
	switch {
	case length == 1:
		return protocolError("close frame with a 1-byte payload")
	case length >= 2:
		code = int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(code) {
			return protocolError("close frame with invalid status %d", code)
		}
		if !utf8.Valid(payload[2:]) {
			return &frameError{StatusInvalidPayload, fmt.Errorf("%w: close reason is not UTF-8", ErrProtocol)}
		}
		reason = string(payload[2:])
	}
	c.sendClose(code, "")
	if code == StatusNormalClosure || code == StatusGoingAway || code == StatusNoStatus {
		return io.EOF
	}
	return &CloseError{Code: code, Reason: reason}
}

// validCloseCode reports whether code may appear in a close frame: the
// codes RFC 6455 and the IANA registry define for the wire, and the
// ranges for libraries and applications.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// Write sends p as one binary frame.
func (c *WebSocketConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.closeSent {
		return 0, net.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, sent, err := c.writeFrame(opBinary, p)
	if err != nil {
		// A timeout before any byte left keeps the stream intact; anything
		// else leaves a partial frame on the wire.
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() || sent > 0 {
			c.werr = err
		}
	}
	return n, err
}

// writeFrame writes one unfragmented frame holding p. It returns the payload
// bytes written and the total bytes handed to the connection.
func (c *WebSocketConn) writeFrame(op byte, p []byte) (n, sent int, err error) {
	hl := 2
	switch {
	case len(p) > 0xffff:
		hl += 8
	case len(p) > 125:
		hl += 2
	}
	if c.client {
		hl += 4
	}
	if total := hl + len(p); cap(c.wbuf) < total && cap(c.wbuf) < writeBufferLimit {
		size := max(total, 2*cap(c.wbuf), 512)
		c.wbuf = make([]byte, min(size, writeBufferLimit))
	}
	buf := c.wbuf[:cap(c.wbuf)]
	buf[0] = 0x80 | op
	switch {
	case len(p) > 0xffff:
		buf[1] = 127
		binary.BigEndian.PutUint64(buf[2:], uint64(len(p)))
	case len(p) > 125:
		buf[1] = 126
		binary.BigEndian.PutUint16(buf[2:], uint16(len(p)))
	default:
		buf[1] = byte(len(p))
	}
	var key [4]byte
	if c.client {
		buf[1] |= 0x80
		binary.LittleEndian.PutUint32(key[:], uint32(c.rng.Uint64()))
		copy(buf[hl-4:], key[:])
	}
	m := min(len(p), len(buf)-hl)
	pos := 0
	if c.client {
		pos = maskCopy(buf[hl:], p[:m], key, 0)
	} else {
		copy(buf[hl:], p[:m])
	}
	w, err := c.conn.Write(buf[:hl+m])
	sent += w
	if err != nil {
		return max(w-hl, 0), sent, err
	}
	n = m
	for rest := p[m:]; len(rest) > 0; rest = rest[m:] {
		if !c.client {
			// No mask: the rest can go out from p itself.
			w, err = c.conn.Write(rest)
			return n + w, sent + w, err
		}
		m = min(len(rest), len(buf))
		pos = maskCopy(buf, rest[:m], key, pos)
		w, err = c.conn.Write(buf[:m])
		n, sent = n+w, sent+w
		if err != nil {
			return n, sent, err
		}
	}
	return n, sent, nil
}

// writeControl sends a control frame for Read (a pong, a close); the
// caller holds neither lock. RFC 6455 section 5.5.2 says a ping MUST be
// answered, so the frame gets at least controlTimeout whatever the
// caller's write deadline: a server that sets one before each write leaves
// it in the past while its client is idle, and its client's pings must not
// go unanswered for that. A frame that cannot start within the time is
// dropped, leaving the stream whole (a peer that does not read needs no
// pong); one cut short breaks the connection, and Read reports it.
func (c *WebSocketConn) writeControl(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	if c.werr != nil {
		return c.werr
	}
	if op == opClose {
		c.closeSent = true
	}
	c.dmu.Lock()
	least := time.Now().Add(controlTimeout)
	stretch := !c.wdeadline.IsZero() && c.wdeadline.Before(least)
	if stretch {
		c.inControl = true
		c.conn.SetWriteDeadline(least)
	}
	c.dmu.Unlock()
	sent, err := c.writeControlLocked(op, payload)
	if stretch {
		c.dmu.Lock()
		c.inControl = false
		c.conn.SetWriteDeadline(c.wdeadline)
		c.dmu.Unlock()
	}
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() && sent == 0 {
			return nil
		}
		// Not a timeout to Read's caller: the stream is broken.
		c.werr = fmt.Errorf("transport: websocket control frame: %w", err)
		return c.werr
	}
	return nil
}

// writeControlLocked writes a control frame and returns the bytes sent.
func (c *WebSocketConn) writeControlLocked(op byte, payload []byte) (int, error) {
	b := c.cbuf[:0]
	b = append(b, 0x80|op, byte(len(payload)))
	start := len(b)
	if c.client {
		b[1] |= 0x80
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], uint32(c.rng.Uint64()))
		b = append(b, key[:]...)
		start = len(b)
		b = append(b, payload...)
		maskBytes(key, 0, b[start:])
	} else {
		b = append(b, payload...)
	}
	return c.conn.Write(b)
}

// sendClose sends a close frame with code (none for StatusNoStatus) unless
// one was sent already. Errors are dropped: the connection is ending.
func (c *WebSocketConn) sendClose(code int, reason string) {
	var p [125]byte
	n := 0
	if code != StatusNoStatus {
		binary.BigEndian.PutUint16(p[:], uint16(code))
		n = 2 + copy(p[2:], reason)
	}
	c.writeControl(opClose, p[:n])
}

// Close sends a normal close frame, unless one was sent or a Write is in
// progress (waiting at most a second for a peer that does not read), and
// closes the underlying connection. It does not wait for the peer's
// answer: an MQTT connection ends with DISCONNECT, so nothing useful can
// follow.
func (c *WebSocketConn) Close() error {
	c.closeOnce.Do(func() {
		// TryLock: a Write blocked on a peer that does not read must not
		// keep Close from closing the socket under it.
		if c.wmu.TryLock() {
			if !c.closeSent && c.werr == nil {
				c.closeSent = true
				c.conn.SetWriteDeadline(time.Now().Add(controlTimeout))
				c.writeControlLocked(opClose, []byte{StatusNormalClosure >> 8, StatusNormalClosure & 0xff})
			}
			c.closeSent = true
			c.wmu.Unlock()
		}
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}
