package session

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/ternmq/mqtt/internal/dirlock"
	"github.com/ternmq/mqtt/internal/dirsync"
)

// SyncPolicy says when a FileStore makes its writes durable with fsync.
type SyncPolicy uint8

const (
	// SyncAlways fsyncs at every write: a message is durable when Publish
	// returns. It is the default, and the slowest: one fsync per state
	// change (about three per QoS 2 message on each side), which costs from
	// tens of microseconds on a battery-backed SSD to milliseconds on a
	// consumer disk.
	SyncAlways SyncPolicy = iota

	// SyncBatch fsyncs only when the Session calls Sync: before it hands
	// out packets and before it delivers an incoming QoS 2 message. The
	// protocol's guarantees hold as with SyncAlways, since no packet
	// leaves before the state it depends on is durable, and a batch of
	// packets costs one fsync; but a message taken by Publish and not yet
	// sent can be lost by a crash of the machine.
	SyncBatch

	// SyncNever never fsyncs. Writes reach the operating system at every
	// call, so the state survives the process being killed (kill -9), not
	// a crash of the machine or a power cut.
	SyncNever
)

// FileStoreOptions tunes a FileStore. The zero value is the safe default.
type FileStoreOptions struct {
	Sync SyncPolicy

	// CompactSize is the log size in bytes above which the log is
	// rewritten with only the live state, once it is more than twice that
	// state's size. 0 means 1 MiB.
	CompactSize int64
}

// FileStore is a Store in a directory, safe against the process being
// killed at any instant, and against the machine crashing with SyncAlways
// or SyncBatch.
//
// The state is an append-only log (file "session.log"): one record per
// write, each made of its length, a CRC-32C checksum and its body, written
// with a single write call. When the log is opened, a record that is
// incomplete or fails its checksum is the last one, torn by a crash, or
// one a damaged disk spoiled: the log is cut before it (and what is cut
// kept beside it, see OpenFileStore), and everything before it is intact.
// When the log has grown past FileStoreOptions.CompactSize and is more than
// twice the size of the live state, it is rewritten: the live state goes to
// "session.log.tmp", which is synced and renamed over the log, and the
// directory is synced. A crash at any point leaves either log whole.
//
// A FileStore serves one Session, that of one client identifier: it does
// not record the identifier, and a client that opens another's store takes
// its messages into its own session (the other's exchanges left in flight
// on the broker are then never finished). A directory serves one opener
// at a time:
// it locks the file LOCK in it (with flock, where the system has it), and
// OpenFileStore of a directory in use fails with ErrLocked. It is safe for
// concurrent use. It keeps only an
// index in memory; message bodies are read back from the file when loading
// and compacting.
type FileStore struct {
	mu       sync.Mutex
	dir      string
	path     string
	f        *os.File
	lock     *os.File
	opts     FileStoreOptions
	size     int64 // bytes in the log
	live     int64 // bytes of the records that hold the live state
	unsynced bool
	err      error // a failed write leaves the store unusable
	compacts int   // compactions done, for tests

	msgs       map[Handle]fileMsg
	in         map[uint16]Incoming
	lastHandle Handle
	lastTag    Tag
	buf        []byte
}

// fileMsg is the index entry of a stored message: where its record is, and
// its current packet id and stage.
type fileMsg struct {
	off   int64 // offset of its save record
	n     int64 // length of that record
	id    uint16
	state State
}

// Record types.
const (
	recMessage  = 'M' // handle u64, id u16, state u8, qos u8, retain u8, topic length u16, topic, payload
	recUpdate   = 'U' // handle u64, id u16, state u8
	recDelete   = 'D' // handle u64
	recIncoming = 'I' // id u16, tag u64, acked u8
	recInDelete = 'J' // id u16
	recClear    = 'C'
	recMarks    = 'W' // last handle u64, last tag u64
)

const recHeader = 8 // length u32, CRC-32C u32

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const logName = "session.log"

