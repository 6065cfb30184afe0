package session

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// stores runs f with each Store, made afresh, and a function that opens the
// same store again as a restarted process would.
func stores(t *testing.T, f func(t *testing.T, open func() Store)) {
	t.Run("memory", func(t *testing.T) {
		m := NewMemoryStore()
		f(t, func() Store { return m })
	})
	for _, sp := range []SyncPolicy{SyncAlways, SyncBatch, SyncNever} {
		t.Run("file/"+[]string{"always", "batch", "never"}[sp], func(t *testing.T) {
			dir := t.TempDir()
			var last *FileStore
			t.Cleanup(func() { last.Close() })
			f(t, func() Store {
				if last != nil {
					last.Close() // a restart: the old process is gone
				}
				fs, err := OpenFileStore(dir, FileStoreOptions{Sync: sp})
				if err != nil {
					t.Fatal(err)
				}
				last = fs
				return fs
			})
		})
	}
}

func TestStoreRestart(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		h := connected(t, Config{Role: Client, Store: open(), MaxInflight: 3})
		h.publish(1, "a")
		h.publish(2, "b")
		h.publish(2, "c")
		h.publish(1, "d") // queued: the window is full
		h.out()
		h.recv(&packet.Pubrec{PacketID: 3})
		h.recv(pub(2, 9, false, "in"))
		h.recv(pub(1, 5, false, "in1")) // QoS 1 keeps nothing
		h.publish(1, "x")
		h.out()
		h.recv(&packet.Puback{PacketID: 1}) // admits d
		h.out()

		// The process dies; a new one loads the same store.
		h2 := newHarness(t, Config{Role: Client, Store: open(), MaxInflight: 3})
		if h2.s.Inflight() != 3 || h2.s.Queued() != 1 || h2.s.LastHandle() != 5 {
			t.Fatalf("after restart: inflight %d queued %d last handle %d", h2.s.Inflight(), h2.s.Queued(), h2.s.LastHandle())
		}
		// Resent with their original ids, in order [MQTT-4.4.0-1] [MQTT-4.6.0-1].
		eq(t, "resent", h2.connect(false, true), "PUBLISH q2 id2 dup b", "PUBREL 3", "PUBLISH q1 id4 dup d")
		// The incoming QoS 2 exchange survived: no second delivery [MQTT-4.3.3-2].
		if evs := h2.recv(pub(2, 9, true, "in")); len(evs) != 0 {
			t.Fatalf("delivered twice across a restart: %v", kinds(evs))
		}
		eq(t, "sent", h2.out(), "PUBREC 9")
		// Handles and tags go on from where they were.
		if hd := h2.publish(1, "y"); hd != 6 {
			t.Fatalf("handle after restart = %d, want 6", hd)
		}
		// Tags too, QoS 1 tags included, which are not stored but reserved.
		if evs := h2.recv(pub(2, 10, false, "in2")); len(evs) != 1 || evs[0].Tag <= 2 {
			t.Fatalf("tag after restart: %+v", evs)
		}
		h2.recv(&packet.Pubcomp{PacketID: 3})
		h2.recv(&packet.Pubrel{PacketID: 9})
		h2.out()

		h3 := newHarness(t, Config{Role: Client, Store: open(), MaxInflight: 3})
		// The PUBCOMP admitted x into the window; y waits.
		if h3.s.Inflight() != 3 || h3.s.Queued() != 1 {
			t.Fatalf("after second restart: inflight %d queued %d", h3.s.Inflight(), h3.s.Queued())
		}
		eq(t, "resent", h3.connect(false, true), "PUBLISH q2 id2 dup b", "PUBLISH q1 id4 dup d", "PUBLISH q1 id5 dup x")
		if kinds(h3.recv(pub(2, 9, false, "new"))) == "" {
			t.Fatal("a released id was still taken for a duplicate")
		}
	})
}

