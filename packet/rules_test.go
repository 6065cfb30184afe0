package packet_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ternmq/mqtt/packet"
)

// codecRules is every statement id tagged [codec] in
// shared/spec/mqtt-3.1.1-normative.md, and the two untagged codec MUSTs at
// its end (cited by section). TestRuleCoverage fails if one of them has no
// case below.
var codecRules = []string{
	"MQTT-1.5.3-1", "MQTT-1.5.3-2", "MQTT-1.5.3-3",
	"MQTT-2.2.2-1", "MQTT-2.2.2-2",
	"MQTT-2.3.1-1", "MQTT-2.3.1-5",
	"MQTT-3.1.2-1", "MQTT-3.1.2-3", "MQTT-3.1.2-9", "MQTT-3.1.2-11", "MQTT-3.1.2-13", "MQTT-3.1.2-14",
	"MQTT-3.1.2-15", "MQTT-3.1.2-18", "MQTT-3.1.2-19", "MQTT-3.1.2-20", "MQTT-3.1.2-21", "MQTT-3.1.2-22",
	"MQTT-3.1.3-1", "MQTT-3.1.3-3", "MQTT-3.1.3-4", "MQTT-3.1.3-7", "MQTT-3.1.3-10", "MQTT-3.1.3-11",
	"MQTT-3.2.2-4",
	"MQTT-3.3.1-2", "MQTT-3.3.1-4", "MQTT-3.3.2-1", "MQTT-3.3.2-2",
	"MQTT-3.6.1-1",
	"MQTT-3.8.1-1", "MQTT-3.8.3-1", "MQTT-3.8.3-3", "MQTT-3.8.3-4",
	"MQTT-3.9.3-2",
	"MQTT-3.10.1-1", "MQTT-3.10.3-1", "MQTT-3.10.3-2",
	"MQTT-3.14.1-1",
	"MQTT-4.7.3-3",
	"3.2.2.1", // CONNACK acknowledge flags bits 7-1 reserved, must be 0
	"2.2.3",   // remaining length: at most four bytes (and, by our choice, its shortest form)
}

// pkt builds a packet from its first byte and body, with the remaining
// length computed: for cases whose point is elsewhere.
func pkt(first int, body ...any) []byte {
	b := wire(body...)
	return wire(first, remainingLength(len(b)), b)
}

// str is a string field: two bytes of length, then s.
func str(s string) []byte { return wire(len(s)>>8, len(s)&0xff, s) }

// connect builds a 3.1.1 CONNECT with the given connect flags, keep alive 0
// and the payload fields given.
func connect(flags int, payload ...any) []byte {
	return pkt(0x10, append([]any{str("MQTT"), 0x04, flags, 0x00, 0x00}, payload...)...)
}

// connectName is connect with another protocol name and level.
func connectName(name string, level int, flags int, payload ...any) []byte {
	return pkt(0x10, append([]any{str(name), level, flags, 0x00, 0x00}, payload...)...)
}

func publish(first int, topic string, rest ...any) []byte {
	return pkt(first, append([]any{str(topic)}, rest...)...)
}

func subscribe(filter string, qos int) []byte { return pkt(0x82, 0x00, 0x01, str(filter), qos) }

func unsubscribe(filter string) []byte { return pkt(0xa2, 0x00, 0x01, str(filter)) }

var (
	long = strings.Repeat("a", 65536) // one byte over the limit of a string

	badUTF8 = map[string]string{
		"byte ff":                "\xff",
		"surrogate U+D800":       "\xed\xa0\x80",
		"surrogate U+DFFF":       "\xed\xbf\xbf",
		"overlong slash":         "\xc0\xaf",
		"cut sequence":           "a\xc3",
		"above U+10FFFF":         "\xf4\x90\x80\x80",
		"lone continuation byte": "ab\x80",
	}
)

// ruleCase is one way to break a rule: bytes that Decode must refuse, a
// packet that Append must refuse, or both (the same invalid value in its
// two forms).
type ruleCase struct {
	cite    string        // the statement the case checks
	name    string        // what is wrong
	wire    []byte        // Decode refuses these; nil for none
	p       packet.Packet // Append refuses this; nil for none
	kind    error         // the Kind of the error
	rule    string        // the Rule of the error, if not cite
	encRule string        // the Rule of Append's error, if not rule
	stream  bool          // a Reader sees a cut packet, or a packet and more
}

