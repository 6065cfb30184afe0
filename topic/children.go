package topic

import (
	"slices"
	"strings"
)

// children holds the child levels of a trie node.
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
//
// The wildcard levels of a filter trie, which a match looks for at every
// node, sit at the head of list ('#' first, then '+') and never move to the
// maps: a match finds them in the entries it scans anyway, and a node needs
// no fields of its own for them. A literal level is never "#" or "+", so
// their keys are unambiguous too.
type children[N any] struct {
	list []child[N]    // the wildcards, then the literal levels until the maps are made
	maps *childMaps[N] // past maxList literal levels; nil while they fit in list
}

// childMaps hold the children of a node with many, apart from the node so
// that the many nodes with few children stay small.
type childMaps[N any] struct {
	short map[uint64]*N // keys of at most 8 bytes, by pre
	long  map[string]*N // longer keys
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

// The prefixes of the wildcard levels.
const (
	hashPre = uint64('#')
	plusPre = uint64('+')
)

// wild returns the number of wildcard entries at the head of c.list.
func (c *children[N]) wild() int {
	k := 0
	if k < len(c.list) && c.list[k].pre == hashPre {
		k++
	}
	if k < len(c.list) && c.list[k].pre == plusPre {
		k++
	}
	return k
}

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
	return getChildFrom(c, 0, level)
}

// getChildFrom is getChild past the first from entries of c.list, which a
// match has looked at already (the wildcards).
func getChildFrom[N any, S ~string | ~[]byte](c *children[N], from int, level S) *N {
	pre := prefix(level)
	short := len(level) <= 8
	for i := from; i < len(c.list); i++ {
		e := &c.list[i]
		if e.pre == pre && (short && e.long == "" || !short && e.long == string(level)) {
			return e.n
		}
	}
	if c.maps == nil {
		return nil
	}
	if short {
		return c.maps.short[pre] // nil maps are empty
	}
	return c.maps.long[string(level)]
}

// add adds n under key, which must not be present. A long key is cloned so
// that the tree does not keep the caller's whole topic alive.
func (c *children[N]) add(key string, n *N) {
	e := child[N]{pre: prefix(key), n: n}
	switch key {
	case "#":
		c.list = slices.Insert(c.list, 0, e)
		return
	case "+":
		i := 0
		if len(c.list) > 0 && c.list[0].pre == hashPre {
			i = 1
		}
		c.list = slices.Insert(c.list, i, e)
		return
	}
	if len(key) > 8 {
		e.long = strings.Clone(key)
	}
	if c.maps == nil {
		w := c.wild()
		if len(c.list)-w < maxList {
			c.list = append(c.list, e)
			return
		}
		c.maps = new(childMaps[N])
		for _, x := range c.list[w:] {
			c.mapAdd(x)
		}
		if w == 0 {
			c.list = nil
		} else {
			c.list = slices.Clone(c.list[:w])
		}
	}
	c.mapAdd(e)
}

func (c *children[N]) mapAdd(e child[N]) {
	m := c.maps
	if e.long == "" {
		if m.short == nil {
			m.short = make(map[uint64]*N)
		}
		m.short[e.pre] = e.n
		return
	}
	if m.long == nil {
		m.long = make(map[string]*N)
	}
	m.long[e.long] = e.n
}

// del removes the child under key, if any.
func (c *children[N]) del(key string) {
	pre, short := prefix(key), len(key) <= 8
	if m := c.maps; m != nil && key != "#" && key != "+" {
		if short {
			delete(m.short, pre)
		} else {
			delete(m.long, key)
		}
		if n := len(m.short) + len(m.long); n <= minList {
			// Maps never shrink: move back to a slice, after the
			// wildcards.
			c.list = append(make([]child[N], 0, len(c.list)+n), c.list...)
			for pre, n := range m.short {
				c.list = append(c.list, child[N]{pre: pre, n: n})
			}
			for k, n := range m.long {
				c.list = append(c.list, child[N]{pre: prefix(k), long: k, n: n})
			}
			c.maps = nil
		}
		return
	}
	for i := range c.list {
		e := &c.list[i]
		if e.pre == pre && (short && e.long == "" || !short && e.long == key) {
			c.list = slices.Delete(c.list, i, i+1) // in order: the wildcards stay at the head
			if len(c.list) == 0 {
				c.list = nil
			}
			return
		}
	}
}

func (c *children[N]) len() int {
	if c.maps == nil {
		return len(c.list)
	}
	return len(c.list) + len(c.maps.short) + len(c.maps.long)
}

// each calls fn for every child until fn returns false. dollar tells
// whether the child's key starts with '$'.
func (c *children[N]) each(fn func(dollar bool, n *N) bool) bool {
	for _, e := range c.list {
		if !fn(byte(e.pre) == '$', e.n) {
			return false
		}
	}
	if c.maps == nil {
		return true
	}
	for pre, n := range c.maps.short {
		if !fn(byte(pre) == '$', n) {
			return false
		}
	}
	for k, n := range c.maps.long {
		if !fn(k[0] == '$', n) {
			return false
		}
	}
	return true
}
