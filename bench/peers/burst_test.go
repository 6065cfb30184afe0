package peers

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	pahomqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/ternmq/mqtt/broker"
)

// TestPahoQoS1Burst drives tern's broker, with its default options, with
// paho.mqtt.golang clients: one publisher sends 50,000 QoS 1 messages as
// fast as paho goes (no window), one subscriber reads them. Every message
// must arrive and none be dropped (issue 15: the defaults of the time
// dropped 0.3-1.1% of them).
func TestPahoQoS1Burst(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 messages")
	}
	const n = 50000
	srv := broker.New(broker.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	url := "mqtt://" + l.Addr().String()

	connect := func(id string) pahomqtt.Client {
		o := pahomqtt.NewClientOptions().AddBroker(url).SetClientID(id).
			SetCleanSession(true).SetAutoReconnect(false)
		c := pahomqtt.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("paho connect: %v", tok.Error())
		}
		return c
	}
	var got atomic.Int64
	all := make(chan struct{})
	sub := connect("sub")
	defer sub.Disconnect(0)
	if tok := sub.Subscribe("burst", 1, func(pahomqtt.Client, pahomqtt.Message) {
		if got.Add(1) == n {
			close(all)
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho subscribe: %v", tok.Error())
	}
	pub := connect("pub")
	defer pub.Disconnect(0)
	payload := make([]byte, 64)
	toks := make([]pahomqtt.Token, n)
	for i := range n {
		copy(payload, strconv.Itoa(i))
		toks[i] = pub.Publish("burst", 1, false, payload)
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
	}
	st := srv.Stats()
	if got.Load() != n || st.Dropped != 0 {
		t.Fatalf("subscriber got %d of %d messages; the broker dropped %d", got.Load(), n, st.Dropped)
	}
	t.Logf("%d of %d QoS 1 messages delivered, %d dropped", got.Load(), n, st.Dropped)
}
