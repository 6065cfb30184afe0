package fuzz_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
)

// FuzzStoreRecover feeds store.Open damaged logs. The first byte picks how:
//   - odd: the rest is the log file itself, arbitrary bytes. Open never
//     panics nor fails, and what it recovers is stable: opened again, the
//     log has the same state and nothing more to cut.
//   - even: the rest is a program of writes (and compactions and reopens),
//     applied to a Log and to a simple model of what it should hold. The
//     Log must hold the model's state; then the log file is cut or one of
//     its bytes changed at a fuzzed offset, and what Open recovers must be
//     the model's state after some prefix of the writes: the one after the
//     last record wholly before the damage. Never a record not written
//     whole.
func FuzzStoreRecover(f *testing.F) {
	for _, seed := range storeSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		if data[0]&1 == 1 {
			storeRaw(t, data[1:])
			return
		}
		if len(data) < 4 {
			return
		}
		storeProgram(t, data)
	})
}

func storeSeeds() [][]byte {
	prog := func(cut uint16, xor byte, ops ...byte) []byte {
		b := []byte{0, byte(cut >> 8), byte(cut), xor}
		return append(b, ops...)
	}
	all := []byte{
		opSSession, 0, opSSubscribe, 0x21, opSSave, 0x13, opSSave, 0x24, opSUpdate, 0x13,
		opSIncoming, 0x35, opSMarks, 0x77, opSRetain, 0x12, opSDisconnected, 0x05,
		opSSession, 1, opSSave, 0x41, opSDelMsg, 0x13, opSDelIn, 0x35, opSUnsubscribe, 0x21,
		opSConnected, 0x00, opSClear, 0x01, opSDelRetain, 0x12, opSDelete, 0x01, opSSave, 0x31,
	}
	seeds := [][]byte{
		{1},
		{1, 0, 0, 0, 9, 0, 0, 0, 0, 'C'},
		prog(0, 0),
		prog(0xffff, 0, all...),
		prog(40, 0, all...),
		prog(123, 0x20, all...),
		prog(7, 0x01, all...),
		prog(300, 0, append(append(slices.Clone(all), opSCompact, 0), all...)...),
		prog(200, 0x80, append(append(slices.Clone(all), opSReopen, 0), all...)...),
	}
	// A real log as raw bytes, with a torn last record.
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 5)
	b = binary.BigEndian.AppendUint32(b, 0)
	seeds = append(seeds, append([]byte{1}, append(b, 'S', 0, 0, 0)...))
	return seeds
}

// storeRaw opens arbitrary bytes as a log.
func storeRaw(t *testing.T, file []byte) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "log.0000000000000000"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := store.Open(dir, store.Options{Sync: store.SyncNever})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	first := storeDump(t, l)
	st := l.Stats()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st.TotalBytes+st.TornBytes != int64(len(file)) {
		t.Fatalf("%d bytes kept and %d cut of %d", st.TotalBytes, st.TornBytes, len(file))
	}
	l, err = store.Open(dir, store.Options{Sync: store.SyncNever})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer l.Close()
	if st := l.Stats(); st.TornBytes != 0 {
		t.Fatalf("second Open cut %d bytes more", st.TornBytes)
	}
	storeDiff(t, first, storeDump(t, l))
}

// The operations of a store program, each followed by an argument byte.
const (
	opSSession = iota
	opSSave
	opSUpdate
	opSDelMsg
	opSIncoming
	opSDelIn
	opSClear
	opSMarks
	opSSubscribe
	opSUnsubscribe
	opSDisconnected
	opSConnected
	opSDelete
	opSRetain
	opSDelRetain
	opSCompact
	opSReopen
	opSCount
)

