package topic_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/topic"
)

// specFilters are the filters of the examples of section 4.7, each with a
// value of its own.
var specFilters = []string{
	"sport/tennis/player1/#", // 0
	"sport/#",                // 1
	"#",                      // 2
	"sport/tennis/+",         // 3
	"sport/+",                // 4
	"+",                      // 5
	"+/+",                    // 6
	"/+",                     // 7
	"+/tennis/#",             // 8
	"sport/+/player1",        // 9
	"$SYS/#",                 // 10
	"$SYS/monitor/+",         // 11
	"+/monitor/Clients",      // 12
	"ACCOUNTS",               // 13
	"/finance",               // 14
	"sport/tennis/player1",   // 15
	"a//b",                   // 16
	"a/+/b",                  // 17
}

func specTree(t *testing.T) *topic.Tree[int] {
	t.Helper()
	tree := new(topic.Tree[int])
	for i, f := range specFilters {
		if err := tree.Add(f, i); err != nil {
			t.Fatalf("Add(%q): %v", f, err)
		}
	}
	return tree
}

func TestTreeMatch(t *testing.T) {
	tree := specTree(t)
	tests := []struct {
		name string
		want []int
	}{
		{"sport/tennis/player1", []int{0, 1, 2, 3, 8, 9, 15}},
		{"sport/tennis/player1/ranking", []int{0, 1, 2, 8}},
		{"sport/tennis/player1/score/wimbledon", []int{0, 1, 2, 8}},
		{"sport", []int{1, 2, 5}},              // "sport/#" matches "sport"; "sport/+" does not
		{"sport/", []int{1, 2, 4, 6}},          // "sport/+" matches "sport/"
		{"sport/tennis", []int{1, 2, 4, 6, 8}}, // "+/tennis/#" includes the parent level
		{"/finance", []int{2, 6, 7, 14}},       // "+/+" and "/+" but not "+"
		{"finance", []int{2, 5}},
		{"$SYS/monitor/Clients", []int{10, 11}}, // not "#" nor "+/monitor/Clients" [MQTT-4.7.2-1]
		{"$SYS", []int{10}},                     // not "+" [MQTT-4.7.2-1]
		{"$SYS/", []int{10}},                    // not "+/+"
		{"x/monitor/Clients", []int{2, 12}},
		{"ACCOUNTS", []int{2, 5, 13}},
		{"Accounts", []int{2, 5}}, // [MQTT-4.7.3-4]
		{"a//b", []int{2, 16, 17}},
		{"a/b", []int{2, 6}},
		{"$other", nil},
		{"", nil},        // not a name
		{"sport/+", nil}, // not a name
		{"sport/#", nil}, // not a name
		{"sport/tennis/player1/#", nil},
	}
	for _, tt := range tests {
		got := tree.MatchString(tt.name, nil)
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("MatchString(%q) = %v, want %v", tt.name, got, tt.want)
		}
		got = tree.Match([]byte(tt.name), got[:0])
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("Match(%q) = %v, want %v", tt.name, got, tt.want)
		}
		// Every value matched is a filter that matches [MQTT-3.3.2-3].
		for _, v := range got {
			if !topic.Match(specFilters[v], tt.name) {
				t.Errorf("Match(%q) returned the value of %q", tt.name, specFilters[v])
			}
		}
	}
}

func TestTreeMatchAppends(t *testing.T) {
	tree := specTree(t)
	dst := []int{-1}
	dst = tree.MatchString("ACCOUNTS", dst)
	slices.Sort(dst)
	if want := []int{-1, 2, 5, 13}; !slices.Equal(dst, want) {
		t.Errorf("MatchString appended %v, want %v", dst, want)
	}
}