func TestStoreManualAckRedelivery(t *testing.T) {
	// With ManualAck, a QoS 2 message stored but never acknowledged before a
	// restart is delivered again with its tag, so that an application that
	// records tags processes it exactly once.
	stores(t, func(t *testing.T, open func() Store) {
		h := connected(t, Config{Role: Client, Store: open(), ManualAck: true})
		evs := h.recv(pub(2, 4, false, "m"))
		tag := evs[0].Tag
		eq(t, "sent", h.out())
		h2 := newHarness(t, Config{Role: Client, Store: open(), ManualAck: true})
		h2.connect(false, true)
		evs = h2.recv(pub(2, 4, true, "m"))
		if len(evs) != 1 || evs[0].Tag != tag {
			t.Fatalf("redelivery: %+v, want tag %d", evs, tag)
		}
		if evs := h2.recv(pub(2, 4, true, "m")); len(evs) != 0 {
			t.Fatal("delivered a third time")
		}
		h2.s.Ack(tag)
		eq(t, "sent", h2.out(), "PUBREC 4")
	})
}

// With ManualAck, a QoS 2 message the application acknowledged is stored
// as such before its PUBREC leaves: if the process dies before the PUBREC
// reaches the peer, the peer's resend gets the PUBREC and does not reach
// the application a second time [MQTT-4.3.3-2]. Before, the Ack was kept
// in memory only, and the message was delivered again after the restart.
func TestStoreManualAckAcked(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		h := connected(t, Config{Role: Client, Store: open(), ManualAck: true})
		evs := h.recv(pub(2, 4, false, "m"))
		if err := h.s.Ack(evs[0].Tag); err != nil {
			t.Fatal(err)
		}
		eq(t, "sent", h.out(), "PUBREC 4") // lost with the process
		h2 := newHarness(t, Config{Role: Client, Store: open(), ManualAck: true})
		h2.connect(false, true)
		if evs := h2.recv(pub(2, 4, true, "m")); len(evs) != 0 {
			t.Fatalf("acknowledged, then delivered again after a restart: %v", kinds(evs))
		}
		eq(t, "sent", h2.out(), "PUBREC 4")
		h2.recv(&packet.Pubrel{PacketID: 4})
		eq(t, "sent", h2.out(), "PUBCOMP 4")
	})
}

// A failed write of an Ack (ManualAck, QoS 2) is reported by the next
// AppendOutgoing, which hands out nothing: the PUBREC must not leave
// unrecorded. Ack's caller, perhaps done with the message, is not told.
func TestStoreAckWriteFails(t *testing.T) {
	fs := &failStore{Store: NewMemoryStore(), n: 1} // the receipt is stored, the Ack not
	h := connected(t, Config{Role: Client, Store: fs, ManualAck: true})
	evs := h.recv(pub(2, 4, false, "m"))
	if err := h.s.Ack(evs[0].Tag); err != nil {
		t.Fatalf("Ack = %v", err)
	}
	if out, err := h.s.AppendOutgoing(nil, h.now); !errors.Is(err, errDisk) || len(out) != 0 {
		t.Fatalf("AppendOutgoing = %x, %v; want nothing and the store's error", out, err)
	}
}

func TestStoreCleanSession(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		st := open()
		h := connected(t, Config{Role: Server, Store: st})
		h.publish(1, "a")
		h.recv(pub(2, 1, false, "in"))
		h.out()
		h.s.Disconnected()
		h.s.Accept(&packet.Connect{ClientID: []byte("c"), CleanSession: true}, false, h.now)
		h.out()
		h.s.Disconnected()
		h2 := newHarness(t, Config{Role: Server, Store: open()})
		if h2.s.Inflight() != 0 || h2.s.Queued() != 0 || len(h2.s.in) != 0 {
			t.Fatal("state kept in the store after a clean session")
		}
		if h2.s.LastHandle() != 1 {
			t.Fatalf("last handle %d after Clear, want 1", h2.s.LastHandle())
		}
	})
}

// failStore fails every write after the first n.
type failStore struct {
	Store
	n int
}

var errDisk = errors.New("disk on fire")