func ruleCases() []ruleCase {
	c := []ruleCase{
		// Strings [MQTT-1.5.3-1] [MQTT-1.5.3-2], in every string field.
		{cite: "MQTT-1.5.3-2", name: "U+0000 in a topic name", wire: publish(0x30, "a\x00b"),
			p: &packet.Publish{Topic: []byte("a\x00b")}, kind: packet.ErrMalformed},
		{cite: "MQTT-1.5.3-2", name: "U+0000 after non-ASCII", wire: publish(0x30, "é\x00"),
			p: &packet.Publish{Topic: []byte("é\x00")}, kind: packet.ErrMalformed},
		{cite: "MQTT-1.5.3-2", name: "U+0000 in a client identifier", wire: connect(0x02, str("\x00")),
			p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("\x00")}, kind: packet.ErrMalformed},
		{cite: "MQTT-1.5.3-2", name: "U+0000 in a filter", wire: subscribe("a/\x00", 0),
			p: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/\x00")}}}, kind: packet.ErrMalformed},
		{cite: "MQTT-1.5.3-2", name: "U+0000 in an unsubscribe filter", wire: unsubscribe("\x00"),
			p: &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("\x00")}}, kind: packet.ErrMalformed},

		// Reserved flags [MQTT-2.2.2-1], and the receiver closes [MQTT-2.2.2-2]:
		// ErrMalformed is the kind of error that ends a connection.
		{cite: "MQTT-2.2.2-1", name: "CONNECT flags 0001", wire: wire(0x11, connect(0x02, str("c"))[1:]), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "CONNACK flags 1000", wire: wire(0x28, 0x02, 0x00, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "PUBACK flags 0010", wire: wire(0x42, 0x02, 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "PUBREC flags 0100", wire: wire(0x54, 0x02, 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "PUBCOMP flags 0001", wire: wire(0x71, 0x02, 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "SUBACK flags 0010", wire: wire(0x92, 0x03, 0x00, 0x01, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "UNSUBACK flags 1111", wire: wire(0xbf, 0x02, 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "PINGREQ flags 0010", wire: wire(0xc2, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-1", name: "PINGRESP flags 1000", wire: wire(0xd8, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-2.2.2-2", name: "invalid flags close the connection", wire: wire(0x41, 0x02, 0x00, 0x01),
			kind: packet.ErrMalformed, rule: "MQTT-2.2.2-1"},
		{cite: "2.2.1", name: "reserved type 0", wire: wire(0x00, 0x00), kind: packet.ErrMalformed},
		{cite: "2.2.1", name: "reserved type 15", wire: wire(0xf0, 0x00), kind: packet.ErrMalformed},

		// Packet identifiers [MQTT-2.3.1-1].
		{cite: "MQTT-2.3.1-1", name: "QoS 1 PUBLISH with id 0", wire: publish(0x32, "a", 0x00, 0x00),
			p: &packet.Publish{QoS: 1, Topic: []byte("a")}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "QoS 2 PUBLISH with id 0", wire: publish(0x34, "a", 0x00, 0x00, "x"),
			p: &packet.Publish{QoS: 2, Topic: []byte("a"), Payload: []byte("x")}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "QoS 1 PUBLISH without id", wire: publish(0x32, "a", 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "SUBSCRIBE with id 0", wire: pkt(0x82, 0x00, 0x00, str("a"), 0x00),
			p: &packet.Subscribe{Subscriptions: []packet.Subscription{{Filter: []byte("a")}}}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "UNSUBSCRIBE with id 0", wire: pkt(0xa2, 0x00, 0x00, str("a")),
			p: &packet.Unsubscribe{Filters: [][]byte{[]byte("a")}}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "PUBACK with id 0", wire: wire(0x40, 0x02, 0x00, 0x00), p: &packet.Puback{}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "PUBREC with id 0", wire: wire(0x50, 0x02, 0x00, 0x00), p: &packet.Pubrec{}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "PUBREL with id 0", wire: wire(0x62, 0x02, 0x00, 0x00), p: &packet.Pubrel{}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "PUBCOMP with id 0", wire: wire(0x70, 0x02, 0x00, 0x00), p: &packet.Pubcomp{}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "SUBACK with id 0", wire: wire(0x90, 0x03, 0x00, 0x00, 0x00),
			p: &packet.Suback{ReturnCodes: []byte{0}}, kind: packet.ErrMalformed},
		{cite: "MQTT-2.3.1-1", name: "UNSUBACK with id 0", wire: wire(0xb0, 0x02, 0x00, 0x00), p: &packet.Unsuback{}, kind: packet.ErrMalformed},
		// A QoS 0 PUBLISH has no identifier [MQTT-2.3.1-5]: the encoder
		// refuses one, and TestRuleAccepts shows the decoder reads none.
		{cite: "MQTT-2.3.1-5", name: "QoS 0 PUBLISH with an id", p: &packet.Publish{PacketID: 5, Topic: []byte("a")}, kind: packet.ErrMalformed},

		// CONNECT.
		{cite: "MQTT-3.1.2-1", name: "protocol name MQTX", wire: connectName("MQTX", 4, 0x02, str("c")), kind: packet.ErrProtocol},
		{cite: "MQTT-3.1.2-1", name: "protocol name mqtt", wire: connectName("mqtt", 4, 0x02, str("c")), kind: packet.ErrProtocol},
		{cite: "MQTT-3.1.2-1", name: "empty protocol name", wire: connectName("", 4, 0x02, str("c")), kind: packet.ErrProtocol},
		{cite: "MQTT-3.1.2-2", name: "level 5", wire: connectName("MQTT", 5, 0x02, 0x00, str("c")),
			p: &packet.Connect{Level: 5, CleanSession: true, ClientID: []byte("c")}, kind: packet.ErrUnsupportedVersion},
		{cite: "MQTT-3.1.2-2", name: "level 3 named MQTT", wire: connectName("MQTT", 3, 0x02, str("c")), kind: packet.ErrUnsupportedVersion},
		{cite: "MQTT-3.1.2-2", name: "level 4 named MQIsdp", wire: connectName("MQIsdp", 4, 0x02, str("c")), kind: packet.ErrUnsupportedVersion},
		{cite: "MQTT-3.1.2-2", name: "level 0", wire: connectName("MQTT", 0, 0x02, str("c")), kind: packet.ErrUnsupportedVersion},
		{cite: "MQTT-3.1.2-3", name: "reserved connect flag", wire: connect(0x03, str("c")), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-9", name: "will flag, no will fields", wire: connect(0x06, str("c")), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-9", name: "will flag, no will message", wire: connect(0x06, str("c"), str("t")), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-9", name: "will flag, cut will message", wire: connect(0x06, str("c"), str("t"), 0x00, 0x05, "ab"), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-11", name: "will fields without the will flag", wire: connect(0x02, str("c"), str("t"), str("m")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), WillTopic: []byte("t"), WillMessage: []byte("m")},
			kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-11", name: "will message without the will flag", p: &packet.Connect{Level: 4, CleanSession: true,
			ClientID: []byte("c"), WillMessage: []byte("m")}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-13", name: "will QoS 1 without the will flag", wire: connect(0x0a, str("c")),
			p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), WillQoS: 1}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-13", name: "will QoS 2 without the will flag", wire: connect(0x12, str("c")), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-14", name: "will QoS 3", wire: connect(0x1e, str("c"), str("t"), str("m")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), Will: true, WillQoS: 3, WillTopic: []byte("t"), WillMessage: []byte("m")},
			kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-15", name: "will retain without the will flag", wire: connect(0x22, str("c")),
			p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), WillRetain: true}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-18", name: "user name without its flag", wire: connect(0x02, str("c"), str("u")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), Username: []byte("u")},
			kind: packet.ErrMalformed, rule: "MQTT-3.1.2-11", encRule: "MQTT-3.1.2-18"},
		{cite: "MQTT-3.1.2-18", name: "user name without its flag, after a will", wire: connect(0x06, str("c"), str("t"), str("m"), str("u")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), Will: true, WillTopic: []byte("t"), WillMessage: []byte("m"), Username: []byte("u")},
			kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-19", name: "user name flag, no user name", wire: connect(0x82, str("c")), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-19", name: "user name flag, cut user name", wire: connect(0x82, str("c"), 0x00, 0x02, "u"), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-20", name: "password without its flag", wire: connect(0x82, str("c"), str("u"), str("p")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), HasUsername: true, Username: []byte("u"), Password: []byte("p")},
			kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-21", name: "password flag, no password", wire: connect(0xc2, str("c"), str("u")), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-21", name: "password flag, one byte of length", wire: connect(0xc2, str("c"), str("u"), 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.2-22", name: "password flag without user name flag", wire: connect(0x42, str("c"), str("p")),
			p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), HasPassword: true, Password: []byte("p")}, kind: packet.ErrMalformed},
		{cite: "3.1.3", name: "bytes after the password", wire: connect(0xc2, str("c"), str("u"), str("p"), 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.3-3", name: "no client identifier", wire: connect(0x02), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.3-3", name: "cut client identifier", wire: connect(0x02, 0x00, 0x05, "abc"), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.3-3", name: "one byte of client identifier length", wire: connect(0x02, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-3.1.3-4", name: "client identifier not UTF-8", wire: connect(0x02, str("\xffid")),
			p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("\xffid")}, kind: packet.ErrMalformed, rule: "MQTT-1.5.3-1"},
		{cite: "MQTT-3.1.3-4", name: "client identifier over 65535 bytes",
			p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte(long)}, kind: packet.ErrMalformed, rule: "1.5.3"},
		{cite: "MQTT-3.1.3-7", name: "empty client identifier with CleanSession 0", wire: connect(0x00, str("")),
			p: &packet.Connect{Level: 4, ClientID: []byte{}}, kind: packet.ErrIdentifierRejected, rule: "MQTT-3.1.3-8", encRule: "MQTT-3.1.3-7"},
		// MQTT 3.1 asks for identifiers of 1 to 23 characters, and its
		// servers answer others with CONNACK 0x02 (3.1 section 3.1).
		{cite: "3.1 section 3.1", name: "MQTT 3.1, empty client identifier, CleanSession 1", wire: wire(
			0x10, 0x0e, // CONNECT, remaining length 14
			0x00, 0x06, "MQIsdp", // protocol name
			0x03,       // level 3
			0x02,       // CleanSession 1
			0x00, 0x00, // keep alive 0
			0x00, 0x00), // client identifier of length 0
			p: &packet.Connect{Level: 3, CleanSession: true}, kind: packet.ErrIdentifierRejected, rule: "MQTT 3.1 section 3.1"},
		{cite: "3.1 section 3.1", name: "MQTT 3.1, 24-character client identifier", wire: wire(
			0x10, 0x26, // CONNECT, remaining length 38
			0x00, 0x06, "MQIsdp", // protocol name
			0x03,       // level 3
			0x00,       // CleanSession 0
			0x00, 0x3c, // keep alive 60
			0x00, 0x18, "abcdefghijklmnopqrstuvwx"), // client identifier of 24 characters
			p:    &packet.Connect{Level: 3, KeepAlive: 60, ClientID: []byte("abcdefghijklmnopqrstuvwx")},
			kind: packet.ErrIdentifierRejected, rule: "MQTT 3.1 section 3.1"},
		{cite: "3.1 section 3.1", name: "MQTT 3.1, 24 two-byte characters", wire: connectName("MQIsdp", 3, 0x02, str(strings.Repeat("é", 24))),
			kind: packet.ErrIdentifierRejected, rule: "MQTT 3.1 section 3.1"},
		{cite: "MQTT-3.1.3-8", name: "empty client identifier, CleanSession 0, level 3", wire: connectName("MQIsdp", 3, 0x00, str("")),
			p: &packet.Connect{Level: 3}, kind: packet.ErrIdentifierRejected, encRule: "MQTT-3.1.3-7"},
		{cite: "MQTT-3.1.3-10", name: "will topic not UTF-8", wire: connect(0x06, str("c"), str("a\xed\xa0\x80"), str("m")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), Will: true, WillTopic: []byte("a\xed\xa0\x80"), WillMessage: []byte("m")},
			kind: packet.ErrMalformed, rule: "MQTT-1.5.3-1"},
		{cite: "MQTT-3.1.3-10", name: "will topic with a wildcard", wire: connect(0x06, str("c"), str("a/#"), str("m")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), Will: true, WillTopic: []byte("a/#"), WillMessage: []byte("m")},
			kind: packet.ErrProtocol, rule: "MQTT-3.3.2-2"},
		{cite: "MQTT-3.1.3-10", name: "empty will topic", wire: connect(0x06, str("c"), str(""), str("m")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), Will: true, WillMessage: []byte("m")},
			kind: packet.ErrProtocol, rule: "MQTT-4.7.3-1"},
		{cite: "MQTT-3.1.3-10", name: "will message over 65535 bytes", p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"),
			Will: true, WillTopic: []byte("t"), WillMessage: []byte(long)}, kind: packet.ErrMalformed, rule: "3.1.3.3"},
		{cite: "MQTT-3.1.3-11", name: "user name with U+0000", wire: connect(0x82, str("c"), str("u\x00")),
			p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), HasUsername: true, Username: []byte("u\x00")},
			kind: packet.ErrMalformed, rule: "MQTT-1.5.3-2"},
		{cite: "MQTT-3.1.3-11", name: "password over 65535 bytes", p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"),
			HasUsername: true, HasPassword: true, Password: []byte(long)}, kind: packet.ErrMalformed, rule: "3.1.3.5"},

		// CONNACK.
		{cite: "MQTT-3.2.2-4", name: "session present with a refusal", wire: wire(0x20, 0x02, 0x01, 0x02),
			p: &packet.Connack{SessionPresent: true, ReturnCode: packet.RefusedIdentifierRejected}, kind: packet.ErrMalformed},
		{cite: "3.2.2.1", name: "acknowledge flag bit 1", wire: wire(0x20, 0x02, 0x02, 0x00), kind: packet.ErrMalformed},
		{cite: "3.2.2.1", name: "acknowledge flag bit 7", wire: wire(0x20, 0x02, 0x81, 0x00), kind: packet.ErrMalformed},
		{cite: "3.2.2.3", name: "reserved return code 6", wire: wire(0x20, 0x02, 0x00, 0x06),
			p: &packet.Connack{ReturnCode: 6}, kind: packet.ErrMalformed},
		{cite: "3.2", name: "remaining length 3", wire: wire(0x20, 0x03, 0x00, 0x00, 0x00), kind: packet.ErrMalformed},

		// PUBLISH.
		{cite: "MQTT-3.3.1-2", name: "DUP at QoS 0", wire: publish(0x38, "a"),
			p: &packet.Publish{Dup: true, Topic: []byte("a")}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.3.1-4", name: "QoS 3", wire: publish(0x36, "a", 0x00, 0x01),
			p: &packet.Publish{QoS: 3, PacketID: 1, Topic: []byte("a")}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.3.1-4", name: "QoS 3 with DUP and RETAIN", wire: publish(0x3f, "a", 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "MQTT-3.3.2-1", name: "no topic name", wire: wire(0x30, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-3.3.2-1", name: "one byte of topic length", wire: wire(0x30, 0x01, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-3.3.2-1", name: "cut topic name", wire: wire(0x30, 0x03, 0x00, 0x05, "a"), kind: packet.ErrMalformed},
		{cite: "MQTT-3.3.2-2", name: "+ in a topic name", wire: publish(0x30, "a/+/b"),
			p: &packet.Publish{Topic: []byte("a/+/b")}, kind: packet.ErrProtocol},
		{cite: "MQTT-3.3.2-2", name: "# in a topic name", wire: publish(0x32, "#", 0x00, 0x01),
			p: &packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("#")}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.3-1", name: "empty topic name", wire: publish(0x30, "", "payload"),
			p: &packet.Publish{Payload: []byte("payload")}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.3-3", name: "topic name over 65535 bytes", p: &packet.Publish{Topic: []byte(long)}, kind: packet.ErrMalformed},
		{cite: "MQTT-4.7.3-3", name: "will topic over 65535 bytes", p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"),
			Will: true, WillTopic: []byte(long)}, kind: packet.ErrMalformed},

		// PUBREL.
		{cite: "MQTT-3.6.1-1", name: "PUBREL flags 0000", wire: wire(0x60, 0x02, 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "MQTT-3.6.1-1", name: "PUBREL flags 0011", wire: wire(0x63, 0x02, 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "PUBACK remaining length 3", wire: wire(0x40, 0x03, 0x00, 0x01, 0x00), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "PUBREL remaining length 1", wire: wire(0x62, 0x01, 0x00), kind: packet.ErrMalformed},

		// SUBSCRIBE.
		{cite: "MQTT-3.8.1-1", name: "SUBSCRIBE flags 0000", wire: wire(0x80, subscribe("a", 0)[1:]), kind: packet.ErrMalformed},
		{cite: "MQTT-3.8.1-1", name: "SUBSCRIBE flags 1010", wire: wire(0x8a, subscribe("a", 0)[1:]), kind: packet.ErrMalformed},
		{cite: "MQTT-3.8.3-3", name: "SUBSCRIBE with no filter", wire: wire(0x82, 0x02, 0x00, 0x01),
			p: &packet.Subscribe{PacketID: 1}, kind: packet.ErrProtocol},
		{cite: "MQTT-3.8.3-1", name: "filter not UTF-8", wire: subscribe("a/\xc0\xaf", 1),
			p:    &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/\xc0\xaf")}}},
			kind: packet.ErrMalformed, rule: "MQTT-1.5.3-1"},
		{cite: "MQTT-3.8.3-1", name: "cut filter", wire: pkt(0x82, 0x00, 0x01, 0x00, 0x04, "ab"), kind: packet.ErrMalformed, rule: "2.2.3"},
		{cite: "MQTT-3.8.3-4", name: "requested QoS 3", wire: subscribe("a", 3),
			p: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a"), QoS: 3}}}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.8.3-4", name: "reserved bits in requested QoS", wire: subscribe("a", 0x04), kind: packet.ErrMalformed},
		{cite: "MQTT-3.8.3-4", name: "reserved bit 7 in requested QoS", wire: subscribe("a", 0x81), kind: packet.ErrMalformed},
		{cite: "MQTT-3.8.3-4", name: "no requested QoS", wire: pkt(0x82, 0x00, 0x01, str("a")), kind: packet.ErrMalformed, rule: "2.2.3"},
		// Filter syntax (section 4.7), judged from the bytes: the
		// connection is closed [MQTT-4.8.0-1].
		{cite: "MQTT-4.7.3-1", name: "empty filter", wire: wire(
			0x82, 0x05, // SUBSCRIBE, remaining length 5
			0x00, 0x01, // packet identifier 1
			0x00, 0x00, // filter of length 0
			0x00), // requested QoS 0
			p: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte{}}}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.3-1", name: "empty filter after a valid one", wire: pkt(0x82, 0x00, 0x01, str("a"), 0x00, str(""), 0x01),
			p: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a")}, {Filter: nil, QoS: 1}}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-2", name: "'#' before a level", wire: wire(
			0x82, 0x0a, // SUBSCRIBE, remaining length 10
			0x00, 0x01, // packet identifier 1
			0x00, 0x05, "a/#/b", // filter "a/#/b"
			0x00), // requested QoS 0
			p: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/#/b")}}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-2", name: "'#' after characters of its level", wire: subscribe("a/b#", 1),
			p: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/b#")}}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-2", name: "'#' twice", wire: subscribe("##", 0), kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-2", name: "'#' then '/'", wire: subscribe("#/", 0), kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-3", name: "'+' after characters of its level", wire: wire(
			0x82, 0x09, // SUBSCRIBE, remaining length 9
			0x00, 0x01, // packet identifier 1
			0x00, 0x04, "a/b+", // filter "a/b+"
			0x00), // requested QoS 0
			p: &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("a/b+")}}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-3", name: "'+' before characters of its level", wire: subscribe("+a/b", 0), kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-3", name: "'+' then '#' in one level", wire: subscribe("a/+#", 0), kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-3", name: "'++'", wire: subscribe("++", 0), kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.3-3", name: "filter over 65535 bytes", p: &packet.Subscribe{PacketID: 1,
			Subscriptions: []packet.Subscription{{Filter: []byte(long)}}}, kind: packet.ErrMalformed},

		// SUBACK.
		{cite: "MQTT-3.9.3-2", name: "return code 3", wire: wire(0x90, 0x03, 0x00, 0x01, 0x03),
			p: &packet.Suback{PacketID: 1, ReturnCodes: []byte{3}}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.9.3-2", name: "return code 0x81", wire: wire(0x90, 0x04, 0x00, 0x01, 0x00, 0x81),
			p: &packet.Suback{PacketID: 1, ReturnCodes: []byte{0, 0x81}}, kind: packet.ErrMalformed},
		{cite: "MQTT-3.8.4-5", name: "SUBACK with no return code", wire: wire(0x90, 0x02, 0x00, 0x01),
			p: &packet.Suback{PacketID: 1}, kind: packet.ErrProtocol},

		// UNSUBSCRIBE.
		{cite: "MQTT-3.10.1-1", name: "UNSUBSCRIBE flags 0000", wire: wire(0xa0, unsubscribe("a")[1:]), kind: packet.ErrMalformed},
		{cite: "MQTT-3.10.1-1", name: "UNSUBSCRIBE flags 0011", wire: wire(0xa3, unsubscribe("a")[1:]), kind: packet.ErrMalformed},
		{cite: "MQTT-3.10.3-1", name: "unsubscribe filter not UTF-8", wire: unsubscribe("\xed\xbf\xbf"),
			p: &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("\xed\xbf\xbf")}}, kind: packet.ErrMalformed, rule: "MQTT-1.5.3-1"},
		{cite: "MQTT-3.10.3-1", name: "cut unsubscribe filter", wire: pkt(0xa2, 0x00, 0x01, str("a"), 0x00), kind: packet.ErrMalformed, rule: "2.2.3"},
		{cite: "MQTT-3.10.3-2", name: "UNSUBSCRIBE with no filter", wire: wire(0xa2, 0x02, 0x00, 0x01),
			p: &packet.Unsubscribe{PacketID: 1}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.3-1", name: "empty unsubscribe filter", wire: wire(
			0xa2, 0x04, // UNSUBSCRIBE, remaining length 4
			0x00, 0x01, // packet identifier 1
			0x00, 0x00), // filter of length 0
			p: &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{{}}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.3-1", name: "empty unsubscribe filter after a valid one", wire: pkt(0xa2, 0x00, 0x01, str("a/#"), str("")),
			kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-2", name: "unsubscribe filter with '#' before a level", wire: unsubscribe("a/#/b"),
			p: &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("a/#/b")}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.1-3", name: "unsubscribe filter with '+' in a level", wire: unsubscribe("a/b+"),
			p: &packet.Unsubscribe{PacketID: 1, Filters: [][]byte{[]byte("a/b+")}}, kind: packet.ErrProtocol},
		{cite: "MQTT-4.7.3-3", name: "unsubscribe filter over 65535 bytes", p: &packet.Unsubscribe{PacketID: 1,
			Filters: [][]byte{[]byte(long)}}, kind: packet.ErrMalformed},

		// DISCONNECT.
		{cite: "MQTT-3.14.1-1", name: "DISCONNECT flags 0001", wire: wire(0xe1, 0x00), kind: packet.ErrMalformed},
		{cite: "MQTT-3.14.1-1", name: "DISCONNECT flags 1000", wire: wire(0xe8, 0x00), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "DISCONNECT remaining length 1", wire: wire(0xe0, 0x01, 0x00), kind: packet.ErrMalformed},

		// The remaining length (section 2.2.3).
		{cite: "2.2.3", name: "five length bytes", wire: wire(0x30, 0xff, 0xff, 0xff, 0xff, 0x01), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "four length bytes, last with continuation", wire: wire(0xc0, 0x80, 0x80, 0x80, 0x80), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "0 in two bytes", wire: wire(0xc0, 0x80, 0x00), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "2 in two bytes", wire: wire(0x40, 0x82, 0x00, 0x00, 0x01), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "127 in four bytes", wire: wire(0x30, 0xff, 0x80, 0x80, 0x00), kind: packet.ErrMalformed},
		{cite: "2.2.3", name: "cut length", wire: wire(0x30, 0x80), kind: packet.ErrMalformed, stream: true},
		{cite: "2.2.3", name: "fewer bytes than the length", wire: wire(0x40, 0x02, 0x00), kind: packet.ErrMalformed, stream: true},
		{cite: "2.2.3", name: "more bytes than the length", wire: wire(0xd0, 0x00, 0x00), kind: packet.ErrMalformed, stream: true},
		{cite: "2.2", name: "one byte", wire: wire(0xc0), kind: packet.ErrMalformed, stream: true},
	}
	for name, s := range badUTF8 {
		c = append(c, ruleCase{cite: "MQTT-1.5.3-1", name: name + " in a topic name", wire: publish(0x30, s),
			p: &packet.Publish{Topic: []byte(s)}, kind: packet.ErrMalformed})
	}
	return c
}