// storeProgram runs the program in data[4:] and damages the log as
// data[1:4] say: at offset data[1:3] (modulo the size), cut it (data[3]
// 0) or xor the byte there with data[3].
func storeProgram(t *testing.T, data []byte) {
	dir := t.TempDir()
	opts := store.Options{Sync: store.SyncNever, CompactSize: 1 << 40}
	l, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	m := storeState{Sessions: map[string]storeSess{}, Retained: map[string]store.Retained{}}
	// The segment's size after each write since the last compaction, and
	// the model's state then.
	var snapBytes int64
	sizes := []int64{0}
	states := []storeState{m.clone()}
	step := func() {
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		size := l.Stats().TotalBytes - snapBytes
		if size != sizes[len(sizes)-1] {
			sizes = append(sizes, size)
			states = append(states, m.clone())
		} else {
			// The write changed nothing, so wrote no record.
			states[len(states)-1] = m.clone()
		}
	}
	sess := map[string]store.Session{}
	get := func(id string) store.Session {
		if s, ok := sess[id]; ok {
			return s
		}
		s, err := l.Session(id)
		if err != nil {
			t.Fatal(err)
		}
		sess[id] = s
		if _, ok := m.Sessions[id]; !ok {
			// A new session: its record on its own.
			m.Sessions[id] = storeSess{}
			step()
		}
		return s
	}
	prog := data[4:]
	for len(prog) >= 2 {
		op, arg := prog[0]%opSCount, prog[1]
		prog = prog[2:]
		id := string(rune('a' + arg%3))
		h := session.Handle(arg>>4&7 + 1)
		qos := 1 + arg>>2&1
		var err error
		switch op {
		case opSSession:
			get(id)
		case opSSave:
			msg := session.Message{Handle: h, PacketID: uint16(arg), State: session.State(arg >> 3 % 3), QoS: qos, Retain: arg&0x80 != 0,
				Topic: []byte(strings.Repeat("t", int(arg%5))), Payload: bytes.Repeat([]byte{arg}, int(arg%11))}
			err = get(id).SaveMessage(&msg)
			m.update(id, func(s *storeSess) {
				s.Msgs = slices.DeleteFunc(s.Msgs, func(o session.Message) bool { return o.Handle == h })
				s.Msgs = append(s.Msgs, msg)
				slices.SortFunc(s.Msgs, func(a, b session.Message) int { return int(a.Handle) - int(b.Handle) })
				s.LastHandle = max(s.LastHandle, h)
			})
		case opSUpdate:
			err = get(id).UpdateMessage(h, uint16(arg)+1, session.State(arg%3))
			m.update(id, func(s *storeSess) {
				for i := range s.Msgs {
					if s.Msgs[i].Handle == h {
						s.Msgs[i].PacketID, s.Msgs[i].State = uint16(arg)+1, session.State(arg%3)
					}
				}
			})
		case opSDelMsg:
			err = get(id).DeleteMessage(h)
			m.update(id, func(s *storeSess) {
				s.Msgs = slices.DeleteFunc(s.Msgs, func(o session.Message) bool { return o.Handle == h })
			})
		case opSIncoming:
			in := session.Incoming{PacketID: uint16(arg>>4) + 1, Tag: session.Tag(arg), Acked: arg&8 != 0}
			err = get(id).SaveIncoming(in)
			m.update(id, func(s *storeSess) {
				s.In = slices.DeleteFunc(s.In, func(o session.Incoming) bool { return o.PacketID == in.PacketID })
				s.In = append(s.In, in)
				s.LastTag = max(s.LastTag, in.Tag)
			})
		case opSDelIn:
			err = get(id).DeleteIncoming(uint16(arg>>4) + 1)
			m.update(id, func(s *storeSess) {
				s.In = slices.DeleteFunc(s.In, func(o session.Incoming) bool { return o.PacketID == uint16(arg>>4)+1 })
			})
		case opSClear:
			err = get(id).Clear()
			m.update(id, func(s *storeSess) { s.Msgs, s.In = nil, nil })
		case opSMarks:
			err = get(id).SaveMarks(session.Handle(arg>>4), session.Tag(arg&0xf))
			m.update(id, func(s *storeSess) {
				s.LastHandle = max(s.LastHandle, session.Handle(arg>>4))
				s.LastTag = max(s.LastTag, session.Tag(arg&0xf))
			})
		case opSSubscribe:
			filter := "f" + strings.Repeat("/+", int(arg>>4&3))
			err = get(id).Subscribe(filter, arg>>2&3%3)
			m.update(id, func(s *storeSess) {
				s.Subs = slices.DeleteFunc(s.Subs, func(o store.Subscription) bool { return o.Filter == filter })
				s.Subs = append(s.Subs, store.Subscription{Filter: filter, QoS: arg >> 2 & 3 % 3})
				slices.SortFunc(s.Subs, func(a, b store.Subscription) int { return strings.Compare(a.Filter, b.Filter) })
			})
		case opSUnsubscribe:
			filter := "f" + strings.Repeat("/+", int(arg>>4&3))
			err = get(id).Unsubscribe(filter)
			m.update(id, func(s *storeSess) {
				s.Subs = slices.DeleteFunc(s.Subs, func(o store.Subscription) bool { return o.Filter == filter })
			})
		case opSDisconnected:
			at := time.Unix(int64(arg)+1, int64(arg))
			err = get(id).Disconnected(at)
			m.update(id, func(s *storeSess) { s.LastSeen = at.UnixNano() })
		case opSConnected:
			err = get(id).Connected()
			m.update(id, func(s *storeSess) { s.LastSeen = 0 })
		case opSDelete:
			err = get(id).Delete()
			delete(sess, id)
			delete(m.Sessions, id)
		case opSRetain:
			topic := []byte{'r', '0' + arg%4}
			r := store.Retained{Topic: topic, Payload: bytes.Repeat([]byte{arg}, int(arg>>2)), QoS: arg >> 6 % 3}
			err = l.SetRetained(&r)
			m.Retained[string(topic)] = r
		case opSDelRetain:
			topic := []byte{'r', '0' + arg%4}
			err = l.DeleteRetained(topic)
			delete(m.Retained, string(topic))
		case opSCompact:
			if err := l.Compact(); err != nil {
				t.Fatal(err)
			}
			snapBytes = l.Stats().TotalBytes
			sizes, states = []int64{0}, []storeState{m.clone()}
			continue
		case opSReopen:
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if l, err = store.Open(dir, opts); err != nil {
				t.Fatal(err)
			}
			clear(sess)
			storeDiff(t, m, storeDump(t, l))
			continue
		}
		if err != nil {
			t.Fatalf("op %d %#x: %v", op, arg, err)
		}
		step()
	}
	storeDiff(t, m, storeDump(t, l))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Damage the segment, and reopen.
	segs, _ := filepath.Glob(filepath.Join(dir, "log.*"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	file, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(file)) != sizes[len(sizes)-1] {
		t.Fatalf("segment of %d bytes, %d written", len(file), sizes[len(sizes)-1])
	}
	off := int64(binary.BigEndian.Uint16(data[1:])) % (int64(len(file)) + 1)
	if x := data[3]; x == 0 || off == int64(len(file)) {
		file = file[:off]
	} else {
		file[off] ^= x
	}
	if err := os.WriteFile(segs[0], file, 0o644); err != nil {
		t.Fatal(err)
	}
	i := 0
	for i+1 < len(sizes) && sizes[i+1] <= off {
		i++
	}
	if l, err = store.Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	storeDiff(t, states[i], storeDump(t, l))
}

// storeState is what a Log holds, as its Load methods give it.
type storeState struct {
	Sessions map[string]storeSess
	Retained map[string]store.Retained
}

type storeSess struct {
	Subs       []store.Subscription
	LastSeen   int64
	Msgs       []session.Message
	In         []session.Incoming // in Tag order
	LastHandle session.Handle
	LastTag    session.Tag
}

func (m *storeState) update(id string, fn func(*storeSess)) {
	s := m.Sessions[id]
	fn(&s)
	slices.SortFunc(s.In, func(a, b session.Incoming) int { return int(a.Tag) - int(b.Tag) })
	for _, p := range []*[]session.Message{&s.Msgs} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	if len(s.In) == 0 {
		s.In = nil
	}
	if len(s.Subs) == 0 {
		s.Subs = nil
	}
	m.Sessions[id] = s
}

func (m storeState) clone() storeState {
	c := storeState{Sessions: map[string]storeSess{}, Retained: map[string]store.Retained{}}
	for id, s := range m.Sessions {
		s.Subs, s.Msgs, s.In = slices.Clone(s.Subs), slices.Clone(s.Msgs), slices.Clone(s.In)
		c.Sessions[id] = s
	}
	for k, r := range m.Retained {
		c.Retained[k] = r
	}
	return c
}

func storeDump(t *testing.T, l *store.Log) storeState {
	t.Helper()
	d := storeState{Sessions: map[string]storeSess{}, Retained: map[string]store.Retained{}}
	var ids []string
	err := l.Load(func(id string, subs []store.Subscription, lastSeen time.Time) error {
		s := storeSess{Subs: slices.Clone(subs)}
		if len(s.Subs) == 0 {
			s.Subs = nil
		}
		if !lastSeen.IsZero() {
			s.LastSeen = lastSeen.UnixNano()
		}
		if _, dup := d.Sessions[id]; dup {
			t.Fatalf("session %q loaded twice", id)
		}
		d.Sessions[id] = s
		ids = append(ids, id)
		return nil
	}, func(r *store.Retained) error {
		d.Retained[string(r.Topic)] = store.Retained{Topic: bytes.Clone(r.Topic), Payload: bytes.Clone(r.Payload), QoS: r.QoS}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		ss, err := l.Session(id)
		if err != nil {
			t.Fatal(err)
		}
		s := d.Sessions[id]
		s.LastHandle, s.LastTag, err = ss.Load(func(m *session.Message) error {
			c := *m
			c.Topic, c.Payload = bytes.Clone(m.Topic), bytes.Clone(m.Payload)
			s.Msgs = append(s.Msgs, c)
			return nil
		}, func(in session.Incoming) error {
			s.In = append(s.In, in)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		d.Sessions[id] = s
	}
	return d
}

// storeDiff compares states, with empty and nil byte slices alike.
func storeDiff(t *testing.T, want, got storeState) {
	t.Helper()
	if reflect.DeepEqual(want, got) {
		return
	}
	if d := cmp.Diff(want, got, cmp.Comparer(bytes.Equal)); d != "" {
		t.Fatalf("state differs (-want +got):\n%s", d)
	}
}
