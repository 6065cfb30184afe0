package store

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/mqtt/internal/dirlock"
	"github.com/ternmq/mqtt/internal/dirsync"
)

// SyncPolicy says when a Log makes its writes durable with fsync.
//
// What each costs, measured by BenchmarkStoreWriteSync (bench/) on the
// project's build machine, a virtual disk whose fsync took 0.3 to 1.7 ms,
// with 2 cores shared by other builds (so the figures vary by half), one
// operation being a 64-byte message stored, an older one deleted and Sync:
//   - SyncBatch: 0.33 to 1.7 ms per message with one writer (an fsync
//     each); with 8 writers, one fsync covered 4.1 to 4.2 messages on
//     average (group commit) and a message took 130 to 320 µs.
//   - SyncInterval and SyncNever: one write system call per Sync, 4 to 16
//     µs per message with one writer, 3 to 10 µs with 8.
type SyncPolicy uint8

const (
	// SyncBatch: each Sync call writes what is buffered and fsyncs it
	// before it returns, and Sync calls made at the same time share one
	// write and one fsync. Nothing Sync returned for is lost, even by a
	// crash of the machine. The default.
	SyncBatch SyncPolicy = iota

	// SyncInterval: Sync writes to the operating system, which survives
	// the process being killed; an fsync runs every Options.Interval, so a
	// crash of the machine loses at most that much.
	SyncInterval

	// SyncNever: Sync writes to the operating system and nothing ever
	// fsyncs: the state survives kill -9, not a crash of the machine.
	SyncNever
)

// Options tunes a Log. The zero value is the safe default.
type Options struct {
	Sync SyncPolicy

	// Interval is the time between fsyncs with SyncInterval; 0 means
	// 100 ms.
	Interval time.Duration

	// CompactSize is the size in bytes of the files above which the log
	// is compacted, once they are more than twice the size of the live
	// state. 0 means 64 MiB.
	CompactSize int64

	// Logger receives what recovery cut and compaction failures; nil
	// logs nothing.
	Logger *slog.Logger
}

// Stats counts what a Log did since Open.
type Stats struct {
	Records  uint64 // records written (every write method writes one)
	Messages uint64 // messages saved (SaveMessage calls)
	Writes   uint64 // write system calls to the log
	Bytes    uint64 // bytes written to the log

	// Syncs counts the fsyncs of the log; SyncedRecords and
	// SyncedMessages the records and messages they made durable, so that
	// SyncedMessages/Syncs is the number of messages one fsync covered.
	Syncs          uint64
	SyncedRecords  uint64
	SyncedMessages uint64

	Compactions uint64 // compactions finished
	LiveBytes   int64  // bytes a snapshot of the current state would take
	TotalBytes  int64  // bytes of the log's files, and buffered

	Sessions int // sessions stored
	Queued   int // messages stored, in all sessions
	Retained int // retained messages stored

	// TornBytes counts the bytes of a torn or damaged tail cut by Open.
	TornBytes int64
}

// ErrClosed is returned by the methods of a closed Log (but Close, which
// does nothing the second time and returns nil).
var ErrClosed = errors.New("store: log closed")

// ErrLocked is returned by Open when another process has the directory
// open.
var ErrLocked = errors.New("store: directory in use by another process")

