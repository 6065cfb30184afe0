package store

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/session"
)

// TestConcurrentSync: writers in several sessions write and sync at the
// same time; every message they synced is there after a reopen, and the
// fsyncs covered all of them.
func TestConcurrentSync(t *testing.T) {
	const writers, rounds, per = 8, 20, 3
	dir := t.TempDir()
	l := open(t, dir, Options{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := mustSession(t, l, fmt.Sprintf("w%d", w))
			h := session.Handle(0)
			for range rounds {
				for range per {
					h++
					if err := s.SaveMessage(&session.Message{Handle: h, QoS: 1, Topic: []byte("t"), Payload: []byte(fmt.Sprint(h))}); err != nil {
						t.Error(err)
						return
					}
				}
				if err := s.Sync(); err != nil {
					t.Error(err)
					return
				}
				if st := l.Stats(); st.SyncedMessages < uint64(h) {
					t.Errorf("Sync returned with %d messages synced, this writer alone wrote %d", st.SyncedMessages, h)
				}
			}
		}()
	}
	wg.Wait()
	st := l.Stats()
	if st.Messages != writers*rounds*per || st.SyncedMessages != st.Messages || st.Syncs == 0 || st.Syncs > writers*rounds {
		t.Errorf("stats %+v", st)
	}
	t.Logf("%d Sync calls, %d fsyncs: %.1f messages per fsync", writers*rounds, st.Syncs, float64(st.SyncedMessages)/float64(st.Syncs))
	check(t, l.Close())
	l = open(t, dir, Options{})
	defer l.Close()
	d := loadDump(t, l)
	for w := range writers {
		if n := len(d.Sessions[fmt.Sprintf("w%d", w)].Msgs); n != rounds*per {
			t.Errorf("writer %d: %d messages after reopen", w, n)
		}
	}
}

// TestSyncPolicies: SyncNever never fsyncs, SyncInterval fsyncs on its
// own, SyncBatch at each Sync with something to sync.
func TestSyncPolicies(t *testing.T) {
	write := func(l *Log) {
		check(t, mustSession(t, l, "x").SaveMessage(&session.Message{Handle: 1, QoS: 1}))
		check(t, l.Sync())
		check(t, l.Sync()) // nothing new
	}
	l := open(t, t.TempDir(), Options{Sync: SyncNever})
	write(l)
	if st := l.Stats(); st.Syncs != 0 || st.Writes != 1 {
		t.Errorf("SyncNever: %+v", st)
	}
	check(t, l.Close())

	l = open(t, t.TempDir(), Options{Sync: SyncBatch})
	write(l)
	if st := l.Stats(); st.Syncs != 1 || st.SyncedRecords != 2 {
		t.Errorf("SyncBatch: %+v", st)
	}
	check(t, l.Close())

	l = open(t, t.TempDir(), Options{Sync: SyncInterval, Interval: time.Millisecond})
	write(l)
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().SyncedRecords < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("SyncInterval: no fsync in 10 s: %+v", l.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	check(t, l.Close())
}

// TestBufferBound: writes without Sync reach the file once the buffer is
// full, so that memory stays bounded.
func TestBufferBound(t *testing.T) {
	l := open(t, t.TempDir(), Options{Sync: SyncNever, CompactSize: 1 << 40})
	defer l.Close()
	s := mustSession(t, l, "x")
	payload := make([]byte, 1024)
	for h := range session.Handle(2 * maxBuffered / len(payload)) {
		check(t, s.SaveMessage(&session.Message{Handle: h + 1, QoS: 1, Payload: payload}))
	}
	if st := l.Stats(); st.Writes == 0 || st.TotalBytes-int64(st.Bytes) > maxBuffered {
		t.Errorf("stats %+v", st)
	}
}

// TestNoGoroutineAfterClose: the interval syncer and compactions end with
// Close, even while a compaction is under way.
func TestNoGoroutineAfterClose(t *testing.T) {
	// The runtime starts the goroutine that closes lost files lazily.
	check(t, open(t, t.TempDir(), Options{}).Close())
	before := runtime.NumGoroutine()
	l := open(t, t.TempDir(), Options{Sync: SyncInterval, Interval: time.Millisecond, CompactSize: 4 << 10})
	s := mustSession(t, l, "x")
	for h := range session.Handle(2000) {
		check(t, s.SaveMessage(&session.Message{Handle: h + 1, QoS: 1, Payload: make([]byte, 32)}))
		check(t, s.DeleteMessage(h+1))
	}
	l.mu.Lock()
	started := l.compacting || l.stats.Compactions > 0
	l.mu.Unlock()
	check(t, l.Close())
	// A goroutine that called wg.Done may not have returned yet.
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 1000 {
			t.Fatalf("%d goroutines before Open, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(time.Millisecond)
	}
	if !started {
		t.Error("no compaction started")
	}
}
