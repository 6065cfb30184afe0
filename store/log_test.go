package store

import (
	"errors"
	"testing"
	"time"

	"github.com/ternmq/mqtt/session"
)

var _ Store = (*Log)(nil)
var _ session.MarkStore = (*logSession)(nil)

// TestRoundTrip writes every kind of record, and checks that the state
// read back is the same before Close and after a reopen, and is what was
// written.
func TestRoundTrip(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncBatch, SyncInterval, SyncNever} {
		dir := t.TempDir()
		l := open(t, dir, Options{Sync: policy, Interval: time.Millisecond})
		a := mustSession(t, l, "alpha")
		b := mustSession(t, l, "beta")
		check(t, a.Subscribe("a/#", 1))
		check(t, a.Subscribe("a/+/b", 2))
		check(t, a.Subscribe("gone", 0))
		check(t, a.Unsubscribe("gone"))
		check(t, a.Subscribe("a/#", 2)) // replaces
		check(t, a.SaveMessage(&session.Message{Handle: 3, QoS: 1, Topic: []byte("a/x"), Payload: []byte("three")}))
		check(t, a.SaveMessage(&session.Message{Handle: 1, QoS: 2, Retain: true, Topic: []byte("a/y"), Payload: []byte("one")}))
		check(t, a.SaveMessage(&session.Message{Handle: 2, QoS: 2, Topic: []byte("a/z"), Payload: nil}))
		check(t, a.UpdateMessage(1, 7, session.StateReleased))
		check(t, a.UpdateMessage(3, 8, session.StatePublished))
		check(t, a.DeleteMessage(2))
		check(t, a.DeleteMessage(99)) // none: nothing
		check(t, a.SaveIncoming(session.Incoming{PacketID: 9, Tag: 20, Acked: true}))
		check(t, a.SaveIncoming(session.Incoming{PacketID: 4, Tag: 21}))
		check(t, a.SaveIncoming(session.Incoming{PacketID: 5, Tag: 19}))
		check(t, a.DeleteIncoming(5))
		check(t, a.SaveMarks(50, 60))
		check(t, a.SaveMarks(10, 10)) // lower: no change
		at := time.Unix(1700000000, 123456789)
		check(t, a.Disconnected(at))
		check(t, b.SaveMessage(&session.Message{Handle: 5, QoS: 1, Topic: []byte("b"), Payload: []byte("b5")}))
		check(t, b.SaveIncoming(session.Incoming{PacketID: 1, Tag: 70}))
		check(t, b.Clear())
		check(t, b.Disconnected(at))
		check(t, b.Connected())
		check(t, l.SetRetained(&Retained{Topic: []byte("r/1"), Payload: []byte("first"), QoS: 1}))
		check(t, l.SetRetained(&Retained{Topic: []byte("r/1"), Payload: []byte("second"), QoS: 2}))
		check(t, l.SetRetained(&Retained{Topic: []byte("r/2"), Payload: []byte("two")}))
		check(t, l.SetRetained(&Retained{Topic: []byte("r/3"), Payload: []byte("three")}))
		check(t, l.DeleteRetained([]byte("r/3")))
		check(t, l.DeleteRetained([]byte("r/none")))

		want := dump{
			Sessions: map[string]sessDump{
				"alpha": {
					Subs:     []Subscription{{"a/#", 2}, {"a/+/b", 2}},
					LastSeen: at.UnixNano(),
					Msgs: []session.Message{
						{Handle: 1, PacketID: 7, State: session.StateReleased, QoS: 2, Retain: true, Topic: []byte("a/y"), Payload: []byte("one")},
						{Handle: 3, PacketID: 8, State: session.StatePublished, QoS: 1, Topic: []byte("a/x"), Payload: []byte("three")},
					},
					In:         []session.Incoming{{PacketID: 9, Tag: 20, Acked: true}, {PacketID: 4, Tag: 21}},
					LastHandle: 50,
					LastTag:    60,
				},
				// Clear keeps the marks: the largest Handle and Tag stored.
				"beta": {LastHandle: 5, LastTag: 70},
			},
			Retained: map[string]Retained{
				"r/1": {Topic: []byte("r/1"), Payload: []byte("second"), QoS: 2},
				"r/2": {Topic: []byte("r/2"), Payload: []byte("two")},
			},
		}
		diffDump(t, want, loadDump(t, l))
		check(t, l.Sync())
		check(t, l.Close())
		l = open(t, dir, Options{Sync: policy})
		diffDump(t, want, loadDump(t, l))
		if st := l.Stats(); st.Sessions != 2 || st.Queued != 2 || st.Retained != 2 || st.TornBytes != 0 {
			t.Errorf("stats after reopen: %+v", st)
		}
		check(t, l.Close())
	}
}

