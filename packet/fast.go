package packet

import (
	"encoding/binary"
	"math/bits"
	"slices"
)

// The fast paths of the hot encoders and decoders. Each one decides only
// the common case, plain ASCII and valid fields, and hands everything else
// to the complete check it stands in front of, so that no rule is checked
// in one place only.

// asciiOK reports whether s holds only bytes in 0x01..0x7f, with no
// wildcard either when name is set. False means "not decided here": s may
// still be a valid string, with non-ASCII UTF-8 in it.
//
// It ORs the test of every eight-byte word together and branches once;
// the last word overlaps the one before it, and a string shorter than a
// word goes byte by byte.
func asciiOK(s []byte, name bool) bool {
	if len(s) < 8 {
		for _, c := range s {
			if c-1 >= 0x7f || name && (c == '+' || c == '#') {
				return false
			}
		}
		return true
	}
	var bad uint64
	last := binary.LittleEndian.Uint64(s[len(s)-8:])
	if name {
		for i := 0; i < len(s)-8; i += 8 {
			bad |= nameBits(binary.LittleEndian.Uint64(s[i : i+8]))
		}
		bad |= nameBits(last)
	} else {
		for i := 0; i < len(s)-8; i += 8 {
			bad |= plainBits(binary.LittleEndian.Uint64(s[i : i+8]))
		}
		bad |= plainBits(last)
	}
	return bad&msb == 0
}

// copyName copies the topic name s to the start of dst, which has room
// for it, and reports whether every byte of s is in 0x2c..0x7f: letters,
// digits, '/', '-', '.', '_' and the like, none of them a wildcard, U+0000
// or part of a multi-byte character. False means "not decided here".
//
// Testing that one range takes two operations a word, against seven for
// the exact test of asciiOK; a name with a byte below it ('$', ' ', '!'
// and so on) goes to the exact test instead. Adding 0x54 to a byte under
// 0x80 sets its high bit exactly when it is 0x2c or over, without a
// carry; a carry comes only from a byte over 0x80, which hi flags anyway.
func copyName(dst, s []byte) bool {
	if len(dst) < len(s) {
		return false // never, but it spares the checks of each index
	}
	if len(s) < 8 {
		lo, hi := byte(0xff), byte(0)
		for i, c := range s {
			dst[i] = c
			lo, hi = min(lo, c), hi|c
		}
		return lo >= 0x2c && hi < 0x80
	}
	d := dst[:len(s):len(s)]
	var hi uint64
	over := ^uint64(0)
	for i := 0; i < len(s)-8; i += 8 {
		x := binary.LittleEndian.Uint64(s[i : i+8])
		hi |= x
		over &= x + lsb*0x54
		binary.LittleEndian.PutUint64(d[i:i+8], x)
	}
	x := binary.LittleEndian.Uint64(s[len(s)-8:])
	hi |= x
	over &= x + lsb*0x54
	binary.LittleEndian.PutUint64(d[len(s)-8:], x)
	return (hi|^over)&msb == 0
}

// copyFilter copies the topic filter f to the start of dst, which has room
// for it (or does not copy, if dst is nil), and reports whether f is plain
// ASCII with every wildcard the whole of its level, '#' the last (what
// checkFilter would accept), reading f once. False means "not decided
// here", and leaves dst partly written: the caller encodes or checks again
// the slow way.
//
// A word with every byte in 0x2c..0x7f, as most are, is valid as it is:
// the wildcards are below that range. Only the others have their bytes
// checked and their wildcards found with wildBits and looked at where they
// are.
func copyFilter(dst, f []byte) bool {
	if len(f) < 8 {
		// One word, padded with 'a', which is neither a wildcard nor
		// U+0000.
		x := uint64(lsb * 'a')
		for i, c := range f {
			if dst != nil {
				dst[i] = c
			}
			x ^= uint64(c^'a') << (8 * i)
		}
		w := wildBits(x)
		return len(f) > 0 && plainBits(x)&msb == 0 && (w == 0 || wildcardsFit(f, 0, w))
	}
	var bad uint64
	for i := 0; i < len(f)-8; i += 8 {
		x := binary.LittleEndian.Uint64(f[i : i+8])
		if dst != nil {
			binary.LittleEndian.PutUint64(dst[i:i+8], x)
		}
		if !inRange(x) {
			bad |= plainBits(x)
			if w := wildBits(x); w != 0 && !wildcardsFit(f, i, w) {
				return false
			}
		}
	}
	last := len(f) - 8 // overlaps the word before: a wildcard checked twice is no harm
	x := binary.LittleEndian.Uint64(f[last:])
	if dst != nil {
		binary.LittleEndian.PutUint64(dst[last:last+8], x)
	}
	// A filter ending in "/#" or "/+", where most wildcards are, is in
	// range with its last byte taken for an 'a'.
	end := x
	if x>>48|0x800 == '/'|'+'<<8 {
		end = x&^(0xff<<56) | 'a'<<56
	}
	if !inRange(end) {
		bad |= plainBits(x)
		if w := wildBits(x); w != 0 && !wildcardsFit(f, last, w) {
			return false
		}
	}
	return bad&msb == 0
}

