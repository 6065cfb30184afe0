package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/session"
)

// history writes a sequence of every kind of write, each synced on its
// own, and returns the log file, the file's size after each write (0 for
// the empty log) and the state after each.
func history(t *testing.T) (file []byte, sizes []int64, states []dump) {
	t.Helper()
	dir := t.TempDir()
	l := open(t, dir, Options{Sync: SyncNever})
	step := func() {
		check(t, l.Sync())
		sizes = append(sizes, l.Stats().TotalBytes)
		states = append(states, loadDump(t, l))
	}
	step()
	var a, b Session
	ops := []func() error{
		func() (err error) { a, err = l.Session("alpha"); return },
		func() error { return a.Subscribe("a/#", 1) },
		func() error {
			return a.SaveMessage(&session.Message{Handle: 1, QoS: 2, Retain: true, Topic: []byte("a/1"), Payload: []byte("p1")})
		},
		func() error { return l.SetRetained(&Retained{Topic: []byte("r"), Payload: []byte("ret"), QoS: 1}) },
		func() (err error) { b, err = l.Session("beta"); return },
		func() error {
			return b.SaveMessage(&session.Message{Handle: 1, QoS: 1, Topic: []byte("b"), Payload: []byte("bb")})
		},
		func() error { return a.UpdateMessage(1, 3, session.StatePublished) },
		func() error { return a.SaveIncoming(session.Incoming{PacketID: 2, Tag: 5, Acked: true}) },
		func() error { return b.Disconnected(timeAt(1000)) },
		func() error { return a.SaveMarks(10, 20) },
		func() error { return a.UpdateMessage(1, 3, session.StateReleased) },
		func() error { return b.Subscribe("b/+", 2) },
		func() error { return a.DeleteIncoming(2) },
		func() error { return l.SetRetained(&Retained{Topic: []byte("r"), Payload: []byte("ret2")}) },
		func() error { return b.Connected() },
		func() error { return a.DeleteMessage(1) },
		func() error { return b.Unsubscribe("b/+") },
		func() error { return l.DeleteRetained([]byte("r")) },
		func() error { return b.Clear() },
		func() error { return b.Delete() },
		func() error { return a.SaveIncoming(session.Incoming{PacketID: 7, Tag: 30}) },
	}
	for _, op := range ops {
		check(t, op())
		step()
	}
	check(t, l.Close())
	files := logFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	file, err := os.ReadFile(files[0])
	check(t, err)
	if int64(len(file)) != sizes[len(sizes)-1] {
		t.Fatalf("file of %d bytes, log says %d", len(file), sizes[len(sizes)-1])
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] <= sizes[i-1] {
			t.Fatalf("write %d wrote no record", i)
		}
	}
	return file, sizes, states
}

// prefix returns the index of the last state whose records all lie
// before off.
func prefix(sizes []int64, off int64) int {
	i := 0
	for i+1 < len(sizes) && sizes[i+1] <= off {
		i++
	}
	return i
}

var scratchDirs = map[*testing.T]string{}

// scratch is a directory for the whole test, unlike t.TempDir's one per
// call.
func scratch(t *testing.T) string {
	if d, ok := scratchDirs[t]; ok {
		return d
	}
	d := t.TempDir()
	scratchDirs[t] = d
	t.Cleanup(func() { delete(scratchDirs, t) })
	return d
}

// openFile opens a log made of the segment b alone.
func openFile(t *testing.T, b []byte) (*Log, string) {
	t.Helper()
	dir := filepath.Join(scratch(t), "log")
	check(t, os.RemoveAll(dir))
	check(t, os.Mkdir(dir, 0o755))
	check(t, os.WriteFile(filepath.Join(dir, "log.0000000000000000"), b, 0o644))
	return open(t, dir, Options{Sync: SyncNever}), dir
}

// TestTruncateEverywhere cuts the log at every byte offset: what is
// recovered is the state after the last record whole, the rest is cut off
// (and counted), and writes go on after it.
func TestTruncateEverywhere(t *testing.T) {
	file, sizes, states := history(t)
	for off := int64(0); off <= int64(len(file)); off++ {
		l, dir := openFile(t, file[:off])
		i := prefix(sizes, off)
		diffDump(t, states[i], loadDump(t, l))
		if st := l.Stats(); st.TornBytes != off-sizes[i] || st.TotalBytes != sizes[i] {
			t.Fatalf("cut at %d: torn %d bytes, total %d, want %d and %d", off, st.TornBytes, st.TotalBytes, off-sizes[i], sizes[i])
		}
		// A write after the cut is read back.
		check(t, l.SetRetained(&Retained{Topic: []byte("after"), Payload: []byte("cut")}))
		want := loadDump(t, l)
		check(t, l.Close())
		l = open(t, dir, Options{Sync: SyncNever})
		diffDump(t, want, loadDump(t, l))
		if l.Stats().TornBytes != 0 {
			t.Fatalf("cut at %d: second open cut more", off)
		}
		check(t, l.Close())
	}
}

