package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
)

// TestBridgeMark connects with the bridge mark to a broker that accepts it
// and to one that refuses it with CONNACK 0x01 [MQTT-3.1.2-2]: the client
// then connects at once without it, and says so.
func TestBridgeMark(t *testing.T) {
	for _, allow := range []bool{true, false} {
		var marked, connected atomic.Bool
		srv := mqtttest.NewServer(t, func(o *broker.Options) {
			o.AllowBridges = allow
			o.OnEvent = func(e *broker.Event) {
				if e.Kind == broker.EventConnect {
					marked.Store(e.Client.Bridge)
					connected.Store(true)
				}
			}
		})
		c, err := client.New(client.Options{Servers: []string{srv.URL}, ClientID: "b", BridgeMark: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("allow %v: %v", allow, err)
		}
		cancel()
		for !connected.Load() {
			time.Sleep(time.Millisecond) // the event may follow the CONNACK
		}
		refused := srv.Broker.Stats().Refused
		if c.BridgeMark() != allow || marked.Load() != allow || refused != map[bool]int64{true: 0, false: 1}[allow] {
			t.Errorf("allow %v: BridgeMark %v, connected marked %v, refused %d", allow, c.BridgeMark(), marked.Load(), refused)
		}
		c.Close()
	}
}
