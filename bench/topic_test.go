package bench_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/ternmq/mqtt/topic"
)

// subscriber is what a broker keeps per subscription: the client and the
// granted QoS.
type subscriber struct {
	client string
	qos    byte
}

// fleet is a subscription workload of the shape a device fleet gives: sites
// of 100 devices with a few metrics each; most subscriptions are exact
// (a device's command topic, a service following one metric), some take a
// device's every metric with '+', a few follow one metric of every device
// class of a site, and 1% take a whole site with '#'.
type fleet struct {
	filters []string
	subs    []subscriber
	names   [][]byte // topic names to publish to, from the same space
}

var metrics = []string{"temp", "humidity", "status", "cmd"}

func newFleet(n int) *fleet {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	sites := max(n/200, 1) // 100 devices per site, about 2 subscriptions per device
	f := &fleet{filters: make([]string, n), subs: make([]subscriber, n)}
	for i := range n {
		s, d := r.IntN(sites), r.IntN(100)
		var filter string
		switch p := r.IntN(100); {
		case p < 80:
			filter = "site/" + strconv.Itoa(s) + "/dev/" + strconv.Itoa(d) + "/" + metrics[r.IntN(len(metrics))]
		case p < 95:
			filter = "site/" + strconv.Itoa(s) + "/dev/" + strconv.Itoa(d) + "/+"
		case p < 99:
			filter = "site/" + strconv.Itoa(s) + "/+/" + strconv.Itoa(d) + "/status"
		default:
			filter = "site/" + strconv.Itoa(s) + "/#"
		}
		f.filters[i] = filter
		f.subs[i] = subscriber{client: "client-" + strconv.Itoa(i), qos: byte(i % 3)}
	}
	f.names = make([][]byte, 4096)
	for i := range f.names {
		f.names[i] = fmt.Appendf(nil, "site/%d/dev/%d/%s", r.IntN(sites), r.IntN(100), metrics[r.IntN(len(metrics))])
	}
	return f
}

// builtTree is a fleet in a tree, with the memory the tree took.
type builtTree struct {
	*fleet
	tree        *topic.Tree[subscriber]
	bytesPerSub float64
}

var trees = map[int]*builtTree{}

// treeOf builds the tree of a fleet of n subscriptions once per process,
// measuring the heap before and after.
func treeOf(b *testing.B, n int) *builtTree {
	if t, ok := trees[n]; ok {
		return t
	}
	f := newFleet(n)
	before := heapAlloc()
	tree := new(topic.Tree[subscriber])
	for i, filter := range f.filters {
		if err := tree.Add(filter, f.subs[i]); err != nil {
			b.Fatal(err)
		}
	}
	after := heapAlloc()
	t := &builtTree{fleet: f, tree: tree, bytesPerSub: float64(after-before) / float64(n)}
	trees[n] = t
	return t
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

var sizes = []struct {
	name string
	n    int
}{{"1k", 1_000}, {"100k", 100_000}, {"1M", 1_000_000}}

func BenchmarkTopicMatch(b *testing.B) {
	for _, bb := range []struct{ name, filter, topic string }{
		{"exact", "site/17/dev/42/temp", "site/17/dev/42/temp"},
		{"plus", "site/+/dev/+/temp", "site/17/dev/42/temp"},
		{"hash", "site/17/#", "site/17/dev/42/temp"},
		{"miss", "site/17/dev/43/temp", "site/17/dev/42/temp"},
	} {
		name := []byte(bb.topic)
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(name)))
			for b.Loop() {
				topic.Match(bb.filter, name)
			}
		})
	}
}

func BenchmarkTopicValid(b *testing.B) {
	name := []byte("site/17/dev/42/température")
	b.Run("Name", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(name)))
		for b.Loop() {
			_ = topic.ValidName(name)
		}
	})
	filter := []byte("site/+/dev/+/température/#")
	b.Run("Filter", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(filter)))
		for b.Loop() {
			_ = topic.ValidFilter(filter)
		}
	})
}

