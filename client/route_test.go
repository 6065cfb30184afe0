package client

import (
	"testing"
	"time"

	"github.com/ternmq/mqtt/topic"
)

func TestMoreSpecific(t *testing.T) {
	for _, tc := range []struct {
		a, b string // both match the same topic; a is the more specific
	}{
		{"a/b", "a/+"},
		{"a/b", "a/#"},
		{"a/b", "a/b/#"}, // '#' also matches the parent level [MQTT-4.7.1-2]
		{"a/+", "a/#"},
		{"a/b/#", "a/+/c"},
		{"a/+/c", "a/+/+"},
		{"a/+/c", "+/b/c"},
		{"+/+", "#"},
		{"a/", "a/+"},
		{"+/b", "#"},
	} {
		if !moreSpecific(tc.a, tc.b) {
			t.Errorf("moreSpecific(%q, %q) = false", tc.a, tc.b)
		}
		if moreSpecific(tc.b, tc.a) {
			t.Errorf("moreSpecific(%q, %q) = true", tc.b, tc.a)
		}
	}
	for _, f := range []string{"a", "a/+", "#", "+/+/#"} {
		if moreSpecific(f, f) {
			t.Errorf("moreSpecific(%q, %q) = true", f, f)
		}
	}
}

// TestRouteChoice registers handlers in an order and checks which one a
// topic reaches: the most specific, the first registered among equals.
func TestRouteChoice(t *testing.T) {
	var d dispatcher
	d.init(&Client{}, 1)
	var got string
	for _, f := range []string{"#", "home/#", "home/+/temp", "+/+/temp", "home/kitchen/temp", "$SYS/#"} {
		d.routes.next++
		if err := d.routes.tree.Add(f, d.routes.next); err != nil {
			t.Fatal(err)
		}
		d.routes.byFilter[f] = d.routes.next
		d.routes.byID[d.routes.next] = route{filter: f, fn: func(*Message) { got = f }}
	}
	for name, want := range map[string]string{
		"home/kitchen/temp": "home/kitchen/temp",
		"home/hall/temp":    "home/+/temp",
		"office/hall/temp":  "+/+/temp",
		"home":              "home/#",
		"home/a/b/c":        "home/#",
		"x":                 "#",
		"$SYS/load":         "$SYS/#", // '#' does not match '$' topics [MQTT-4.7.2-1]
	} {
		got = ""
		if fn := d.match(name); fn != nil {
			fn(nil)
		}
		if got != want {
			t.Errorf("%q went to %q, want %q", name, got, want)
		}
	}
	if !topic.Match("#", "x") {
		t.Fatal("topic.Match broken")
	}
}

func TestKeepAliveSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want uint16
	}{
		{0, 60},
		{-1, 0},
		{time.Second, 1},
		{1500 * time.Millisecond, 2},
		{time.Millisecond, 1},
		{100 * time.Hour, 65535},
	} {
		o := Options{KeepAlive: tc.d}
		if got := o.keepAliveSeconds(); got != tc.want {
			t.Errorf("KeepAlive %v: %d s, want %d", tc.d, got, tc.want)
		}
	}
}

func TestGoid(t *testing.T) {
	a := goid()
	if a == 0 {
		t.Fatal("goid() = 0")
	}
	b := make(chan int64)
	go func() { b <- goid() }()
	if other := <-b; other == a || other == 0 {
		t.Fatalf("goid of another goroutine = %d, this one %d", other, a)
	}
}

func TestHandleShared(t *testing.T) {
	c, err := New(Options{Servers: []string{"mqtt://x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got string
	if err := c.Handle("$share/g/sensors/+", func(*Message) { got = "shared" }); err != nil {
		t.Fatal(err)
	}
	if fn := c.disp.match("sensors/a"); fn == nil {
		t.Fatal("a message of the shared subscription finds no handler")
	} else if fn(nil); got != "shared" {
		t.Fatalf("got %q", got)
	}
	if err := c.Handle("$share/g/sensors/+", nil); err != nil {
		t.Fatal(err)
	}
	if c.disp.match("sensors/a") != nil {
		t.Fatal("handler not removed")
	}
	if err := c.Handle("$share//x", func(*Message) {}); err == nil {
		t.Error("Handle accepted an empty share group")
	}
}
