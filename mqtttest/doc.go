// Package mqtttest provides utilities for testing MQTT clients and servers,
// in the way net/http/httptest does for HTTP.
//
// NewServer starts tern's broker for one test, on 127.0.0.1 at a free port,
// and closes it when the test ends. Clients connect to srv.URL, or over an
// in-memory pipe with srv.Dial as transport.Options.DialContext; srv.Broker
// gives the broker's Stats and lets the test publish directly:
//
//	srv := mqtttest.NewServer(t)
//	c, err := client.New(client.Options{Servers: []string{srv.URL}})
//
// A Proxy sits between a client and a server, forwards their MQTT traffic
// and injects faults on the way: it drops, delays or holds packets, cuts
// connections before or after a given packet, and tears packets in the
// middle. It reads both directions as MQTT packets, so faults fall exactly
// on packet boundaries, and a Filter chooses, packet by packet, what
// happens:
//
//	p := mqtttest.NewProxy(t, brokerAddr)
//	// Cut the first connection when the broker's PUBACK is on its way,
//	// and let the client's reconnection through.
//	p.SetFilter(mqtttest.OnConn(0, mqtttest.OnType(mqtttest.ServerToClient, packet.PUBACK, mqtttest.Cut)))
//	// Then connect the client under test to p.URL() and publish at QoS 1:
//	// it must reconnect and send the PUBLISH again with DUP set.
//
// Everything listens on 127.0.0.1 on a port of the system's choosing, and
// everything started with a testing.TB is closed when the test ends.
package mqtttest
