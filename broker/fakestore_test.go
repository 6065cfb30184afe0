package broker_test

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
)

// fakeStore is a store.Store in memory for the broker's tests. It keeps
// every write in order and how many of them a Sync made durable: crash
// returns the store a restart after kill -9 would find (the synced writes
// only), restart the store after a clean stop (every write). It fails the
// test when it is misused: a write through a Session after its Delete, a
// second Session for an id still in use.
type fakeStore struct {
	t testing.TB

	mu     sync.Mutex
	ops    []fakeOp
	synced int            // ops[:synced] are durable
	syncs  int            // calls of Sync
	gen    map[string]int // generation of the Session handed out for an id
	ngen   int
	// beforeSync, when set, is called by Sync before it makes the writes
	// durable, without the lock.
	beforeSync func()
	// broken, once set by breakWith, is returned by every write and Sync,
	// which then change nothing: a disk that failed.
	broken error
}

// breakWith makes every later write and Sync fail with err.
func (f *fakeStore) breakWith(err error) {
	f.mu.Lock()
	f.broken = err
	f.mu.Unlock()
}

type opKind uint8

const (
	opSaveMessage opKind = iota + 1
	opUpdateMessage
	opDeleteMessage
	opSaveIncoming
	opDeleteIncoming
	opClear
	opMarks
	opSubscribe
	opUnsubscribe
	opConnected
	opDisconnected
	opDelete
	opSetRetained
	opDeleteRetained
)

type fakeOp struct {
	kind   opKind
	id     string // session; topic for retained
	msg    session.Message
	in     session.Incoming
	h      session.Handle
	tag    session.Tag
	pid    uint16
	state  session.State
	filter string
	qos    byte
	at     time.Time
	ret    store.Retained
}

// fakeState is the state the writes ops[:n] leave.
type fakeState struct {
	sessions map[string]*fakeSess
	retained map[string]store.Retained
}

type fakeSess struct {
	subs       map[string]byte
	msgs       map[session.Handle]session.Message
	in         map[uint16]session.Incoming
	lastHandle session.Handle
	lastTag    session.Tag
	lastSeen   time.Time
}

func newFakeStore(t testing.TB) *fakeStore {
	return &fakeStore{t: t, gen: make(map[string]int)}
}

// crash returns the store as found after a kill -9: the synced writes.
func (f *fakeStore) crash() *fakeStore {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fakeStore{t: f.t, ops: slices.Clone(f.ops[:f.synced]), synced: f.synced, gen: make(map[string]int)}
}

// restart returns the store as found after a clean stop: every write.
func (f *fakeStore) restart() *fakeStore {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fakeStore{t: f.t, ops: slices.Clone(f.ops), synced: len(f.ops), gen: make(map[string]int)}
}

// durable returns the state of the synced writes.
func (f *fakeStore) durable() *fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return replay(f.ops[:f.synced])
}

// all returns the state of every write.
func (f *fakeStore) all() *fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return replay(f.ops)
}

// wrote reports whether any write concerns session id.
func (f *fakeStore) wrote(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range f.ops {
		if op.id == id && op.kind < opSetRetained {
			return true
		}
	}
	return false
}

func replay(ops []fakeOp) *fakeState {
	st := &fakeState{sessions: make(map[string]*fakeSess), retained: make(map[string]store.Retained)}
	sess := func(id string) *fakeSess {
		s := st.sessions[id]
		if s == nil {
			s = &fakeSess{subs: make(map[string]byte), msgs: make(map[session.Handle]session.Message), in: make(map[uint16]session.Incoming)}
			st.sessions[id] = s
		}
		return s
	}
	for _, op := range ops {
		switch op.kind {
		case opSetRetained:
			st.retained[op.id] = op.ret
			continue
		case opDeleteRetained:
			delete(st.retained, op.id)
			continue
		case opDelete:
			delete(st.sessions, op.id)
			continue
		}
		s := sess(op.id)
		switch op.kind {
		case opSaveMessage:
			s.msgs[op.msg.Handle] = op.msg
			s.lastHandle = max(s.lastHandle, op.msg.Handle)
		case opUpdateMessage:
			if m, ok := s.msgs[op.h]; ok {
				m.PacketID, m.State = op.pid, op.state
				s.msgs[op.h] = m
			}
		case opDeleteMessage:
			delete(s.msgs, op.h)
		case opSaveIncoming:
			s.in[op.in.PacketID] = op.in
			s.lastTag = max(s.lastTag, op.in.Tag)
		case opDeleteIncoming:
			delete(s.in, op.pid)
		case opClear:
			clear(s.msgs)
			clear(s.in)
		case opMarks:
			s.lastHandle = max(s.lastHandle, op.h)
			s.lastTag = max(s.lastTag, op.tag)
		case opSubscribe:
			s.subs[op.filter] = op.qos
		case opUnsubscribe:
			delete(s.subs, op.filter)
		case opConnected:
			s.lastSeen = time.Time{}
		case opDisconnected:
			s.lastSeen = op.at
		}
	}
	return st
}

// payloads returns the payloads of a session's stored messages, in Handle
// order, with their state.
func (s *fakeSess) payloads() []string {
	var hs []session.Handle
	for h := range s.msgs {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	var out []string
	for _, h := range hs {
		out = append(out, fmt.Sprintf("%s/%v", s.msgs[h].Payload, s.msgs[h].State))
	}
	return out
}

func (f *fakeStore) add(op fakeOp) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken != nil {
		return f.broken
	}
	f.ops = append(f.ops, op)
	return nil
}

