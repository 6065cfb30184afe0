package topic_test

import (
	"fmt"
	"slices"

	"github.com/ternmq/mqtt/topic"
)

func ExampleMatch() {
	fmt.Println(topic.Match("sport/tennis/+", "sport/tennis/player1"))
	fmt.Println(topic.Match("sport/#", "sport"))        // '#' includes the parent level
	fmt.Println(topic.Match("sport/+", "sport"))        // '+' is exactly one level
	fmt.Println(topic.Match("#", "$SYS/broker/uptime")) // wildcards skip '$' topics
	fmt.Println(topic.ValidFilter("sport/tennis#"))
	// Output:
	// true
	// true
	// false
	// false
	// topic: '#' is not a whole level, or not the last one [MQTT-4.7.1-2]
}

// A broker keeps its subscriptions in a Tree of (client, QoS) values and
// delivers each message once per client, at the highest QoS of the client's
// matching subscriptions, and to one member of each shared group.
func ExampleTree() {
	type sub struct {
		client string
		qos    byte
	}
	var subs topic.Tree[sub]
	subs.Add("site/1/dev/+/temp", sub{"dashboard", 0})
	subs.Add("site/1/#", sub{"dashboard", 1})
	subs.Add("site/1/dev/7/temp", sub{"heater", 2})
	subs.Add("$share/workers/site/+/dev/+/temp", sub{"worker-a", 1})
	subs.Add("$share/workers/site/+/dev/+/temp", sub{"worker-b", 1})

	name := []byte("site/1/dev/7/temp") // as decoded from a PUBLISH
	matches := make([]sub, 0, 64)       // reused across messages: no allocation
	matches = subs.Match(name, matches[:0])
	matches = topic.Dedupe(matches,
		func(s sub) string { return s.client },
		func(a, b sub) sub { a.qos = max(a.qos, b.qos); return a })
	slices.SortFunc(matches, func(a, b sub) int { return int(a.client[0]) - int(b.client[0]) })
	for _, s := range matches {
		fmt.Printf("%s at QoS %d\n", s.client, s.qos)
	}
	for _, g := range subs.MatchShared(name, nil) {
		fmt.Printf("group %s (%s): %s\n", g.Name, g.Filter, g.Pick().client)
	}
	// Output:
	// dashboard at QoS 1
	// heater at QoS 2
	// group workers (site/+/dev/+/temp): worker-a
}

// A broker keeps retained messages in a Retained, and sends those matching
// a new subscription's filter.
func ExampleRetained() {
	var retained topic.Retained[string]
	retained.Set("site/1/dev/7/temp", "21.5")
	retained.Set("site/1/dev/8/temp", "19.0")
	retained.Set("site/2/dev/1/temp", "7.2")
	retained.Set("$SYS/broker/uptime", "12 s")

	got := retained.Match("site/1/+/+/temp", nil)
	slices.Sort(got)
	fmt.Println(got)
	fmt.Println(len(retained.Match("#", nil))) // not the $SYS topic
	// Output:
	// [19.0 21.5]
	// 3
}

func ExampleParseShared() {
	group, filter, err := topic.ParseShared("$share/workers/jobs/+")
	fmt.Println(group, filter, err)
	_, _, err = topic.ParseShared("$share//jobs/+")
	fmt.Println(err)
	// Output:
	// workers jobs/+ <nil>
	// topic: shared subscription group is empty [MQTT-4.8.2-1]
}
