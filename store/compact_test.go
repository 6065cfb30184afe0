package store

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ternmq/mqtt/session"
)

// churn makes messages come and go in n sessions, leaving a few queued in
// each, so that most of the log is dead.
func churn(t testing.TB, l *Log, sessions []Session, rounds int, rng *rand.Rand) {
	t.Helper()
	payload := make([]byte, 64)
	for r := 0; r < rounds; r++ {
		for i, s := range sessions {
			h := session.Handle(r + 1)
			rng.Read(payload)
			check(t, s.SaveMessage(&session.Message{Handle: h, QoS: byte(1 + r%2), Topic: []byte(fmt.Sprintf("t/%d", i)), Payload: payload}))
			check(t, s.UpdateMessage(h, uint16(r%65535+1), session.StatePublished))
			if r%5 != 0 {
				check(t, s.DeleteMessage(h))
			}
			check(t, s.SaveIncoming(session.Incoming{PacketID: uint16(r%7 + 1), Tag: session.Tag(r + 1)}))
			if r%3 == 0 {
				check(t, s.DeleteIncoming(uint16(r%7+1)))
			}
		}
		check(t, l.SetRetained(&Retained{Topic: []byte(fmt.Sprintf("r/%d", r%10)), Payload: payload[:r%64], QoS: byte(r % 3)}))
		if r%4 == 0 {
			check(t, l.Sync())
		}
	}
}

func TestCompactPreservesState(t *testing.T) {
	for _, policy := range []SyncPolicy{SyncBatch, SyncNever} {
		dir := t.TempDir()
		l := open(t, dir, Options{Sync: policy, CompactSize: 1 << 40}) // no automatic compaction
		rng := rand.New(rand.NewSource(1))
		var ss []Session
		for i := range 20 {
			s := mustSession(t, l, fmt.Sprintf("client-%d", i))
			check(t, s.Subscribe(fmt.Sprintf("t/%d/#", i), byte(i%3)))
			ss = append(ss, s)
		}
		check(t, ss[3].Disconnected(timeAt(5)))
		churn(t, l, ss, 200, rng)
		check(t, ss[7].Delete())
		before := loadDump(t, l)
		st := l.Stats()
		check(t, l.Compact())
		after := l.Stats()
		diffDump(t, before, loadDump(t, l))
		if after.Compactions != 1 || after.TotalBytes >= st.TotalBytes/2 {
			t.Errorf("compaction: before %+v, after %+v", st, after)
		}
		if after.TotalBytes != after.LiveBytes {
			t.Errorf("after compaction, %d bytes on disk for %d live", after.TotalBytes, after.LiveBytes)
		}
		// Writes go on after the compaction, and a second one.
		churn(t, l, ss[:5], 20, rng)
		check(t, l.Compact())
		churn(t, l, ss[:5], 3, rng)
		before = loadDump(t, l)
		check(t, l.Close())
		l = open(t, dir, Options{Sync: policy})
		diffDump(t, before, loadDump(t, l))
		if n := len(logFiles(t, dir)); n != 1 {
			t.Errorf("%d segments after compactions", n)
		}
		check(t, l.Close())
	}
}

// TestCompactAuto: the log compacts itself as it grows, and recovery reads
// a bounded amount.
func TestCompactAuto(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{Sync: SyncNever, CompactSize: 64 << 10})
	var ss []Session
	for i := range 10 {
		ss = append(ss, mustSession(t, l, fmt.Sprintf("c%d", i)))
	}
	churn(t, l, ss, 1000, rand.New(rand.NewSource(2)))
	before := loadDump(t, l)
	check(t, l.Close())
	st := l.Stats()
	if st.Compactions == 0 {
		t.Fatalf("no compaction: %+v", st)
	}
	var size int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		check(t, err)
		size += fi.Size()
	}
	if limit := max(3*st.LiveBytes, 3*(64<<10)); size > limit {
		t.Errorf("%d bytes on disk for %d live bytes", size, st.LiveBytes)
	}
	l = open(t, dir, Options{Sync: SyncNever})
	defer l.Close()
	diffDump(t, before, loadDump(t, l))
	t.Logf("%d compactions, %d bytes on disk, %d live", st.Compactions, size, st.LiveBytes)
}