// TestCorruptEverywhere flips each byte of the log in turn: the record
// holding it and all after it are cut, never read as something else.
func TestCorruptEverywhere(t *testing.T) {
	file, sizes, states := history(t)
	for off := range int64(len(file)) {
		xs := []byte{0x01, 0x80, 0xff}
		if raceEnabled {
			xs = xs[1:2]
		}
		for _, x := range xs {
			b := clone(file)
			b[off] ^= x
			l, _ := openFile(t, b)
			i := prefix(sizes, off)
			diffDump(t, states[i], loadDump(t, l))
			if st := l.Stats(); st.TornBytes != int64(len(file))-sizes[i] {
				t.Fatalf("byte %d ^ %#x: %d bytes cut, want %d", off, x, st.TornBytes, int64(len(file))-sizes[i])
			}
			check(t, l.Close())
		}
	}
}

// TestGarbageTail: bytes that are not records after whole ones, such as a
// huge length, are cut without allocating by that length.
func TestGarbageTail(t *testing.T) {
	file, sizes, states := history(t)
	last := len(states) - 1
	for _, tail := range [][]byte{
		{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 'M'},
		{0, 0, 0, 0, 0, 0, 0, 0},
		{0, 0, 0, 1, 0, 0, 0, 0, 'Z'},
		[]byte(strings.Repeat("\x00", 100)),
	} {
		l, _ := openFile(t, append(clone(file), tail...))
		diffDump(t, states[last], loadDump(t, l))
		if st := l.Stats(); st.TornBytes != int64(len(tail)) || st.TotalBytes != sizes[last] {
			t.Errorf("tail %q: %+v", tail, st)
		}
		check(t, l.Close())
	}
}

// TestWellFormedBadRecord: a record whose checksum holds but whose body
// does not parse ends the log like a damaged one.
func TestWellFormedBadRecord(t *testing.T) {
	file, _, states := history(t)
	last := len(states) - 1
	for _, body := range [][]byte{
		{'Z'},
		{recMessage, 0, 0, 0, 1},
		{recUpdate, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 9}, // state 9
		{recMarks, 0, 0, 0, 0}, // sid 0
		{recRetained, 3, 0, 0}, // QoS 3
	} {
		rec := end(append(make([]byte, recHeader), body...), 0)
		l, _ := openFile(t, append(clone(file), rec...))
		diffDump(t, states[last], loadDump(t, l))
		if st := l.Stats(); st.TornBytes != int64(len(rec)) {
			t.Errorf("body %q: %d bytes cut", body, st.TornBytes)
		}
		check(t, l.Close())
	}
}

// TestDamagedSnapshot: a snapshot is written whole and synced before it is
// renamed into place, so a damaged one is an error, not a cut.
func TestDamagedSnapshot(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	s := mustSession(t, l, "x")
	for h := range session.Handle(10) {
		check(t, s.SaveMessage(&session.Message{Handle: h + 1, QoS: 1, Topic: []byte("t"), Payload: []byte(fmt.Sprint(h))}))
	}
	check(t, l.Compact())
	check(t, s.DeleteMessage(3))
	want := loadDump(t, l)
	check(t, l.Close())
	snaps, err := filepath.Glob(filepath.Join(dir, "snap.*"))
	check(t, err)
	if len(snaps) != 1 {
		t.Fatalf("snapshots %v", snaps)
	}
	l = open(t, dir, Options{})
	diffDump(t, want, loadDump(t, l))
	check(t, l.Close())

	b, err := os.ReadFile(snaps[0])
	check(t, err)
	b[len(b)/2] ^= 1
	check(t, os.WriteFile(snaps[0], b, 0o644))
	if _, err := Open(dir, Options{}); err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("Open with a damaged snapshot: %v", err)
	}
}

