package main

import (
	"testing"
	"time"
)

// TestFormat checks -F format strings against what mosquitto_sub 2.0.11
// printed for the same messages (TestFormatsLikeMosquittoSub compares the
// two live; this pins the time-dependent ones with a fixed clock).
func TestFormat(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 26, 38, 538970123, time.FixedZone("", 3600))
	m := message{topic: "a/b", payload: []byte("he said \"hi\"\ttab\x01"), qos: 1, retain: true, id: 7}
	q0 := message{topic: "c", payload: []byte{0xff, 'x'}}
	for _, c := range []struct {
		format string
		m      message
		want   string
	}{
		{"%t %p", m, "a/b he said \"hi\"\ttab\x01"},
		{"%t|%q|%r|%l|%m", m, "a/b|1|1|17|7"},
		{"%x %X", q0, "ff78 FF78"},
		{"%10t|%-10t|%5l|%05l|%-05l|", m, "       a/b|a/b       |   17|00017|17   |"},
		{"%.2t|%5q|%05r|%5m", m, "a/|1|1|    7"},
		{"%I", m, "2026-12-03T12:26:38+0100"},
		{"%-5.2I|", m, "20   |"},
		{"%U", m, "1796297198.538970123"},
		{"%j", m, `{"tst":"2026-12-03T12:26:38.538970Z+0100","topic":"a/b","qos":1,"retain":1,"payloadlen":17,"mid":7,"payload":"he said \"hi\"\ttab\u0001"}`},
		{"%j", q0, `{"tst":"2026-12-03T12:26:38.538970Z+0100","topic":"c","qos":0,"retain":0,"payloadlen":2,"payload":"` + "\xffx" + `"}`},
		{"%J", message{topic: "j", payload: []byte(`{"x": [1,2]}`)}, `{"tst":"2026-12-03T12:26:38.538970Z+0100","topic":"j","qos":0,"retain":0,"payloadlen":12,"payload":{"x":[1,2]}}`},
		{`a\tb\\c\e[0m\0\a\r\n`, m, "a\tb\\c\x1b[0m\x00\a\r\n"},
		{"%%@@@Y-@m-@d @H:@M:@S @N", m, "%@2026-12-03 12:26:38 538970123"},
		{"%A%C%D%E%F%P%R%S.", m, "."},
	} {
		f, err := parseFormat(c.format)
		if err != nil {
			t.Errorf("%q: %v", c.format, err)
			continue
		}
		got, err := f.append(nil, c.m, now)
		if err != nil || string(got) != c.want {
			t.Errorf("%q:\n got  %q (%v)\n want %q", c.format, got, err, c.want)
		}
	}
	// %J of a payload that is not JSON: reported, nothing printed for it.
	f, _ := parseFormat("<%J>")
	if got, err := f.append(nil, m, now); err == nil || string(got) != "<>" {
		t.Errorf("%%J of text: %q, %v", got, err)
	}
	for _, bad := range []string{"%", "%z", "%5", `\`, `\q`, "@", "@Q"} {
		if _, err := parseFormat(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzFormat: any -F string either parses or is refused with an error;
// a parsed one prints any message without panicking.
func FuzzFormat(f *testing.F) {
	for _, s := range []string{"%t %p", "%-05.3l|%10.2I", "%j%J", `\e[1m%t\e[0m\n`, "@Y-@m-@d @N", "%", "@", `\`, "%.t", "%99999999999999999999t"} {
		f.Add(s, []byte("payload"))
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	f.Fuzz(func(t *testing.T, s string, payload []byte) {
		fm, err := parseFormat(s)
		if err != nil {
			return
		}
		for _, m := range []message{{topic: "a/b", payload: payload, qos: 1, id: 1}, {topic: "c"}} {
			out, _ := fm.append(nil, m, now)
			if len(out) > 1<<20+len(s)*1000+len(payload)*20 {
				t.Fatalf("%q printed %d bytes", s, len(out))
			}
		}
	})
}
