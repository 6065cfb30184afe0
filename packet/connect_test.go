package packet_test

import (
	"strings"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// CONNECT, section 3.1: fixed header 0x10, variable header of protocol
// name, level, flags and keep alive (Figures 3.2 to 3.6), then the payload
// fields in order [MQTT-3.1.3-1].
var connectGoldens = []golden{
	{
		name: "3.1.1 clean session",
		p:    &packet.Connect{Level: 4, CleanSession: true, KeepAlive: 60, ClientID: []byte("tern")},
		wire: wire(
			0x10,       // CONNECT, flags 0000
			0x10,       // remaining length 16
			0x00, 0x04, // protocol name length 4
			"MQTT",     // protocol name
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session
			0x00, 0x3c, // keep alive 60
			0x00, 0x04, // client identifier length 4
			"tern", // client identifier
		),
	},
	{
		name: "3.1.1 empty client identifier",
		p:    &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte{}},
		wire: wire(
			0x10,       // CONNECT
			0x0c,       // remaining length 12
			0x00, 0x04, // protocol name length 4
			"MQTT",     // protocol name
			0x04,       // protocol level 4
			0x02,       // connect flags: clean session (required with an empty id)
			0x00, 0x00, // keep alive 0: off
			0x00, 0x00, // client identifier length 0
		),
	},
	{
		name: "3.1 MQIsdp",
		p:    &packet.Connect{Level: 3, KeepAlive: 10, ClientID: []byte("dev1")},
		wire: wire(
			0x10,       // CONNECT
			0x12,       // remaining length 18
			0x00, 0x06, // protocol name length 6
			"MQIsdp",   // protocol name of MQTT 3.1
			0x03,       // protocol level 3
			0x00,       // connect flags: none, so CleanSession 0
			0x00, 0x0a, // keep alive 10
			0x00, 0x04, // client identifier length 4
			"dev1", // client identifier
		),
	},
	{
		name: "3.1 user name and password",
		p: &packet.Connect{Level: 3, CleanSession: true, ClientID: []byte("x"),
			HasUsername: true, Username: []byte("me"), HasPassword: true, Password: []byte{0x00, 0xff}},
		wire: wire(
			0x10,       // CONNECT
			0x17,       // remaining length 23
			0x00, 0x06, // protocol name length 6
			"MQIsdp",   // protocol name
			0x03,       // protocol level 3
			0xc2,       // connect flags: user name 0x80, password 0x40, clean session 0x02
			0x00, 0x00, // keep alive 0
			0x00, 0x01, // client identifier length 1
			"x",        // client identifier
			0x00, 0x02, // user name length 2
			"me",       // user name
			0x00, 0x02, // password length 2
			0x00, 0xff, // password: binary data, not a string
		),
	},
	{
		name: "will, user name and empty password",
		p: &packet.Connect{Level: 4, KeepAlive: 30, ClientID: []byte("c"),
			Will: true, WillQoS: 1, WillRetain: true, WillTopic: []byte("w/t"), WillMessage: []byte("bye"),
			HasUsername: true, Username: []byte("u"), HasPassword: true, Password: []byte{}},
		wire: wire(
			0x10,       // CONNECT
			0x1c,       // remaining length 28
			0x00, 0x04, // protocol name length 4
			"MQTT",     // protocol name
			0x04,       // protocol level 4
			0xec,       // connect flags: user name 0x80, password 0x40, will retain 0x20, will QoS 1 0x08, will 0x04
			0x00, 0x1e, // keep alive 30
			0x00, 0x01, // client identifier length 1
			"c",        // client identifier
			0x00, 0x03, // will topic length 3
			"w/t",      // will topic
			0x00, 0x03, // will message length 3
			"bye",      // will message
			0x00, 0x01, // user name length 1
			"u",        // user name
			0x00, 0x00, // password length 0: present and empty
		),
	},
	{
		name: "will QoS 2 with empty message",
		p: &packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("id"),
			Will: true, WillQoS: 2, WillTopic: []byte("t"), WillMessage: []byte{}},
		wire: wire(
			0x10,       // CONNECT
			0x13,       // remaining length 19
			0x00, 0x04, // protocol name length 4
			"MQTT",     // protocol name
			0x04,       // protocol level 4
			0x16,       // connect flags: will QoS 2 0x10, will 0x04, clean session 0x02
			0x00, 0x00, // keep alive 0
			0x00, 0x02, // client identifier length 2
			"id",       // client identifier
			0x00, 0x01, // will topic length 1
			"t",        // will topic
			0x00, 0x00, // will message length 0
		),
	},
	{
		name: "empty user name without password",
		p:    &packet.Connect{Level: 4, ClientID: []byte("c"), HasUsername: true, Username: []byte{}},
		wire: wire(
			0x10,       // CONNECT
			0x0f,       // remaining length 15
			0x00, 0x04, // protocol name length 4
			"MQTT",     // protocol name
			0x04,       // protocol level 4
			0x80,       // connect flags: user name
			0x00, 0x00, // keep alive 0
			0x00, 0x01, // client identifier length 1
			"c",        // client identifier
			0x00, 0x00, // user name length 0
		),
	},
}

func TestConnectGolden(t *testing.T) { testGolden(t, connectGoldens) }

// TestConnectLevelZero checks that the zero Level encodes as 3.1.1.
func TestConnectLevelZero(t *testing.T) {
	p := &packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: []byte("tern")}
	got, err := p.Append(nil)
	if err != nil || string(got) != string(connectGoldens[0].wire) {
		t.Errorf("Append = % x, %v; want % x", got, err, connectGoldens[0].wire)
	}
}

// TestConnectClone checks that a clone shares no memory with the original.
func TestConnectClone(t *testing.T) {
	buf := append([]byte(nil), connectGoldens[4].wire...)
	var p packet.Connect
	if err := p.Decode(buf); err != nil {
		t.Fatal(err)
	}
	c := p.Clone()
	for i := range buf {
		buf[i] = '!'
	}
	want := connectGoldens[4].p.(*packet.Connect)
	if string(c.ClientID) != "c" || string(c.WillTopic) != "w/t" || string(c.WillMessage) != "bye" ||
		string(c.Username) != "u" || c.Password == nil || len(c.Password) != 0 || c.WillQoS != want.WillQoS {
		t.Errorf("clone changed with the input: %v", c)
	}
	if (&packet.Connect{}).Clone().ClientID != nil {
		t.Error("Clone of a nil field is not nil")
	}
}

// TestConnectStringHidesPassword checks that String never prints the
// password, since packets end up in logs.
func TestConnectStringHidesPassword(t *testing.T) {
	p := &packet.Connect{Level: 4, ClientID: []byte("c"), HasUsername: true, Username: []byte("u"),
		HasPassword: true, Password: []byte("hunter2")}
	if s := p.String(); strings.Contains(s, "hunter2") {
		t.Errorf("String() = %q shows the password", s)
	}
}
