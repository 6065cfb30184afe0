package session

import (
	"errors"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

func TestErrorText(t *testing.T) {
	h := connected(t, Config{Role: Server})
	err := h.s.Receive(&packet.Connect{ClientID: []byte("x")}, h.now)
	const want = "session: CONNECT: protocol violation: second CONNECT on a connection [MQTT-3.1.0-2]"
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if !errors.Is(err, packet.ErrProtocol) {
		t.Fatal("a session violation is not a packet.ErrProtocol")
	}
	for k := EventMessage; k <= EventDisconnect; k++ {
		if s := k.String(); s == "" || s == "EventKind(?)" {
			t.Errorf("EventKind %d has no name", k)
		}
	}
	for _, st := range []State{StateQueued, StatePublished, StateReleased} {
		if st.String() == "State(?)" {
			t.Errorf("State %d has no name", st)
		}
	}
}

func TestLoadRejectsBadState(t *testing.T) {
	tests := []struct {
		name string
		msgs []Message
		in   []Incoming
	}{
		{"QoS 0 message", []Message{{Handle: 1, QoS: 0, Topic: []byte("t")}}, nil},
		{"in flight without an id", []Message{{Handle: 1, QoS: 1, State: StatePublished, Topic: []byte("t")}}, nil},
		{"id twice", []Message{{Handle: 1, QoS: 1, State: StatePublished, PacketID: 3, Topic: []byte("t")},
			{Handle: 2, QoS: 2, State: StatePublished, PacketID: 3, Topic: []byte("t")}}, nil},
		{"QoS 1 released", []Message{{Handle: 1, QoS: 1, State: StateReleased, PacketID: 3, Topic: []byte("t")}}, nil},
		{"unknown state", []Message{{Handle: 1, QoS: 1, State: 7, PacketID: 3, Topic: []byte("t")}}, nil},
		{"incoming id 0", nil, []Incoming{{PacketID: 0, Tag: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := NewMemoryStore()
			for i := range tt.msgs {
				st.SaveMessage(&tt.msgs[i])
			}
			for _, in := range tt.in {
				st.SaveIncoming(in)
			}
			if _, err := New(Config{Role: Client, Store: st}); err == nil {
				t.Fatal("New accepted a store in a state no session writes")
			}
		})
	}
}

func TestFileStoreCompact(t *testing.T) {
	dir := t.TempDir()
	fs, err := OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := connected(t, Config{Role: Client, Store: fs})
	h.publish(2, "a")
	h.publish(1, "b")
	h.out()
	h.recv(&packet.Pubrec{PacketID: 1})
	h.recv(pub(2, 4, false, "in"))
	if err := fs.Compact(); err != nil {
		t.Fatal(err)
	}
	h.publish(1, "c") // written after the compaction, never handed out
	fs.Close()
	if err := fs.SaveMessage(&Message{Handle: 99, QoS: 1}); err == nil {
		t.Fatal("a closed store accepted a write")
	}
	fs, err = OpenFileStore(dir, FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	h2 := newHarness(t, Config{Role: Client, Store: fs})
	eq(t, "resent", h2.connect(false, true), "PUBREL 1", "PUBLISH q1 id2 dup b", "PUBLISH q1 id3 dup c")
	if evs := h2.recv(pub(2, 4, true, "in")); len(evs) != 0 {
		t.Fatal("incoming exchange lost by compaction")
	}
}
