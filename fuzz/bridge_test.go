package fuzz_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// FuzzBridgeConfig checks that ParseBridges never panics, and that what it
// accepts is a usable bridge: a name, addresses and topics whose filters
// are valid, and every key of the input either understood or refused.
func FuzzBridgeConfig(f *testing.F) {
	f.Add("connection a\naddress h\ntopic #\n")
	f.Add("connection cloud\naddress b1:1884 [::1]:1885\ntopic sensors/# out 1 site/ fleet/\ntopic \"\" in 2 l r\n" +
		"remote_clientid g\nremote_username u\nremote_password p\ncleansession true\nkeepalive_interval 30\n" +
		"try_private false\nnotifications false\nrestart_timeout 2 20\nround_robin true\n")
	f.Add("connection a\naddress ws://h/mqtt\ntopic a/+/b both 2 \"\" x/\nconnection b\naddress h:1\ntopic c in\n")
	f.Add("connection a\naddress h\ntopic # out 3\n")
	f.Add("connection a\nlistener 1883\n")
	f.Fuzz(func(t *testing.T, conf string) {
		bs, err := broker.ParseBridges(strings.NewReader(conf), "f")
		if err != nil {
			if bs != nil {
				t.Fatalf("bridges with error %v", err)
			}
			return
		}
		if len(bs) == 0 {
			t.Fatal("no bridge and no error")
		}
		for _, b := range bs {
			if b.Name == "" || len(b.URLs) == 0 || len(b.Topics) == 0 {
				t.Fatalf("incomplete bridge %+v", b)
			}
			for _, tp := range b.Topics {
				if tp.QoS > 2 || tp.Direction < broker.BridgeOut || tp.Direction > broker.BridgeBoth {
					t.Fatalf("bad topic %+v", tp)
				}
			}
		}
	})
}

// FuzzConnectBridge checks DecodeBridge against Decode: it never panics,
// it accepts what Decode accepts with the same result, and what it accepts
// beyond is a marked CONNECT of level 3 or 4 that encodes back to the same
// bytes.
func FuzzConnectBridge(f *testing.F) {
	for _, p := range []*packet.Connect{
		{Level: 4, Bridge: true, ClientID: []byte("edge"), KeepAlive: 60},
		{Level: 3, Bridge: true, CleanSession: true, ClientID: []byte("x")},
		{Level: 4, CleanSession: true, ClientID: []byte("plain"), HasUsername: true, Username: []byte("u")},
	} {
		b, err := p.Append(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var plain, marked packet.Connect
		perr := plain.Decode(b)
		merr := marked.DecodeBridge(b)
		if perr == nil {
			if merr != nil || marked.Bridge {
				t.Fatalf("Decode accepts, DecodeBridge: %v, Bridge %v", merr, marked.Bridge)
			}
			return
		}
		if merr != nil {
			var pe *packet.Error
			if !errors.As(merr, &pe) {
				t.Fatalf("error %v is not a *packet.Error", merr)
			}
			return
		}
		if !marked.Bridge || (marked.Level != 3 && marked.Level != 4) || !errors.Is(perr, packet.ErrUnsupportedVersion) {
			t.Fatalf("DecodeBridge accepts what Decode refuses with %v: %+v", perr, marked)
		}
		out, err := marked.Append(nil)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding: %v\n%x\nnot\n%x", err, out, b)
		}
	})
}
