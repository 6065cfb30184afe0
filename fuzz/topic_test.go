package fuzz_test

import (
	"cmp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ternmq/mqtt/topic"
)

// refValid is the obvious reading of the rules of section 4.7: split on '/'
// and look at each level.
func refValid(s string, filter bool) bool {
	if len(s) == 0 || len(s) > 65535 || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return false
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") {
			if !filter {
				return false
			}
			if l != "+" && !(l == "#" && i == len(levels)-1) {
				return false
			}
		}
	}
	return true
}

// refMatch compares filter and name level by level.
func refMatch(filter, name string) bool {
	if !refValid(filter, true) || !refValid(name, false) {
		return false
	}
	f, n := strings.Split(filter, "/"), strings.Split(name, "/")
	if strings.HasPrefix(name, "$") && (f[0] == "+" || f[0] == "#") {
		return false
	}
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(n) || l != "+" && l != n[i] {
			return false
		}
	}
	return len(f) == len(n)
}

// refShared parses "$share/group/filter" by splitting.
func refShared(s string) (group, filter string, ok bool) {
	rest, found := strings.CutPrefix(s, "$share/")
	if !found || !refValid(s, true) {
		return "", "", false
	}
	group, filter, found = strings.Cut(rest, "/")
	if !found || group == "" || filter == "" || strings.ContainsAny(group, "+#") {
		return "", "", false
	}
	return group, filter, true
}

// alphabet turns arbitrary fuzz bytes into short topics made of the
// characters that matter, so that filters and names often match.
func alphabet(s string) string {
	const chars = "ab/+#$/"
	b := []byte(s)
	for i, c := range b {
		b[i] = chars[int(c)%len(chars)]
	}
	return string(b)
}

func FuzzTopicMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"},
		{"sport/#", "sport"},
		{"sport/+", "sport/"},
		{"+/+", "/finance"},
		{"+", "/finance"},
		{"#", "$SYS/broker"},
		{"$SYS/#", "$SYS"},
		{"+/monitor/Clients", "$SYS/monitor/Clients"},
		{"sport/tennis#", "sport/tennis"},
		{"a/\xed\xa0\x80", "a/\xed\xa0\x80"},
		{"a\x00", "a\x00"},
		{"$share/g/a/#", "a/b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		check := func(filter, name string) {
			for _, s := range []string{filter, name} {
				if got, want := topic.ValidFilter(s) == nil, refValid(s, true); got != want {
					t.Fatalf("ValidFilter(%q) = %v, reference says valid=%v", s, topic.ValidFilter(s), want)
				}
				if got, want := topic.ValidName(s) == nil, refValid(s, false); got != want {
					t.Fatalf("ValidName(%q) = %v, reference says valid=%v", s, topic.ValidName(s), want)
				}
				if topic.ValidFilter([]byte(s)) != topic.ValidFilter(s) || topic.ValidName([]byte(s)) != topic.ValidName(s) {
					t.Fatalf("[]byte and string validation of %q differ", s)
				}
				g, sub, err := topic.ParseShared(s)
				rg, rsub, ok := refShared(s)
				if (err == nil) != ok || g != rg || sub != rsub {
					t.Fatalf("ParseShared(%q) = %q, %q, %v; reference %q, %q, %v", s, g, sub, err, rg, rsub, ok)
				}
			}
			want := refMatch(filter, name)
			if got := topic.Match(filter, name); got != want {
				t.Fatalf("Match(%q, %q) = %v, reference %v", filter, name, got, want)
			}
			if got := topic.Match([]byte(filter), []byte(name)); got != want {
				t.Fatalf("Match([]byte(%q), []byte(%q)) = %v, reference %v", filter, name, got, want)
			}
			if got := topic.Match(filter, []byte(name)); got != want {
				t.Fatalf("Match(%q, []byte(%q)) = %v, reference %v", filter, name, got, want)
			}
		}
		check(filter, name)
		check(alphabet(filter), alphabet(name))
	})
}