// check reports whether err is an *packet.Error of the kind and rule.
func check(t *testing.T, what string, err error, kind error, rule string) {
	t.Helper()
	var pe *packet.Error
	if !errors.As(err, &pe) {
		t.Errorf("%s: %v, want an *packet.Error", what, err)
		return
	}
	if !errors.Is(err, kind) {
		t.Errorf("%s: %v, want kind %v", what, err, kind)
	}
	if pe.Rule != rule {
		t.Errorf("%s: rule %q, want %q (%v)", what, pe.Rule, rule, err)
	}
	if pe.Reason == "" || !strings.Contains(err.Error(), rule) {
		t.Errorf("%s: %q does not give its reason and rule", what, err)
	}
}

// TestRuleRejections runs every case: Decode (through packet.Decode, the
// type's own Decode and a Reader) refuses the bytes, and Append refuses the
// packet and leaves dst as it was.
func TestRuleRejections(t *testing.T) {
	for _, c := range ruleCases() {
		t.Run(c.cite+"/"+c.name, func(t *testing.T) {
			rule := c.rule
			if rule == "" {
				rule = c.cite
			}
			if c.wire != nil {
				p, err := packet.Decode(c.wire)
				check(t, "packet.Decode", err, c.kind, rule)
				if p != nil {
					t.Errorf("packet.Decode returned %v with its error", p)
				}
				if q := packet.New(packet.Type(c.wire[0] >> 4)); q != nil {
					check(t, "Decode", q.Decode(c.wire), c.kind, rule)
				}
				r := packet.NewReader(bytes.NewReader(c.wire), 0)
				_, err = r.ReadPacket()
				switch {
				case c.stream && err != io.ErrUnexpectedEOF && err != nil:
					t.Errorf("ReadPacket: %v, want a packet or io.ErrUnexpectedEOF", err)
				case !c.stream && !errors.Is(err, c.kind):
					t.Errorf("ReadPacket: %v, want kind %v", err, c.kind)
				}
			}
			if c.p != nil {
				encRule := c.encRule
				if encRule == "" {
					encRule = rule
				}
				dst := []byte("dst")
				out, err := c.p.Append(dst)
				check(t, "Append", err, c.kind, encRule)
				if string(out) != "dst" {
					t.Errorf("Append changed dst to %q", out)
				}
				w := packet.NewWriter(new(bytes.Buffer))
				if err := w.WritePacket(c.p); !errors.Is(err, c.kind) || w.Buffered() != 0 {
					t.Errorf("WritePacket: %v, %d bytes buffered", err, w.Buffered())
				}
			}
		})
	}
}

