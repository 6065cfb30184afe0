package broker

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
)

// A metric of the Prometheus text exposition format: its name, TYPE and
// HELP, and where its value is in Stats.
var metrics = [...]struct {
	name, kind, help string
	value            func(st *Stats) int64
}{
	{"tern_connections", "gauge", "Network connections open now, CONNECT done or not.", func(st *Stats) int64 { return st.Connections }},
	{"tern_clients_connected", "gauge", "Clients connected now (CONNECT accepted).", func(st *Stats) int64 { return st.Connected }},
	{"tern_sessions", "gauge", "Sessions held now, connected or persistent.", func(st *Stats) int64 { return st.Sessions }},
	{"tern_subscriptions", "gauge", "Subscriptions held now, shared ones included.", func(st *Stats) int64 { return st.Subscriptions }},
	{"tern_retained_messages", "gauge", "Retained messages held now, $SYS topics excluded.", func(st *Stats) int64 { return st.Retained }},
	{"tern_messages_received_total", "counter", "PUBLISH packets taken from clients (authorized).", func(st *Stats) int64 { return st.Received }},
	{"tern_messages_delivered_total", "counter", "Messages handed to sessions for sending or queueing.", func(st *Stats) int64 { return st.Delivered }},
	{"tern_messages_dropped_total", "counter", "Messages dropped because a session's queue was full.", func(st *Stats) int64 { return st.Dropped }},
	{"tern_messages_discarded_total", "counter", "Messages undelivered when their connection ended: held by a clean session, or QoS 0 in a write that failed.", func(st *Stats) int64 { return st.Discarded }},
	{"tern_messages_sent_total", "counter", "PUBLISH packets written to clients, resends included.", func(st *Stats) int64 { return st.PublishSent }},
	{"tern_packets_received_total", "counter", "MQTT control packets of any type read from clients.", func(st *Stats) int64 { return st.PacketsReceived }},
	{"tern_packets_sent_total", "counter", "MQTT control packets of any type written to clients.", func(st *Stats) int64 { return st.PacketsSent }},
	{"tern_bytes_received_total", "counter", "Bytes read from clients.", func(st *Stats) int64 { return st.BytesReceived }},
	{"tern_bytes_sent_total", "counter", "Bytes written to clients.", func(st *Stats) int64 { return st.BytesSent }},
	{"tern_connections_refused_total", "counter", "CONNECTs refused with a non-zero CONNACK return code.", func(st *Stats) int64 { return st.Refused }},
	{"tern_disconnections_total", "counter", "Connections that ended after an accepted CONNECT.", func(st *Stats) int64 { return st.Disconnected }},
	{"tern_uptime_seconds", "gauge", "Seconds since the broker was created.", func(st *Stats) int64 { return int64(st.Uptime.Seconds()) }},
}

// MetricsContentType is the Content-Type of the Prometheus text exposition
// format that WriteMetrics writes.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteMetrics writes st to w in the Prometheus text exposition format
// (version 0.0.4): for each counter, a # HELP line, a # TYPE line (counter or
// gauge; counters are named with _total) and its value. Every name starts
// with "tern_". It is the body MetricsHandler serves, for an embedder that
// serves metrics its own way.
func WriteMetrics(w io.Writer, st Stats) error {
	bw := bufio.NewWriterSize(w, 4096)
	var num [20]byte
	for i := range metrics {
		m := &metrics[i]
		bw.WriteString("# HELP ")
		bw.WriteString(m.name)
		bw.WriteByte(' ')
		bw.WriteString(m.help)
		bw.WriteString("\n# TYPE ")
		bw.WriteString(m.name)
		bw.WriteByte(' ')
		bw.WriteString(m.kind)
		bw.WriteByte('\n')
		bw.WriteString(m.name)
		bw.WriteByte(' ')
		bw.Write(strconv.AppendInt(num[:0], m.value(&st), 10))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// MetricsHandler returns an http.Handler that serves the Server's Stats in
// the Prometheus text exposition format (see WriteMetrics), for GET and
// HEAD requests at any path it is mounted on.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", MetricsContentType)
		if r.Method == http.MethodHead {
			return
		}
		WriteMetrics(w, s.Stats())
	})
}
