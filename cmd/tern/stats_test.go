package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistBuckets(t *testing.T) {
	// Every value falls in the bucket whose bounds enclose it, and bucket
	// widths stay within 1/64 of their values.
	vals := []uint64{0, 1, 63, 64, 65, 127, 128, 129, 1000, 1 << 20, 1<<20 + 1, 123456789, 1<<62 + 12345, math.MaxInt64}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, r.Uint64N(math.MaxInt64)>>r.UintN(63))
	}
	for _, v := range vals {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, out of [0, %d)", v, i, histBuckets)
		}
		lo, hi := histLow(i), histLow(i+1)
		if v < lo || (i+1 < histBuckets && v >= hi) {
			t.Fatalf("value %d in bucket %d = [%d, %d)", v, i, lo, hi)
		}
		if v >= histSub && float64(hi-lo) > float64(lo)/histSub {
			t.Fatalf("bucket %d = [%d, %d) wider than 1/%d", i, lo, hi, histSub)
		}
	}
	if histIndex(math.MaxInt64) != histBuckets-1 {
		t.Errorf("largest value in bucket %d, want the last one, %d", histIndex(math.MaxInt64), histBuckets-1)
	}
}

func TestHistQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h histogram
	var all []int64
	for range 100000 {
		// Latencies of a few µs to a few s, log-normal-ish.
		v := int64(math.Exp(r.NormFloat64()*2+12)) + 1000
		h.record(v)
		all = append(all, v)
	}
	slices.Sort(all)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		want := all[int(math.Ceil(q*float64(len(all))))-1]
		got := h.quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/histSub {
			t.Errorf("quantile(%v) = %d, want %d within 1/%d (off by %.3f%%)", q, got, want, histSub, rel*100)
		}
	}
	if h.quantile(1) != all[len(all)-1] || h.max != all[len(all)-1] {
		t.Errorf("max = %d, %d; want %d", h.quantile(1), h.max, all[len(all)-1])
	}
	if h.quantile(0) != all[0] {
		t.Errorf("min = %d, want %d", h.quantile(0), all[0])
	}
	if h.n != uint64(len(all)) {
		t.Errorf("n = %d", h.n)
	}

	// Merging two halves gives the same histogram as recording everything.
	var a, b histogram
	for i, v := range all {
		if i%2 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(&b)
	if a != h {
		t.Error("merged halves differ from the whole")
	}
}

func TestHistSmall(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 || h.mean() != 0 {
		t.Error("empty histogram reports values")
	}
	for _, v := range []int64{5, 1, 3, -7} { // negative: a clock step, counted as 0
		h.record(v)
	}
	for q, want := range map[float64]int64{0.25: 0, 0.5: 1, 0.75: 3, 1: 5} {
		if got := h.quantile(q); got != want {
			t.Errorf("quantile(%v) = %d, want %d (exact below %d)", q, got, want, histSub)
		}
	}
	if h.mean() != 9.0/4 {
		t.Errorf("mean = %v", h.mean())
	}
	h.reset()
	if h.n != 0 || h.max != 0 {
		t.Error("reset kept values")
	}
}

func TestSeqSet(t *testing.T) {
	var s seqSet
	for _, c := range []struct {
		seq uint64
		dup bool
	}{
		{0, false}, {1, false}, {0, true}, {seqPageBits - 1, false}, {seqPageBits, false},
		{seqPageBits, true}, {5 * seqPageBits, false}, {1, true}, {math.MaxUint64, false}, {math.MaxUint64, true},
	} {
		if got := s.add(c.seq); got != c.dup {
			t.Errorf("add(%d) = %v, want %v", c.seq, got, c.dup)
		}
	}
	if s.distinct != 6 {
		t.Errorf("distinct = %d, want 6", s.distinct)
	}
	if len(s.pages) != 4 {
		t.Errorf("%d pages, want 4 (memory follows the numbers seen)", len(s.pages))
	}
}

func TestBenchHeader(t *testing.T) {
	h := benchHeader{phase: 3, pub: 0x01020304, seq: 0x1112131415161718, sent: 0x2122232425262728}
	b := make([]byte, benchHeaderLen+5)
	h.put(b)
	want := []byte{'t', 'b', 3, 0, 1, 2, 3, 4, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28}
	if !slices.Equal(b[:benchHeaderLen], want) {
		t.Errorf("header % x\nwant      % x", b[:benchHeaderLen], want)
	}
	got, err := parseBenchHeader(b)
	if err != nil || got != h {
		t.Errorf("parse = %+v, %v; want %+v", got, err, h)
	}
	for _, bad := range [][]byte{nil, want[:benchHeaderLen-1], append([]byte{'x'}, want[1:]...), append([]byte{'t', 'b', 3, 1}, want[4:]...)} {
		if _, err := parseBenchHeader(bad); err == nil {
			t.Errorf("parseBenchHeader(% x) accepted", bad)
		}
	}
}