// acceptCase is a rule met by construction: bytes that decode, and what
// the decoded packet must show.
type acceptCase struct {
	cite  string
	name  string
	wire  []byte
	check func(p packet.Packet) bool
}

var acceptCases = []acceptCase{
	{"MQTT-1.5.3-3", "U+FEFF at the start of a topic is kept", publish(0x30, "\uFEFFa"),
		func(p packet.Packet) bool { return string(p.(*packet.Publish).Topic) == "\xef\xbb\xbfa" }},
	{"MQTT-1.5.3-3", "U+FEFF in a client identifier is kept", connect(0x02, str("\uFEFF\uFEFF")),
		func(p packet.Packet) bool { return string(p.(*packet.Connect).ClientID) == "\uFEFF\uFEFF" }},
	{"MQTT-1.5.3-3", "U+FEFF in a filter is kept", subscribe("\uFEFF/#", 0),
		func(p packet.Packet) bool { return string(p.(*packet.Subscribe).Subscriptions[0].Filter) == "\uFEFF/#" }},
	{"MQTT-2.3.1-5", "QoS 0 PUBLISH reads no identifier", publish(0x30, "a", 0x00, 0x07),
		func(p packet.Packet) bool {
			q := p.(*packet.Publish)
			return q.PacketID == 0 && bytes.Equal(q.Payload, []byte{0x00, 0x07})
		}},
	{"MQTT-3.1.2-1", "protocol name MQTT", connect(0x02, str("c")),
		func(p packet.Packet) bool { return p.(*packet.Connect).Level == packet.Level311 }},
	{"MQTT-3.1.3-1", "payload fields in order", connect(0xee, str("c"), str("wt"), str("wm"), str("u"), str("p")),
		func(p packet.Packet) bool {
			c := p.(*packet.Connect)
			return string(c.ClientID) == "c" && string(c.WillTopic) == "wt" && string(c.WillMessage) == "wm" &&
				string(c.Username) == "u" && string(c.Password) == "p" && c.WillQoS == 1 && c.WillRetain && c.CleanSession
		}},
	{"MQTT-3.1.2-9", "will fields present with the will flag", connect(0x06, str("c"), str("t"), str("")),
		func(p packet.Packet) bool {
			c := p.(*packet.Connect)
			return c.Will && string(c.WillTopic) == "t" && c.WillMessage != nil && len(c.WillMessage) == 0
		}},
	{"MQTT-3.1.2-21", "empty password present with its flag", connect(0xc2, str("c"), str("u"), str("")),
		func(p packet.Packet) bool {
			c := p.(*packet.Connect)
			return c.HasPassword && c.Password != nil && len(c.Password) == 0
		}},
	{"MQTT-3.1.3-3", "empty client identifier with CleanSession 1", connect(0x02, str("")),
		func(p packet.Packet) bool { return len(p.(*packet.Connect).ClientID) == 0 }},
	{"MQTT-3.1.3-4", "client identifier with multi-byte characters", connect(0x02, str("é€😀")),
		func(p packet.Packet) bool { return string(p.(*packet.Connect).ClientID) == "é€😀" }},
	{"3.1 section 3.1", "MQTT 3.1, 23 characters of two bytes", connectName("MQIsdp", 3, 0x00, str(strings.Repeat("é", 23))),
		func(p packet.Packet) bool {
			return p.(*packet.Connect).Level == 3 && string(p.(*packet.Connect).ClientID) == strings.Repeat("é", 23)
		}},
	{"MQTT-3.3.2-1", "topic name with U+FFFF (a noncharacter, allowed)", publish(0x30, "a\uffff"),
		func(p packet.Packet) bool { return string(p.(*packet.Publish).Topic) == "a\uffff" }},
	{"MQTT-3.8.3-1", "SUBSCRIBE filters with wildcards in their places", subscribe("+/a/+/#", 0),
		func(p packet.Packet) bool { return string(p.(*packet.Subscribe).Subscriptions[0].Filter) == "+/a/+/#" }},
	{"MQTT-4.7.1-2", "'#' alone, and after an empty level", subscribe("/#", 0),
		func(p packet.Packet) bool { return string(p.(*packet.Subscribe).Subscriptions[0].Filter) == "/#" }},
	{"MQTT-4.7.1-3", "'+' between empty levels", unsubscribe("/+/"),
		func(p packet.Packet) bool { return string(p.(*packet.Unsubscribe).Filters[0]) == "/+/" }},
}