// inRange reports whether every byte of x is in 0x2c..0x7f, as copyName
// tests a whole name: adding 0x54 to a byte under 0x80 sets its high bit
// exactly when it is 0x2c or over, without a carry; a carry comes only
// from a byte over 0x80, which x's own high bits flag anyway.
func inRange(x uint64) bool { return (x|^(x+lsb*0x54))&msb == 0 }

// wildBits has the high bit set of every byte of x that is '+' or '#', and
// perhaps of others above one: '+' and '#' differ only in bit 3, so
// setting it turns both into '+', and no other byte; y is then zero where
// x has a wildcard, and y-lsb sets the high bit of each zero byte of y. A
// borrow may flag a byte above one as well (x's '*' or '"'), which
// wildcardsFit then takes for a '+' that needs slashes around it: at worst
// a valid filter goes the slow way.
func wildBits(x uint64) uint64 {
	y := (x | lsb*0x08) ^ lsb*'+'
	return (y - lsb) &^ y & msb
}

// wildcardsFit reports whether the wildcards of f flagged in w, the
// wildBits of f's word at off, each take a whole level, '#' the last.
func wildcardsFit(f []byte, off int, w uint64) bool {
	for ; w != 0; w &= w - 1 {
		k := off + bits.TrailingZeros64(w)/8
		if k > 0 && f[k-1] != '/' {
			return false
		}
		if k+1 < len(f) && (f[k] == '#' || f[k+1] != '/') {
			return false // '#' before the end, or '+' with more after it
		}
	}
	return true
}

// plainBits has a high bit set in some byte if x has a byte 0x00 or over
// 0x7f. If all eight are in 0x01..0x7f, x has no high bit set, and neither
// has x-lsb, since no byte borrows; a byte over 0x7f sets its own, and
// the lowest zero byte becomes 0xff in x-lsb.
func plainBits(x uint64) uint64 { return x - lsb | x }

// nameBits is plainBits that also flags '+' and '#'. The two differ only
// in bit 3, so setting it turns both into '+', and no other byte; y is
// then zero where x has a wildcard, and y-lsb sets the high bit of the
// lowest zero byte of y. It may set other high bits too, but only where y,
// and so x, has a byte over 0x7f, or above a zero byte: in a word that is
// flagged anyway.
func nameBits(x uint64) uint64 {
	y := (x | lsb*0x08) ^ lsb*'+'
	return x - lsb | x | (y - lsb)
}

// putHeader writes the fixed header into b, which has room for it, and
// returns its length.
func putHeader(b []byte, first byte, n int) int {
	b[0] = first
	i := 1
	for ; n >= 128; i++ {
		b[i] = byte(n) | 0x80
		n >>= 7
	}
	b[i] = byte(n)
	return i + 1
}

// onePass is a packet that Append writes in one pass when it can
// (SUBSCRIBE, UNSUBSCRIBE).
type onePass interface {
	Size() int
	appendFast(dst []byte) ([]byte, bool)
	appendChecked(dst []byte) ([]byte, error)
}

// appendAgain is Append for a onePass packet whose first pass could not
// finish: again into dst grown, if dst lacked the room, or else (and if
// that fails too) the checked way.
func appendAgain(p onePass, dst []byte) ([]byte, error) {
	if n := p.Size(); cap(dst)-len(dst) < n {
		if out, ok := p.appendFast(slices.Grow(dst, n)); ok {
			return out, nil
		}
	}
	return p.appendChecked(dst)
}

// longHeader ends a one-pass encoder (SUBSCRIBE's or UNSUBSCRIBE's
// appendFast) that wrote a packet's variable header and payload, n bytes,
// into b, dst's spare capacity, from b[2] on, leaving two bytes for a
// fixed header that needs more: it moves them up, if b has the room, and
// writes the header. It returns dst with the packet appended, or false.
func longHeader(dst, b []byte, n int, first byte) ([]byte, bool) {
	extra := lengthSize(n) - 1
	if n > MaxRemainingLength || len(b) < 2+n+extra {
		return nil, false
	}
	copy(b[2+extra:], b[2:2+n])
	putHeader(b, first, n)
	return dst[:len(dst)+2+extra+n], true
}

// grow extends dst by n bytes, allocating only when it lacks the room,
// and returns it and the slice of those n bytes, for the caller to fill.
func grow(dst []byte, n int) ([]byte, []byte) {
	l := len(dst)
	if cap(dst)-l < n {
		dst = append(dst[:cap(dst)], make([]byte, l+n-cap(dst))...)
	}
	dst = dst[:l+n]
	return dst, dst[l:]
}
