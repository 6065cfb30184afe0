package interop

import (
	"strings"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// connectBytes builds a CONNECT by hand, to send what the packet package
// refuses to encode: protocol name and level, flags, keepalive 0, then the
// payload fields, each a length-prefixed string.
func connectBytes(name string, level, flags byte, fields ...string) []byte {
	body := []byte{0, byte(len(name))}
	body = append(body, name...)
	body = append(body, level, flags, 0, 0)
	for _, f := range fields {
		body = append(body, byte(len(f)>>8), byte(len(f)))
		body = append(body, f...)
	}
	return append([]byte{0x10, byte(len(body))}, body...)
}

// TestDifferentialConnect: how a broker answers CONNECT packets, valid and
// not: the CONNACK return code, or the connection closed without one.
func TestDifferentialConnect(t *testing.T) {
	cases := []struct {
		name, want string
		raw        []byte
	}{
		{"3.1.1", "CONNACK rc=0 session present=false", connectBytes("MQTT", 4, 0x02, "c1")},
		// MQTT 3.1, protocol name MQIsdp, level 3.
		{"3.1", "CONNACK rc=0 session present=false", connectBytes("MQIsdp", 3, 0x02, "c2")},
		// A level the server does not support: CONNACK 1, then close
		// [MQTT-3.1.2-2].
		{"level-6", "CONNACK rc=1 session present=false, closed", connectBytes("MQTT", 6, 0x02, "c3")},
		// An empty client identifier with CleanSession 1 gets one
		// assigned [MQTT-3.1.3-6]; with CleanSession 0 it is rejected,
		// then the connection closed [MQTT-3.1.3-8].
		{"empty-id", "CONNACK rc=0 session present=false", connectBytes("MQTT", 4, 0x02, "")},
		{"empty-id-persistent", "CONNACK rc=2 session present=false, closed", connectBytes("MQTT", 4, 0x00, "")},
		// A malformed CONNECT closes the connection without CONNACK.
		{"reserved-flag", "closed", connectBytes("MQTT", 4, 0x03, "c4")},                    // [MQTT-3.1.2-3]
		{"will-qos-without-will", "closed", connectBytes("MQTT", 4, 0x0a, "c5")},            // [MQTT-3.1.2-13]
		{"will-retain-without-will", "closed", connectBytes("MQTT", 4, 0x22, "c6")},         // [MQTT-3.1.2-15]
		{"will-qos-3", "closed", connectBytes("MQTT", 4, 0x1e, "c7", "w", "m")},             // [MQTT-3.1.2-14]
		{"password-without-user", "closed", connectBytes("MQTT", 4, 0x42, "c8", "pw")},      // [MQTT-3.1.2-22]
		{"id-not-utf8", "closed", connectBytes("MQTT", 4, 0x02, "c\xff")},                   // [MQTT-1.5.3-1]
		{"user-not-utf8", "closed", connectBytes("MQTT", 4, 0x82, "c9", "u\xc0")},           // [MQTT-1.5.3-1]
		{"will-topic-wildcard", "closed", connectBytes("MQTT", 4, 0x06, "c10", "w/#", "m")}, // [MQTT-3.3.2-2]
		{"id-with-nul", "closed", connectBytes("MQTT", 4, 0x02, "c\x00")},                   // [MQTT-1.5.3-2]
		{"first-packet-pingreq", "closed", []byte{0xc0, 0x00}},                              // [MQTT-3.1.0-1]
		{"missing-will-message", "closed", connectBytes("MQTT", 4, 0x06, "c11", "w")},       // [MQTT-3.1.2-9]
	}
	var want []string
	for _, tc := range cases {
		want = append(want, tc.name+": "+tc.want)
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		var rec []string
		m := ids{}
		for _, tc := range cases {
			c := dialRaw(t, tg.addr, tg.name+"/"+tc.name)
			c.sendBytes(tc.raw)
			var got []string
		read:
			for {
				p, ok := c.recv()
				switch {
				case !ok:
					got = append(got, "no answer within "+timeout.String())
					break read
				case p == nil:
					got = append(got, "closed")
					break read
				}
				got = append(got, m.describe(p))
				if p.Type() == packet.CONNACK && p.(*packet.Connack).ReturnCode == packet.Accepted {
					break read
				}
			}
			rec = append(rec, tc.name+": "+strings.Join(got, ", "))
		}
		return rec
	})
}
