package packet_test

import (
	"errors"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// bridgeConnect is a CONNECT with mosquitto's bridge mark, as mosquitto's
// bridge sends it with try_private true: protocol level 0x84.
var bridgeConnect = wire(
	0x10,       // CONNECT
	0x10,       // remaining length 16
	0x00, 0x04, // protocol name length 4
	"MQTT",     // protocol name
	0x84,       // protocol level 4 with the bridge mark (0x80)
	0x00,       // connect flags: kept session
	0x00, 0x3c, // keep alive 60
	0x00, 0x04, // client identifier length 4
	"edge", // client identifier
)

// TestConnectBridgeMark checks that the mark is written only when asked
// for, and read back only by DecodeBridge.
func TestConnectBridgeMark(t *testing.T) {
	p := &packet.Connect{Level: 4, Bridge: true, KeepAlive: 60, ClientID: []byte("edge")}
	got, err := p.Append(nil)
	if err != nil || string(got) != string(bridgeConnect) {
		t.Fatalf("Append = % x, %v; want % x", got, err, bridgeConnect)
	}
	var d packet.Connect
	if err := d.DecodeBridge(bridgeConnect); err != nil {
		t.Fatalf("DecodeBridge: %v", err)
	}
	if !d.Bridge || d.Level != 4 || string(d.ClientID) != "edge" || d.CleanSession || d.KeepAlive != 60 {
		t.Errorf("DecodeBridge = %+v", d)
	}
	// Without the mark, DecodeBridge is Decode.
	plain := connectGoldens[0].wire
	if err := d.DecodeBridge(plain); err != nil || d.Bridge || d.Level != 4 {
		t.Errorf("DecodeBridge of an unmarked CONNECT = %+v, %v", d, err)
	}
	// 3.1 with the mark: 0x83.
	p31 := &packet.Connect{Level: 3, Bridge: true, CleanSession: true, ClientID: []byte("x")}
	b31, err := p31.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if b31[10] != 0x83 { // after 0x10, length, 0x00 0x06 "MQIsdp"
		t.Errorf("3.1 level byte = %#x, want 0x83", b31[10])
	}
	if err := d.DecodeBridge(b31); err != nil || !d.Bridge || d.Level != 3 {
		t.Errorf("DecodeBridge(3.1 marked) = %+v, %v", d, err)
	}
}

// TestConnectBridgeMarkRefused checks that the default decoder refuses
// the mark as an unsupported protocol level, keeping the level for the
// CONNACK 0x01 answer [MQTT-3.1.2-2], and that DecodeBridge refuses marks
// on levels other than 3 and 4.
func TestConnectBridgeMarkRefused(t *testing.T) {
	var p packet.Connect
	err := p.Decode(bridgeConnect)
	if !errors.Is(err, packet.ErrUnsupportedVersion) || p.Level != 0x84 || p.Bridge {
		t.Errorf("Decode = %v, Level %#x, Bridge %v; want ErrUnsupportedVersion, 0x84, false", err, p.Level, p.Bridge)
	}
	if _, err := packet.Decode(bridgeConnect); !errors.Is(err, packet.ErrUnsupportedVersion) {
		t.Errorf("packet.Decode = %v, want ErrUnsupportedVersion", err)
	}
	for _, level := range []byte{0x85, 0x80, 0xff, 0x04 | 0x40} {
		b := append([]byte(nil), bridgeConnect...)
		b[8] = level
		if err := p.DecodeBridge(b); !errors.Is(err, packet.ErrUnsupportedVersion) || p.Bridge {
			t.Errorf("DecodeBridge(level %#x) = %v, Bridge %v; want ErrUnsupportedVersion", level, err, p.Bridge)
		}
	}
	// The mark on level 4 with the 3.1 name is as wrong as without it.
	b := connectName("MQIsdp", 0x84, 0x02, str("c"))
	if err := p.DecodeBridge(b); !errors.Is(err, packet.ErrUnsupportedVersion) {
		t.Errorf("DecodeBridge(MQIsdp 0x84) = %v, want ErrUnsupportedVersion", err)
	}
}
