package topic

import (
	"strings"
	"sync"
	"sync/atomic"
)

// A Tree is a subscription index: a set of (filter, value) pairs, matched
// against topic names. Values are what the owner needs to deliver a
// message: a broker would use a comparable struct such as
//
//	type sub struct {
//		c   *conn
//		qos byte
//	}
//
// and a client routing messages to handlers an index into its handlers.
//
// A filter holds each value at most once; adding it again changes nothing.
// To change the QoS of a subscription, as a repeated SUBSCRIBE does
// [MQTT-3.8.4-3], remove the old value and add the new one. Filters are
// compared byte for byte, so removing "a/+" does not touch "a/#"
// [MQTT-3.10.4-1].
//
// Shared subscription filters ("$share/{group}/{filter}", see
// [ParseShared]) are kept apart: [Tree.Match] does not return them, and
// [Tree.MatchShared] returns each matching group once, with all its
// members, so the caller can pick the one that receives the message.
//
// A match walks the levels of the name, following at each node the
// literal child and the '+' child: its cost grows with the levels and the
// values found, not with the number of subscriptions. Nodes that no filter
// uses any longer are removed, so memory follows removals. A broker keeps
// each client's filters with its session anyway, and removes them from the
// Tree when the session ends.
//
// A Tree is safe for concurrent use: matches take a read lock and run in
// parallel with each other; Add and Remove take the write lock. The zero
// Tree is empty and ready to use. A Tree must not be copied after first use.
type Tree[T comparable] struct {
	mu     sync.RWMutex
	root   node[T] // plain subscriptions
	shared node[T] // shared subscriptions by their filter, groups at the nodes
	n      int
}

// node is a level of a filter. The children of a node are the levels that
// can follow it, "#" and "+" included (see children).
type node[T comparable] struct {
	kids children[node[T]]
	vals []T     // values of the filter ending here, in no particular order
	ext  *ext[T] // what few nodes need, kept apart to keep nodes small
}

type ext[T comparable] struct {
	index  map[T]int   // position of each value in vals, once there are many
	groups []*group[T] // shared subscriptions, in the shared trie only
}

// index returns the index of n's values, or nil.
func (n *node[T]) index() map[T]int {
	if n.ext == nil {
		return nil
	}
	return n.ext.index
}

// groups returns n's shared subscriptions.
func (n *node[T]) groups() []*group[T] {
	if n.ext == nil {
		return nil
	}
	return n.ext.groups
}

// setExt sets n's extras, dropping them when empty.
func (n *node[T]) setExt(index map[T]int, groups []*group[T]) {
	if index == nil && len(groups) == 0 {
		n.ext = nil
		return
	}
	if n.ext == nil {
		n.ext = new(ext[T])
	}
	n.ext.index, n.ext.groups = index, groups
}

// Values of a node are found by a linear scan up to indexAbove of them;
// beyond, through index, so that a filter with 100k subscribers ("#", a
// fleet's command topic) is not quadratic to build and take apart.
const (
	indexAbove = 16
	indexBelow = 8
)

// group is a shared subscription: a group name and a filter. Its members
// slice is copied on every change, never modified in place, so a reader may
// keep it after the tree's lock is released.
type group[T comparable] struct {
	name    string
	filter  string
	members []T
	next    atomic.Uint32
}

// Group is a shared subscription that matches a topic name: every message
// to that name goes to one of Members only.
type Group[T comparable] struct {
	Name    string // the group name: "g" for "$share/g/sport/#"
	Filter  string // the filter: "sport/#" for "$share/g/sport/#"
	Members []T    // at least one value; shared with the Tree, read-only
	next    *atomic.Uint32
}

// Pick returns one member of g, taking the members in turn across calls
// (round robin), from any goroutine. A broker that picks another way
// (a connected member, the least loaded one) uses Members instead.
// Pick of a Group without members returns the zero value.
func (g Group[T]) Pick() T {
	var zero T
	switch {
	case len(g.Members) == 0:
		return zero
	case g.next == nil:
		return g.Members[0]
	}
	return g.Members[(g.next.Add(1)-1)%uint32(len(g.Members))]
}

