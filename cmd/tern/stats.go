package main

import (
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"time"
)

// histogram records durations in nanoseconds in log-linear buckets: exact
// below 64 ns, then 64 buckets per power of two, so any quantile it reports
// is within 1/64 (1.6%) of the true value. Its size is fixed whatever it
// records, which keeps a long bench run's memory flat.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64 // for the mean; float so it cannot overflow
	min    int64
	max    int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	// Values below 2^63 (int64) need shifts up to 62-histSubBits.
	histBuckets = histSub + (63-histSubBits)*histSub
)

// histIndex returns the bucket of v (v >= 0).
func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1 // v>>shift is in [histSub, 2*histSub)
	return histSub + shift*histSub + int(v>>uint(shift)) - histSub
}

// histLow returns the smallest value that falls into bucket i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	shift := (i - histSub) / histSub
	return uint64(histSub+(i-histSub)%histSub) << uint(shift)
}

// record adds one value; negative values (clock steps) count as zero.
func (h *histogram) record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.counts[histIndex(uint64(ns))]++
	if h.n == 0 || ns < h.min {
		h.min = ns
	}
	if ns > h.max {
		h.max = ns
	}
	h.n++
	h.sum += float64(ns)
}

// merge adds every value recorded by o.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

func (h *histogram) reset() { *h = histogram{} }

// quantile returns the value below which a fraction q of the recorded values
// fall, as the middle of its bucket (clamped to the observed min and max), or
// 0 when nothing was recorded.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n))) // 1-based rank of the value wanted
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo := histLow(i)
			hi := histLow(i + 1)
			v := int64(lo + (hi-lo)/2)
			if i < histSub {
				v = int64(lo) // exact buckets
			}
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// seqSet remembers which sequence numbers of one publisher a subscriber has
// seen, to tell losses from duplicates. It is a bitset in pages allocated on
// demand: one bit per message actually sent, so memory follows the run's
// length (125 kB per million messages) and never a forged number from the
// wire, which is refused above maxSeq.
type seqSet struct {
	pages    map[uint64]*[seqPageWords]uint64
	distinct uint64
}

const (
	seqPageBits  = 1 << 16
	seqPageWords = seqPageBits / 64
)

// add records seq and reports whether it had been seen before.
func (s *seqSet) add(seq uint64) (dup bool) {
	if s.pages == nil {
		s.pages = make(map[uint64]*[seqPageWords]uint64)
	}
	p := s.pages[seq/seqPageBits]
	if p == nil {
		p = new([seqPageWords]uint64)
		s.pages[seq/seqPageBits] = p
	}
	off := seq % seqPageBits
	w, bit := off/64, uint64(1)<<(off%64)
	if p[w]&bit != 0 {
		return true
	}
	p[w] |= bit
	s.distinct++
	return false
}

// Bench payloads start with a header that lets a subscriber attribute each
// message to its publisher and phase, spot losses and duplicates by sequence
// number, and measure latency from the send time; the rest is padding up to
// the requested size.
//
//	0  2  magic "tb"
//	2  1  phase number
//	3  1  reserved, 0
//	4  4  publisher number, big-endian
//	8  8  sequence number, from 0, big-endian
//	16 8  send time, nanoseconds since the bench started (monotonic clock)
const benchHeaderLen = 24

var errNotBench = errors.New("not a bench message")

type benchHeader struct {
	phase byte
	pub   uint32
	seq   uint64
	sent  int64
}

// put writes the header into b, which has room for benchHeaderLen bytes.
func (h benchHeader) put(b []byte) {
	_ = b[benchHeaderLen-1]
	b[0], b[1], b[2], b[3] = 't', 'b', h.phase, 0
	binary.BigEndian.PutUint32(b[4:], h.pub)
	binary.BigEndian.PutUint64(b[8:], h.seq)
	binary.BigEndian.PutUint64(b[16:], uint64(h.sent))
}

func parseBenchHeader(b []byte) (benchHeader, error) {
	if len(b) < benchHeaderLen || b[0] != 't' || b[1] != 'b' || b[3] != 0 {
		return benchHeader{}, errNotBench
	}
	return benchHeader{
		phase: b[2],
		pub:   binary.BigEndian.Uint32(b[4:]),
		seq:   binary.BigEndian.Uint64(b[8:]),
		sent:  int64(binary.BigEndian.Uint64(b[16:])),
	}, nil
}

// clock gives bench timestamps: monotonic nanoseconds since the run began,
// comparable between publishers and subscribers of the same process.
type clock struct{ start time.Time }

func (c clock) now() int64 { return int64(time.Since(c.start)) }
