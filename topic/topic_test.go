package topic_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ternmq/mqtt/topic"
)

var (
	maxTopic  = strings.Repeat("a", topic.MaxLen)
	longTopic = strings.Repeat("a", topic.MaxLen+1)
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		// Valid names, including the examples of section 4.7.
		{"sport/tennis/player1", nil},
		{"sport/tennis/player1/ranking", nil},
		{"sport/tennis/player1/score/wimbledon", nil},
		{"sport", nil},
		{"sport/", nil},           // empty last level
		{"/finance", nil},         // empty first level
		{"/", nil},                // two empty levels
		{"a//b", nil},             // empty middle level
		{"ACCOUNTS", nil},         // case matters, see TestMatch
		{"Accounts payable", nil}, // spaces are allowed
		{"$SYS/monitor/Clients", nil},
		{"$", nil},
		{"a", nil},
		{"é/日本/🙂", nil},
		{"\uFEFF/a\uFEFF", nil},           // kept as is [MQTT-1.5.3-3]
		{"\x01\x1f\x7f\u0080\u009f", nil}, // control characters are a SHOULD NOT, not a MUST
		{"\uFFFF\U0010FFFF", nil},         // non-characters too
		{maxTopic, nil},                   // [MQTT-4.7.3-3]

		{"", topic.ErrEmpty},                 // [MQTT-4.7.3-1]
		{longTopic, topic.ErrTooLong},        // [MQTT-4.7.3-3]
		{"a\x00b", topic.ErrNull},            // [MQTT-4.7.3-2] [MQTT-1.5.3-2]
		{"\x00", topic.ErrNull},              // [MQTT-4.7.3-2]
		{"a/\xff", topic.ErrUTF8},            // [MQTT-1.5.3-1]
		{"\xc0\x80", topic.ErrUTF8},          // overlong U+0000 [MQTT-1.5.3-1]
		{"\xc1\xbf", topic.ErrUTF8},          // overlong
		{"\xe0\x80\xaf", topic.ErrUTF8},      // overlong '/'
		{"\xf0\x80\x80\xaf", topic.ErrUTF8},  // overlong '/'
		{"\xed\xa0\x80", topic.ErrUTF8},      // surrogate U+D800 [MQTT-1.5.3-1]
		{"\xed\xbf\xbf", topic.ErrUTF8},      // surrogate U+DFFF [MQTT-1.5.3-1]
		{"\xf4\x90\x80\x80", topic.ErrUTF8},  // above U+10FFFF
		{"\xf5\x80\x80\x80", topic.ErrUTF8},  // never a lead byte
		{"a\xe2\x82", topic.ErrUTF8},         // truncated
		{"\x80", topic.ErrUTF8},              // lone continuation byte
		{"sport/+", topic.ErrWildcardInName}, // [MQTT-4.7.1-1] [MQTT-3.3.2-2]
		{"sport/#", topic.ErrWildcardInName}, // [MQTT-4.7.1-1] [MQTT-3.3.2-2]
		{"+", topic.ErrWildcardInName},       // [MQTT-4.7.1-1]
		{"#", topic.ErrWildcardInName},       // [MQTT-4.7.1-1]
		{"sport+", topic.ErrWildcardInName},  // [MQTT-4.7.1-1]
		{"a/b#c", topic.ErrWildcardInName},   // [MQTT-4.7.1-1]
	}
	for _, tt := range tests {
		if got := topic.ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%.40q) = %v, want %v", tt.name, got, tt.want)
		}
		if got := topic.ValidName([]byte(tt.name)); got != tt.want {
			t.Errorf("ValidName([]byte(%.40q)) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   error
	}{
		// The valid examples of sections 4.7.1.2 and 4.7.1.3.
		{"sport/tennis/player1/#", nil},
		{"sport/#", nil},
		{"#", nil},               // [MQTT-4.7.1-2]
		{"sport/tennis/#", nil},  // [MQTT-4.7.1-2]
		{"+", nil},               // [MQTT-4.7.1-3]
		{"+/tennis/#", nil},      // [MQTT-4.7.1-3]
		{"sport/+/player1", nil}, // [MQTT-4.7.1-3]
		{"sport/tennis/+", nil},
		{"+/+", nil},
		{"/+", nil},
		{"+/", nil},
		{"/#", nil},
		{"//#", nil},
		{"+/+/#", nil},
		{"$SYS/#", nil},
		{"$SYS/monitor/+", nil},
		{"$share/g/a/#", nil}, // shared filters are valid filters
		{"sport/tennis/player1", nil},
		{"\uFEFF", nil}, // [MQTT-1.5.3-3]
		{maxTopic, nil}, // [MQTT-4.7.3-3]

		// The invalid examples of section 4.7.1.2 and 4.7.1.3.
		{"sport/tennis#", topic.ErrMultiLevel},          // [MQTT-4.7.1-2]
		{"sport/tennis/#/ranking", topic.ErrMultiLevel}, // [MQTT-4.7.1-2]
		{"sport+", topic.ErrSingleLevel},                // [MQTT-4.7.1-3]
		{"#/", topic.ErrMultiLevel},                     // [MQTT-4.7.1-2]
		{"##", topic.ErrMultiLevel},                     // [MQTT-4.7.1-2]
		{"#a", topic.ErrMultiLevel},                     // [MQTT-4.7.1-2]
		{"a#", topic.ErrMultiLevel},                     // [MQTT-4.7.1-2]
		{"+#", topic.ErrSingleLevel},                    // [MQTT-4.7.1-3]
		{"#+", topic.ErrMultiLevel},                     // [MQTT-4.7.1-2]
		{"++", topic.ErrSingleLevel},                    // [MQTT-4.7.1-3]
		{"+a", topic.ErrSingleLevel},                    // [MQTT-4.7.1-3]
		{"a+/b", topic.ErrSingleLevel},                  // [MQTT-4.7.1-3]
		{"a/+b/c", topic.ErrSingleLevel},                // [MQTT-4.7.1-3]
		{"a/b+", topic.ErrSingleLevel},                  // [MQTT-4.7.1-3]

		{"", topic.ErrEmpty},              // [MQTT-4.7.3-1]
		{longTopic, topic.ErrTooLong},     // [MQTT-4.7.3-3]
		{"a/\x00/#", topic.ErrNull},       // [MQTT-4.7.3-2]
		{"+/\xed\xa0\x80", topic.ErrUTF8}, // [MQTT-1.5.3-1]
		{"a/\xff/#", topic.ErrUTF8},       // [MQTT-1.5.3-1]
	}
	for _, tt := range tests {
		if got := topic.ValidFilter(tt.filter); got != tt.want {
			t.Errorf("ValidFilter(%.40q) = %v, want %v", tt.filter, got, tt.want)
		}
		if got := topic.ValidFilter([]byte(tt.filter)); got != tt.want {
			t.Errorf("ValidFilter([]byte(%.40q)) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func TestErrorRule(t *testing.T) {
	var e *topic.Error
	if err := topic.ValidFilter("sport/tennis#"); !errors.As(err, &e) || e.Rule != "MQTT-4.7.1-2" {
		t.Fatalf("ValidFilter(\"sport/tennis#\") = %v, want an *Error citing MQTT-4.7.1-2", err)
	}
	if got, want := e.Error(), "topic: '#' is not a whole level, or not the last one [MQTT-4.7.1-2]"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(topic.ValidName("a/+"), topic.ErrWildcardInName) {
		t.Errorf("errors.Is(ValidName(\"a/+\"), ErrWildcardInName) = false")
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		// 4.7.1.2 Multi-level wildcard.
		{"sport/tennis/player1/#", "sport/tennis/player1", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
		{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
		{"sport/#", "sport", true}, // '#' includes the parent level
		{"sport/#", "sport/", true},
		{"sport/#", "sports", false},
		{"sport/tennis/player1/#", "sport/tennis", false},
		{"#", "sport/tennis/player1", true}, // '#' receives every message
		{"#", "/", true},
		{"#", "a", true},
		{"sport/tennis/#", "sport/tennis/player2", true},
		{"sport/tennis#", "sport/tennis", false},                    // invalid filter [MQTT-4.7.1-2]
		{"sport/tennis/#/ranking", "sport/tennis/x/ranking", false}, // invalid filter [MQTT-4.7.1-2]

		// 4.7.1.3 Single level wildcard.
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player2", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/+", "sport", false}, // '+' matches one level, not none
		{"sport/+", "sport/", true}, // ... but an empty one
		{"+", "sport", true},
		{"+/tennis/#", "sport/tennis", true},
		{"+/tennis/#", "sport/tennis/player1", true},
		{"+/tennis/#", "sport/badminton", false},
		{"sport+", "sport", false}, // invalid filter [MQTT-4.7.1-3]
		{"sport/+/player1", "sport/tennis/player1", true},
		{"sport/+/player1", "sport//player1", true},
		{"sport/+/player1", "sport/tennis/player2", false},
		{"+/+", "/finance", true},
		{"/+", "/finance", true},
		{"+", "/finance", false},
		{"+/+", "a/b/c", false},
		{"+/+/+", "//", true},
		{"a/+/+", "a/b", false},
		{"+/#", "a", true},
		{"+/+/#", "a", false},

		// 4.7.2 Topics beginning with $ [MQTT-4.7.2-1].
		{"#", "$SYS/broker/clients", false},
		{"#", "$SYS", false},
		{"+/monitor/Clients", "$SYS/monitor/Clients", false},
		{"+", "$SYS", false},
		{"+/#", "$SYS/a", false},
		{"$SYS/#", "$SYS/monitor/Clients", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
		{"$SYS/+/Clients", "$SYS/monitor/Clients", true},
		{"$SYS/monitor/Clients", "$SYS/monitor/Clients", true},
		{"#", "a/$SYS", true}, // only the first character counts
		{"+/$SYS", "a/$SYS", true},
		{"$share/g/#", "$share/g/a", true}, // Match takes filters literally
		{"#", "$", false},

		// 4.7.3 Topic semantic and usage: byte for byte [MQTT-4.7.3-4].
		{"ACCOUNTS", "Accounts", false},
		{"Accounts", "Accounts", true},
		{"Accounts payable", "Accounts payable", true},
		{"/finance", "finance", false},
		{"finance", "/finance", false},
		{"a//b", "a/b", false},
		{"a/", "a", false},
		{"a", "a/", false},
		{"\uFEFFa", "a", false}, // [MQTT-1.5.3-3]
		{"\uFEFFa", "\uFEFFa", true},
		{"é", "e\u0301", false}, // no Unicode normalisation

		// Invalid names match nothing.
		{"#", "", false},
		{"#", "a/+", false},
		{"+/+", "a/#", false},
		{"a/+", "a/+", false},
		{"#", "a\x00", false},
		{"#", "\xff", false},
		{"", "a", false},
		{longTopic, longTopic, false},
		{maxTopic, maxTopic, true},
		{"#", maxTopic, true},
	}
	for _, tt := range tests {
		if got := topic.Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%.40q, %.40q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
		if got := topic.Match([]byte(tt.filter), []byte(tt.name)); got != tt.want {
			t.Errorf("Match([]byte(%.40q), []byte(%.40q)) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
		if got := topic.Match(tt.filter, []byte(tt.name)); got != tt.want {
			t.Errorf("Match(%.40q, []byte(%.40q)) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
}

// A client that wants both $SYS topics and the others subscribes to both
// "#" and "$SYS/#" (section 4.7.2).
func TestMatchSYSBoth(t *testing.T) {
	for _, name := range []string{"$SYS/broker/uptime", "sport/tennis"} {
		if !topic.Match("#", name) && !topic.Match("$SYS/#", name) {
			t.Errorf("neither \"#\" nor \"$SYS/#\" matches %q", name)
		}
	}
}

func TestParseShared(t *testing.T) {
	tests := []struct {
		filter, group, sub string
		err                error
	}{
		{"$share/g/sport/#", "g", "sport/#", nil},
		{"$share/group-1/+", "group-1", "+", nil},
		{"$share/g/#", "g", "#", nil},
		{"$share/g//", "g", "/", nil},
		{"$share/g/$SYS/x", "g", "$SYS/x", nil},
		{"$share/g/$share/h/a", "g", "$share/h/a", nil},
		{"$share/日本/a", "日本", "a", nil},

		{"sport/#", "", "", topic.ErrNotShared},
		{"$share", "", "", topic.ErrNotShared},
		{"$SHARE/g/a", "", "", topic.ErrNotShared},
		{"$queue/a", "", "", topic.ErrNotShared},
		{"$share//a", "", "", topic.ErrShareGroup},    // empty group (MQTT 5.0 [MQTT-4.8.2-1])
		{"$share/+/a", "", "", topic.ErrShareName},    // (MQTT 5.0 [MQTT-4.8.2-2])
		{"$share/#", "", "", topic.ErrShareName},      // (MQTT 5.0 [MQTT-4.8.2-2])
		{"$share/g", "", "", topic.ErrShareFilter},    // (MQTT 5.0 [MQTT-4.8.2-2])
		{"$share/g/", "", "", topic.ErrShareFilter},   // (MQTT 5.0 [MQTT-4.8.2-2])
		{"$share/g+/a", "", "", topic.ErrSingleLevel}, // [MQTT-4.7.1-3]
		{"$share/g/a#", "", "", topic.ErrMultiLevel},  // [MQTT-4.7.1-2]
		{"$share/g/a\x00", "", "", topic.ErrNull},     // [MQTT-4.7.3-2]
	}
	for _, tt := range tests {
		group, sub, err := topic.ParseShared(tt.filter)
		if group != tt.group || sub != tt.sub || err != tt.err {
			t.Errorf("ParseShared(%q) = %q, %q, %v; want %q, %q, %v", tt.filter, group, sub, err, tt.group, tt.sub, tt.err)
		}
		bgroup, bsub, berr := topic.ParseShared([]byte(tt.filter))
		if string(bgroup) != tt.group || string(bsub) != tt.sub || berr != tt.err {
			t.Errorf("ParseShared([]byte(%q)) = %q, %q, %v; want %q, %q, %v", tt.filter, bgroup, bsub, berr, tt.group, tt.sub, tt.err)
		}
		if got, want := topic.IsShared(tt.filter), tt.err != topic.ErrNotShared; got != want {
			t.Errorf("IsShared(%q) = %v, want %v", tt.filter, got, want)
		}
	}
}

// A server without wildcard support refuses filters that use them
// [MQTT-3.8.3-2].
func TestHasWildcards(t *testing.T) {
	for _, tt := range []struct {
		filter string
		want   bool
	}{
		{"sport/tennis", false},
		{"$SYS/broker", false},
		{"/", false},
		{"+", true},
		{"#", true},
		{"sport/+/player1", true},
		{"sport/#", true},
		{"$share/g/a", false},
	} {
		if got := topic.HasWildcards(tt.filter); got != tt.want {
			t.Errorf("HasWildcards(%q) = %v, want %v", tt.filter, got, tt.want)
		}
		if got := topic.HasWildcards([]byte(tt.filter)); got != tt.want {
			t.Errorf("HasWildcards([]byte(%q)) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

// TestValidUTF8 compares the UTF-8 check with unicode/utf8 on every
// sequence of two and three bytes starting with a non-ASCII byte, and on
// four-byte sequences around every lead byte [MQTT-1.5.3-1].
func TestValidUTF8(t *testing.T) {
	if testing.Short() {
		t.Skip("exhaustive")
	}
	check := func(b []byte) {
		want := utf8.Valid(b) && !bytes.Contains(b, []byte{0}) && !bytes.ContainsAny(b, "+#")
		if got := topic.ValidName(b) == nil; got != want {
			t.Fatalf("ValidName(% x) = %v, utf8.Valid says %v", b, topic.ValidName(b), want)
		}
	}
	b := make([]byte, 4)
	for c0 := 0x80; c0 < 0x100; c0++ {
		b[0] = byte(c0)
		check(b[:1])
		for c1 := range 0x100 {
			b[1] = byte(c1)
			check(b[:2])
			if c0 < 0xE0 {
				continue
			}
			for c2 := range 0x100 {
				b[2] = byte(c2)
				check(b[:3])
				if c0 < 0xF0 || c2&0x3F != 0 && c2 != 0xBF {
					continue
				}
				for _, c3 := range []byte{0x00, 0x7F, 0x80, 0x81, 0xBF, 0xC0, 0xFF} {
					b[3] = c3
					check(b[:4])
				}
			}
		}
	}
}