// TestEmptyMessage stores a message with an empty topic and payload, the
// smallest record there is.
func TestEmptyMessage(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	s := mustSession(t, l, "")
	check(t, s.SaveMessage(&session.Message{Handle: 1, QoS: 1}))
	want := loadDump(t, l)
	check(t, l.Close())
	l = open(t, dir, Options{})
	defer l.Close()
	diffDump(t, want, loadDump(t, l))
	if len(want.Sessions[""].Msgs) != 1 {
		t.Fatalf("message lost: %+v", want)
	}
}

// TestDeleteSession: a deleted session is gone, its Session value refuses
// writes, and Session returns a new empty one for the same id.
func TestDeleteSession(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	s := mustSession(t, l, "c")
	check(t, s.Subscribe("x", 1))
	check(t, s.SaveMessage(&session.Message{Handle: 4, QoS: 1, Topic: []byte("x")}))
	check(t, s.SaveMarks(9, 9))
	check(t, s.Delete())
	if err := s.SaveMessage(&session.Message{Handle: 5, QoS: 1}); !errors.Is(err, errDeleted) {
		t.Fatalf("write after Delete: %v", err)
	}
	if d := loadDump(t, l); len(d.Sessions) != 0 {
		t.Fatalf("after Delete: %+v", d)
	}
	s = mustSession(t, l, "c")
	check(t, s.SaveIncoming(session.Incoming{PacketID: 1, Tag: 2}))
	want := dump{
		Sessions: map[string]sessDump{"c": {In: []session.Incoming{{PacketID: 1, Tag: 2}}, LastTag: 2}},
		Retained: map[string]Retained{},
	}
	diffDump(t, want, loadDump(t, l))
	check(t, l.Close())
	l = open(t, dir, Options{})
	defer l.Close()
	diffDump(t, want, loadDump(t, l))
}

// TestSessionReturnsStored: Session for a stored id returns its state.
func TestSessionReturnsStored(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	check(t, mustSession(t, l, "k").SaveMessage(&session.Message{Handle: 2, QoS: 2, Topic: []byte("t")}))
	check(t, l.Close())
	l = open(t, dir, Options{})
	defer l.Close()
	n := 0
	lh, _, err := mustSession(t, l, "k").Load(func(m *session.Message) error { n++; return nil }, func(session.Incoming) error { return nil })
	check(t, err)
	if n != 1 || lh != 2 {
		t.Fatalf("loaded %d messages, last handle %d", n, lh)
	}
}

// TestBadArguments: writes that cannot be stored are refused, and leave
// the log usable.
func TestBadArguments(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	defer l.Close()
	s := mustSession(t, l, "x")
	long := make([]byte, 65536)
	for name, err := range map[string]error{
		"qos 0":        s.SaveMessage(&session.Message{Handle: 1, QoS: 0}),
		"qos 3":        s.SaveMessage(&session.Message{Handle: 1, QoS: 3}),
		"long topic":   s.SaveMessage(&session.Message{Handle: 1, QoS: 1, Topic: long}),
		"bad state":    s.UpdateMessage(1, 1, session.State(9)),
		"sub qos 3":    s.Subscribe("f", 3),
		"long topic r": l.SetRetained(&Retained{Topic: long}),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	check(t, s.SaveMessage(&session.Message{Handle: 1, QoS: 1}))
	check(t, l.Sync())
}

// TestLocked: a second Open of the same directory fails while the first
// holds it.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
	check(t, l.Close())
	open(t, dir, Options{}).Close()
}

// TestClosed: the methods of a closed Log fail with ErrClosed.
func TestClosed(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	s := mustSession(t, l, "x")
	check(t, l.Close())
	check(t, l.Close())
	if err := s.Subscribe("f", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync after Close: %v", err)
	}
}