// OpenFileStore opens the store in dir, creating the directory and the log
// if needed, and reads the log's index. The log is read up to its first
// torn or damaged record and cut there; the bytes cut are kept beside it,
// in session.log.cut-OFFSET (a crash tears only the last record, but a
// damaged disk can spoil one anywhere).
func OpenFileStore(dir string, opts FileStoreOptions) (*FileStore, error) {
	if opts.CompactSize <= 0 {
		opts.CompactSize = 1 << 20
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := dirlock.Lock(filepath.Join(dir, "LOCK"))
	if errors.Is(err, dirlock.ErrLocked) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*FileStore, error) {
		dirlock.Unlock(lock)
		return nil, err
	}
	s := &FileStore{
		lock: lock,
		dir:  dir,
		path: filepath.Join(dir, logName),
		opts: opts,
		msgs: make(map[Handle]fileMsg),
		in:   make(map[uint16]Incoming),
	}
	// A leftover of a compaction that did not finish; the log is whole.
	os.Remove(s.path + ".tmp")
	_, statErr := os.Stat(s.path)
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fail(err)
	}
	s.f = f
	if os.IsNotExist(statErr) && opts.Sync != SyncNever {
		// A new log: its directory entry must be durable too.
		if err := dirsync.Sync(dir); err != nil {
			f.Close()
			return fail(err)
		}
	}
	if err := s.readLog(); err != nil {
		f.Close()
		return fail(err)
	}
	return s, nil
}

// readLog rebuilds the index from the log and cuts a torn tail.
func (s *FileStore) readLog() error {
	data, err := io.ReadAll(io.NewSectionReader(s.f, 0, 1<<62))
	if err != nil {
		return err
	}
	off := 0
	for off < len(data) {
		if len(data)-off < recHeader {
			break
		}
		n := int(binary.BigEndian.Uint32(data[off:]))
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n == 0 || n > len(data)-off-recHeader {
			break
		}
		body := data[off+recHeader : off+recHeader+n]
		if crc32.Checksum(body, crcTable) != sum {
			break
		}
		if err := s.apply(body, int64(off), int64(recHeader+n)); err != nil {
			break
		}
		off += recHeader + n
	}
	s.size = int64(off)
	if off < len(data) {
		// A torn or corrupt record: cut it and what follows, durably, so
		// that the next record does not follow garbage. A crash tears
		// only the end, but a damaged disk can spoil a record anywhere:
		// what is cut is kept beside the log first, not destroyed.
		cut := fmt.Sprintf("%s.cut-%d", s.path, off)
		if err := os.WriteFile(cut, data[off:], 0o644); err != nil {
			return fmt.Errorf("session: saving the tail of %s before cutting it: %w", s.path, err)
		}
		if s.opts.Sync != SyncNever {
			if err := dirsync.Sync(s.dir); err != nil {
				return err
			}
		}
		if err := s.f.Truncate(int64(off)); err != nil {
			return err
		}
		if err := s.f.Sync(); err != nil {
			return err
		}
	}
	if _, err := s.f.Seek(int64(off), io.SeekStart); err != nil {
		return err
	}
	return nil
}

var errBadRecord = errors.New("session: bad store record")

// apply updates the index with one record found at off, n bytes long.
func (s *FileStore) apply(b []byte, off, n int64) error {
	switch b[0] {
	case recMessage:
		if len(b) < 16 {
			return errBadRecord
		}
		h := Handle(binary.BigEndian.Uint64(b[1:]))
		if old, ok := s.msgs[h]; ok {
			s.live -= old.n
		}
		s.msgs[h] = fileMsg{off: off, n: n, id: binary.BigEndian.Uint16(b[9:]), state: State(b[11])}
		s.live += n
		s.lastHandle = max(s.lastHandle, h)
	case recUpdate:
		if len(b) != 12 {
			return errBadRecord
		}
		h := Handle(binary.BigEndian.Uint64(b[1:]))
		if m, ok := s.msgs[h]; ok {
			m.id, m.state = binary.BigEndian.Uint16(b[9:]), State(b[11])
			s.msgs[h] = m
		}
	case recDelete:
		if len(b) != 9 {
			return errBadRecord
		}
		h := Handle(binary.BigEndian.Uint64(b[1:]))
		if m, ok := s.msgs[h]; ok {
			s.live -= m.n
			delete(s.msgs, h)
		}
	case recIncoming:
		if len(b) != 12 {
			return errBadRecord
		}
		in := Incoming{PacketID: binary.BigEndian.Uint16(b[1:]), Tag: Tag(binary.BigEndian.Uint64(b[3:])), Acked: b[11] != 0}
		if _, ok := s.in[in.PacketID]; !ok {
			s.live += n
		}
		s.in[in.PacketID] = in
		s.lastTag = max(s.lastTag, in.Tag)
	case recInDelete:
		if len(b) != 3 {
			return errBadRecord
		}
		id := binary.BigEndian.Uint16(b[1:])
		if _, ok := s.in[id]; ok {
			s.live -= recHeader + 12
			delete(s.in, id)
		}
	case recClear:
		clear(s.msgs)
		clear(s.in)
		s.live = 0
	case recMarks:
		if len(b) != 17 {
			return errBadRecord
		}
		s.lastHandle = max(s.lastHandle, Handle(binary.BigEndian.Uint64(b[1:])))
		s.lastTag = max(s.lastTag, Tag(binary.BigEndian.Uint64(b[9:])))
	default:
		return errBadRecord
	}
	return nil
}

