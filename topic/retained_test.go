package topic_test

import (
	"slices"
	"testing"

	"github.com/ternmq/mqtt/topic"
)

func TestRetained(t *testing.T) {
	var r topic.Retained[string]
	names := []string{
		"sport", "sport/", "sport/tennis", "sport/tennis/player1",
		"sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon",
		"sport/tennis/player2", "/finance", "finance", "ACCOUNTS", "Accounts",
		"$SYS/monitor/Clients", "$SYS", "a//b", "/",
	}
	for _, n := range names {
		if err := r.Set(n, "old "+n); err != nil {
			t.Fatalf("Set(%q): %v", n, err)
		}
		if err := r.Set(n, n); err != nil { // replaces [MQTT-3.3.1-7]
			t.Fatalf("Set(%q): %v", n, err)
		}
	}
	if r.Len() != len(names) {
		t.Fatalf("Len() = %d, want %d", r.Len(), len(names))
	}
	for _, n := range names {
		if v, ok := r.Get(n); !ok || v != n {
			t.Errorf("Get(%q) = %q, %v", n, v, ok)
		}
	}
	for _, n := range []string{"", "sport/tennis/player", "$SYS/monitor", "spor"} {
		if v, ok := r.Get(n); ok {
			t.Errorf("Get(%q) = %q, true; it was never set", n, v)
		}
	}
	// Every filter finds exactly the names Match accepts, including the
	// '$' rule [MQTT-4.7.2-1] and '#' matching the parent level.
	filters := []string{
		"#", "+", "+/+", "/+", "sport/#", "sport/+", "sport/tennis/+", "sport/tennis/player1/#",
		"+/tennis/#", "$SYS/#", "$SYS/+/Clients", "+/monitor/Clients", "ACCOUNTS", "a/+/b",
		"a//b", "+/#", "sport/tennis/player1", "nothing/#", "sport/tennis#", "",
	}
	for _, f := range filters {
		var want []string
		for _, n := range names {
			if topic.Match(f, n) {
				want = append(want, n)
			}
		}
		got := r.Match(f, nil)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %q, want %q", f, got, want)
		}
	}
	for _, tt := range []struct {
		filter string
		want   []string
	}{
		{"sport/#", []string{"sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport/tennis/player2"}},
		{"#", []string{"/", "/finance", "ACCOUNTS", "Accounts", "a//b", "finance", "sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport/tennis/player2"}},
		{"+", []string{"ACCOUNTS", "Accounts", "finance", "sport"}},
		{"$SYS/#", []string{"$SYS", "$SYS/monitor/Clients"}},
	} {
		got := r.Match(tt.filter, nil)
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("Match(%q) = %q, want %q", tt.filter, got, tt.want)
		}
	}

	for _, bad := range []string{"", "a/+", "#", "a\x00"} {
		if err := r.Set(bad, "x"); err == nil {
			t.Errorf("Set(%q) = nil, want an error", bad)
		}
	}
	if r.Delete("sport/tennis/player") || r.Delete("") || r.Delete("nothing") {
		t.Errorf("Delete of a missing name = true")
	}
	if !r.Delete("sport/tennis") || r.Delete("sport/tennis") {
		t.Errorf("Delete(\"sport/tennis\") twice did not give true, false")
	}
	if _, ok := r.Get("sport/tennis"); ok {
		t.Errorf("Get after Delete found the name")
	}
	if v, ok := r.Get("sport/tennis/player1"); !ok || v != "sport/tennis/player1" {
		t.Errorf("Delete of a parent removed its child")
	}
	if r.Len() != len(names)-1 {
		t.Errorf("Len() = %d, want %d", r.Len(), len(names)-1)
	}
}
