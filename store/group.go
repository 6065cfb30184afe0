package store

import (
	"os"

	"github.com/ternmq/mqtt/internal/dirsync"
)

// Groups keep the writes of one routing whole across a crash (see
// Store.Begin). The log marks where a group begins and ends; recovery cuts
// the log at the beginning of the first group that has no end, as it cuts a
// torn tail, and again if that cut took the end of a group that began
// before it. That is safe because the point up to which a Sync returns is
// one where no group is open: Sync holds new groups back until the open
// ones end. A group left without its end by a crash then began after the
// last such point, and so did any group whose end a cut takes (it was open
// across the cut, so it did not end before that point, nor was it open
// there). Cutting also drops the writes others made after the beginning;
// none of them was covered by a Sync either.
//
// Without the hold, a group that began while Sync waited could still be
// open when the flush was taken, its beginning before the end of the group
// Sync waited for: recovery cut at it, then at the other's beginning,
// below what Sync had returned for.
//
// A compaction writes its snapshot from the state in memory, which holds
// the writes of open groups too. So the switch to a new segment and every
// chunk of the snapshot wait until no group is open (new groups wait
// meanwhile): a snapshot then never holds part of a group, and a group
// that began before the switch has ended before it.

// Begin implements Store.
func (l *Log) Begin() Group {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.quiet > 0 {
		l.cond.Wait()
	}
	l.lastGroup++
	g := l.lastGroup
	if l.err != nil {
		return g // the writes fail; End does nothing
	}
	if l.open == nil {
		l.open = make(map[Group]struct{})
	}
	start := len(l.buf)
	l.buf = appendGroup(l.buf, recGroupBegin, g)
	l.appended(start, false)
	l.open[g] = struct{}{}
	return g
}

// End implements Store.
func (l *Log) End(g Group) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.open[g]; !ok {
		return
	}
	delete(l.open, g)
	if l.err == nil {
		start := len(l.buf)
		l.buf = appendGroup(l.buf, recGroupEnd, g)
		l.appended(start, false)
	}
	if l.groupWaiters > 0 {
		l.cond.Broadcast()
	}
}

// quiesce keeps new groups from beginning and waits until none is open;
// unquiesce lets them begin again. l.mu is held.
func (l *Log) quiesce() {
	l.quiet++
	for l.err == nil && !l.closing && len(l.open) > 0 {
		l.groupWaiters++
		l.cond.Wait()
		l.groupWaiters--
	}
}

func (l *Log) unquiesce() {
	l.quiet--
	l.cond.Broadcast()
}

// logPos is a place in the log: a segment and an offset in it.
type logPos struct {
	seg uint64
	off int64
}

// sawGroup notes a group marker that recovery read at offset off of the
// segment being read (l.seg).
func (l *Log) sawGroup(kind byte, g Group, off int64) {
	l.lastGroup = max(l.lastGroup, g)
	if kind == recGroupEnd {
		delete(l.opened, g)
		return
	}
	if l.opened == nil {
		l.opened = make(map[Group]logPos)
	}
	l.opened[g] = logPos{l.seg, off}
}

// cutGroup cuts the log, as read by recover, at the beginning of the first
// group that did not end, removes the segments after it, and recovers
// again from the start: the state read so far holds writes made after
// that beginning. It is rare (a crash while a group was open), so reading
// the log twice then costs nothing in the common case.
func (l *Log) cutGroup() error {
	first := logPos{seg: ^uint64(0)}
	for _, p := range l.opened {
		if p.seg < first.seg || p.seg == first.seg && p.off < first.off {
			first = p
		}
	}
	_, segs, err := l.files()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s > first.seg {
			if err := os.Remove(l.path("log", s)); err != nil {
				return err
			}
		}
	}
	p := l.path("log", first.seg)
	f, err := os.OpenFile(p, os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		l.stats.TornBytes += st.Size() - first.off
	}
	l.log.Warn("store: cut a group of writes that did not end", "file", p, "offset", first.off)
	if err := f.Truncate(first.off); err != nil {
		return err
	}
	if l.opts.Sync != SyncNever {
		if err := f.Sync(); err != nil {
			return err
		}
		if err := dirsync.Sync(l.dir); err != nil {
			return err
		}
	}
	torn := l.stats.TornBytes
	l.x, l.opened, l.base, l.seg = newIndex(), nil, 0, 0
	l.stats = Stats{TornBytes: torn}
	return l.recover()
}