func TestRuleAccepts(t *testing.T) {
	for _, c := range acceptCases {
		p, err := packet.Decode(c.wire)
		if err != nil {
			t.Errorf("%s %s: %v", c.cite, c.name, err)
			continue
		}
		if !c.check(p) {
			t.Errorf("%s %s: decoded %v", c.cite, c.name, p)
		}
		out, err := p.Append(nil)
		if err != nil || !bytes.Equal(out, c.wire) {
			t.Errorf("%s %s: re-encodes to % x, %v", c.cite, c.name, out, err)
		}
	}
}

// TestRuleCoverage fails if a codec rule has no case.
func TestRuleCoverage(t *testing.T) {
	cited := map[string]bool{}
	for _, c := range ruleCases() {
		cited[c.cite] = true
	}
	for _, c := range acceptCases {
		cited[c.cite] = true
	}
	for _, id := range codecRules {
		if !cited[id] {
			t.Errorf("codec rule %s has no test case", id)
		}
	}
	if len(codecRules) != 41+2 || len(slices.Compact(slices.Sorted(slices.Values(codecRules)))) != len(codecRules) {
		t.Errorf("codecRules has %d ids, want the 41 [codec] ids and 2 sections, each once", len(codecRules))
	}
}

// TestUnsupportedVersionKeepsLevel checks what a server needs to answer a
// CONNECT it cannot serve: the level, through ReadPacket, for CONNACK 0x01.
func TestUnsupportedVersionKeepsLevel(t *testing.T) {
	// An MQTT 5 CONNECT: properties follow the keep alive.
	b := connectName("MQTT", 5, 0x02, 0x00, str("c"))
	r := packet.NewReader(bytes.NewReader(b), 0)
	p, err := r.ReadPacket()
	if !errors.Is(err, packet.ErrUnsupportedVersion) {
		t.Fatalf("ReadPacket: %v", err)
	}
	if c, ok := p.(*packet.Connect); !ok || c.Level != 5 {
		t.Errorf("ReadPacket returned %v", p)
	}
	// The connection may go on to read a further packet.
	var c packet.Connect
	if err := c.Decode(connect(0x00, str(""))); !errors.Is(err, packet.ErrIdentifierRejected) || c.CleanSession {
		t.Errorf("Decode: %v, %v", err, &c)
	}
}

