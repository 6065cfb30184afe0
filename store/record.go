package store

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"

	"github.com/ternmq/mqtt/session"
)

// A record is its body's length (u32), the CRC-32C of its body (u32) and
// the body: a kind byte and the fields below, big-endian. The records of a
// session name it by a small number (sid) that an intern record binds to
// its client identifier, so that they need not repeat the identifier.
const (
	recIntern       = 'S' // sid u32, client id (rest): the session exists
	recDelete       = 'X' // sid u32: the session and all it holds are gone
	recMessage      = 'M' // sid u32, handle u64, id u16, state u8, qos u8, retain u8, topic length u16, topic, payload
	recUpdate       = 'U' // sid u32, handle u64, id u16, state u8
	recDeleteMsg    = 'D' // sid u32, handle u64
	recIncoming     = 'I' // sid u32, id u16, tag u64, acked u8
	recDeleteIn     = 'J' // sid u32, id u16
	recClear        = 'C' // sid u32
	recMarks        = 'W' // sid u32, last handle u64, last tag u64
	recSubscribe    = 'B' // sid u32, qos u8, filter (rest)
	recUnsubscribe  = 'N' // sid u32, filter (rest)
	recDisconnected = 'T' // sid u32, unix nanoseconds i64
	recConnected    = 'O' // sid u32
	recRetained     = 'R' // qos u8, topic length u16, topic, payload
	recDeleteRet    = 'Q' // topic (rest)
	recGroupBegin   = 'G' // group u64: the writes from here to its end are kept whole or not at all
	recGroupEnd     = 'H' // group u64
)

const (
	recHeader = 8 // length u32, CRC-32C u32
	// maxRecord bounds a record's body: an MQTT packet is at most 256 MB,
	// so no record written is larger, and recovery never allocates more.
	maxRecord = 1<<28 + 64
	// maxPayload is the largest payload a record can hold with the
	// largest topic.
	maxPayload = maxRecord - 65535 - 32
)

var errTooLarge = errors.New("store: message larger than 256 MB")

// Sizes of whole records (header included), for the live-state account.
const (
	sizeSessionBase = recHeader + 5 // kind, sid
	sizeMarks       = sizeSessionBase + 16
	sizeTime        = sizeSessionBase + 8
	sizeMessageBase = sizeSessionBase + 15
	sizeIncoming    = sizeSessionBase + 11
	sizeRetainBase  = recHeader + 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errBadRecord reports a record whose checksum holds but whose body does
// not parse; recovery treats it as the start of a damaged tail.
var errBadRecord = errors.New("store: bad record")

// begin appends the header and kind of a new record to b and returns
// where the record starts, for end.
func begin(b []byte, kind byte, sid uint32) ([]byte, int) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	if kind != recRetained && kind != recDeleteRet {
		b = binary.BigEndian.AppendUint32(b, sid)
	}
	return b, start
}

// appendGroup appends a group marker, recGroupBegin or recGroupEnd.
func appendGroup(b []byte, kind byte, g Group) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(g))
	return end(b, start)
}

// groupMarker reports whether body is a group marker, and which.
func groupMarker(body []byte) (kind byte, g Group, ok bool) {
	if len(body) != 9 || (body[0] != recGroupBegin && body[0] != recGroupEnd) {
		return 0, 0, false
	}
	return body[0], Group(binary.BigEndian.Uint64(body[1:])), true
}

// end fills in the length and checksum of the record that starts at start.
func end(b []byte, start int) []byte {
	body := b[start+recHeader:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(body, crcTable))
	return b
}

func appendSessionRec(b []byte, kind byte, sid uint32, rest string) []byte {
	b, start := begin(b, kind, sid)
	return end(append(b, rest...), start)
}

func appendMarks(b []byte, sid uint32, h session.Handle, t session.Tag) []byte {
	b, start := begin(b, recMarks, sid)
	b = binary.BigEndian.AppendUint64(b, uint64(h))
	return end(binary.BigEndian.AppendUint64(b, uint64(t)), start)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendMessage(b []byte, sid uint32, h session.Handle, id uint16, st session.State, qos byte, retain bool, topic, payload []byte) []byte {
	b, start := begin(b, recMessage, sid)
	b = binary.BigEndian.AppendUint64(b, uint64(h))
	b = binary.BigEndian.AppendUint16(b, id)
	b = append(b, byte(st), qos, boolByte(retain))
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	return end(append(b, payload...), start)
}

func appendUpdate(b []byte, sid uint32, h session.Handle, id uint16, st session.State) []byte {
	b, start := begin(b, recUpdate, sid)
	b = binary.BigEndian.AppendUint64(b, uint64(h))
	b = binary.BigEndian.AppendUint16(b, id)
	return end(append(b, byte(st)), start)
}

func appendDeleteMsg(b []byte, sid uint32, h session.Handle) []byte {
	b, start := begin(b, recDeleteMsg, sid)
	return end(binary.BigEndian.AppendUint64(b, uint64(h)), start)
}

func appendIncoming(b []byte, sid uint32, in session.Incoming) []byte {
	b, start := begin(b, recIncoming, sid)
	b = binary.BigEndian.AppendUint16(b, in.PacketID)
	b = binary.BigEndian.AppendUint64(b, uint64(in.Tag))
	return end(append(b, boolByte(in.Acked)), start)
}

func appendDeleteIn(b []byte, sid uint32, id uint16) []byte {
	b, start := begin(b, recDeleteIn, sid)
	return end(binary.BigEndian.AppendUint16(b, id), start)
}

func appendSubscribe(b []byte, sid uint32, filter string, qos byte) []byte {
	b, start := begin(b, recSubscribe, sid)
	b = append(b, qos)
	return end(append(b, filter...), start)
}

func appendDisconnected(b []byte, sid uint32, at time.Time) []byte {
	b, start := begin(b, recDisconnected, sid)
	return end(binary.BigEndian.AppendUint64(b, uint64(at.UnixNano())), start)
}

func appendRetained(b []byte, topic, payload []byte, qos byte) []byte {
	b, start := begin(b, recRetained, 0)
	b = append(b, qos)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	return end(append(b, payload...), start)
}

func appendDeleteRet(b []byte, topic []byte) []byte {
	b, start := begin(b, recDeleteRet, 0)
	return end(append(b, topic...), start)
}

// fields reads the fixed fields of a record body; a read past the end
// sets bad and returns zeros, so that a parser checks once at the end.
type fields struct {
	b   []byte
	bad bool
}

func (f *fields) next(n int) []byte {
	if len(f.b) < n {
		f.bad = true
		f.b = nil
		return make([]byte, n)
	}
	v := f.b[:n]
	f.b = f.b[n:]
	return v
}

func (f *fields) u8() byte    { return f.next(1)[0] }
func (f *fields) u16() uint16 { return binary.BigEndian.Uint16(f.next(2)) }
func (f *fields) u32() uint32 { return binary.BigEndian.Uint32(f.next(4)) }
func (f *fields) u64() uint64 { return binary.BigEndian.Uint64(f.next(8)) }

// done reports whether the body was read exactly.
func (f *fields) done() bool { return !f.bad && len(f.b) == 0 }

// rest takes what is left of the body.
func (f *fields) rest() []byte {
	v := f.b
	f.b = nil
	return v
}