// Log is the Store of a server on disk: one append-only log for all its
// sessions and retained messages, in a directory.
//
// Files: "log.N" are segments of records, read in order of N; "snap.N" is
// the state before segment N, written by a compaction; "LOCK" keeps a
// second process out. A record is its length, a CRC-32C checksum and its
// body, appended to a buffer in memory by the write methods (no system
// call) and written with one write per Sync (group commit, see
// SyncPolicy). When the log is opened, a record that is incomplete or
// fails its checksum can only be the end of what was written: the log is
// cut there, and everything before it is whole. What Sync returned for is
// never cut.
//
// The state the log describes is kept in memory, message payloads
// included, so that loading and compacting never read the files back:
// 100k sessions holding 1M queued messages of 64 bytes took 216 MB of heap
// (BenchmarkStoreRecover; 116 MB on disk, read by Open in about 2 s).
//
// Compaction: when the files are larger than Options.CompactSize and more
// than twice the size of the live state, the log switches to a new
// segment, and a goroutine writes the state to a new snapshot in chunks
// of about 256 kB (small sessions together, a large session's messages in
// parts): it holds the lock only while it encodes one chunk, so writers
// are not stalled for long (1M messages compacted in 1 to 2 s, with no
// stall of a writer beyond those the machine's scheduler caused anyway:
// BenchmarkStoreCompactStall). The records appended meanwhile go to the
// new segment, which recovery replays over the snapshot: every record sets
// a value (or deletes it), so a record replayed over a state that already
// holds it changes nothing. The snapshot is synced and renamed into place,
// the directory synced, and the older files removed; a crash at any point
// leaves a complete set. A compaction that ends with the files past the
// limit again, by the writes made meanwhile, starts another. Recovery
// therefore reads about twice the live state at most, or CompactSize, and,
// when Close stopped a compaction under way, what was written during it.
type Log struct {
	dir  string
	opts Options
	lock *os.File
	log  *slog.Logger

	mu    sync.Mutex
	cond  sync.Cond // signalled when a flush ends
	x     *index
	buf   []byte // records appended and not yet written
	spare []byte // the buffer of the last flush, for reuse
	err   error  // a failed write leaves the log unusable

	f        *os.File // the segment written to
	seg      uint64   // its number
	size     int64    // bytes written to it
	base     int64    // bytes in the other files (snapshot, older segments)
	flushing bool     // a goroutine is writing outside the lock

	// Sequence numbers: records appended, written and synced, and the
	// messages among them.
	seq, written, synced uint64
	msgSeq, msgSynced    uint64
	stats                Stats
	compacting, closing  bool
	retryAt              int64  // total size before which no compaction is retried
	chunk                int    // snapshotChunk, smaller in tests
	afterChunk           func() // a test's hook, called between chunks
	wg                   sync.WaitGroup
	tick                 chan struct{} // closed to stop the interval goroutine

	// Groups (group.go): the open ones, the last number handed out, the
	// callers waiting for groups to end, and the Syncs and compactions
	// keeping new ones from beginning.
	open         map[Group]struct{}
	opened       map[Group]logPos // by recovery: groups begun and not ended
	lastGroup    Group
	groupWaiters int
	quiet        int
}

// Open opens the log in dir, creating the directory if needed, and reads
// its state. The log is read up to its first torn or damaged record, and
// cut there (counted in Stats.TornBytes): what follows is kept beside it,
// in log.N.cut-OFFSET, and segments after a damaged one in log.N.cut, for
// whoever wants to look (a crash tears only what no Sync covered, but a
// damaged disk can spoil a record anywhere). A damaged snapshot, or one
// without its segment, is an error, since it was synced whole before it
// was renamed into place. While a Log is open, Open of the
// same directory fails with ErrLocked (on systems with flock; elsewhere
// the caller must see to it).
func Open(dir string, opts Options) (*Log, error) {
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.CompactSize <= 0 {
		opts.CompactSize = 64 << 20
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
	l := &Log{dir: dir, opts: opts, lock: lock, log: opts.Logger, x: newIndex(), chunk: snapshotChunk}
	l.cond.L = &l.mu
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := l.recover(); err != nil {
		if l.f != nil {
			l.f.Close()
		}
		dirlock.Unlock(lock)
		return nil, err
	}
	if opts.Sync == SyncInterval {
		l.tick = make(chan struct{})
		l.wg.Add(1)
		go l.intervalSync()
	}
	return l, nil
}

// files lists the snapshots and segments in dir by number, and removes
// the temporary files of an unfinished compaction.
func (l *Log) files() (snaps, segs []uint64, err error) {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "snap.") && strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(l.dir, name))
			continue
		}
		prefix, num, ok := strings.Cut(name, ".")
		n, err := strconv.ParseUint(num, 16, 64)
		if !ok || err != nil || len(num) != 16 {
			continue
		}
		switch prefix {
		case "snap":
			snaps = append(snaps, n)
		case "log":
			segs = append(segs, n)
		}
	}
	slices.Sort(snaps)
	slices.Sort(segs)
	return snaps, segs, nil
}

func (l *Log) path(kind string, n uint64) string {
	return filepath.Join(l.dir, fmt.Sprintf("%s.%016x", kind, n))
}