// begin starts a record of type t in the reusable buffer.
func (s *FileStore) begin(t byte) []byte {
	return append(s.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0, t)
}

// write finishes the record in b, appends it to the log and applies it to
// the index. A failed write cuts the log back and leaves the store unusable,
// since the state on disk is then unknown.
func (s *FileStore) write(b []byte) error {
	if s.err != nil {
		return s.err
	}
	body := b[recHeader:]
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(body, crcTable))
	s.buf = b
	if _, err := s.f.Write(b); err != nil {
		s.f.Truncate(s.size)
		s.err = fmt.Errorf("session: file store write failed: %w", err)
		return s.err
	}
	off := s.size
	s.size += int64(len(b))
	s.apply(body, off, int64(len(b)))
	if s.opts.Sync == SyncAlways {
		if err := s.f.Sync(); err != nil {
			s.err = fmt.Errorf("session: file store sync failed: %w", err)
			return s.err
		}
	} else {
		s.unsynced = true
	}
	if s.size > s.opts.CompactSize && s.size > 2*s.live {
		// The record is written whatever happens here: a failed compaction
		// leaves the old log in place, and the next write tries again.
		s.compact()
	}
	return s.err
}

// Load implements Store.
func (s *FileStore) Load(msg func(*Message) error, in func(Incoming) error) (Handle, Tag, error) {
	s.mu.Lock()
	hs := make([]Handle, 0, len(s.msgs))
	for h := range s.msgs {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	msgs := make([]*Message, 0, len(hs))
	for _, h := range hs {
		m, err := s.readMessage(s.msgs[h])
		if err != nil {
			s.mu.Unlock()
			return 0, 0, err
		}
		msgs = append(msgs, m)
	}
	ins := make([]Incoming, 0, len(s.in))
	for _, i := range s.in {
		ins = append(ins, i)
	}
	lh, lt := s.lastHandle, s.lastTag
	s.mu.Unlock()
	slices.SortFunc(ins, func(a, b Incoming) int { return cmp.Compare(a.Tag, b.Tag) })
	for _, m := range msgs {
		if err := msg(m); err != nil {
			return 0, 0, err
		}
	}
	for _, i := range ins {
		if err := in(i); err != nil {
			return 0, 0, err
		}
	}
	return lh, lt, nil
}

// readMessage reads a message's save record back from the log, with its
// current packet id and stage from the index.
func (s *FileStore) readMessage(e fileMsg) (*Message, error) {
	b := make([]byte, e.n)
	if _, err := s.f.ReadAt(b, e.off); err != nil {
		return nil, err
	}
	body := b[recHeader:]
	if len(body) < 16 || crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(b[4:]) {
		return nil, errBadRecord
	}
	tl := int(binary.BigEndian.Uint16(body[14:]))
	if 16+tl > len(body) {
		return nil, errBadRecord
	}
	return &Message{
		Handle:   Handle(binary.BigEndian.Uint64(body[1:])),
		PacketID: e.id,
		State:    e.state,
		QoS:      body[12],
		Retain:   body[13] != 0,
		Topic:    body[16 : 16+tl],
		Payload:  body[16+tl:],
	}, nil
}

func appendMessage(b []byte, m *Message) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(m.Handle))
	b = binary.BigEndian.AppendUint16(b, m.PacketID)
	var retain byte
	if m.Retain {
		retain = 1
	}
	b = append(b, byte(m.State), m.QoS, retain)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Topic)))
	b = append(b, m.Topic...)
	return append(b, m.Payload...)
}