// Add adds the pair (filter, v). The filter must be valid (see
// [ValidFilter]), and a shared subscription filter must parse (see
// [ParseShared]); otherwise Add returns the error and changes nothing.
func (t *Tree[T]) Add(filter string, v T) error {
	if err := ValidFilter(filter); err != nil {
		return err
	}
	if IsShared(filter) {
		name, sub, err := ParseShared(filter)
		if err != nil {
			return err
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		n := t.shared.create(sub)
		var g *group[T]
		for _, x := range n.groups() {
			if x.name == name {
				g = x
				break
			}
		}
		if g == nil {
			g = &group[T]{name: strings.Clone(name), filter: strings.Clone(sub)}
			n.setExt(nil, append(n.groups(), g))
		}
		for _, x := range g.members {
			if x == v {
				return nil
			}
		}
		members := make([]T, len(g.members)+1)
		copy(members, g.members)
		members[len(g.members)] = v
		g.members = members
		t.n++
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.root.create(filter).add(v) {
		t.n++
	}
	return nil
}

// Remove removes the pair (filter, v) and reports whether it was there.
// The filter is compared literally with the filters added [MQTT-3.10.4-1].
func (t *Tree[T]) Remove(filter string, v T) bool {
	root, sub, name := &t.root, filter, ""
	if IsShared(filter) {
		var err error
		name, sub, err = ParseShared(filter)
		if err != nil {
			return false
		}
		root = &t.shared
	} else if ValidFilter(filter) != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	// Walk down, remembering the way back up for pruning.
	type step struct {
		parent *node[T]
		level  string
	}
	var buf [16]step
	path := buf[:0]
	n := root
	for i := 0; i <= len(sub); {
		j := levelEnd(sub, i)
		level := sub[i:j]
		path = append(path, step{n, level})
		n = n.child(level)
		if n == nil {
			return false
		}
		i = j + 1
	}

	if root == &t.shared {
		if !n.removeMember(name, v) {
			return false
		}
	} else if !n.remove(v) {
		return false
	}
	t.n--

	for k := len(path) - 1; k >= 0 && n.empty(); k-- {
		p := path[k]
		p.parent.kids.del(p.level)
		n = p.parent
	}
	return true
}

// Len returns the number of (filter, value) pairs in the tree, shared
// subscriptions included.
func (t *Tree[T]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Match appends to dst the value of every subscription whose filter matches
// the topic name, under the rules of [Match], and returns the extended
// slice. A value subscribed through several matching filters is appended
// once per filter: see [Dedupe] to merge them. Shared subscriptions are not
// included: see [Tree.MatchShared].
//
// Match does not allocate when dst has room for the values. It does not
// check name's UTF-8 encoding (a broker validates names once, as they
// arrive); an empty name, or one holding '+', '#' or U+0000, matches
// nothing.
func (t *Tree[T]) Match(name []byte, dst []T) []T {
	return matchTree(t, name, dst)
}

// MatchString is like [Tree.Match] but takes the name as a string.
func (t *Tree[T]) MatchString(name string, dst []T) []T {
	return matchTree(t, name, dst)
}

// MatchShared appends to dst every shared subscription whose filter matches
// the topic name, one Group per group name and filter, and returns the
// extended slice. Each message goes to one member of each group: see
// [Group.Pick]. Like [Tree.Match], it does not allocate when dst has room.
func (t *Tree[T]) MatchShared(name []byte, dst []Group[T]) []Group[T] {
	return matchSharedTree(t, name, dst)
}

// MatchSharedString is like [Tree.MatchShared] but takes the name as a
// string.
func (t *Tree[T]) MatchSharedString(name string, dst []Group[T]) []Group[T] {
	return matchSharedTree(t, name, dst)
}

// plainName reports whether name can match filters: not empty, no
// wildcard, no zero byte (which the trie's keys rely on).
func plainName[S ~string | ~[]byte](name S) bool {
	if len(name) == 0 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '+' || c == '#' || c == 0 {
			return false
		}
	}
	return true
}

func matchTree[T comparable, S ~string | ~[]byte](t *Tree[T], name S, dst []T) []T {
	if !plainName(name) {
		return dst
	}
	t.mu.RLock()
	n := &t.root
	if name[0] == '$' {
		// The wildcards of the first level do not match '$' names
		// [MQTT-4.7.2-1]: go straight to the literal child.
		j := levelEnd(name, 0)
		n = getChild(&n.kids, name[:j])
		if n != nil {
			dst = matchNode(n, name, j+1, dst)
		}
	} else {
		dst = matchNode(n, name, 0, dst)
	}
	t.mu.RUnlock()
	return dst
}

// matchNode appends the values of the filters below n that match the
// levels of name from index i on; i > len(name) when all levels are used.
// It follows the literal child in a loop and the '+' child by recursion.
func matchNode[T comparable, S ~string | ~[]byte](n *node[T], name S, i int, dst []T) []T {
	for {
		var plus *node[T]
		// The wildcards are the head of n.kids.list (w entries); its
		// first entry is at most plusPre only if one is there, or a
		// literal of one byte.
		w := 0
		if kids := n.kids.list; len(kids) > 0 && kids[0].pre <= plusPre {
			if kids[0].pre == hashPre {
				dst = append(dst, kids[0].n.vals...) // '#' includes the parent level
				w = 1
			}
			if w < len(kids) && kids[w].pre == plusPre {
				plus = kids[w].n
				w++
			}
		}
		if i > len(name) {
			return append(dst, n.vals...)
		}
		j := levelEnd(name, i)
		if plus != nil {
			dst = matchNode(plus, name, j+1, dst)
		}
		if n = getChildFrom(&n.kids, w, name[i:j]); n == nil {
			return dst
		}
		i = j + 1
	}
}

func matchSharedTree[T comparable, S ~string | ~[]byte](t *Tree[T], name S, dst []Group[T]) []Group[T] {
	if !plainName(name) {
		return dst
	}
	t.mu.RLock()
	n := &t.shared
	if name[0] == '$' {
		j := levelEnd(name, 0) // [MQTT-4.7.2-1], as in matchTree
		n = getChild(&n.kids, name[:j])
		if n != nil {
			dst = matchGroups(n, name, j+1, dst)
		}
	} else {
		dst = matchGroups(n, name, 0, dst)
	}
	t.mu.RUnlock()
	return dst
}

// matchGroups is matchNode for the shared subscription trie.
func matchGroups[T comparable, S ~string | ~[]byte](n *node[T], name S, i int, dst []Group[T]) []Group[T] {
	for {
		var plus *node[T]
		w := 0
		if kids := n.kids.list; len(kids) > 0 && kids[0].pre <= plusPre {
			if kids[0].pre == hashPre {
				dst = appendGroups(dst, kids[0].n.groups())
				w = 1
			}
			if w < len(kids) && kids[w].pre == plusPre {
				plus = kids[w].n
				w++
			}
		}
		if i > len(name) {
			return appendGroups(dst, n.groups())
		}
		j := levelEnd(name, i)
		if plus != nil {
			dst = matchGroups(plus, name, j+1, dst)
		}
		if n = getChildFrom(&n.kids, w, name[i:j]); n == nil {
			return dst
		}
		i = j + 1
	}
}

func appendGroups[T comparable](dst []Group[T], gs []*group[T]) []Group[T] {
	for _, g := range gs {
		dst = append(dst, Group[T]{Name: g.name, Filter: g.filter, Members: g.members, next: &g.next})
	}
	return dst
}

// child returns the child of n for a filter level, or nil.
func (n *node[T]) child(level string) *node[T] {
	return getChild(&n.kids, level)
}

// create returns the node of a valid filter below n, creating the missing
// nodes.
func (n *node[T]) create(filter string) *node[T] {
	for i := 0; i <= len(filter); {
		j := levelEnd(filter, i)
		level := filter[i:j]
		c := n.child(level)
		if c == nil {
			c = new(node[T])
			n.kids.add(level, c)
		}
		n = c
		i = j + 1
	}
	return n
}

// add adds v to the values of n and reports whether it was missing.
func (n *node[T]) add(v T) bool {
	if index := n.index(); index != nil {
		if _, ok := index[v]; ok {
			return false
		}
		index[v] = len(n.vals)
	} else {
		for _, x := range n.vals {
			if x == v {
				return false
			}
		}
	}
	n.vals = append(n.vals, v)
	if n.index() == nil && len(n.vals) > indexAbove {
		index := make(map[T]int, len(n.vals))
		for i, x := range n.vals {
			index[x] = i
		}
		n.setExt(index, n.groups())
	}
	return true
}

// remove removes v from the values of n and reports whether it was there.
func (n *node[T]) remove(v T) bool {
	i := -1
	index := n.index()
	if index != nil {
		k, ok := index[v]
		if !ok {
			return false
		}
		i = k
		delete(index, v)
	} else {
		for k, x := range n.vals {
			if x == v {
				i = k
				break
			}
		}
		if i < 0 {
			return false
		}
	}
	last := len(n.vals) - 1
	if i != last {
		n.vals[i] = n.vals[last]
		if index != nil {
			index[n.vals[i]] = i
		}
	}
	var zero T
	n.vals[last] = zero
	n.vals = n.vals[:last]
	if index != nil && len(n.vals) < indexBelow {
		n.setExt(nil, n.groups()) // maps never shrink; a scan is as fast at this size
	}
	switch {
	case len(n.vals) == 0:
		n.vals = nil
	case cap(n.vals) > 16 && len(n.vals) < cap(n.vals)/4:
		n.vals = append([]T(nil), n.vals...)
	}
	return true
}

// removeMember removes v from the shared group called name at n, and the
// group once it has no members, and reports whether v was there.
func (n *node[T]) removeMember(name string, v T) bool {
	groups := n.groups()
	for gi, g := range groups {
		if g.name != name {
			continue
		}
		for i, x := range g.members {
			if x != v {
				continue
			}
			if len(g.members) == 1 {
				last := len(groups) - 1
				groups[gi] = groups[last]
				groups[last] = nil
				n.setExt(n.index(), groups[:last])
				return true
			}
			members := make([]T, 0, len(g.members)-1)
			members = append(members, g.members[:i]...)
			g.members = append(members, g.members[i+1:]...)
			return true
		}
		return false
	}
	return false
}

// empty reports whether n holds nothing and can be removed.
func (n *node[T]) empty() bool {
	return len(n.vals) == 0 && n.ext == nil && n.kids.len() == 0
}

// Dedupe merges the values of s that have the same key, in place, and
// returns the shortened slice: the first value of each key keeps its place
// and becomes merge(first, later) for every later one, which is removed.
// The order of the first values is kept.
//
// A broker delivers a message once per client, at the highest QoS of the
// client's matching subscriptions [MQTT-3.3.5-1]; with values holding a
// client and a QoS:
//
//	subs = tree.Match(name, subs[:0])
//	subs = topic.Dedupe(subs,
//		func(s sub) *conn { return s.c },
//		func(a, b sub) sub { a.qos = max(a.qos, b.qos); return a })
//
// Dedupe does not allocate for up to 64 values; beyond, it uses a map.
func Dedupe[T any, K comparable](s []T, key func(T) K, merge func(kept, dup T) T) []T {
	if len(s) < 2 {
		return s
	}
	out := 1
	if len(s) <= 64 {
	small:
		for i := 1; i < len(s); i++ {
			k := key(s[i])
			for j := 0; j < out; j++ {
				if key(s[j]) == k {
					s[j] = merge(s[j], s[i])
					continue small
				}
			}
			s[out] = s[i]
			out++
		}
	} else {
		seen := make(map[K]int, len(s))
		seen[key(s[0])] = 0
		for i := 1; i < len(s); i++ {
			k := key(s[i])
			if j, ok := seen[k]; ok {
				s[j] = merge(s[j], s[i])
				continue
			}
			seen[k] = out
			s[out] = s[i]
			out++
		}
	}
	clear(s[out:])
	return s[:out]
}
