package store

import (
	"errors"
	"os"
	"slices"

	"github.com/ternmq/mqtt/internal/dirsync"
	"github.com/ternmq/mqtt/session"
)

// snapshotChunk is about how many bytes of snapshot a compaction encodes
// while it holds the lock.
const snapshotChunk = 256 << 10

// maybeCompact starts a compaction in the background when the files have
// grown past Options.CompactSize and twice the live state. l.mu is held.
func (l *Log) maybeCompact() {
	if l.compacting || l.closing || l.err != nil {
		return
	}
	total := l.base + l.size + int64(len(l.buf))
	if total <= l.opts.CompactSize || total <= 2*l.x.live || total < l.retryAt {
		return
	}
	l.compacting = true
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.compact()
	}()
}

// Compact compacts the log now, waiting first for a compaction under way.
// Writes start compactions on their own as the log grows (see Options);
// Compact is for tests and for tools.
func (l *Log) Compact() error {
	l.mu.Lock()
	for l.compacting && l.err == nil && !l.closing {
		l.cond.Wait()
	}
	switch {
	case l.err != nil:
		l.mu.Unlock()
		return l.err
	case l.closing:
		l.mu.Unlock()
		return ErrClosed
	}
	l.compacting = true
	l.wg.Add(1) // Close waits for it too
	l.mu.Unlock()
	defer l.wg.Done()
	return l.compact()
}

// compact switches the log to a new segment, writes a snapshot of the
// state to go before it, and removes the older files. l.compacting is set
// by the caller; compact clears it.
func (l *Log) compact() error {
	n, err := l.snapshot()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.compacting = false
	l.cond.Broadcast()
	if err != nil {
		// Try again once the log has grown by as much again, rather than
		// at every write.
		l.retryAt = l.base + l.size + int64(len(l.buf)) + l.opts.CompactSize
		if !errors.Is(err, ErrClosed) {
			l.log.Error("store: compaction failed", "dir", l.dir, "err", err)
		}
		return err
	}
	l.base = n
	l.stats.Compactions++
	// The writes made meanwhile may have grown the files past the limit
	// again; the check at the next write would come too late if there is
	// none.
	l.maybeCompact()
	return nil
}

// snapshot does the work of compact and returns the size of the snapshot.
func (l *Log) snapshot() (int64, error) {
	sync := l.opts.Sync != SyncNever
	// Take the flush to switch segments: the records buffered so far go
	// to the old segment, which is synced; those appended from now on go
	// to the new one.
	l.mu.Lock()
	l.quiesce() // no group spans the switch (group.go)
	for l.flushing {
		l.cond.Wait()
	}
	if l.err != nil || l.closing {
		err := l.err
		l.unquiesce()
		l.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return 0, err
	}
	l.flushing = true
	buf, upto, msgs := l.take()
	old, seg := l.f, l.seg+1
	l.mu.Unlock()
	werr := write(old, buf, sync)
	var nf *os.File
	var cerr error
	if werr == nil {
		nf, cerr = l.openSegment(seg)
	}
	l.mu.Lock()
	l.flushing = false
	l.cond.Broadcast()
	l.done(buf, upto, msgs, sync, werr)
	l.unquiesce()
	if werr != nil || cerr != nil {
		l.mu.Unlock()
		return 0, errors.Join(werr, cerr)
	}
	l.base += l.size
	l.f, l.seg, l.size = nf, seg, 0
	old.Close()
	sids := make([]uint32, 0, len(l.x.sids))
	for sid := range l.x.sids {
		sids = append(sids, sid)
	}
	topics := make([]string, 0, len(l.x.retained))
	for t := range l.x.retained {
		topics = append(topics, t)
	}
	l.mu.Unlock()
	slices.Sort(sids)

	// Write the state, a chunk at a time, each taken under the lock, so
	// that writers wait for one chunk at most. A session's records are
	// those of one instant later than the switch (a large session's
	// messages, of a few), and the new segment holds every write made
	// since the switch, which recovery replays over them.
	tmp := l.path("snap", seg) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int64, error) {
		f.Close()
		os.Remove(tmp)
		return 0, err
	}
	var b []byte
	var size int64
	var large *sessState    // a session whose messages are written in parts
	var hs []session.Handle // its messages still to write
	for len(sids) > 0 || len(topics) > 0 || large != nil {
		l.mu.Lock()
		if l.closing || l.err != nil {
			l.mu.Unlock()
			return fail(ErrClosed)
		}
		l.quiesce() // the chunk holds no part of a group (group.go)
		b = b[:0]
		for (large != nil || len(sids) > 0) && len(b) < l.chunk {
			if large != nil {
				if !large.deleted {
					b, hs = appendMessages(b, large, hs, l.chunk)
				}
				if len(hs) == 0 || large.deleted {
					large, hs = nil, nil
				}
				continue
			}
			if s := l.x.sids[sids[0]]; s != nil {
				if b, hs = appendSession(b, s, l.chunk/64); hs != nil {
					large = s
				}
			}
			sids = sids[1:]
		}
		for large == nil && len(sids) == 0 && len(topics) > 0 && len(b) < l.chunk {
			if r, ok := l.x.retained[topics[0]]; ok {
				b = appendRetained(b, []byte(topics[0]), r.payload, r.qos)
			}
			topics = topics[1:]
		}
		l.unquiesce()
		l.mu.Unlock()
		if _, err := f.Write(b); err != nil {
			return fail(err)
		}
		size += int64(len(b))
		if l.afterChunk != nil {
			l.afterChunk()
		}
	}
	// The chunks hold writes made up to now, some perhaps still only in
	// the buffer: the segment must hold them before the snapshot counts,
	// or a crash would leave a snapshot that is ahead of the log for some
	// sessions and not for others.
	if err := l.commit(sync, false); err != nil {
		return fail(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, l.path("snap", seg)); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if sync {
		// The snapshot must be in the directory before the files it
		// replaces leave it.
		if err := dirsync.Sync(l.dir); err != nil {
			return 0, err
		}
	}
	snaps, segs, err := l.files()
	if err != nil {
		return 0, err
	}
	for _, s := range snaps {
		if s < seg {
			os.Remove(l.path("snap", s))
		}
	}
	for _, s := range segs {
		if s < seg {
			os.Remove(l.path("log", s))
		}
	}
	return size, nil
}
