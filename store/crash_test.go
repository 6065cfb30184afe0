package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/session"
)

// The crash test runs writers in a child process (this test binary run
// again) that write messages and retained messages to one Log, Sync, and
// then report on stdout what the Sync made durable. The parent kills the
// child with SIGKILL at a random instant, opens the log itself and checks
// that everything reported is there, and nothing else but what was
// written; then it starts the child again on the same directory, which
// goes on from the state it recovers.

const (
	crashEnv     = "TERN_STORE_CRASH_CHILD"
	crashWriters = 4
)

// crashFacts is what the child reported durable: per writer, the messages
// saved (true) or deleted (false), and the last retained value.
type crashFacts struct {
	msgs     [crashWriters]map[session.Handle]bool
	retained [crashWriters]session.Handle
	// unreported bounds the iterations of each writer that may have
	// become durable without a report: one per child run since its last
	// report.
	unreported [crashWriters]int
	reported   [crashWriters]bool // in this child run
}

func TestCrash(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in a crash child")
	}
	wantKills := 30
	switch {
	case os.Getenv("TERN_STORE_CRASH_LONG") != "":
		wantKills = 300
	case raceEnabled:
		wantKills = 6
	case testing.Short():
		wantKills = 10
	}
	exe, err := os.Executable()
	check(t, err)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var facts crashFacts
	for w := range facts.msgs {
		facts.msgs[w] = map[session.Handle]bool{}
	}
	dir := t.TempDir()
	deadline := time.Now().Add(120 * time.Second)
	kills, reported, compacted := 0, 0, 0
	for kills < wantKills {
		if time.Now().After(deadline) {
			t.Fatalf("only %d kills in 120 s", kills)
		}
		policy := SyncNever
		if kills%2 == 0 {
			policy = SyncBatch
		}
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, "TERN_CRASH_SYNC="+strconv.Itoa(int(policy)))
		stdout, err := cmd.StdoutPipe()
		check(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		check(t, cmd.Start())
		// Read facts until a random number of them has come, then kill:
		// the child runs on while the signal is on its way, so the kill
		// lands at a random instant of its work.
		r := bufio.NewReader(stdout)
		want := rng.Intn(400)
		for n := 0; n < want; n++ {
			line, err := r.ReadString('\n')
			if err != nil {
				break // a line cut by the kill was not reported
			}
			reported++
			if err := facts.add(line); err != nil {
				t.Fatal(err)
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		// What the child printed before it died was reported too.
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			reported++
			if err := facts.add(line); err != nil {
				t.Fatal(err)
			}
		}
		for w, ok := range facts.reported {
			if ok {
				facts.unreported[w] = 0
			}
			facts.unreported[w]++
			facts.reported[w] = false
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("child ended with %v\n%s", err, stderr.String())
		}
		kills++
		facts.check(t, dir)
		if snaps, _ := filepath.Glob(filepath.Join(dir, "snap.*")); len(snaps) > 0 {
			compacted++
		}
	}
	l := open(t, dir, Options{})
	st := l.Stats()
	check(t, l.Close())
	if compacted == 0 && !raceEnabled {
		t.Errorf("no compaction in %d child runs", kills)
	}
	t.Logf("%d kills (%d after a compaction), %d facts reported; last open: %d sessions, %d messages, %d bytes on disk, %d live", kills, compacted, reported, st.Sessions, st.Queued, st.TotalBytes, st.LiveBytes)
}

func (f *crashFacts) add(line string) error {
	var kind byte
	var w int
	var h session.Handle
	if _, err := fmt.Sscanf(line, "%c %d %d\n", &kind, &w, &h); err != nil || w < 0 || w >= crashWriters {
		return fmt.Errorf("bad line %q", line)
	}
	f.reported[w] = true
	switch kind {
	case 'S':
		f.msgs[w][h] = true
	case 'D':
		f.msgs[w][h] = false
	case 'R':
		f.retained[w] = h
	default:
		return fmt.Errorf("bad line %q", line)
	}
	return nil
}