// BenchmarkTreeMatch matches topic names of the fleet against its
// subscriptions, into a reused slice. It reports the tree's heap per
// subscription and the mean number of matching subscriptions.
func BenchmarkTreeMatch(b *testing.B) {
	for _, size := range sizes {
		b.Run("subs="+size.name, func(b *testing.B) {
			t := treeOf(b, size.n)
			dst := make([]subscriber, 0, 1024)
			matched := 0
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dst = t.tree.Match(t.names[i%len(t.names)], dst[:0])
				matched += len(dst)
				i++
			}
			b.ReportMetric(t.bytesPerSub, "bytes/sub")
			b.ReportMetric(float64(matched)/float64(i), "matches/op")
		})
	}
}

// BenchmarkTreeMatchParallel is BenchmarkTreeMatch from all Ps at once: the
// read lock lets matches run in parallel.
func BenchmarkTreeMatchParallel(b *testing.B) {
	t := treeOf(b, 100_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]subscriber, 0, 1024)
		for i := 0; pb.Next(); i++ {
			dst = t.tree.Match(t.names[i%len(t.names)], dst[:0])
		}
	})
}

// BenchmarkTreeAdd adds subscriptions of a fleet of 100k to a tree that
// already holds another 100k; every 100k adds, the added ones are removed
// with the timer stopped.
func BenchmarkTreeAdd(b *testing.B) {
	t := treeOf(b, 100_000)
	extra := newFleet(100_001) // other filters, other clients
	for i := range extra.subs {
		extra.subs[i].client += "-extra"
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := i % len(extra.filters)
		if k == 0 && i > 0 {
			b.StopTimer()
			removeAll(b, t.tree, extra)
			b.StartTimer()
		}
		if err := t.tree.Add(extra.filters[k], extra.subs[k]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	removeAll(b, t.tree, extra)
}

func removeAll(b *testing.B, tree *topic.Tree[subscriber], f *fleet) {
	for k, filter := range f.filters {
		tree.Remove(filter, f.subs[k])
	}
	if n := tree.Len(); n != 100_000 {
		b.Fatalf("tree holds %d subscriptions, want 100000", n)
	}
}

// BenchmarkTreeRemove removes subscriptions of a fleet of 100k from a tree
// that also holds another 100k; every 100k removals, they are added back
// with the timer stopped.
func BenchmarkTreeRemove(b *testing.B) {
	t := treeOf(b, 100_000)
	extra := newFleet(100_001)
	for i := range extra.subs {
		extra.subs[i].client += "-extra"
	}
	addAll := func() {
		for k, filter := range extra.filters {
			if err := t.tree.Add(filter, extra.subs[k]); err != nil {
				b.Fatal(err)
			}
		}
	}
	addAll()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := i % len(extra.filters)
		if k == 0 && i > 0 {
			b.StopTimer()
			addAll()
			b.StartTimer()
		}
		if !t.tree.Remove(extra.filters[k], extra.subs[k]) {
			b.Fatalf("Remove(%q) = false", extra.filters[k])
		}
		i++
	}
	b.StopTimer()
	removeAll(b, t.tree, extra)
}

// BenchmarkRetainedMatch looks up the retained messages of 100k device
// metrics with the filters a new subscriber sends: one device, one metric
// of a site, a whole site.
func BenchmarkRetainedMatch(b *testing.B) {
	var r topic.Retained[int]
	for s := range 250 {
		for d := range 100 {
			for m, metric := range metrics {
				name := "site/" + strconv.Itoa(s) + "/dev/" + strconv.Itoa(d) + "/" + metric
				if err := r.Set(name, m); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for _, bb := range []struct{ name, filter string }{
		{"device", "site/17/dev/42/+"},
		{"metric", "site/17/dev/+/temp"},
		{"site", "site/17/#"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			dst := make([]int, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				dst = r.Match(bb.filter, dst[:0])
			}
			b.ReportMetric(float64(len(dst)), "matches/op")
		})
	}
}
