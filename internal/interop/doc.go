// Package interop holds tests only: tern's broker against the MQTT clients
// people use (mosquitto_pub and mosquitto_sub, Python paho-mqtt, MQTT.js), and
// a differential test that runs one scripted scenario against tern's broker
// and against a real mosquitto and compares what every subscriber receives.
//
// The peers come from Debian (mosquitto, mosquitto-clients,
// python3-paho-mqtt) and npm (run `npm ci` in this directory for MQTT.js).
// A test whose peer is missing is skipped, or fails when
// TERN_REQUIRE_PEERS=1 is set, as CI does.
package interop
