// Package interop holds tests only: tern's broker against the MQTT clients
// people use, and differential tests that run one scenario against tern's
// broker and against a real mosquitto and compare what the clients receive.
//
// Every test runs against both brokers: against mosquitto it proves the
// test itself, against tern's broker it tests the broker.
//
// Interoperability (clients_test.go, cli_test.go, transport_test.go,
// acl_test.go, resend_test.go): mosquitto_pub and mosquitto_sub, Python
// paho-mqtt (run through testdata/paho_client.py) and MQTT.js
// (testdata/mqttjs_client.js) connect with credentials and a will, publish
// and subscribe at QoS 0, 1 and 2, set and clear retained messages,
// unsubscribe, keep persistent sessions, speak MQTT 3.1, use TLS with
// client certificates, WebSocket and WebSocket over TLS, see refusals by
// access rules, resend and receive again the messages of a connection cut
// by mqtttest's fault-injecting proxy, and leave their will when killed. A
// raw-packet client on the side checks what the broker forwards.
//
// Differential (diff_*_test.go): scenarios driven with raw packets
// (packet.Reader and packet.Writer over TCP) record what each client
// receives (topic, payload, QoS, RETAIN, DUP, packet identifiers renamed in
// order of appearance); each record is checked against the one the
// specification gives, and the two brokers' records against each other,
// allowing only for mosquitto's known departures from the specification,
// which each test names.
//
// The peers come from Debian (mosquitto, mosquitto-clients,
// python3-paho-mqtt) and npm (run `npm ci` in this directory for MQTT.js).
// A test whose peer is missing is skipped, or fails when
// TERN_REQUIRE_PEERS=1 is set, as CI does. Every external process runs
// under a context with a time limit, and every wait of a test is bounded.
package interop