func (f *fakeStore) Load(sess func(string, []store.Subscription, time.Time) error, ret func(*store.Retained) error) error {
	st := f.all()
	ids := make([]string, 0, len(st.sessions))
	for id := range st.sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := st.sessions[id]
		var subs []store.Subscription
		for f, q := range s.subs {
			subs = append(subs, store.Subscription{Filter: f, QoS: q})
		}
		if err := sess(id, subs, s.lastSeen); err != nil {
			return err
		}
	}
	for _, r := range st.retained {
		if err := ret(&r); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeStore) Session(id string) (store.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken != nil {
		return nil, f.broken
	}
	if f.gen[id] > 0 {
		f.t.Errorf("fakeStore: second Session(%q) before its Delete", id)
	}
	f.ngen++
	f.gen[id] = f.ngen
	return &fakeSession{f: f, id: id, gen: f.ngen}, nil
}

func (f *fakeStore) SetRetained(m *store.Retained) error {
	r := store.Retained{Topic: slices.Clone(m.Topic), Payload: slices.Clone(m.Payload), QoS: m.QoS}
	return f.add(fakeOp{kind: opSetRetained, id: string(m.Topic), ret: r})
}

func (f *fakeStore) DeleteRetained(topic []byte) error {
	return f.add(fakeOp{kind: opDeleteRetained, id: string(topic)})
}

func (f *fakeStore) Sync() error {
	if f.beforeSync != nil {
		f.beforeSync()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken != nil {
		return f.broken
	}
	f.synced = len(f.ops)
	f.syncs++
	return nil
}

func (f *fakeStore) Close() error { return f.Sync() }

// Groups are not modelled: the fake's crash keeps the synced writes, and
// the broker syncs only between routings' groups. store.Log's own tests
// and the broker's crash tests (TestBridgeCrashOpenGroup, TestBridgeKill)
// check groups.
func (f *fakeStore) Begin() store.Group { return 0 }
func (f *fakeStore) End(store.Group)    {}

// fakeSession is the Session of one id, until its Delete.
type fakeSession struct {
	f   *fakeStore
	id  string
	gen int
}

func (s *fakeSession) add(op fakeOp) error {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken != nil {
		return f.broken
	}
	if f.gen[s.id] != s.gen {
		f.t.Errorf("fakeStore: write %d to session %q after its Delete", op.kind, s.id)
		return nil
	}
	op.id = s.id
	f.ops = append(f.ops, op)
	if op.kind == opDelete {
		delete(f.gen, s.id)
	}
	return nil
}

func (s *fakeSession) Load(msg func(*session.Message) error, in func(session.Incoming) error) (session.Handle, session.Tag, error) {
	st := s.f.all().sessions[s.id]
	if st == nil {
		return 0, 0, nil
	}
	var hs []session.Handle
	for h := range st.msgs {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	for _, h := range hs {
		m := st.msgs[h]
		if err := msg(&m); err != nil {
			return 0, 0, err
		}
	}
	for _, i := range st.in {
		if err := in(i); err != nil {
			return 0, 0, err
		}
	}
	return st.lastHandle, st.lastTag, nil
}

func (s *fakeSession) SaveMessage(m *session.Message) error {
	c := *m
	c.Topic, c.Payload = slices.Clone(m.Topic), slices.Clone(m.Payload)
	return s.add(fakeOp{kind: opSaveMessage, msg: c})
}

func (s *fakeSession) UpdateMessage(h session.Handle, id uint16, st session.State) error {
	return s.add(fakeOp{kind: opUpdateMessage, h: h, pid: id, state: st})
}

func (s *fakeSession) DeleteMessage(h session.Handle) error {
	return s.add(fakeOp{kind: opDeleteMessage, h: h})
}

func (s *fakeSession) SaveIncoming(in session.Incoming) error {
	return s.add(fakeOp{kind: opSaveIncoming, in: in})
}

func (s *fakeSession) DeleteIncoming(id uint16) error {
	return s.add(fakeOp{kind: opDeleteIncoming, pid: id})
}

func (s *fakeSession) Clear() error { return s.add(fakeOp{kind: opClear}) }

func (s *fakeSession) SaveMarks(h session.Handle, t session.Tag) error {
	return s.add(fakeOp{kind: opMarks, h: h, tag: t})
}

func (s *fakeSession) Sync() error { return s.f.Sync() }

func (s *fakeSession) Subscribe(filter string, qos byte) error {
	return s.add(fakeOp{kind: opSubscribe, filter: filter, qos: qos})
}

func (s *fakeSession) Unsubscribe(filter string) error {
	return s.add(fakeOp{kind: opUnsubscribe, filter: filter})
}

func (s *fakeSession) Disconnected(at time.Time) error {
	return s.add(fakeOp{kind: opDisconnected, at: at})
}

func (s *fakeSession) Connected() error { return s.add(fakeOp{kind: opConnected}) }

func (s *fakeSession) Delete() error { return s.add(fakeOp{kind: opDelete}) }

var _ store.Store = (*fakeStore)(nil)