func TestTreeAddRemove(t *testing.T) {
	var tree topic.Tree[string]
	for _, f := range []string{"a/+", "a/#", "a/b"} {
		if err := tree.Add(f, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tree.Add("a/+", "c1"); err != nil { // again: no change
		t.Fatal(err)
	}
	if err := tree.Add("a/+", "c2"); err != nil {
		t.Fatal(err)
	}
	if n := tree.Len(); n != 4 {
		t.Fatalf("Len() = %d, want 4", n)
	}
	got := tree.MatchString("a/b", nil)
	slices.Sort(got)
	if want := []string{"c1", "c1", "c1", "c2"}; !slices.Equal(got, want) {
		t.Fatalf("MatchString(\"a/b\") = %v, want %v: one value per matching subscription", got, want)
	}

	// Filters are compared literally [MQTT-3.10.4-1].
	for _, f := range []string{"a/b/#", "a/x", "+/b", "a", "a/+/", "a/B"} {
		if tree.Remove(f, "c1") {
			t.Errorf("Remove(%q, c1) = true, but it was never added", f)
		}
	}
	if tree.Remove("a/+", "c3") {
		t.Errorf("Remove(\"a/+\", c3) = true, but c3 never subscribed")
	}
	if !tree.Remove("a/+", "c1") {
		t.Fatalf("Remove(\"a/+\", c1) = false")
	}
	if tree.Remove("a/+", "c1") {
		t.Fatalf("second Remove(\"a/+\", c1) = true")
	}
	got = tree.MatchString("a/b", got[:0])
	slices.Sort(got)
	if want := []string{"c1", "c1", "c2"}; !slices.Equal(got, want) {
		t.Fatalf("after Remove, MatchString(\"a/b\") = %v, want %v", got, want)
	}
	for _, f := range []string{"a/#", "a/b", "a/+"} {
		tree.Remove(f, "c1")
		tree.Remove(f, "c2")
	}
	if n := tree.Len(); n != 0 {
		t.Fatalf("Len() = %d after removing all, want 0", n)
	}
	if got := tree.MatchString("a/b", got[:0]); len(got) != 0 {
		t.Fatalf("MatchString on an emptied tree = %v", got)
	}
}

func TestTreeAddInvalid(t *testing.T) {
	var tree topic.Tree[int]
	for _, tt := range []struct {
		filter string
		err    error
	}{
		{"", topic.ErrEmpty},               // [MQTT-4.7.3-1]
		{"a/#/b", topic.ErrMultiLevel},     // [MQTT-4.7.1-2]
		{"a+", topic.ErrSingleLevel},       // [MQTT-4.7.1-3]
		{"a\x00", topic.ErrNull},           // [MQTT-4.7.3-2]
		{"\xed\xa0\x80", topic.ErrUTF8},    // [MQTT-1.5.3-1]
		{longTopic, topic.ErrTooLong},      // [MQTT-4.7.3-3]
		{"$share//a", topic.ErrShareGroup}, // MQTT 5.0 [MQTT-4.8.2-1]
		{"$share/g", topic.ErrShareFilter}, // MQTT 5.0 [MQTT-4.8.2-2]
		{"$share/+/a", topic.ErrShareName}, // MQTT 5.0 [MQTT-4.8.2-2]
	} {
		if err := tree.Add(tt.filter, 1); err != tt.err {
			t.Errorf("Add(%.40q) = %v, want %v", tt.filter, err, tt.err)
		}
		if tree.Remove(tt.filter, 1) {
			t.Errorf("Remove(%.40q) = true", tt.filter)
		}
	}
	if n := tree.Len(); n != 0 {
		t.Errorf("Len() = %d after invalid adds, want 0", n)
	}
}

// A broker delivers once per client at the highest QoS of its matching
// subscriptions [MQTT-3.3.5-1]: values carry the QoS, Dedupe merges.
func TestTreeDedupeMaxQoS(t *testing.T) {
	type sub struct {
		client string
		qos    byte
	}
	var tree topic.Tree[sub]
	for _, s := range []struct {
		filter string
		sub    sub
	}{
		{"sport/#", sub{"a", 0}},
		{"sport/tennis/+", sub{"a", 2}},
		{"+/tennis/player1", sub{"a", 1}},
		{"sport/tennis/player1", sub{"b", 1}},
		{"#", sub{"b", 0}},
		{"other", sub{"c", 2}},
	} {
		if err := tree.Add(s.filter, s.sub); err != nil {
			t.Fatal(err)
		}
	}
	got := tree.MatchString("sport/tennis/player1", nil)
	got = topic.Dedupe(got,
		func(s sub) string { return s.client },
		func(a, b sub) sub { a.qos = max(a.qos, b.qos); return a })
	slices.SortFunc(got, func(a, b sub) int { return int(a.client[0]) - int(b.client[0]) })
	if want := []sub{{"a", 2}, {"b", 1}}; !slices.Equal(got, want) {
		t.Errorf("deduped match = %v, want %v", got, want)
	}
}

func TestDedupe(t *testing.T) {
	for _, n := range []int{0, 1, 2, 10, 64, 65, 1000} {
		// Values i%7 with weight i: keys 0..6, merge keeps the sum.
		type kv struct{ k, sum int }
		s := make([]kv, n)
		want := map[int]int{}
		var order []int
		for i := range s {
			s[i] = kv{i % 7, i}
			if _, ok := want[i%7]; !ok {
				order = append(order, i%7)
			}
			want[i%7] += i
		}
		got := topic.Dedupe(s, func(x kv) int { return x.k }, func(a, b kv) kv { a.sum += b.sum; return a })
		if len(got) != len(want) {
			t.Fatalf("n=%d: Dedupe kept %d values, want %d", n, len(got), len(want))
		}
		for i, x := range got {
			if x.k != order[i] || x.sum != want[x.k] {
				t.Fatalf("n=%d: Dedupe[%d] = %v, want key %d sum %d", n, i, x, order[i], want[order[i]])
			}
		}
		for _, x := range s[len(got):] {
			if x != (kv{}) {
				t.Fatalf("n=%d: Dedupe left %v past the end", n, x)
			}
		}
	}
}

func TestTreeShared(t *testing.T) {
	var tree topic.Tree[string]
	for _, s := range [][2]string{
		{"$share/g1/sport/#", "a"},
		{"$share/g1/sport/#", "b"},
		{"$share/g1/sport/#", "b"}, // again: no change
		{"$share/g2/sport/#", "c"},
		{"$share/g1/sport/tennis", "d"}, // same group name, other filter: another group
		{"$share/g1/$SYS/#", "e"},
		{"sport/#", "plain"},
	} {
		if err := tree.Add(s[0], s[1]); err != nil {
			t.Fatalf("Add(%q): %v", s[0], err)
		}
	}
	if n := tree.Len(); n != 6 {
		t.Fatalf("Len() = %d, want 6", n)
	}
	if got := tree.MatchString("sport/tennis", nil); !slices.Equal(got, []string{"plain"}) {
		t.Errorf("MatchString(\"sport/tennis\") = %v, want only the plain subscription", got)
	}
	type group struct {
		Name, Filter string
		Members      []string
	}
	groups := func(name string) []group {
		var out []group
		for _, g := range tree.MatchShared([]byte(name), nil) {
			m := slices.Clone(g.Members)
			slices.Sort(m)
			out = append(out, group{g.Name, g.Filter, m})
		}
		slices.SortFunc(out, func(a, b group) int {
			if a.Name+a.Filter < b.Name+b.Filter {
				return -1
			}
			return 1
		})
		return out
	}
	want := []group{
		{"g1", "sport/#", []string{"a", "b"}},
		{"g1", "sport/tennis", []string{"d"}},
		{"g2", "sport/#", []string{"c"}},
	}
	if diff := cmp.Diff(want, groups("sport/tennis")); diff != "" {
		t.Errorf("MatchShared(\"sport/tennis\") (-want +got):\n%s", diff)
	}
	// [MQTT-4.7.2-1] holds for shared filters too: "$share/g/#" does not
	// match "$SYS/x", "$share/g/$SYS/#" does.
	if err := tree.Add("$share/g3/#", "f"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]group{{"g1", "$SYS/#", []string{"e"}}}, groups("$SYS/x")); diff != "" {
		t.Errorf("MatchShared(\"$SYS/x\") (-want +got):\n%s", diff)
	}

	// Pick takes the members in turn.
	gs := tree.MatchSharedString("sport", nil)
	var g topic.Group[string]
	for _, x := range gs {
		if x.Name == "g1" {
			g = x
		}
	}
	picked := map[string]int{}
	for range 10 {
		picked[g.Pick()]++
	}
	if picked["a"] != 5 || picked["b"] != 5 {
		t.Errorf("10 Picks gave %v, want a and b 5 times each", picked)
	}
	if (topic.Group[string]{}).Pick() != "" {
		t.Errorf("Pick of an empty Group is not the zero value")
	}

	// Members seen by a reader never change under it.
	before := g.Members
	if err := tree.Add("$share/g1/sport/#", "z"); err != nil {
		t.Fatal(err)
	}
	tree.Remove("$share/g1/sport/#", "a")
	if len(before) != 2 || !slices.Contains(before, "a") || slices.Contains(before, "z") {
		t.Errorf("Members of a returned Group changed to %v", before)
	}

	// Removing the last member removes the group.
	for _, s := range [][2]string{{"$share/g1/sport/#", "b"}, {"$share/g1/sport/#", "z"}, {"$share/g2/sport/#", "c"}} {
		if !tree.Remove(s[0], s[1]) {
			t.Errorf("Remove(%q, %q) = false", s[0], s[1])
		}
	}
	if tree.Remove("$share/g2/sport/#", "c") || tree.Remove("$share/g9/sport/tennis", "d") || tree.Remove("$share//x", "d") {
		t.Errorf("Remove of a missing shared subscription = true")
	}
	if diff := cmp.Diff([]group{{"g1", "sport/tennis", []string{"d"}}, {"g3", "#", []string{"f"}}}, groups("sport/tennis")); diff != "" {
		t.Errorf("MatchShared after removals (-want +got):\n%s", diff)
	}
	if got := tree.MatchSharedString("sport/+", nil); len(got) != 0 {
		t.Errorf("MatchSharedString of a filter = %v, want nothing", got)
	}
}

// TestTreeConcurrent runs matches in parallel with a writer; run with
// -race.
func TestTreeConcurrent(t *testing.T) {
	var tree topic.Tree[int]
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]int, 0, 64)
			gs := make([]topic.Group[int], 0, 8)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("site/%d/dev/%d", (i+r)%10, i%5)
				dst = tree.MatchString(name, dst[:0])
				for _, v := range dst {
					if v < 0 || v >= 1000 {
						t.Errorf("MatchString(%q) returned %d, never added", name, v)
						return
					}
				}
				for _, g := range tree.MatchShared([]byte(name), gs[:0]) {
					_ = g.Pick()
				}
			}
		}()
	}
	filters := func(i int) []string {
		return []string{
			fmt.Sprintf("site/%d/dev/+", i%10),
			fmt.Sprintf("site/%d/#", i%10),
			fmt.Sprintf("$share/g%d/site/+/dev/%d", i%3, i%5),
		}
	}
	for i := range 1000 {
		for _, f := range filters(i) {
			if err := tree.Add(f, i); err != nil {
				t.Fatal(err)
			}
		}
		if i >= 10 {
			for _, f := range filters(i - 10) {
				if !tree.Remove(f, i-10) {
					t.Errorf("Remove(%q, %d) = false", f, i-10)
				}
			}
		}
	}
	if n := tree.Len(); n != 30 {
		t.Errorf("Len() = %d, want 30", n)
	}
	close(stop)
	wg.Wait()
}

