package topic

import "sync"

// Retained is an index of topic names with a value each, looked up with a
// topic filter: the other way round from [Tree]. A broker keeps its
// retained messages in one, and on each new subscription sends those whose
// names match the filter [MQTT-3.3.1-6].
//
// A Retained is safe for concurrent use: lookups take a read lock and run
// in parallel; Set and Delete take the write lock. Nodes no name uses any
// longer are removed. The zero Retained is empty and ready to use. A
// Retained must not be copied after first use.
type Retained[V any] struct {
	mu   sync.RWMutex
	root rnode[V]
	n    int
}

type rnode[V any] struct {
	kids children[rnode[V]]
	val  V
	set  bool // whether a name ends here
}

// Set sets the value of the topic name, replacing any previous one. The
// name must be valid (see [ValidName]); otherwise Set returns the error and
// changes nothing.
func (r *Retained[V]) Set(name string, v V) error {
	if err := ValidName(name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := &r.root
	for i := 0; i <= len(name); {
		j := levelEnd(name, i)
		c := getChild(&n.kids, name[i:j])
		if c == nil {
			c = new(rnode[V])
			n.kids.add(name[i:j], c)
		}
		n = c
		i = j + 1
	}
	if !n.set {
		r.n++
	}
	n.val, n.set = v, true
	return nil
}

// Get returns the value of the topic name, and whether there is one.
func (r *Retained[V]) Get(name string) (V, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n := r.find(name); n != nil && n.set {
		return n.val, true
	}
	var zero V
	return zero, false
}

func (r *Retained[V]) find(name string) *rnode[V] {
	if ValidName(name) != nil {
		return nil
	}
	n := &r.root
	for i := 0; i <= len(name) && n != nil; {
		j := levelEnd(name, i)
		n = getChild(&n.kids, name[i:j])
		i = j + 1
	}
	return n
}

// Delete removes the topic name and its value, and reports whether it was
// there.
func (r *Retained[V]) Delete(name string) bool {
	if ValidName(name) != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	type step struct {
		parent *rnode[V]
		level  string
	}
	var buf [16]step
	path := buf[:0]
	n := &r.root
	for i := 0; i <= len(name); {
		j := levelEnd(name, i)
		path = append(path, step{n, name[i:j]})
		if n = getChild(&n.kids, name[i:j]); n == nil {
			return false
		}
		i = j + 1
	}
	if !n.set {
		return false
	}
	var zero V
	n.val, n.set = zero, false
	r.n--
	for k := len(path) - 1; k >= 0 && !n.set && n.kids.len() == 0; k-- {
		path[k].parent.kids.del(path[k].level)
		n = path[k].parent
	}
	return true
}

// Len returns the number of names in the index.
func (r *Retained[V]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// Match appends to dst the value of every name that matches the topic
// filter, under the rules of [Match], in no particular order, and returns
// the extended slice. An invalid filter matches nothing. Pass the filter of
// a shared subscription without its "$share/{group}/" prefix (see
// [ParseShared]).
func (r *Retained[V]) Match(filter string, dst []V) []V {
	if ValidFilter(filter) != nil {
		return dst
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.root.match(filter, 0, true, dst)
}

// match appends the values of the names below n that match the levels of
// filter from index i on; i > len(filter) when all levels are used. At the
// first level (top), wildcards skip names starting with '$'
// [MQTT-4.7.2-1].
func (n *rnode[V]) match(filter string, i int, top bool, dst []V) []V {
	for {
		if i > len(filter) {
			if n.set {
				dst = append(dst, n.val)
			}
			return dst
		}
		j := levelEnd(filter, i)
		switch filter[i:j] {
		case "#":
			// '#' matches the parent level and all below it.
			if !top && n.set {
				dst = append(dst, n.val)
			}
			n.kids.each(func(dollar bool, c *rnode[V]) bool {
				if !top || !dollar {
					dst = c.all(dst)
				}
				return true
			})
			return dst
		case "+":
			n.kids.each(func(dollar bool, c *rnode[V]) bool {
				if !top || !dollar {
					dst = c.match(filter, j+1, false, dst)
				}
				return true
			})
			return dst
		}
		if n = getChild(&n.kids, filter[i:j]); n == nil {
			return dst
		}
		i, top = j+1, false
	}
}

// all appends the values of n and of every node below it.
func (n *rnode[V]) all(dst []V) []V {
	if n.set {
		dst = append(dst, n.val)
	}
	n.kids.each(func(_ bool, c *rnode[V]) bool {
		dst = c.all(dst)
		return true
	})
	return dst
}
