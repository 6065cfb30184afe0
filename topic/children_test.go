package topic

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The wildcard children stay at the head of the list, '#' before '+', as
// literal ones come and go and move to maps and back; every child is found.
func TestChildrenWildcardsAtHead(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys := []string{"#", "+"}
	for i := range 14 {
		keys = append(keys, fmt.Sprint("k", i), fmt.Sprint("a-long-level-", i))
	}
	var c children[int]
	present := map[string]*int{}
	for step := range 5000 {
		k := keys[r.IntN(len(keys))]
		if n, ok := present[k]; ok {
			if getChild(&c, k) != n {
				t.Fatalf("step %d: %q not found before deleting it", step, k)
			}
			c.del(k)
			delete(present, k)
		} else {
			n := new(int)
			c.add(k, n)
			present[k] = n
		}
		w := 0
		if _, ok := present["#"]; ok {
			if c.list[w].pre != hashPre {
				t.Fatalf("step %d: '#' not at the head: %+v", step, c.list)
			}
			w++
		}
		if _, ok := present["+"]; ok {
			if c.list[w].pre != plusPre {
				t.Fatalf("step %d: '+' not after '#': %+v", step, c.list)
			}
			w++
		}
		if c.wild() != w || c.len() != len(present) {
			t.Fatalf("step %d: %d wildcards, %d children; want %d, %d", step, c.wild(), c.len(), w, len(present))
		}
		if c.maps != nil && len(c.list) != w {
			t.Fatalf("step %d: literal levels in the list beside the maps: %+v", step, c.list)
		}
		for k, n := range present {
			if getChild(&c, k) != n {
				t.Fatalf("step %d: child %q not found", step, k)
			}
		}
		for _, k := range keys {
			if _, ok := present[k]; !ok && getChild(&c, k) != nil {
				t.Fatalf("step %d: deleted child %q found", step, k)
			}
		}
	}
}
