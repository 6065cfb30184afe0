package topic

import "strings"

// children holds the literal child levels of a trie node.
//
// Most nodes have one child or a few (a device's metrics), so up to maxList
// children live in a slice scanned linearly, which is smaller than a map
// and as fast at that size; past it they move to maps, and back to a slice
// when they shrink to minList, so that memory follows removals.
//
// Matching a large tree is bound by cache misses, so a level is found
// without following a pointer to its key when it can be: each entry keeps
// the first 8 bytes of its key in an integer (pre), and keys of at most 8
// bytes (most levels: "site", "dev", "temp", "42") are nothing but that
// integer, zero-padded. Padding is unambiguous because valid topics never
// hold U+0000; callers must not look up levels that do.
type children[N any] struct {
	list  []child[N]
	short map[uint64]*N // keys of at most 8 bytes, by pre, past maxList
	long  map[string]*N // longer keys, past maxList
}

type child[N any] struct {
	pre  uint64 // the first 8 bytes of the key, zero-padded
	long string // the key if longer than 8 bytes, else ""
	n    *N
}

const (
	maxList = 8
	minList = 4
)

// prefix returns the first 8 bytes of s, zero-padded, as a little-endian
// integer.
func prefix[S ~string | ~[]byte](s S) uint64 {
	var p uint64
	for i := range min(len(s), 8) {
		p |= uint64(s[i]) << (8 * i)
	}
	return p
}

// getChild returns the child of c for level, or nil. level must not hold a
// zero byte.
func getChild[N any, S ~string | ~[]byte](c *children[N], level S) *N {
	pre := prefix(level)
	short := len(level) <= 8
	for i := range c.list {
		e := &c.list[i]
		if e.pre == pre && (short && e.long == "" || !short && e.long == string(level)) {
			return e.n
		}
	}
	if short {
		return c.short[pre] // nil maps are empty
	}
	return c.long[string(level)]
}

// add adds n under key, which must not be present. A long key is cloned so
// that the tree does not keep the caller's whole topic alive.
func (c *children[N]) add(key string, n *N) {
	e := child[N]{pre: prefix(key), n: n}
	if len(key) > 8 {
		e.long = strings.Clone(key)
	}
	if c.short == nil && c.long == nil {
		if len(c.list) < maxList {
			c.list = append(c.list, e)
			return
		}
		for _, x := range c.list {
			c.mapAdd(x)
		}
		c.list = nil
	}
	c.mapAdd(e)
}

func (c *children[N]) mapAdd(e child[N]) {
	if e.long == "" {
		if c.short == nil {
			c.short = make(map[uint64]*N)
		}
		c.short[e.pre] = e.n
		return
	}
	if c.long == nil {
		c.long = make(map[string]*N)
	}
	c.long[e.long] = e.n
}

// del removes the child under key, if any.
func (c *children[N]) del(key string) {
	pre, short := prefix(key), len(key) <= 8
	if c.short != nil || c.long != nil {
		if short {
			delete(c.short, pre)
		} else {
			delete(c.long, key)
		}
		if n := len(c.short) + len(c.long); n <= minList {
			// Maps never shrink: move back to a slice.
			c.list = make([]child[N], 0, n)
			for pre, n := range c.short {
				c.list = append(c.list, child[N]{pre: pre, n: n})
			}
			for k, n := range c.long {
				c.list = append(c.list, child[N]{pre: prefix(k), long: k, n: n})
			}
			c.short, c.long = nil, nil
		}
		return
	}
	for i := range c.list {
		e := &c.list[i]
		if e.pre == pre && (short && e.long == "" || !short && e.long == key) {
			last := len(c.list) - 1
			c.list[i] = c.list[last]
			c.list[last] = child[N]{}
			c.list = c.list[:last]
			if last == 0 {
				c.list = nil
			}
			return
		}
	}
}

func (c *children[N]) len() int {
	return len(c.list) + len(c.short) + len(c.long)
}

// each calls fn for every child until fn returns false. dollar tells
// whether the child's key starts with '$'.
func (c *children[N]) each(fn func(dollar bool, n *N) bool) bool {
	for _, e := range c.list {
		if !fn(byte(e.pre) == '$', e.n) {
			return false
		}
	}
	for pre, n := range c.short {
		if !fn(byte(pre) == '$', n) {
			return false
		}
	}
	for k, n := range c.long {
		if !fn(k[0] == '$', n) {
			return false
		}
	}
	return true
}
