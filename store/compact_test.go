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
	before := loadDump(t, l)
	if _, ok := before.Sessions["w3"]; ok || len(before.Sessions) != 3 {
		t.Fatalf("sessions: %v", before.Sessions)
	}
	check(t, l.Close())
	l = open(t, dir, Options{})
	defer l.Close()
	diffDump(t, before, loadDump(t, l))
	if st := l.Stats(); st.TotalBytes > 3*st.LiveBytes+32<<10 {
		t.Errorf("reopened: %+v", st)
	}
}
