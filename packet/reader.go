package packet

import "io"

// DefaultMaxSize is the packet size limit of a Reader made with maxSize 0.
// A Reader reserves memory only for bytes that have arrived, so the limit
// bounds what a peer can make it hold by sending, not by announcing.
const DefaultMaxSize = 1 << 20

const minReadBuffer = 4096

// Reader reads packets from a stream through one reusable buffer.
//
// The bytes returned by Next, and the byte-slice fields of the packet
// returned by ReadPacket, are valid only until the next call to either:
// they alias the Reader's buffer, which the next read overwrites. Clone a
// packet to keep it.
//
// The size of each packet is checked against the limit as soon as its fixed
// header has arrived. The buffer starts at 4 KiB and grows only when it is
// full of bytes that have arrived, doubling up to the size of the packet
// being read: a header announcing a large packet costs nothing until the
// peer sends the bytes, and the buffer never exceeds twice the bytes
// received, nor the larger of 4 KiB and the limit. It keeps the size of the
// largest packet read, so that a stream of them reads without allocating.
//
// Errors are final: after the stream returns an error, a read deadline's
// timeout included, every call returns it once the complete packets already
// buffered have been returned. Keep deadlines below the Reader (in the
// connection's own keepalive logic) or Reset it for a new stream.
type Reader struct {
	r          io.Reader
	max        int
	buf        []byte
	start, end int   // buf[start:end] holds bytes read but not yet returned
	err        error // the error that ended the stream, returned once the buffer is drained

	// ReadPacket decodes into these, so that it allocates nothing.
	connect     Connect
	connack     Connack
	publish     Publish
	puback      Puback
	pubrec      Pubrec
	pubrel      Pubrel
	pubcomp     Pubcomp
	subscribe   Subscribe
	suback      Suback
	unsubscribe Unsubscribe
	unsuback    Unsuback
	pingreq     Pingreq
	pingresp    Pingresp
	disconnect  Disconnect
}

// NewReader returns a Reader of packets from r of at most maxSize bytes
// each, fixed header included. A maxSize of 0 or less means DefaultMaxSize;
// values over MaxSize mean MaxSize.
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxSize > MaxSize {
		maxSize = MaxSize
	}
	return &Reader{r: r, max: maxSize, buf: make([]byte, min(minReadBuffer, maxSize+5))}
}

// MaxSize returns the largest packet the Reader accepts.
func (r *Reader) MaxSize() int { return r.max }

// Reset discards any buffered bytes and the stored error and makes the
// Reader read from r, keeping its buffer, so that one Reader can serve one
// connection after another.
func (r *Reader) Reset(src io.Reader) {
	r.r = src
	r.start, r.end = 0, 0
	r.err = nil
}

// Buffered returns the number of bytes read from the stream but not yet
// returned as packets.
func (r *Reader) Buffered() int { return r.end - r.start }

// HasPacket reports whether a complete packet is buffered: the next call to
// Next or ReadPacket then returns it without reading from the stream.
func (r *Reader) HasPacket() bool {
	avail := r.buf[r.start:r.end]
	if len(avail) < 2 {
		return false
	}
	n, used, err := parseLength(avail[1:])
	return err == nil && used > 0 && 1+used+n <= len(avail)
}

// Next returns the bytes of the next packet, fixed header included, with its
// type byte and length checked but its body not decoded. At the end of the
// stream it returns io.EOF, or io.ErrUnexpectedEOF inside a packet. Any
// other error but a read error is an *Error, and the stream cannot go on.
func (r *Reader) Next() ([]byte, error) {
	for {
		avail := r.buf[r.start:r.end]
		if len(avail) >= 2 {
			t := Type(avail[0] >> 4)
			if err := checkFlags(t, avail[0]&0x0f); err != nil {
				return nil, err
			}
			n, used, err := parseLength(avail[1:])
			if err != nil {
				err.(*Error).Type = t
				return nil, err
			}
			if used > 0 {
				total := 1 + used + n
				if total > r.max {
					return nil, &Error{Kind: ErrTooLarge, Type: t, Rule: "", Reason: "packet larger than the reader's limit"}
				}
				if len(avail) >= total {
					r.start += total
					return avail[:total:total], nil
				}
				r.makeRoom(total)
			}
		}
		if r.err != nil {
			if r.err == io.EOF && r.start != r.end {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, r.err
		}
		r.fill()
	}
}

// makeRoom prepares buf for more of a packet of n bytes starting at start:
// it moves the unread bytes to the front when the packet would not fit
// where it is, and grows the buffer only when it is full, to twice its size
// but no more than n. Growing with the bytes that have arrived, rather than
// with the length announced, keeps a forged length from reserving memory.
func (r *Reader) makeRoom(n int) {
	if len(r.buf)-r.start >= n {
		return
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end < len(r.buf) {
		return // room for the next read
	}
	buf := make([]byte, min(2*len(r.buf), n))
	copy(buf, r.buf[:r.end])
	r.buf = buf
}

// Size returns the size of the Reader's buffer in bytes: 4 KiB at first,
// then that of the largest packet read. A pool of Readers may use it to let
// one grown by a rare large packet go.
func (r *Reader) Size() int { return len(r.buf) }

// fill reads once from the stream into the free end of buf.
func (r *Reader) fill() {
	if r.start == r.end {
		r.start, r.end = 0, 0
	} else if r.end == len(r.buf) {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	for i := 0; i < 100; i++ {
		n, err := r.r.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			r.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.err = io.ErrNoProgress
}

// ReadPacket reads and decodes the next packet into a value owned by the
// Reader and returns it; use a type switch to see which it is. The value is
// reused by the next call. If decoding fails, the error is returned with the
// partly decoded packet, so that a server can read the protocol level of a
// CONNECT it refuses.
func (r *Reader) ReadPacket() (Packet, error) {
	b, err := r.Next()
	if err != nil {
		return nil, err
	}
	var p Packet
	switch Type(b[0] >> 4) {
	case CONNECT:
		p = &r.connect
	case CONNACK:
		p = &r.connack
	case PUBLISH:
		p = &r.publish
	case PUBACK:
		p = &r.puback
	case PUBREC:
		p = &r.pubrec
	case PUBREL:
		p = &r.pubrel
	case PUBCOMP:
		p = &r.pubcomp
	case SUBSCRIBE:
		p = &r.subscribe
	case SUBACK:
		p = &r.suback
	case UNSUBSCRIBE:
		p = &r.unsubscribe
	case UNSUBACK:
		p = &r.unsuback
	case PINGREQ:
		p = &r.pingreq
	case PINGRESP:
		p = &r.pingresp
	default:
		p = &r.disconnect
	}
	return p, p.Decode(b)
}
