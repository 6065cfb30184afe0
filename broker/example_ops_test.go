package broker_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ternmq/mqtt/broker"
)

// A subscriber may hold "#" while one topic under it stays private: the
// subscription is granted, and each delivery is checked.
func ExampleOptions_authorizeRead() {
	srv := broker.New(broker.Options{
		AuthorizeRead: func(c *broker.Client, topic []byte) bool {
			return !strings.HasPrefix(string(topic), "private/") || c.Username == "admin"
		},
		SysInterval: broker.DefaultSysInterval, // $SYS/broker/... every 10 s, as mosquitto
	})
	defer srv.Close()
	// go srv.ListenAndServe("mqtt://127.0.0.1:1883")
}

// Serving the counters to Prometheus, next to the broker.
func ExampleServer_MetricsHandler() {
	srv := broker.New(broker.Options{})
	defer srv.Close()
	http.Handle("/metrics", srv.MetricsHandler())
	// go http.ListenAndServe("127.0.0.1:9234", nil)
}

// WriteMetrics writes Stats in the Prometheus text format, for an embedder
// that exposes them its own way.
func ExampleWriteMetrics() {
	var buf bytes.Buffer
	broker.WriteMetrics(&buf, broker.Stats{Received: 42, Uptime: time.Minute})
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "tern_messages_received_total") {
			fmt.Fprintln(os.Stdout, line)
		}
	}
	// Output:
	// # HELP tern_messages_received_total PUBLISH packets taken from clients (authorized).
	// # TYPE tern_messages_received_total counter
	// tern_messages_received_total 42
}