// SaveMessage implements Store.
func (s *FileStore) SaveMessage(m *Message) error {
	if len(m.Topic) > 65535 {
		return errors.New("session: topic longer than 65535 bytes")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(appendMessage(s.begin(recMessage), m))
}

// UpdateMessage implements Store.
func (s *FileStore) UpdateMessage(h Handle, packetID uint16, st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := binary.BigEndian.AppendUint64(s.begin(recUpdate), uint64(h))
	b = binary.BigEndian.AppendUint16(b, packetID)
	return s.write(append(b, byte(st)))
}

// DeleteMessage implements Store.
func (s *FileStore) DeleteMessage(h Handle) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(binary.BigEndian.AppendUint64(s.begin(recDelete), uint64(h)))
}

// SaveIncoming implements Store.
func (s *FileStore) SaveIncoming(in Incoming) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := binary.BigEndian.AppendUint16(s.begin(recIncoming), in.PacketID)
	b = binary.BigEndian.AppendUint64(b, uint64(in.Tag))
	var acked byte
	if in.Acked {
		acked = 1
	}
	return s.write(append(b, acked))
}

// DeleteIncoming implements Store.
func (s *FileStore) DeleteIncoming(packetID uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(binary.BigEndian.AppendUint16(s.begin(recInDelete), packetID))
}

// SaveMarks implements MarkStore.
func (s *FileStore) SaveMarks(lastHandle Handle, lastTag Tag) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := binary.BigEndian.AppendUint64(s.begin(recMarks), uint64(lastHandle))
	return s.write(binary.BigEndian.AppendUint64(b, uint64(lastTag)))
}

// Clear implements Store.
func (s *FileStore) Clear() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(s.begin(recClear))
}

// Sync implements Store: with SyncBatch it fsyncs the writes made since the
// last Sync; with SyncAlways there are none; with SyncNever it does nothing.
func (s *FileStore) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if !s.unsynced || s.opts.Sync == SyncNever {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		s.err = fmt.Errorf("session: file store sync failed: %w", err)
		return s.err
	}
	s.unsynced = false
	return nil
}

// Compact rewrites the log with only the live state. Writes do it on their
// own when the log grows (see FileStoreOptions.CompactSize).
func (s *FileStore) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return s.compact()
}

func (s *FileStore) compact() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	var out []byte
	rec := func(b []byte) {
		body := b[recHeader:]
		binary.BigEndian.PutUint32(b, uint32(len(body)))
		binary.BigEndian.PutUint32(b[4:], crc32.Checksum(body, crcTable))
		out = append(out, b...)
	}
	b := append(make([]byte, 0, 64), 0, 0, 0, 0, 0, 0, 0, 0, recMarks)
	b = binary.BigEndian.AppendUint64(b, uint64(s.lastHandle))
	rec(binary.BigEndian.AppendUint64(b, uint64(s.lastTag)))
	hs := make([]Handle, 0, len(s.msgs))
	for h := range s.msgs {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	for _, h := range hs {
		m, err := s.readMessage(s.msgs[h])
		if err != nil {
			return fail(err)
		}
		rec(appendMessage(append(b[:0], 0, 0, 0, 0, 0, 0, 0, 0, recMessage), m))
	}
	for _, in := range s.in {
		b = binary.BigEndian.AppendUint16(append(b[:0], 0, 0, 0, 0, 0, 0, 0, 0, recIncoming), in.PacketID)
		b = binary.BigEndian.AppendUint64(b, uint64(in.Tag))
		var acked byte
		if in.Acked {
			acked = 1
		}
		rec(append(b, acked))
	}
	if _, err := f.Write(out); err != nil {
		return fail(err)
	}
	if s.opts.Sync != SyncNever {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(err)
	}
	if s.opts.Sync != SyncNever {
		// The rename is durable only once the directory is.
		if err := dirsync.Sync(s.dir); err != nil {
			f.Close()
			s.err = fmt.Errorf("session: file store compaction failed: %w", err)
			return s.err
		}
	}
	s.f.Close()
	s.f = f
	clear(s.msgs)
	clear(s.in)
	s.live, s.size = 0, 0
	if err := s.readLog(); err != nil {
		s.err = fmt.Errorf("session: file store compaction failed: %w", err)
		return s.err
	}
	if s.opts.Sync != SyncNever {
		s.unsynced = false
	}
	s.compacts++
	return nil
}

// Close closes the log file.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if uerr := dirlock.Unlock(s.lock); err == nil {
		err = uerr
	}
	if s.err == nil {
		s.err = errors.New("session: file store closed")
	}
	return err
}