// recover reads the newest snapshot and the segments after it.
func (l *Log) recover() error {
	snaps, segs, err := l.files()
	if err != nil {
		return err
	}
	var first uint64
	if len(snaps) > 0 {
		first = snaps[len(snaps)-1]
		n, whole, err := l.readFile(l.path("snap", first), false)
		if err != nil {
			return err
		}
		if !whole {
			return fmt.Errorf("store: snapshot %s is damaged", l.path("snap", first))
		}
		l.base = n
		for _, s := range snaps[:len(snaps)-1] {
			os.Remove(l.path("snap", s))
		}
	}
	l.seg = first
	if i, found := slices.BinarySearch(segs, first); !found && (len(snaps) > 0 || i < len(segs)) {
		// Segment first is made before its snapshot and never removed
		// while it is the first: someone removed it, or the snapshot
		// is not this log's.
		return fmt.Errorf("store: %s is missing", l.path("log", first))
	}
	cut, removed := false, false
	for _, s := range segs {
		p := l.path("log", s)
		if s < first {
			if err := os.Remove(p); err != nil { // older than the snapshot
				return err
			}
			continue
		}
		if s != l.seg && !cut {
			// A segment missing: a recovery that cut the log was
			// interrupted while it moved the segments after the cut.
			cut = true
			l.log.Warn("store: segment missing, later ones moved aside", "dir", l.dir, "segment", l.seg)
		}
		if cut {
			// After a damaged or missing segment: not applied, kept
			// aside (the log must stay a prefix of what was written).
			if err := os.Rename(p, p+".cut"); err != nil {
				return err
			}
			removed = true
			continue
		}
		n, whole, err := l.readFile(p, true)
		if err != nil {
			return err
		}
		l.base += n
		if !whole {
			cut = true
		}
		l.seg++
	}
	if removed && l.opts.Sync != SyncNever {
		// Segments after a cut must not come back after a crash, behind
		// the records appended from now on.
		if err := dirsync.Sync(l.dir); err != nil {
			return err
		}
	}
	if len(l.opened) > 0 {
		// A group without its end: cut the log at its beginning, and
		// read it again (group.go).
		return l.cutGroup()
	}
	// Append to the last segment read, or start the first.
	if l.seg > first {
		l.seg--
		p := l.path("log", l.seg)
		f, err := os.OpenFile(p, os.O_RDWR, 0o644)
		if err != nil {
			return err
		}
		l.f = f
		st, err := f.Stat()
		if err != nil {
			return err
		}
		l.size = st.Size()
		l.base -= l.size
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
		return nil
	}
	return l.create(l.seg)
}

// create starts segment n and makes it the one written to.
func (l *Log) create(n uint64) error {
	f, err := l.openSegment(n)
	if err != nil {
		return err
	}
	l.f, l.seg, l.size = f, n, 0
	return nil
}