// TestTreeLevelKeys checks levels that share their first 8 bytes, levels
// of 8 bytes and less, and control characters, with few children (kept in
// a slice) and many (kept in maps), and while they are removed again.
func TestTreeLevelKeys(t *testing.T) {
	levels := []string{
		"abcdefgh", "abcdefghi", "abcdefghij", "abcdefgi", "abcdefg", "a", "a\x01", "\x01",
		"", "$", "$x", "日本", "12345678", "123456789", "abcdefghi/", "x\x01\x01\x01\x01\x01\x01\x01\x01",
	}
	for _, many := range []bool{false, true} {
		var tree topic.Tree[string]
		var r topic.Retained[string]
		use := levels[:5] // a slice of children
		if many {
			use = levels // maps of children
		}
		for _, l := range use {
			for _, name := range []string{"p/" + l, "p/" + l + "/q"} {
				if err := tree.Add(name, name); err != nil {
					t.Fatal(err)
				}
				if err := r.Set(name, name); err != nil {
					t.Fatal(err)
				}
			}
		}
		for k := 0; k <= len(use); k++ {
			for i, l := range use {
				for _, name := range []string{"p/" + l, "p/" + l + "/q"} {
					want := []string{name}
					if i < k {
						want = nil // removed below
					}
					if got := tree.MatchString(name, nil); !slices.Equal(got, want) {
						t.Fatalf("many=%v, %d removed: MatchString(%q) = %q, want %q", many, k, name, got, want)
					}
					if v, ok := r.Get(name); ok != (want != nil) || ok && v != name {
						t.Fatalf("many=%v, %d removed: Get(%q) = %q, %v", many, k, name, v, ok)
					}
				}
			}
			if got := tree.MatchString("p/abcdefgh\x00", nil); len(got) != 0 {
				t.Fatalf("MatchString with U+0000 = %q, want nothing", got)
			}
			if _, ok := r.Get("p/abcdefgh\x00"); ok {
				t.Fatalf("Get with U+0000 found a value")
			}
			if k < len(use) {
				for _, name := range []string{"p/" + use[k], "p/" + use[k] + "/q"} {
					if !tree.Remove(name, name) || !r.Delete(name) {
						t.Fatalf("removing %q failed", name)
					}
				}
			}
		}
		if tree.Len() != 0 || r.Len() != 0 {
			t.Fatalf("Len() = %d, %d after removing all", tree.Len(), r.Len())
		}
	}
}