// TestLeftovers: files of an unfinished compaction and older files are
// removed by Open; a segment missing in the sequence ends the log, and the
// segments after the gap are moved aside.
func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	check(t, mustSession(t, l, "x").Subscribe("f", 1))
	want := loadDump(t, l)
	check(t, l.Close())
	check(t, os.WriteFile(filepath.Join(dir, "snap.0000000000000005.tmp"), []byte("junk"), 0o644))
	// Segment 2 follows a missing segment 1: not applied, removed.
	l2 := open(t, t.TempDir(), Options{})
	check(t, mustSession(t, l2, "y").Subscribe("g", 1))
	check(t, l2.Close())
	seg, err := os.ReadFile(logFiles(t, l2.dir)[0])
	check(t, err)
	check(t, os.WriteFile(filepath.Join(dir, "log.0000000000000002"), seg, 0o644))
	l = open(t, dir, Options{})
	diffDump(t, want, loadDump(t, l))
	check(t, l.Close())
	ents, err := os.ReadDir(dir)
	check(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "LOCK log.0000000000000000 log.0000000000000002.cut" {
		t.Fatalf("files left: %v", names)
	}
}

// TestFirstSegmentMissing: a log whose first segment is gone is an error,
// not an empty state.
func TestFirstSegmentMissing(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	check(t, mustSession(t, l, "x").Subscribe("f", 1))
	check(t, l.Close())
	seg := logFiles(t, dir)[0]
	check(t, os.Rename(seg, filepath.Join(dir, "log.0000000000000001")))
	if _, err := Open(dir, Options{}); err == nil {
		t.Fatal("Open without the first segment succeeded")
	}
	if len(logFiles(t, dir)) != 1 {
		t.Fatal("Open removed a segment")
	}
}

// TestStraySnapshot: a snapshot without its segment, newer than the log
// (an empty file left by hand, a copy from elsewhere), is an error; before,
// Open took it as the newest state and removed the log.
func TestStraySnapshot(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	check(t, mustSession(t, l, "x").Subscribe("f", 1))
	check(t, l.Close())
	check(t, os.WriteFile(filepath.Join(dir, "snap.0000000000000001"), nil, 0o644))
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "log.0000000000000001 is missing") {
		t.Fatalf("Open with a stray snapshot: %v", err)
	}
	if len(logFiles(t, dir)) != 1 {
		t.Fatal("Open removed the log")
	}
}

// TestDamagedMiddleSegment: when a segment that is not the last is cut,
// the segments after it are removed, so that what is recovered is still a
// prefix of what was written.
func TestDamagedMiddleSegment(t *testing.T) {
	file, sizes, states := history(t)
	other := t.TempDir()
	l := open(t, other, Options{})
	check(t, mustSession(t, l, "late").Subscribe("f", 1))
	check(t, l.Close())
	later, err := os.ReadFile(logFiles(t, other)[0])
	check(t, err)

	dir := t.TempDir()
	off := sizes[5] + 3
	check(t, os.WriteFile(filepath.Join(dir, "log.0000000000000000"), file[:off], 0o644))
	check(t, os.WriteFile(filepath.Join(dir, "log.0000000000000001"), later, 0o644))
	check(t, os.WriteFile(filepath.Join(dir, "log.0000000000000002"), later, 0o644))
	l = open(t, dir, Options{})
	diffDump(t, states[5], loadDump(t, l))
	check(t, l.Close())
	if segs := logFiles(t, dir); len(segs) != 1 {
		t.Fatalf("segments left: %v", segs)
	}
	// What was cut is kept aside, not destroyed.
	for name, want := range map[string][]byte{
		"log.0000000000000000.cut-" + fmt.Sprint(sizes[5]): file[sizes[5]:off],
		"log.0000000000000001.cut":                         later,
		"log.0000000000000002.cut":                         later,
	} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: %d bytes, %v; want the %d bytes cut", name, len(b), err, len(want))
		}
	}
}

// A byte damaged in the middle of the log cuts the log at the record that
// holds it (recovery cannot tell it from a torn write that the disk wrote
// out of order), but the bytes cut are kept beside the log, whole.
func TestCutKeptAside(t *testing.T) {
	file, sizes, states := history(t)
	off := sizes[3] + 5
	b := clone(file)
	b[off] ^= 0x10
	l, dir := openFile(t, b)
	diffDump(t, states[3], loadDump(t, l))
	check(t, l.Close())
	kept, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("log.0000000000000000.cut-%d", sizes[3])))
	if err != nil || !bytes.Equal(kept, b[sizes[3]:]) {
		t.Fatalf("kept %d bytes, %v; want the %d bytes cut", len(kept), err, len(b)-int(sizes[3]))
	}
}
