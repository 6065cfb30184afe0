// Package mqtt is tern, an MQTT 3.1.1 library in pure Go with no
// dependencies outside the standard library.
//
// tern is built in layers, each usable on its own, each importing only the
// ones before it:
//
//   - packet: the wire codec. One struct per control packet, append-style
//     encoding and decoding that allocate nothing, a streaming Reader with a
//     size limit, and strict validation whose errors name the rule of the
//     specification they enforce.
//   - topic: topic name and filter validation, matching, and a subscription
//     trie for brokers and client routing, with shared subscriptions.
//   - session: the protocol state machine without I/O: packet identifiers,
//     the QoS 1 and 2 inflight maps, resending on resume, keepalive
//     deadlines, and stores that survive a crash.
//   - store: the durable state of a server, all its sessions and retained
//     messages in one checksummed log with group commit and compaction.
//   - transport: connections by URL over TCP, TLS, WebSocket and unix
//     sockets, for clients and servers.
//   - client: blocking calls with contexts, a channel and handlers for
//     incoming messages, and reconnection that loses nothing.
//   - broker: an embeddable broker built from the layers above.
//   - mqtttest: an in-process broker per test and a fault-injecting proxy.
//
// The command cmd/tern publishes, subscribes, runs a broker and measures
// throughput. The fuzz and bench directories hold the fuzz targets and
// benchmarks of every layer.
package mqtt
