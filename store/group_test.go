package store

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/session"
)

func saveMsg(t testing.TB, s Session, h session.Handle) {
	t.Helper()
	m := session.Message{Handle: h, QoS: 2, Topic: []byte("t"), Payload: []byte(strconv.Itoa(int(h)))}
	if err := s.SaveMessage(&m); err != nil {
		t.Fatal(err)
	}
}

func handles(t testing.TB, s Session) []session.Handle {
	t.Helper()
	var hs []session.Handle
	if _, _, err := s.Load(func(m *session.Message) error {
		hs = append(hs, m.Handle)
		return nil
	}, func(session.Incoming) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return hs
}

// A group that did not end is cut at recovery with everything after its
// beginning; the writes before it, and a group that ended, are kept.
func TestGroupWithoutEndIsCut(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	check(t, err)
	a, err := l.Session("a")
	check(t, err)
	b, err := l.Session("b")
	check(t, err)
	saveMsg(t, a, 1)
	g := l.Begin()
	saveMsg(t, a, 2)
	saveMsg(t, b, 2)
	l.End(g)
	check(t, l.Sync())
	l.Begin() // never ended
	saveMsg(t, a, 3)
	saveMsg(t, b, 3)
	saveMsg(t, a, 4) // another writer's, after the beginning: cut too
	check(t, l.Close())

	l, err = Open(dir, Options{})
	check(t, err)
	defer l.Close()
	if got := l.Stats().TornBytes; got == 0 {
		t.Errorf("TornBytes = 0 after cutting a group")
	}
	a, _ = l.Session("a")
	b, _ = l.Session("b")
	if got := fmt.Sprint(handles(t, a), handles(t, b)); got != "[1 2] [2]" {
		t.Errorf("after recovery a, b hold %s, want [1 2] [2]", got)
	}
	// The log goes on after the cut, and a new group is kept whole.
	g = l.Begin()
	saveMsg(t, a, 5)
	saveMsg(t, b, 5)
	l.End(g)
	check(t, l.Close())
	l, err = Open(dir, Options{})
	check(t, err)
	a, _ = l.Session("a")
	b, _ = l.Session("b")
	if got := fmt.Sprint(handles(t, a), handles(t, b)); got != "[1 2 5] [2 5]" {
		t.Errorf("after a second recovery a, b hold %s, want [1 2 5] [2 5]", got)
	}
}

// Sync waits for the groups open at its call: it never reports durable a
// write whose group may still be cut.
func TestSyncWaitsForGroup(t *testing.T) {
	l, err := Open(t.TempDir(), Options{})
	check(t, err)
	defer l.Close()
	a, err := l.Session("a")
	check(t, err)
	g := l.Begin()
	saveMsg(t, a, 1)
	done := make(chan error, 1)
	go func() { done <- l.Sync() }()
	select {
	case err := <-done:
		t.Fatalf("Sync returned (%v) while the group of a write it covers was open", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.End(g)
	check(t, <-done)
	if st := l.Stats(); st.SyncedRecords < st.Records {
		t.Errorf("after Sync: %d of %d records synced; the group's end must be", st.SyncedRecords, st.Records)
	}
}

// A compaction waits for open groups before it switches segments, and
// keeps new groups from beginning meanwhile, so that no snapshot holds part
// of a group.
func TestCompactWaitsForGroup(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	check(t, err)
	a, err := l.Session("a")
	check(t, err)
	g := l.Begin()
	saveMsg(t, a, 1)
	done := make(chan error, 1)
	go func() { done <- l.Compact() }()
	select {
	case err := <-done:
		t.Fatalf("Compact returned (%v) while a group was open", err)
	case <-time.After(50 * time.Millisecond):
	}
	saveMsg(t, a, 2)
	l.End(g)
	check(t, <-done)
	check(t, l.Close())
	l, err = Open(dir, Options{})
	check(t, err)
	defer l.Close()
	a, _ = l.Session("a")
	if got := fmt.Sprint(handles(t, a)); got != "[1 2]" {
		t.Errorf("after compaction and recovery a holds %s, want [1 2]", got)
	}
}

// The group crash test: writers in a child process each save one message
// to every one of groupSessions sessions (and delete an older one from
// each) inside a group, while compactions run; the parent kills the child
// with SIGKILL at random instants and checks after each recovery that
// every message is in all the sessions or in none.

const (
	groupEnv      = "TERN_STORE_GROUP_CHILD"
	groupSessions = 6
	groupWriters  = 3
)

func TestCrashGroups(t *testing.T) {
	if os.Getenv(groupEnv) != "" {
		t.Skip("in a crash child")
	}
	kills := 40
	switch {
	case os.Getenv("TERN_STORE_CRASH_LONG") != "":
		kills = 200
	case raceEnabled || testing.Short():
		kills = 6
	}
	exe, err := os.Executable()
	check(t, err)
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	whole, cutGroups := 0, 0
	for run := 1; run <= kills; run++ {
		policy := SyncBatch
		if run%2 == 0 {
			policy = SyncNever
		}
		cmd := exec.Command(exe, "-test.run=^TestCrashGroupsChild$")
		cmd.Env = append(os.Environ(), groupEnv+"="+dir, "TERN_GROUP_RUN="+strconv.Itoa(run), "TERN_CRASH_SYNC="+strconv.Itoa(int(policy)))
		stdout, err := cmd.StdoutPipe()
		check(t, err)
		check(t, cmd.Start())
		// Wait for the child to write, then kill it at a random instant.
		bufio.NewReader(stdout).ReadString('\n')
		time.Sleep(time.Duration(rng.Intn(40)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		l, err := Open(dir, Options{})
		check(t, err)
		if l.Stats().TornBytes > 0 {
			cutGroups++
		}
		count := map[session.Handle]int{}
		for i := range groupSessions {
			s, err := l.Session("s" + strconv.Itoa(i))
			check(t, err)
			for _, h := range handles(t, s) {
				count[h]++
			}
		}
		check(t, l.Close())
		for h, n := range count {
			if n != groupSessions {
				t.Fatalf("run %d: message %x is in %d of %d sessions: a group was cut in part", run, h, n, groupSessions)
			}
		}
		whole += len(count)
	}
	if whole == 0 {
		t.Fatalf("no message survived any of %d kills: the children wrote nothing durable", kills)
	}
	t.Logf("%d kills; %d messages found whole in %d sessions each; %d recoveries cut a tail or a group", kills, whole, groupSessions, cutGroups)
}

func TestCrashGroupsChild(t *testing.T) {
	dir := os.Getenv(groupEnv)
	if dir == "" {
		t.Skip("run by TestCrashGroups")
	}
	if err := groupChild(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func groupChild(dir string) error {
	run, _ := strconv.Atoi(os.Getenv("TERN_GROUP_RUN"))
	sp, _ := strconv.Atoi(os.Getenv("TERN_CRASH_SYNC"))
	var l *Log
	var err error
	for range 100 {
		if l, err = Open(dir, Options{Sync: SyncPolicy(sp), CompactSize: 32 << 10}); !errors.Is(err, ErrLocked) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	var ss [groupSessions]Session
	for i := range ss {
		if ss[i], err = l.Session("s" + strconv.Itoa(i)); err != nil {
			return err
		}
	}
	fmt.Println("writing")
	errc := make(chan error, groupWriters+1)
	for w := range groupWriters {
		go func() {
			for i := 0; ; i++ {
				h := session.Handle(run)<<32 | session.Handle(w)<<24 | session.Handle(i)
				m := session.Message{Handle: h, QoS: 2, Topic: []byte("t"), Payload: make([]byte, 100)}
				g := l.Begin()
				for _, s := range ss {
					if err := s.SaveMessage(&m); err != nil {
						errc <- err
						return
					}
					if i >= 20 {
						if err := s.DeleteMessage(h - 20); err != nil {
							errc <- err
							return
						}
					}
				}
				l.End(g)
				if i%4 == 0 {
					if err := l.Sync(); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	// Writes outside groups, at the same time.
	go func() {
		for i := 0; ; i++ {
			r := Retained{Topic: []byte("r"), Payload: []byte(strconv.Itoa(i))}
			if err := l.SetRetained(&r); err != nil {
				errc <- err
				return
			}
		}
	}()
	return <-errc
}

// What a Sync returned for survives a crash when groups overlap. A Sync
// waits for a group open at its call (g1); if another group (g2) began
// meanwhile and was still open when the flush was taken, the flush put
// g2's beginning before g1's end, and recovery, cutting at g2's beginning,
// left g1 without its end and cut again at g1's: the write W that the Sync
// had returned for, made between them by another writer, was lost. Here
// the crash is a copy of the files taken once the Sync returned, with g2
// still open.
func TestSyncedWriteSurvivesOverlappingGroups(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	check(t, err)
	a := mustSession(t, l, "a")
	b := mustSession(t, l, "b")
	g1 := l.Begin()
	saveMsg(t, a, 1)
	saveMsg(t, b, 1) // W: no group
	synced := make(chan error, 1)
	go func() { synced <- l.Sync() }()
	waitFor(t, "Sync to wait for g1", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.groupWaiters > 0
	})
	g2c := make(chan Group, 1)
	go func() {
		g2 := l.Begin()
		saveMsg(t, a, 2)
		g2c <- g2
	}()
	time.Sleep(50 * time.Millisecond) // g2 begins now, if it may
	l.End(g1)
	check(t, <-synced)
	crash := t.TempDir()
	copyDir(t, dir, crash)
	l.End(<-g2c)
	check(t, l.Close())

	l, err = Open(crash, Options{})
	check(t, err)
	defer l.Close()
	a, b = mustSession(t, l, "a"), mustSession(t, l, "b")
	if got := fmt.Sprint(handles(t, a), handles(t, b)); got != "[1] [1]" && got != "[1 2] [1]" {
		t.Errorf("after the crash a, b hold %s, want [1] [1] (or [1 2] [1], g2 kept whole)", got)
	}
}