// TestCompactConcurrent compacts while writers write and sync: the state
// is the same as without compaction, before and after a reopen.
func TestCompactConcurrent(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{CompactSize: 32 << 10})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := mustSession(t, l, fmt.Sprintf("w%d", w))
			churn(t, l, []Session{s}, 300, rand.New(rand.NewSource(int64(w))))
			if w == 3 {
				check(t, s.Delete())
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			check(t, l.Compact())
		}
	}()
	wg.Wait()
	// Close would stop a compaction under way and leave its files as they
	// were.
	waitCompactions(l)
	before := loadDump(t, l)
	if _, ok := before.Sessions["w3"]; ok || len(before.Sessions) != 3 {
		t.Fatalf("sessions: %v", before.Sessions)
	}
	check(t, l.Close())
	l = open(t, dir, Options{})
	defer l.Close()
	diffDump(t, before, loadDump(t, l))
	if st := l.Stats(); st.TotalBytes > max(32<<10, 2*st.LiveBytes) {
		t.Errorf("reopened: %+v", st)
	}
}

// waitCompactions returns when no compaction is under way.
func waitCompactions(l *Log) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.compacting {
		l.cond.Wait()
	}
}

// TestCompactAgain: writes made during a compaction that take the files
// past the limit start another compaction when it ends, with no write
// after it.
func TestCompactAgain(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{Sync: SyncNever, CompactSize: 16 << 10})
	defer l.Close()
	s := mustSession(t, l, "a")
	churn(t, l, []Session{s}, 20, rand.New(rand.NewSource(1)))
	l.chunk = 1
	once := false
	l.afterChunk = func() {
		if !once {
			once = true
			churn(t, l, []Session{s}, 200, rand.New(rand.NewSource(2)))
		}
	}
	check(t, l.Compact())
	waitCompactions(l)
	st := l.Stats()
	if st.Compactions < 2 || st.TotalBytes > max(16<<10, 2*st.LiveBytes) {
		t.Errorf("after the writes: %+v", st)
	}
}

