package bench_test

import (
	"testing"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
)

// BenchmarkBrokerAuthorizeRead is the fan-out of BenchmarkBroker (1
// publisher, 16 subscribers, QoS 0; ns/op per message published, received 16
// times) without Options.AuthorizeRead and with a hook that allows every
// delivery, in the same run: what a read check per delivery costs the
// broker, beyond the hook's own work.
func BenchmarkBrokerAuthorizeRead(b *testing.B) {
	for _, hook := range []struct {
		name string
		fn   func(*broker.Client, []byte) bool
	}{
		{"none", nil},
		{"allow", func(*broker.Client, []byte) bool { return true }},
	} {
		b.Run(hook.name, func(b *testing.B) {
			srv := mqtttest.NewServer(b, func(o *broker.Options) {
				o.MaxInflight = 65535
				o.MaxQueued = 1 << 22
				o.AuthorizeRead = hook.fn
			})
			brokerFanOut(b, srv.Addr, 16, 0)
		})
	}
}