// FuzzTree applies a sequence of operations, read from the fuzz input, to a
// topic.Tree and a topic.Retained, and after each match compares them with
// a plain list of filters and names checked one by one with topic.Match.
func FuzzTree(f *testing.F) {
	f.Add([]byte("\x00\x01\x12\x03\x02\x11\x00"))
	f.Add([]byte("\x00\x03\x33\x33\x00\x04\x30\x02\x05\x10\x20\x30"))
	f.Add([]byte("\x01\x22\x05\x00\x22\x05\x02\x21\x00\x03\x11\x11\x04\x13\x22"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		var (
			tree     topic.Tree[int]
			ret      topic.Retained[string]
			subs     = map[string]map[int]bool{} // filter -> values
			names    = map[string]bool{}
			got      = make([]int, 0, 64)
			gotGroup = make([]topic.Group[int], 0, 16)
		)
		// Levels of filters and names: literal, empty, '$', sharing their
		// first 8 bytes, enough of them for a node to hold more than 8
		// children; then the wildcards, for filters only.
		levels := []string{"a", "b", "", "$s", "abcdefgh", "abcdefghi", "c", "d", "e", "f", "+", "#"}
		const literals = 10
		read := func() byte {
			if len(ops) == 0 {
				return 0
			}
			c := ops[0]
			ops = ops[1:]
			return c
		}
		// topicOf builds a topic of 1 to 4 levels from one byte each,
		// with wildcards when wild.
		topicOf := func(wild bool) string {
			c := read()
			n := int(c&3) + 1
			parts := make([]string, n)
			for i := range parts {
				k := int(read())
				if !wild {
					k %= literals
				}
				parts[i] = levels[k%len(levels)]
			}
			s := strings.Join(parts, "/")
			if wild && c&0x30 == 0x30 {
				s = "$share/" + string('g'+c>>6&1) + "/" + s
			}
			return s
		}
		for steps := 0; len(ops) > 0 && steps < 200; steps++ {
			switch op := read(); op % 6 {
			case 0: // add
				filter, v := topicOf(true), int(read()%4)
				err := tree.Add(filter, v)
				if want := topic.ValidFilter(filter) == nil; want && topic.IsShared(filter) {
					_, _, perr := topic.ParseShared(filter)
					if (err == nil) != (perr == nil) {
						t.Fatalf("Add(%q): %v, ParseShared: %v", filter, err, perr)
					}
				} else if (err == nil) != want {
					t.Fatalf("Add(%q): %v", filter, err)
				}
				if err == nil {
					if subs[filter] == nil {
						subs[filter] = map[int]bool{}
					}
					subs[filter][v] = true
				}
			case 1: // remove
				filter, v := topicOf(true), int(read()%4)
				if got, want := tree.Remove(filter, v), subs[filter][v]; got != want {
					t.Fatalf("Remove(%q, %d) = %v, want %v", filter, v, got, want)
				}
				delete(subs[filter], v)
				if len(subs[filter]) == 0 {
					delete(subs, filter)
				}
			case 2: // match
				name := topicOf(false)
				var want []int
				wantGroups := map[string][]int{}
				for filter, vs := range subs {
					g, sub, err := topic.ParseShared(filter)
					if err == nil {
						if topic.Match(sub, name) {
							for v := range vs {
								wantGroups[g+" "+sub] = append(wantGroups[g+" "+sub], v)
							}
						}
						continue
					}
					if topic.Match(filter, name) {
						for v := range vs {
							want = append(want, v)
						}
					}
				}
				slices.Sort(want)
				got = tree.MatchString(name, got[:0])
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("MatchString(%q) = %v, want %v (subscriptions %v)", name, got, want, subs)
				}
				got = tree.Match([]byte(name), got[:0])
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("Match(%q) = %v, want %v", name, got, want)
				}
				gotGroup = tree.MatchSharedString(name, gotGroup[:0])
				if len(gotGroup) != len(wantGroups) {
					t.Fatalf("MatchShared(%q) = %v, want %v", name, gotGroup, wantGroups)
				}
				for _, g := range gotGroup {
					members := slices.Clone(g.Members)
					slices.Sort(members)
					w := wantGroups[g.Name+" "+g.Filter]
					slices.Sort(w)
					if !slices.Equal(members, w) || !slices.Contains(w, g.Pick()) {
						t.Fatalf("MatchShared(%q): group %s %s has %v, want %v", name, g.Name, g.Filter, members, w)
					}
				}
			case 3: // retain
				name := topicOf(false)
				err := ret.Set(name, name)
				if (err == nil) != (topic.ValidName(name) == nil) {
					t.Fatalf("Set(%q): %v", name, err)
				}
				if err == nil {
					names[name] = true
				}
			case 4: // forget
				name := topicOf(false)
				if got, want := ret.Delete(name), names[name]; got != want {
					t.Fatalf("Delete(%q) = %v, want %v", name, got, want)
				}
				delete(names, name)
			case 5: // look up retained
				filter := topicOf(true)
				var want []string
				for name := range names {
					if topic.Match(filter, name) {
						want = append(want, name)
					}
				}
				slices.Sort(want)
				gotNames := ret.Match(filter, nil)
				slices.SortFunc(gotNames, cmp.Compare)
				if !slices.Equal(gotNames, want) {
					t.Fatalf("Retained.Match(%q) = %q, want %q", filter, gotNames, want)
				}
			}
			n := 0
			for _, vs := range subs {
				n += len(vs)
			}
			if tree.Len() != n {
				t.Fatalf("Len() = %d, want %d", tree.Len(), n)
			}
			if ret.Len() != len(names) {
				t.Fatalf("Retained.Len() = %d, want %d", ret.Len(), len(names))
			}
		}
	})
}
