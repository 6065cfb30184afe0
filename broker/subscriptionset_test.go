package broker

import (
	"maps"
	"testing"
)

// subscriptionSet behaves as the map it replaces through every change of
// form: empty, one inline, several in a map, back to one and none.
func TestSubscriptionSet(t *testing.T) {
	var fs subscriptionSet
	want := map[string]byte{}
	check := func(step string) {
		t.Helper()
		got := map[string]byte{}
		fs.each(func(f string, q byte) { got[f] = q })
		if !maps.Equal(got, want) || fs.len() != len(want) {
			t.Fatalf("%s: set holds %v (len %d), want %v", step, got, fs.len(), want)
		}
		for f, q := range want {
			if g, ok := fs.get([]byte(f)); !ok || g != q {
				t.Fatalf("%s: get(%q) = %d, %v; want %d", step, f, g, ok, q)
			}
		}
		if _, ok := fs.get([]byte("absent")); ok {
			t.Fatalf("%s: get of an absent filter found it", step)
		}
	}
	check("empty")
	for _, op := range []struct {
		set  bool
		f    string
		qos  byte
		name string
	}{
		{true, "a/b", 1, "first"},
		{true, "a/b", 2, "first again"},
		{false, "x", 0, "delete absent"},
		{false, "a/b", 0, "delete only"},
		{true, "c", 0, "first after delete"},
		{true, "d/#", 1, "second"},
		{true, "e/+", 2, "third"},
		{true, "d/#", 0, "second again"},
		{false, "c", 0, "delete one of three"},
		{false, "d/#", 0, "delete one of two"},
		{false, "e/+", 0, "delete last"},
		{true, "f", 1, "add to the emptied map"},
	} {
		if op.set {
			fs.set(op.f, op.qos)
			want[op.f] = op.qos
		} else {
			fs.del(op.f)
			delete(want, op.f)
		}
		check(op.name)
	}
	fs.clear()
	clear(want)
	check("clear")
}
