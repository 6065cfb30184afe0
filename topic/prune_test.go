package topic

import (
	"fmt"
	"testing"
)

// TestTreePrune checks that removing every filter leaves no node behind,
// and that children and value sets shrink back to slices.
func TestTreePrune(t *testing.T) {
	var tree Tree[int]
	var filters []string
	for i := range 50 {
		filters = append(filters,
			fmt.Sprintf("site/%d/dev/%d/temp", i%11, i),
			fmt.Sprintf("site/%d/+/%d/#", i%7, i),
			fmt.Sprintf("site/%d/#", i%3),
			"#", "+", "/", "a//b/", "$SYS/+",
			fmt.Sprintf("$share/g%d/site/%d/dev/+", i%4, i%5),
		)
	}
	for v, f := range filters {
		if err := tree.Add(f, v); err != nil {
			t.Fatalf("Add(%q): %v", f, err)
		}
	}
	if h := tree.root.child("#"); h == nil || h.index() == nil {
		t.Errorf("50 values of \"#\" have no index")
	}
	site := getChild(&tree.root.kids, "site")
	if site == nil || site.kids.maps == nil {
		t.Fatalf("site has no map of children with %d of them", site.kids.len())
	}
	// Remove all but a few, and check the structures shrink.
	for v, f := range filters {
		if v%9 == 3 && v < 18 { // keep "#" of the first two rounds
			continue
		}
		if !tree.Remove(f, v) {
			t.Fatalf("Remove(%q, %d) = false", f, v)
		}
	}
	if h := tree.root.child("#"); h == nil || h.index() != nil || len(h.vals) != 2 || cap(h.vals) > 16 {
		t.Errorf("\"#\" node after removals: %+v", h)
	}
	// Only the root's "#" is left.
	if n := tree.root.kids.len() + tree.shared.kids.len(); n != 1 || tree.root.child("+") != nil {
		t.Errorf("nodes left after removing their filters: %d children, plus %v", n, tree.root.child("+"))
	}
	tree.Remove("#", 3)
	tree.Remove("#", 12)
	if !tree.root.empty() || !tree.shared.empty() || tree.Len() != 0 {
		t.Errorf("tree not empty after removing everything: %+v, %+v, Len %d", tree.root, tree.shared, tree.Len())
	}
}

func TestRetainedPrune(t *testing.T) {
	var r Retained[int]
	names := []string{"a/b/c", "a/b", "a", "/", "a//", "$SYS/x"}
	for i := range 20 {
		names = append(names, fmt.Sprintf("dev/%d/temp", i))
	}
	for i, n := range names {
		if err := r.Set(n, i); err != nil {
			t.Fatal(err)
		}
	}
	if d := getChild(&r.root.kids, "dev"); d == nil || d.kids.maps == nil {
		t.Fatalf("dev has no map of children")
	}
	for i := 10; i < len(names); i++ {
		r.Delete(names[i])
	}
	if d := getChild(&r.root.kids, "dev"); d == nil || d.kids.maps != nil || d.kids.len() != 4 {
		t.Fatalf("dev children did not shrink to a slice of 4")
	}
	for _, n := range names[:10] {
		r.Delete(n)
	}
	if r.root.kids.len() != 0 || r.Len() != 0 {
		t.Errorf("nodes left after deleting every name: %d", r.root.kids.len())
	}
}