// openSegment creates the empty segment n.
func (l *Log) openSegment(n uint64) (*os.File, error) {
	f, err := os.OpenFile(l.path("log", n), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if l.opts.Sync != SyncNever {
		// A new file's directory entry is durable only once the
		// directory is.
		if err := dirsync.Sync(l.dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// readFile applies the records of a file to the index. It reads one
// record at a time, so memory stays bounded by the largest record, and
// never trusts a length before checking it against the file's size. At
// the first record that is incomplete, fails its checksum or does not
// parse, it stops: if cut, it cuts the file there (durably) and
// counts the bytes cut. It returns the bytes of whole records.
func (l *Log) readFile(p string, cut bool) (n int64, whole bool, err error) {
	f, err := os.OpenFile(p, os.O_RDWR, 0o644)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	size := st.Size()
	r := bufio.NewReaderSize(f, int(min(size, 1<<20)))
	var hdr [recHeader]byte
	var body []byte
	var off int64
	for off < size {
		if size-off < recHeader {
			break
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, false, err
		}
		bn := int64(binary.BigEndian.Uint32(hdr[:]))
		if bn == 0 || bn > maxRecord || bn > size-off-recHeader {
			break
		}
		if int64(cap(body)) < bn {
			body = make([]byte, bn)
		}
		body = body[:bn]
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, false, err
		}
		if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
			break
		}
		if l.x.apply(body) != nil {
			break
		}
		if kind, g, ok := groupMarker(body); ok && cut {
			l.sawGroup(kind, g, off)
		}
		off += recHeader + bn
		if cap(body) > 1<<20 {
			body = nil // a large record's buffer is not kept
		}
	}
	if off == size {
		return off, true, nil
	}
	if !cut {
		return off, false, nil
	}
	// A crash tears the end of the last write only, but a damaged disk
	// can make a bad record anywhere, with good ones after it: what is
	// cut is kept beside the log, so that nothing is destroyed.
	saved := fmt.Sprintf("%s.cut-%d", p, off)
	if err := saveTail(f, off, size, saved); err != nil {
		return 0, false, fmt.Errorf("store: saving the tail of %s before cutting it: %w", p, err)
	}
	if l.opts.Sync != SyncNever {
		if err := dirsync.Sync(l.dir); err != nil {
			return 0, false, err
		}
	}
	l.log.Warn("store: cut a torn or damaged tail", "file", p, "offset", off, "bytes", size-off, "saved", saved)
	l.stats.TornBytes += size - off
	if err := f.Truncate(off); err != nil {
		return 0, false, err
	}
	if l.opts.Sync != SyncNever {
		// Durably, so that no record appended later follows garbage.
		if err := f.Sync(); err != nil {
			return 0, false, err
		}
	}
	return off, false, nil
}

// saveTail copies the bytes of f from off to size to a new file at path,
// durably.
func saveTail(f *os.File, off, size int64, path string) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, io.NewSectionReader(f, off, size-off))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load implements Store. Sessions come in the order they were first
// stored, retained messages in the order of their topics.
func (l *Log) Load(sess func(id string, subs []Subscription, lastSeen time.Time) error, ret func(*Retained) error) error {
	type loaded struct {
		id       string
		subs     []Subscription
		lastSeen time.Time
	}
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return l.err
	}
	ss := make([]*sessState, 0, len(l.x.sids))
	for _, s := range l.x.sids {
		ss = append(ss, s)
	}
	slices.SortFunc(ss, func(a, b *sessState) int { return cmp.Compare(a.sid, b.sid) })
	out := make([]loaded, len(ss))
	for i, s := range ss {
		subs := make([]Subscription, 0, len(s.subs))
		for f, q := range s.subs {
			subs = append(subs, Subscription{Filter: f, QoS: q})
		}
		slices.SortFunc(subs, func(a, b Subscription) int { return cmp.Compare(a.Filter, b.Filter) })
		out[i] = loaded{s.id, subs, s.lastSeen}
	}
	rets := make([]Retained, 0, len(l.x.retained))
	for t, r := range l.x.retained {
		rets = append(rets, Retained{Topic: []byte(t), Payload: r.payload, QoS: r.qos})
	}
	l.mu.Unlock()
	// The payloads are never changed in place, only replaced, so they
	// may be passed without the lock.
	slices.SortFunc(rets, func(a, b Retained) int { return cmp.Compare(string(a.Topic), string(b.Topic)) })
	for _, s := range out {
		if err := sess(s.id, s.subs, s.lastSeen); err != nil {
			return err
		}
	}
	for i := range rets {
		if err := ret(&rets[i]); err != nil {
			return err
		}
	}
	return nil
}

// Session implements Store. A new session is stored at once (a record
// binds its id to the number its records carry): Load returns it after a
// restart even if nothing else was written to it.
func (l *Log) Session(id string) (Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	if s := l.x.ids[id]; s != nil {
		return &logSession{l: l, s: s}, nil
	}
	start := len(l.buf)
	l.buf = appendSessionRec(l.buf, recIntern, l.x.maxSid+1, id)
	if err := l.appended(start, false); err != nil {
		return nil, err
	}
	return &logSession{l: l, s: l.x.ids[id]}, nil
}

// SetRetained implements Store.
func (l *Log) SetRetained(m *Retained) error {
	if len(m.Topic) > 65535 {
		return errors.New("store: topic longer than 65535 bytes")
	}
	if len(m.Payload) > maxPayload {
		return errTooLarge
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	start := len(l.buf)
	l.buf = appendRetained(l.buf, m.Topic, m.Payload, m.QoS)
	return l.appended(start, false)
}

// DeleteRetained implements Store.
func (l *Log) DeleteRetained(topic []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if _, ok := l.x.retained[string(topic)]; !ok {
		return nil // nothing to write
	}
	start := len(l.buf)
	l.buf = appendDeleteRet(l.buf, topic)
	return l.appended(start, false)
}

// Stats returns the counts of what the log did.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.LiveBytes = l.x.live
	s.TotalBytes = l.base + l.size + int64(len(l.buf))
	s.Sessions = len(l.x.sids)
	s.Queued = l.x.messages
	s.Retained = len(l.x.retained)
	return s
}

// Close syncs the log (but for SyncNever, which only writes), waits for a
// compaction under way to stop, and releases the directory.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return nil
	}
	l.closing = true
	l.mu.Unlock()
	if l.tick != nil {
		close(l.tick)
	}
	l.wg.Wait()
	err := l.commit(l.opts.Sync != SyncNever, false)
	l.mu.Lock()
	defer l.mu.Unlock()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if l.err == nil {
		l.err = ErrClosed
	}
	if uerr := dirlock.Unlock(l.lock); err == nil {
		err = uerr
	}
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}
