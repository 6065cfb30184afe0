package store

import (
	"fmt"
	"os"
	"time"
)

// maxBuffered bounds the records held in memory: past it, a write method
// writes them to the operating system itself, so that a caller who seldom
// calls Sync does not make the buffer grow without end.
const maxBuffered = 4 << 20

// appended finishes the record that starts at l.buf[start]: it applies it
// to the index and counts it. l.mu is held.
func (l *Log) appended(start int, msg bool) error {
	if err := l.x.apply(l.buf[start+recHeader:]); err != nil {
		// Only a record the write methods failed to validate gets here.
		l.buf = l.buf[:start]
		return err
	}
	l.seq++
	l.stats.Records++
	if msg {
		l.msgSeq++
		l.stats.Messages++
	}
	l.maybeCompact()
	if len(l.buf) >= maxBuffered && !l.flushing {
		buf, upto, msgs := l.take()
		l.done(buf, upto, msgs, false, write(l.f, buf, false))
	}
	return nil
}

// Sync implements Store: it makes the writes made before the call
// durable as the SyncPolicy says. Calls made at the same time share one
// write and one fsync: the first to find no flush under way writes
// everything buffered so far, for all of them (group commit).
func (l *Log) Sync() error {
	return l.commit(l.opts.Sync == SyncBatch, true)
}

// commit returns once every record appended before the call is written,
// and synced if sync.
func (l *Log) commit(sync, groups bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.seq
	if groups && len(l.open) > 0 {
		// A write of an open group is durable only with its end; and
		// what Sync returns for must end where no group is open, or
		// recovery could cut below it (see group.go). So no group
		// begins until the open ones end.
		l.quiesce()
		target = l.seq
		l.unquiesce()
	}
	for {
		if l.err != nil {
			return l.err
		}
		if l.written >= target && (!sync || l.synced >= target) {
			return nil
		}
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flushing = true
		buf, upto, msgs := l.take()
		f := l.f
		l.mu.Unlock()
		err := write(f, buf, sync)
		l.mu.Lock()
		l.flushing = false
		l.cond.Broadcast()
		l.done(buf, upto, msgs, sync, err)
	}
}

// take hands the buffered records to a flush. l.mu is held.
func (l *Log) take() (buf []byte, upto, msgs uint64) {
	buf, upto, msgs = l.buf, l.seq, l.msgSeq
	l.buf, l.spare = l.spare[:0], nil
	return buf, upto, msgs
}

// write writes buf to f and, if sync, fsyncs f.
func write(f *os.File, buf []byte, sync bool) error {
	if len(buf) > 0 {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	if sync {
		return f.Sync()
	}
	return nil
}

// done records the end of a flush of buf, which held the records up to
// upto. l.mu is held.
func (l *Log) done(buf []byte, upto, msgs uint64, synced bool, err error) {
	if err != nil {
		l.fail(err)
		return
	}
	if len(buf) > 0 {
		l.stats.Writes++
		l.stats.Bytes += uint64(len(buf))
		l.size += int64(len(buf))
	}
	l.written = upto
	if synced && l.synced < upto {
		l.stats.Syncs++
		l.stats.SyncedRecords += upto - l.synced
		l.stats.SyncedMessages += msgs - l.msgSynced
		l.synced, l.msgSynced = upto, msgs
	}
	if cap(buf) <= maxBuffered {
		l.spare = buf[:0]
	}
}

// fail makes the log unusable after a failed write or fsync: what is on
// disk is then unknown (after a failed fsync, the kernel may have dropped
// the pages), so no later Sync may claim durability. The segment is cut
// back to what was written whole, so that a reopen finds no partial
// batch. l.mu is held.
func (l *Log) fail(err error) {
	if l.err == nil {
		l.err = fmt.Errorf("store: log write failed: %w", err)
		l.log.Error("store: log unusable", "err", err)
	}
	l.f.Truncate(l.size)
}

// intervalSync fsyncs every Options.Interval, for SyncInterval.
func (l *Log) intervalSync() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-l.tick:
			return
		case <-t.C:
			if l.commit(true, false) != nil {
				return // the error stays for every later call
			}
		}
	}
}
