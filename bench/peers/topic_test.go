//go:build unix

package peers_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/ternmq/mqtt/topic"
)

// The subscription trees of tern and mochi-mqtt on the same workload: the
// device fleet of bench/topic_test.go (kept in step by hand: the two are
// separate modules). github.com/256dpi/gomqtt, whose topic tree would be
// the other obvious peer, is only compared for its codec so far.
//
// Both sides do what a broker needs per message: find the subscriptions
// matching a topic name, one per client at the highest QoS
// [MQTT-3.3.5-1]. mochi's Subscribers returns them in maps keyed by
// client; tern matches into a reused slice and merges with topic.Dedupe.

type subscriber struct {
	client string
	qos    byte
}

type fleet struct {
	filters []string
	subs    []subscriber
	names   []string
}

var metrics = []string{"temp", "humidity", "status", "cmd"}

func newFleet(n int) *fleet {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	sites := max(n/200, 1)
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
	f.names = make([]string, 4096)
	for i := range f.names {
		f.names[i] = fmt.Sprintf("site/%d/dev/%d/%s", r.IntN(sites), r.IntN(100), metrics[r.IntN(len(metrics))])
	}
	return f
}

// cpuTime returns the CPU time the process has used, GC included. On a
// shared machine the wall-clock ns/op counts the time other processes ran;
// cpu-ns/op, from this, does not. (This is why the file needs unix.)
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// Built indexes are kept for the process, since building 1M subscriptions
// takes seconds; but only one of each at a time, to bound memory.
var (
	fleets    = map[int]*fleet{}
	ternTree  *topic.Tree[subscriber]
	ternN     int
	ternBytes float64
	mochiIdx  *mochi.TopicsIndex
	mochiN    int
	mochiB    float64
)

func fleetOf(n int) *fleet {
	if f, ok := fleets[n]; ok {
		return f
	}
	f := newFleet(n)
	fleets[n] = f
	return f
}

func ternOf(b *testing.B, n int) (*topic.Tree[subscriber], float64) {
	if ternN == n {
		return ternTree, ternBytes
	}
	f := fleetOf(n)
	ternTree, ternN = nil, 0
	before := heapAlloc()
	t := new(topic.Tree[subscriber])
	for i, filter := range f.filters {
		if err := t.Add(filter, f.subs[i]); err != nil {
			b.Fatal(err)
		}
	}
	ternTree, ternN, ternBytes = t, n, float64(heapAlloc()-before)/float64(n)
	return ternTree, ternBytes
}

func mochiOf(n int) (*mochi.TopicsIndex, float64) {
	if mochiN == n {
		return mochiIdx, mochiB
	}
	f := fleetOf(n)
	mochiIdx, mochiN = nil, 0
	before := heapAlloc()
	x := mochi.NewTopicsIndex()
	for i, filter := range f.filters {
		x.Subscribe(f.subs[i].client, packets.Subscription{Filter: filter, Qos: f.subs[i].qos})
	}
	mochiIdx, mochiN, mochiB = x, n, float64(heapAlloc()-before)/float64(n)
	return mochiIdx, mochiB
}

func BenchmarkTreeMatch(b *testing.B) {
	for _, size := range sizes {
		b.Run("lib=tern/subs="+size.name, func(b *testing.B) {
			t, perSub := ternOf(b, size.n)
			f := fleetOf(size.n)
			dst := make([]subscriber, 0, 1024)
			matched := 0
			b.ReportAllocs()
			i := 0
			cpu := cpuTime()
			for b.Loop() {
				dst = t.MatchString(f.names[i%len(f.names)], dst[:0])
				dst = topic.Dedupe(dst,
					func(s subscriber) string { return s.client },
					func(a, b subscriber) subscriber { a.qos = max(a.qos, b.qos); return a })
				matched += len(dst)
				i++
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(i), "cpu-ns/op")
			b.ReportMetric(perSub, "bytes/sub")
			b.ReportMetric(float64(matched)/float64(i), "matches/op")
		})
		b.Run("lib=mochi/subs="+size.name, func(b *testing.B) {
			x, perSub := mochiOf(size.n)
			f := fleetOf(size.n)
			matched := 0
			b.ReportAllocs()
			i := 0
			cpu := cpuTime()
			for b.Loop() {
				subs := x.Subscribers(f.names[i%len(f.names)])
				matched += len(subs.Subscriptions)
				i++
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(i), "cpu-ns/op")
			b.ReportMetric(perSub, "bytes/sub")
			b.ReportMetric(float64(matched)/float64(i), "matches/op")
		})
	}
}

// TestSameMatches checks that both indexes find the same clients for every
// name of the benchmark, so the benchmark compares the same work.
func TestSameMatches(t *testing.T) {
	f := newFleet(20_000)
	tree := new(topic.Tree[subscriber])
	x := mochi.NewTopicsIndex()
	for i, filter := range f.filters {
		if err := tree.Add(filter, f.subs[i]); err != nil {
			t.Fatal(err)
		}
		x.Subscribe(f.subs[i].client, packets.Subscription{Filter: filter, Qos: f.subs[i].qos})
	}
	total := 0
	for _, name := range f.names {
		got := tree.MatchString(name, nil)
		want := x.Subscribers(name).Subscriptions
		if len(got) != len(want) {
			t.Fatalf("%s: tern found %d subscriptions, mochi %d", name, len(got), len(want))
		}
		for _, s := range got {
			if w, ok := want[s.client]; !ok || w.Qos != s.qos {
				t.Fatalf("%s: tern found %v, mochi %v", name, s, w)
			}
		}
		total += len(got)
	}
	if total == 0 {
		t.Fatalf("no name matched anything: the workload is wrong")
	}
}

// BenchmarkTreeAdd subscribes 100k clients of a fleet to an empty index
// per round, and reports the time per subscription.
func BenchmarkTreeAdd(b *testing.B) {
	f := fleetOf(100_000)
	b.Run("lib=tern", func(b *testing.B) {
		b.ReportAllocs()
		t := new(topic.Tree[subscriber])
		i := 0
		cpu := cpuTime()
		for b.Loop() {
			k := i % len(f.filters)
			if k == 0 && i > 0 {
				b.StopTimer()
				t = new(topic.Tree[subscriber])
				b.StartTimer()
			}
			if err := t.Add(f.filters[k], f.subs[k]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(i), "cpu-ns/op")
	})
	b.Run("lib=mochi", func(b *testing.B) {
		b.ReportAllocs()
		x := mochi.NewTopicsIndex()
		i := 0
		cpu := cpuTime()
		for b.Loop() {
			k := i % len(f.filters)
			if k == 0 && i > 0 {
				b.StopTimer()
				x = mochi.NewTopicsIndex()
				b.StartTimer()
			}
			x.Subscribe(f.subs[k].client, packets.Subscription{Filter: f.filters[k], Qos: f.subs[k].qos})
			i++
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(i), "cpu-ns/op")
	})
}
