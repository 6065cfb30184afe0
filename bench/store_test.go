package bench_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/session"
	"github.com/ternmq/mqtt/store"
)

// BenchmarkStoreWriteSync measures a server's write path: each operation
// stores a 64-byte message for a session, removes one stored 64 messages
// before (messages complete), and syncs, from 1 or 8 writers at once, each
// with its own session. With SyncBatch the concurrent Sync calls share
// fsyncs (group commit): msgs/fsync says how many messages one covered.
// With SyncInterval and SyncNever, Sync writes without fsync: msgs/write
// says how many messages one write system call carried (and with
// SyncInterval, msgs/fsync how many the fsync every 100 ms covered).
func BenchmarkStoreWriteSync(b *testing.B) {
	for _, policy := range []struct {
		name string
		sync store.SyncPolicy
	}{{"SyncBatch", store.SyncBatch}, {"SyncInterval", store.SyncInterval}, {"SyncNever", store.SyncNever}} {
		for _, writers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/writers=%d", policy.name, writers), func(b *testing.B) {
				storeWriteSync(b, policy.sync, writers, false)
			})
		}
		// Each message saved in a group of its own, as a broker routes a
		// QoS 2 message: a Sync holds new groups back until the open ones
		// end.
		b.Run(policy.name+"/writers=8/grouped", func(b *testing.B) {
			storeWriteSync(b, policy.sync, 8, true)
		})
	}
}

func storeWriteSync(b *testing.B, policy store.SyncPolicy, writers int, grouped bool) {
	l, err := store.Open(b.TempDir(), store.Options{Sync: policy})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	payload := bytes.Repeat([]byte{'x'}, 64)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	b.ResetTimer()
	for w := range writers {
		n := b.N / writers
		if w < b.N%writers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- storeWriter(l, fmt.Sprintf("client-%d", w), payload, n, grouped)
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	st := l.Stats()
	if policy != store.SyncBatch {
		b.ReportMetric(float64(st.Messages)/float64(max(st.Writes, 1)), "msgs/write")
	}
	if policy != store.SyncNever {
		b.ReportMetric(float64(st.SyncedMessages)/float64(max(st.Syncs, 1)), "msgs/fsync")
	}
}

func storeWriter(l *store.Log, id string, payload []byte, n int, grouped bool) error {
	s, err := l.Session(id)
	if err != nil {
		return err
	}
	topic := []byte("devices/" + id + "/cmd")
	m := session.Message{QoS: 1, Topic: topic, Payload: payload}
	for h := 1; h <= n; h++ {
		m.Handle = session.Handle(h)
		var g store.Group
		if grouped {
			g = l.Begin()
		}
		err := s.SaveMessage(&m)
		if grouped {
			l.End(g)
		}
		if err != nil {
			return err
		}
		if h > 64 {
			if err := s.DeleteMessage(session.Handle(h - 64)); err != nil {
				return err
			}
		}
		if err := s.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkStoreRecover measures the restart of a server with 100k
// persistent sessions holding 1M queued messages (10 each, 64-byte
// payloads, a subscription each): the time Open takes to read the log,
// the disk it takes, and the memory the state takes once loaded. It
// writes about 130 MB, so it runs only with TERN_BENCH_LARGE=1.
func BenchmarkStoreRecover(b *testing.B) {
	if os.Getenv("TERN_BENCH_LARGE") == "" {
		b.Skip("set TERN_BENCH_LARGE=1 to write 100k sessions and 1M messages")
	}
	const sessions, perSession = 100_000, 10
	for _, compacted := range []bool{false, true} {
		b.Run(fmt.Sprintf("compacted=%v", compacted), func(b *testing.B) {
			dir := b.TempDir()
			l, err := store.Open(dir, store.Options{Sync: store.SyncNever, CompactSize: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			payload := bytes.Repeat([]byte{'p'}, 64)
			for i := range sessions {
				id := "client-" + strconv.Itoa(i)
				s, err := l.Session(id)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Subscribe("devices/"+id+"/#", 1); err != nil {
					b.Fatal(err)
				}
				for h := range perSession {
					m := session.Message{Handle: session.Handle(h + 1), QoS: 1, Topic: []byte("devices/" + id + "/cmd"), Payload: payload}
					if err := s.SaveMessage(&m); err != nil {
						b.Fatal(err)
					}
				}
			}
			if compacted {
				if err := l.Compact(); err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			l = nil
			disk := dirSize(b, dir)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			var opened *store.Log
			for range b.N {
				if opened != nil {
					opened.Close()
				}
				if opened, err = store.Open(dir, store.Options{Sync: store.SyncNever}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			st := opened.Stats()
			if st.Sessions != sessions || st.Queued != sessions*perSession {
				b.Fatalf("recovered %d sessions, %d messages", st.Sessions, st.Queued)
			}
			b.ReportMetric(float64(disk)/(1<<20), "disk-MB")
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
			b.ReportMetric(float64(vmRSS())/(1<<20), "rss-MB")
			b.ReportMetric(float64(st.LiveBytes)/(1<<20), "live-MB")
			opened.Close()
		})
	}
}

func dirSize(b *testing.B, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// vmRSS is the resident memory of the process on Linux, 0 elsewhere.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkStoreCompactStall measures a compaction of 100k sessions with
// 1M queued messages while a writer goes on writing (and syncing, without
// fsync): how long the compaction takes, and the longest a write waited
// meanwhile, since the compaction holds the lock while it encodes each
// chunk of the snapshot. Only with TERN_BENCH_LARGE=1.
func BenchmarkStoreCompactStall(b *testing.B) {
	if os.Getenv("TERN_BENCH_LARGE") == "" {
		b.Skip("set TERN_BENCH_LARGE=1 to write 100k sessions and 1M messages")
	}
	l, err := store.Open(b.TempDir(), store.Options{Sync: store.SyncNever, CompactSize: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	payload := bytes.Repeat([]byte{'p'}, 64)
	for i := range 100_000 {
		s, err := l.Session("client-" + strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		for h := range 10 {
			if err := s.SaveMessage(&session.Message{Handle: session.Handle(h + 1), QoS: 1, Topic: []byte("devices/x/cmd"), Payload: payload}); err != nil {
				b.Fatal(err)
			}
		}
	}
	w, err := l.Session("writer")
	if err != nil {
		b.Fatal(err)
	}
	var longest, total time.Duration
	writes := 0
	b.ResetTimer()
	for i := range b.N + 1 {
		// Round 0 measures the writer alone, for comparison: on a loaded
		// machine the scheduler stalls it too.
		if i == 0 {
			b.StopTimer()
		} else {
			b.StartTimer()
		}
		stop := make(chan struct{})
		done := make(chan error)
		go func() {
			for h := session.Handle(1); ; h++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				start := time.Now()
				err := w.SaveMessage(&session.Message{Handle: h, QoS: 1, Topic: []byte("t"), Payload: payload})
				if err == nil {
					err = w.DeleteMessage(h)
				}
				if err == nil {
					err = w.Sync()
				}
				if err != nil {
					done <- err
					return
				}
				longest = max(longest, time.Since(start))
				writes++
			}
		}()
		start := time.Now()
		if i == 0 {
			time.Sleep(time.Second)
		} else if err := l.Compact(); err != nil {
			b.Fatal(err)
		}
		close(stop)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.ReportMetric(float64(longest.Microseconds())/1000, "max-stall-alone-ms")
			longest, writes = 0, 0
			continue
		}
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "compact-s")
	b.ReportMetric(float64(longest.Microseconds())/1000, "max-stall-ms")
	b.ReportMetric(float64(writes)/total.Seconds(), "writes/s")
}