func (f *failStore) ok() bool { f.n--; return f.n >= 0 }
func (f *failStore) SaveMessage(m *Message) error {
	if !f.ok() {
		return errDisk
	}
	return f.Store.SaveMessage(m)
}
func (f *failStore) UpdateMessage(h Handle, id uint16, st State) error {
	if !f.ok() {
		return errDisk
	}
	return f.Store.UpdateMessage(h, id, st)
}
func (f *failStore) SaveIncoming(in Incoming) error {
	if !f.ok() {
		return errDisk
	}
	return f.Store.SaveIncoming(in)
}

func TestStoreWriteFails(t *testing.T) {
	fs := &failStore{Store: NewMemoryStore(), n: 0}
	h := connected(t, Config{Role: Client, Store: fs})
	if _, err := h.s.Publish(pub(1, 0, false, "a")); !errors.Is(err, errDisk) {
		t.Fatalf("Publish = %v, want the store's error", err)
	}
	if h.s.Inflight() != 0 || h.s.LastHandle() != 0 {
		t.Fatal("message kept although the store refused it")
	}
	eq(t, "sent", h.out())
	// An incoming QoS 2 message that cannot be stored is not delivered nor
	// acknowledged: the peer will send it again. Receive returns the error,
	// on which the caller closes the connection [MQTT-4.8.0-2].
	if err := h.s.Receive(pub(2, 1, false, "in"), h.now); !errors.Is(err, errDisk) {
		t.Fatalf("Receive = %v, want the store's error", err)
	}
	if evs := h.events(); len(evs) != 0 {
		t.Fatalf("events: %v", kinds(evs))
	}
	eq(t, "sent", h.out())
	fs.n = 1
	h.publish(1, "b")
	eq(t, "sent", h.out(), "PUBLISH q1 id2 b")
}

func TestFileStoreTornTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, logName)
	write := func() {
		fs, err := OpenFileStore(dir, FileStoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		for i := 1; i <= 3; i++ {
			if err := fs.SaveMessage(&Message{Handle: Handle(i), QoS: 1, Topic: []byte("t"), Payload: bytes.Repeat([]byte{byte(i)}, 100)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	load := func(fs *FileStore) []Handle {
		var hs []Handle
		_, _, err := fs.Load(func(m *Message) error {
			if len(m.Payload) != 100 || m.Payload[0] != byte(m.Handle) {
				t.Fatalf("message %d corrupt", m.Handle)
			}
			hs = append(hs, m.Handle)
			return nil
		}, func(Incoming) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	whole, _ := os.ReadFile(func() string { write(); return path }())
	recLen := len(whole) / 3
	damage := map[string]func([]byte) []byte{
		"cut in the body":   func(b []byte) []byte { return b[:len(b)-10] },
		"cut in the header": func(b []byte) []byte { return b[:2*recLen+3] },
		"flipped bit":       func(b []byte) []byte { b[len(b)-5] ^= 0x10; return b },
		"zeroed tail":       func(b []byte) []byte { return append(b[:2*recLen], make([]byte, recLen)...) },
		"garbage appended":  func(b []byte) []byte { return append(b, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3) },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			os.Remove(path)
			write()
			b, _ := os.ReadFile(path)
			os.WriteFile(path, f(b), 0o644)
			fs, err := OpenFileStore(dir, FileStoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := 2
			if name == "garbage appended" {
				want = 3
			}
			if hs := load(fs); len(hs) != want {
				t.Fatalf("loaded %v, want the first %d records", hs, want)
			}
			// New records after the cut are read back too.
			if err := fs.SaveMessage(&Message{Handle: 9, QoS: 1, Topic: []byte("t"), Payload: bytes.Repeat([]byte{9}, 100)}); err != nil {
				t.Fatal(err)
			}
			fs.Close()
			fs, _ = OpenFileStore(dir, FileStoreOptions{})
			defer fs.Close()
			if hs := load(fs); len(hs) != want+1 || hs[want] != 9 {
				t.Fatalf("after a new write: %v", hs)
			}
		})
	}
}

// A record damaged in the middle of the log cuts the log there, with the
// whole records after it (a crash tears only the end, but recovery cannot
// tell a damaged disk from a torn write the disk wrote out of order); the
// bytes cut are kept beside the log, whole. Before, they were destroyed.
func TestFileStoreCutKeptAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, logName)
	fs, err := OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if err := fs.SaveMessage(&Message{Handle: Handle(i), QoS: 1, Topic: []byte("t"), Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	fs.Close()
	b, _ := os.ReadFile(path)
	rec := len(b) / 10
	b[2*rec+recHeader+3] ^= 0x40 // in the third record
	os.WriteFile(path, b, 0o644)
	fs, err = OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if got := fs.msgs; len(got) != 2 {
		t.Fatalf("%d messages loaded, want the 2 before the damage", len(got))
	}
	kept, err := os.ReadFile(fmt.Sprintf("%s.cut-%d", path, 2*rec))
	if err != nil || !bytes.Equal(kept, b[2*rec:]) {
		t.Fatalf("kept %d bytes, %v; want the %d bytes cut", len(kept), err, len(b)-2*rec)
	}
}

// A directory is one FileStore's at a time: a second opener gets
// ErrLocked, not a store whose writes the first one's overwrite (two
// clients on one directory lost half their messages, with no error).
func TestFileStoreLocked(t *testing.T) {
	dir := t.TempDir()
	fs, err := OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileStore(dir, FileStoreOptions{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenFileStore = %v, want ErrLocked", err)
	}
	fs.Close()
	fs, err = OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatalf("OpenFileStore after Close: %v", err)
	}
	fs.Close()
}

func TestFileStoreCompaction(t *testing.T) {
	dir := t.TempDir()
	// SyncNever: compaction works the same, without 10,000 fsyncs.
	fs, err := OpenFileStore(dir, FileStoreOptions{CompactSize: 4096, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	h := connected(t, Config{Role: Server, Store: fs})
	h.publish(1, "kept")
	h.out()
	for i := 0; i < 2000; i++ {
		h.publish(2, "x")
		h.recv(pub(2, 7, false, "in"))
		h.out()
		h.recv(&packet.Pubrec{PacketID: uint16(i + 2)})
		h.recv(&packet.Pubrel{PacketID: 7})
		h.out()
		h.recv(&packet.Pubcomp{PacketID: uint16(i + 2)})
	}
	h.recv(pub(2, 8, false, "open"))
	fi, err := os.Stat(filepath.Join(dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 3*4096 {
		t.Fatalf("log is %d bytes after compactions, want at most %d", fi.Size(), 3*4096)
	}
	fs.Close()
	fs, err = OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	h2 := newHarness(t, Config{Role: Server, Store: fs})
	if h2.s.Inflight() != 1 || len(h2.s.in) != 1 || h2.s.LastHandle() != 2001 || h2.s.lastTag < 2001 {
		t.Fatalf("after compaction: inflight %d incoming %d last handle %d last tag %d",
			h2.s.Inflight(), len(h2.s.in), h2.s.LastHandle(), h2.s.lastTag)
	}
	eq(t, "resent", h2.connect(false, true), "PUBLISH q1 id1 dup kept")
}

func TestFileStoreCompactionLiveIncoming(t *testing.T) {
	// Live incoming exchanges count as live state: a log holding thousands
	// of them is not rewritten at every write.
	fs, err := OpenFileStore(t.TempDir(), FileStoreOptions{CompactSize: 4096, Sync: SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	for id := 1; id <= 3000; id++ {
		if err := fs.SaveIncoming(Incoming{PacketID: uint16(id), Tag: Tag(id)}); err != nil {
			t.Fatal(err)
		}
	}
	before := fs.compacts
	for i := 0; i < 1000; i++ {
		fs.SaveMessage(&Message{Handle: Handle(i + 1), QoS: 1, Topic: []byte("t")})
		fs.DeleteMessage(Handle(i + 1))
	}
	if n := fs.compacts - before; n > 3 {
		t.Fatalf("%d compactions for 2000 small writes over 60 KB of live state", n)
	}
	var n int
	if _, _, err := fs.Load(func(*Message) error { return nil }, func(Incoming) error { n++; return nil }); err != nil || n != 3000 {
		t.Fatalf("loaded %d incoming exchanges, err %v", n, err)
	}
}