// TestCompactInterleaved writes between the chunks of a snapshot, one
// session per chunk, to sessions already in it and to sessions not yet:
// every kind of write, a Clear, a session deleted and made again with the
// same id, a new session. The new segment replays over the snapshot to the
// same state, before and after a reopen.
func TestCompactInterleaved(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{CompactSize: 1 << 40})
	ss := map[string]Session{}
	for _, id := range []string{"a", "b", "c", "d", "e", "g"} {
		s := mustSession(t, l, id)
		ss[id] = s
		check(t, s.Subscribe(id+"/#", 1))
		for h := range session.Handle(4) {
			check(t, s.SaveMessage(&session.Message{Handle: h + 1, QoS: 2, Topic: []byte(id), Payload: []byte{byte(h)}}))
		}
		check(t, s.SaveIncoming(session.Incoming{PacketID: 1, Tag: 3}))
		check(t, l.SetRetained(&Retained{Topic: []byte("r/" + id), Payload: []byte(id)}))
	}
	steps := []func(){
		func() {
			check(t, ss["a"].Clear())
			check(t, ss["g"].SaveMessage(&session.Message{Handle: 20, QoS: 1}))
		},
		func() {
			check(t, ss["b"].Delete())
			check(t, ss["g"].Delete()) // before its chunk: its records are replayed for no session
			ss["b"] = mustSession(t, l, "b")
			check(t, ss["b"].SaveMessage(&session.Message{Handle: 9, QoS: 1, Topic: []byte("again")}))
		},
		func() {
			check(t, ss["c"].UpdateMessage(2, 5, session.StateReleased))
			check(t, ss["d"].UpdateMessage(3, 6, session.StatePublished))
			check(t, ss["e"].DeleteMessage(1))
		},
		func() {
			check(t, ss["a"].SaveMessage(&session.Message{Handle: 7, QoS: 1, Topic: []byte("after clear")}))
			check(t, ss["e"].Clear())
			check(t, ss["e"].SaveIncoming(session.Incoming{PacketID: 2, Tag: 8}))
		},
		func() {
			ss["f"] = mustSession(t, l, "f")
			check(t, ss["f"].Subscribe("f", 2))
			check(t, ss["d"].Delete())
			check(t, ss["c"].Unsubscribe("c/#"))
			check(t, ss["c"].Disconnected(timeAt(9)))
		},
		func() {
			check(t, l.DeleteRetained([]byte("r/a")))
			check(t, l.SetRetained(&Retained{Topic: []byte("r/e"), Payload: []byte("new"), QoS: 2}))
			check(t, l.SetRetained(&Retained{Topic: []byte("r/z"), Payload: []byte("z")}))
		},
	}
	l.chunk = 1
	calls := 0
	l.afterChunk = func() {
		if calls < len(steps) {
			steps[calls]()
		}
		calls++
	}
	check(t, l.Compact())
	if calls < len(steps) {
		t.Fatalf("%d chunks for %d steps", calls, len(steps))
	}
	want := loadDump(t, l)
	_, d := want.Sessions["d"]
	_, g := want.Sessions["g"]
	d = d || g
	_, f := want.Sessions["f"]
	a, b, e := want.Sessions["a"], want.Sessions["b"], want.Sessions["e"]
	if d || !f || len(a.Msgs) != 1 || len(b.Msgs) != 1 || b.Msgs[0].Handle != 9 || len(e.In) != 1 || e.In[0].Tag != 8 {
		t.Fatalf("the steps did not happen: %+v", want)
	}
	check(t, l.Close())
	l = open(t, dir, Options{})
	defer l.Close()
	diffDump(t, want, loadDump(t, l))
}

// TestCompactLargeSession: a session with more messages than fit in a
// chunk is written in parts, with writes between them, deletion of the
// session included.
func TestCompactLargeSession(t *testing.T) {
	for _, deleteIt := range []bool{false, true} {
		dir := t.TempDir()
		l := open(t, dir, Options{CompactSize: 1 << 40})
		big := mustSession(t, l, "big")
		small := mustSession(t, l, "small")
		for h := range session.Handle(500) {
			check(t, big.SaveMessage(&session.Message{Handle: h + 1, QoS: 1, Topic: []byte("t"), Payload: []byte(fmt.Sprint(h))}))
		}
		check(t, small.SaveMessage(&session.Message{Handle: 1, QoS: 2, Topic: []byte("s")}))
		l.chunk = 1024 // about 32 messages per chunk, split above 16
		calls := 0
		l.afterChunk = func() {
			calls++
			h := session.Handle(calls)
			switch {
			case calls == 3 && deleteIt:
				check(t, big.Delete())
				big = mustSession(t, l, "big")
				check(t, big.SaveMessage(&session.Message{Handle: 1000, QoS: 1, Topic: []byte("new")}))
			case calls < 10:
				check(t, big.DeleteMessage(h*40))        // in parts written or not
				check(t, big.UpdateMessage(500-h, 7, 1)) // not yet written
				check(t, big.SaveMessage(&session.Message{Handle: 600 + h, QoS: 2, Topic: []byte("later")}))
			}
		}
		check(t, l.Compact())
		if calls < 4 || !deleteIt && calls < 10 {
			t.Fatalf("%d chunks", calls)
		}
		want := loadDump(t, l)
		check(t, l.Close())
		l = open(t, dir, Options{})
		diffDump(t, want, loadDump(t, l))
		check(t, l.Close())
		msgs := want.Sessions["big"].Msgs
		if deleteIt && (len(msgs) == 0 || msgs[0].Handle < 600) || !deleteIt && len(msgs) < 500 {
			t.Errorf("delete %v: %d messages, from %d", deleteIt, len(msgs), msgs[0].Handle)
		}
	}
}