// TestStringScan puts each kind of problem byte at every position of topic
// names and filters of 1 to 40 bytes, so that the word-at-a-time scan is
// checked at every offset in a word and in the byte-wise tail, against a
// plain reading of the rules.
func TestStringScan(t *testing.T) {
	reference := func(s string, name bool) string {
		switch {
		case !utf8.ValidString(s):
			return "MQTT-1.5.3-1"
		case strings.IndexByte(s, 0) >= 0:
			return "MQTT-1.5.3-2"
		case name && strings.ContainsAny(s, "+#"):
			return "MQTT-3.3.2-2"
		case !name && strings.Contains(s, "#"):
			// No insert leaves '#' alone in the last level: the
			// filters are one level of 1 to 40 bytes.
			if s != "#" {
				return "MQTT-4.7.1-2"
			}
		case !name && strings.Contains(s, "+") && s != "+":
			return "MQTT-4.7.1-3"
		}
		return ""
	}
	inserts := []string{"\x00", "+", "#", "\x80", "\xff", "\x7f", "\x01", "é", "\xed\xa0\x80", "\uFEFF", "€+", "é\x00"}
	for n := 1; n <= 40; n++ {
		for i := 0; i < n; i++ {
			for _, ins := range inserts {
				s := strings.Repeat("a", i) + ins + strings.Repeat("b", n-i-1)
				for _, name := range []bool{true, false} {
					var b []byte
					if name {
						b = publish(0x30, s)
					} else {
						b = subscribe(s, 0)
					}
					_, err := packet.Decode(b)
					want := reference(s, name)
					var pe *packet.Error
					switch {
					case want == "" && err != nil:
						t.Fatalf("%q (name %v): %v", s, name, err)
					case want != "" && (!errors.As(err, &pe) || pe.Rule != want):
						t.Fatalf("%q (name %v): %v, want rule %s", s, name, err, want)
					}
				}
			}
		}
	}
}

// TestRuleListMatchesSpec compares codecRules with the [codec] ids of the
// normative list, when the list is beside the repository (as in CI); the
// test does not depend on it otherwise.
func TestRuleListMatchesSpec(t *testing.T) {
	b, err := os.ReadFile("../../shared/spec/mqtt-3.1.1-normative.md")
	if err != nil {
		t.Skipf("normative list not found: %v", err)
	}
	var spec []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Split(line, "|")
		if len(fields) < 3 || !strings.HasPrefix(line, "- MQTT-") || !strings.Contains(fields[2], "[codec]") {
			continue
		}
		spec = append(spec, strings.TrimSpace(strings.TrimPrefix(fields[0], "- ")))
	}
	var ours []string
	for _, id := range codecRules {
		if strings.HasPrefix(id, "MQTT-") {
			ours = append(ours, id)
		}
	}
	slices.Sort(spec)
	slices.Sort(ours)
	if !slices.Equal(spec, ours) {
		t.Errorf("[codec] ids of the normative list:\n%v\ncodecRules:\n%v", spec, ours)
	}
}
