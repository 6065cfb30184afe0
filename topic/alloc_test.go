package topic_test

import (
	"fmt"
	"testing"

	"github.com/ternmq/mqtt/topic"
)

func TestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are not short")
	}
	var tree topic.Tree[int]
	for i := range 2000 {
		for _, f := range []string{
			fmt.Sprintf("site/%d/dev/%d/temp", i%40, i),
			fmt.Sprintf("site/%d/dev/%d/+", i%40, i),
			fmt.Sprintf("site/%d/#", i%40),
			fmt.Sprintf("$share/g/site/%d/dev/+/temp", i%40),
		} {
			if err := tree.Add(f, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ret topic.Retained[int]
	for i := range 200 {
		if err := ret.Set(fmt.Sprintf("site/%d/dev/%d/temp", i%4, i), i); err != nil {
			t.Fatal(err)
		}
	}
	rdst := make([]int, 0, 256)
	name := "site/7/dev/487/temp"
	bname := []byte(name)
	dst := make([]int, 0, 256)
	groups := make([]topic.Group[int], 0, 8)
	long := "a/level-names-longer-than-thirty-two-bytes-each/x/level-names-longer-than-thirty-two-bytes-each"
	for _, tt := range []struct {
		what string
		fn   func()
	}{
		{"ValidName(string)", func() { _ = topic.ValidName(name) }},
		{"ValidName([]byte)", func() { _ = topic.ValidName(bname) }},
		{"ValidName(invalid)", func() { _ = topic.ValidName("a/+") }},
		{"ValidFilter(string)", func() { _ = topic.ValidFilter("site/+/dev/#") }},
		{"ValidFilter([]byte)", func() { _ = topic.ValidFilter(bname) }},
		{"Match(string, string)", func() { _ = topic.Match("site/+/dev/#", name) }},
		{"Match([]byte, []byte)", func() { _ = topic.Match(bname, bname) }},
		{"Match(string, []byte)", func() { _ = topic.Match("site/+/dev/+/temp", bname) }},
		{"Match(long)", func() { _ = topic.Match(long, long) }},
		{"ParseShared", func() { _, _, _ = topic.ParseShared("$share/g/site/+") }},
		{"Tree.Match", func() { dst = tree.Match(bname, dst[:0]) }},
		{"Tree.MatchString", func() { dst = tree.MatchString(name, dst[:0]) }},
		{"Tree.MatchShared", func() { groups = tree.MatchShared(bname, groups[:0]) }},
		{"Tree.MatchSharedString", func() { groups = tree.MatchSharedString(name, groups[:0]) }},
		{"Group.Pick", func() { _ = groups[0].Pick() }},
		{"Retained.Match", func() { rdst = ret.Match("site/+/dev/#", rdst[:0]) }},
	} {
		if n := testing.AllocsPerRun(100, tt.fn); n != 0 {
			t.Errorf("%s: %v allocations, want 0", tt.what, n)
		}
	}
	// The match above found something: the tree was not trivially empty.
	if dst = tree.Match(bname, dst[:0]); len(dst) != 52 {
		t.Errorf("Match(%q) found %d values, want 52", name, len(dst))
	}
	if len(rdst) != 200 {
		t.Errorf("Retained.Match found %d values, want 200", len(rdst))
	}
	if len(groups) != 1 || len(groups[0].Members) != 50 {
		t.Errorf("MatchShared(%q) = %d groups, want 1 of 50 members", name, len(groups))
	}
}
