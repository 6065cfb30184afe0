package topic

// children holds the literal child levels of a trie node. Most nodes have
// one child or a few (a device's metrics, a site's devices are the
// exception), so up to maxList children live in a slice scanned linearly,
// which is smaller and as fast as a map at that size; past it they move to
// a map, and back to a slice when they shrink to minList, so that memory
// follows removals.
type children[N any] struct {
	list []child[N]
	m    map[string]*N
}

type child[N any] struct {
	key string
	n   *N
}

const (
	maxList = 8
	minList = 4
)

// get returns the child for level, or nil. Callers converting a []byte to
// string in the argument do not allocate: the conversion is only used for
// comparisons and the map index.
func (c *children[N]) get(level string) *N {
	if c.m != nil {
		return c.m[level]
	}
	for i := range c.list {
		if c.list[i].key == level {
			return c.list[i].n
		}
	}
	return nil
}

// add adds n under key, which must not be present.
func (c *children[N]) add(key string, n *N) {
	if c.m != nil {
		c.m[key] = n
		return
	}
	if len(c.list) < maxList {
		c.list = append(c.list, child[N]{key, n})
		return
	}
	c.m = make(map[string]*N, 2*maxList)
	for _, e := range c.list {
		c.m[e.key] = e.n
	}
	c.m[key] = n
	c.list = nil
}

// del removes the child under key, if any.
func (c *children[N]) del(key string) {
	if c.m != nil {
		delete(c.m, key)
		if len(c.m) <= minList {
			// Maps never shrink: move back to a slice.
			c.list = make([]child[N], 0, len(c.m))
			for k, n := range c.m {
				c.list = append(c.list, child[N]{k, n})
			}
			c.m = nil
		}
		return
	}
	for i := range c.list {
		if c.list[i].key == key {
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
	if c.m != nil {
		return len(c.m)
	}
	return len(c.list)
}

// each calls fn for every child until fn returns false.
func (c *children[N]) each(fn func(key string, n *N) bool) bool {
	if c.m != nil {
		for k, n := range c.m {
			if !fn(k, n) {
				return false
			}
		}
		return true
	}
	for _, e := range c.list {
		if !fn(e.key, e.n) {
			return false
		}
	}
	return true
}