// check opens the log and compares it with the facts.
func (f *crashFacts) check(t *testing.T, dir string) {
	t.Helper()
	l := open(t, dir, Options{})
	defer l.Close()
	d := loadDump(t, l)
	for w := range crashWriters {
		present := map[session.Handle]bool{}
		for _, m := range d.Sessions[fmt.Sprintf("w%d", w)].Msgs {
			present[m.Handle] = true
			if string(m.Payload) != crashPayload(w, m.Handle) || m.QoS != 1 {
				t.Fatalf("writer %d message %d: wrong data %+v", w, m.Handle, m)
			}
		}
		// A message reported saved is there, but for the oldest ones: the
		// child was killed after it deleted them, before it reported so.
		// An iteration deletes one message, two after a restart that
		// found the last one's save but not its delete.
		var saved []session.Handle
		for h, ok := range f.msgs[w] {
			switch {
			case !ok && present[h]:
				t.Fatalf("writer %d message %d: deletion synced, found present", w, h)
			case ok:
				saved = append(saved, h)
			}
		}
		slices.Sort(saved)
		gone := 0
		for i, h := range saved {
			if !present[h] {
				if gone != i || gone > f.unreported[w]+1 {
					t.Fatalf("writer %d message %d: synced, not found (messages found %v, %d child runs since its last report)", w, h, present, f.unreported[w])
				}
				gone++
				// The deletion is durable now: the next child goes on
				// from the state just recovered.
				f.msgs[w][h] = false
			}
		}
		r, ok := d.Retained[fmt.Sprintf("r/%d", w)]
		switch {
		case f.retained[w] == 0:
		case !ok:
			t.Fatalf("writer %d: retained message lost", w)
		default:
			h, err := strconv.ParseUint(string(r.Payload), 10, 64)
			if err != nil || session.Handle(h) < f.retained[w] {
				t.Fatalf("writer %d: retained %q, synced %d", w, r.Payload, f.retained[w])
			}
		}
	}
}

func crashPayload(w int, h session.Handle) string { return fmt.Sprintf("w%d-%d", w, h) }

// TestCrashChild is the child process of TestCrash.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	if err := crashChild(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func crashChild(dir string) error {
	sp, _ := strconv.Atoi(os.Getenv("TERN_CRASH_SYNC"))
	// A small CompactSize, so that kills land in compactions too.
	var l *Log
	var err error
	for range 100 {
		// The parent may still hold the directory for a moment.
		if l, err = Open(dir, Options{Sync: SyncPolicy(sp), CompactSize: 16 << 10}); !errors.Is(err, ErrLocked) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	var mu sync.Mutex
	report := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := os.Stdout.Write(b) // one write: whole or absent
		return err
	}
	errc := make(chan error, crashWriters)
	for w := range crashWriters {
		go func() { errc <- crashWriter(l, w, report) }()
	}
	return <-errc // the writers run until the kill
}

func crashWriter(l *Log, w int, report func([]byte) error) error {
	s, err := l.Session(fmt.Sprintf("w%d", w))
	if err != nil {
		return err
	}
	var live []session.Handle
	h, _, err := s.Load(func(m *session.Message) error {
		live = append(live, m.Handle)
		return nil
	}, func(session.Incoming) error { return nil })
	if err != nil {
		return err
	}
	var line []byte
	for i := 0; ; i++ {
		line = line[:0]
		h++
		// Odd writers save in groups, which overlap one another and the
		// even writers' plain writes, as a broker's QoS 2 routings do.
		var g Group
		if w%2 == 1 {
			g = l.Begin()
		}
		err := s.SaveMessage(&session.Message{Handle: h, QoS: 1, Topic: []byte("t"), Payload: []byte(crashPayload(w, h))})
		if w%2 == 1 {
			runtime.Gosched()
			l.End(g)
		}
		if err != nil {
			return err
		}
		line = fmt.Appendf(line, "S %d %d\n", w, h)
		live = append(live, h)
		// Most messages complete, so that the log compacts.
		for len(live) > 5 {
			if err := s.DeleteMessage(live[0]); err != nil {
				return err
			}
			line = fmt.Appendf(line, "D %d %d\n", w, live[0])
			live = live[1:]
		}
		if i%4 == 0 {
			if err := l.SetRetained(&Retained{Topic: fmt.Appendf(nil, "r/%d", w), Payload: strconv.AppendUint(nil, uint64(h), 10)}); err != nil {
				return err
			}
			line = fmt.Appendf(line, "R %d %d\n", w, h)
		}
		if err := s.Sync(); err != nil {
			return err
		}
		if err := report(line); err != nil {
			return err
		}
	}
}
