package broker_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/store"
)

// TestBridgeStoreTLS: a bridge whose queue is in the Server's store writes
// to its remote through a connection that syncs the store first; TLS runs
// on top of it. Messages go out and come in over mqtts, and the remote's
// certificate is checked with the bridge's TLSConfig.
func TestBridgeStoreTLS(t *testing.T) {
	certs := testcert.Must(t)
	remote := broker.New(broker.Options{AllowBridges: true})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig(false))
	if err != nil {
		t.Fatal(err)
	}
	go remote.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		remote.Shutdown(ctx)
	}()
	remoteURL := "mqtts://" + ln.Addr().String()
	dialRemote := func(o *client.Options) {
		o.TLSConfig = certs.ClientConfig()
	}

	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	local := mqtttest.NewServer(t, func(o *broker.Options) {
		o.Store = st
		o.Logger = testLogger(t)
		o.Bridges = []broker.Bridge{{
			Name: "tls", URLs: []string{remoteURL}, ClientID: "tls-bridge",
			TLSConfig: certs.ClientConfig(),
			Topics: []broker.BridgeTopic{
				{Pattern: "out/#", Direction: broker.BridgeOut, QoS: 2},
				{Pattern: "in/#", Direction: broker.BridgeIn, QoS: 2},
			},
			ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		}}
	})
	bwait(t, 10*time.Second, "bridge up", func() bool { return local.Broker.Stats().Bridges[0].Connected })

	rcol := new(collector)
	rsub := conn(t, remoteURL, "rsub", func(o *client.Options) {
		dialRemote(o)
		o.DefaultHandler = func(m *client.Message) {
			rcol.mu.Lock()
			rcol.msgs = append(rcol.msgs, msg{Topic: m.Topic, Payload: append([]byte(nil), m.Payload...), QoS: m.QoS})
			rcol.mu.Unlock()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rsub.Subscribe(ctx, client.Subscription{Filter: "out/#", QoS: 2}); err != nil {
		t.Fatal(err)
	}
	lcol := collect(t, local.URL, "lsub", "in/#", 2)
	lpub := conn(t, local.URL, "lpub", nil)
	rpub := conn(t, remoteURL, "rpub", dialRemote)
	for _, q := range []byte{1, 2} {
		publish(t, lpub, "out/a", q, false, string('0'+q))
		publish(t, rpub, "in/a", q, false, string('0'+q))
	}
	bwait(t, 10*time.Second, "both ways", func() bool {
		return rcol.count("out/a", "1") == 1 && rcol.count("out/a", "2") == 1 &&
			lcol.count("in/a", "1") == 1 && lcol.count("in/a", "2") == 1
	})
}
