package bench_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/store"
)

// BenchmarkBridge measures QoS 1 messages from 4 local publishers to one
// subscriber of a remote broker through a tern bridge (bridged), against
// the same publishers connected to the remote broker itself (direct), in
// the same run: tern's broker and mosquitto as the remote. ns/op is per
// message received by the subscriber.
//
// The bridge has its defaults (20 messages in flight to the remote, as
// mosquitto's bridge), with a queue large enough to drop nothing. Run with
// counts such as -benchtime=50000x.
func BenchmarkBridge(b *testing.B) {
	remotes := []struct {
		name  string
		start func(b *testing.B) (addr string, memory func() uint64)
	}{
		{"tern", startTernBroker},
		{"mosquitto", startMosquittoBroker},
	}
	for _, r := range remotes {
		b.Run("direct/"+r.name, func(b *testing.B) {
			addr, _ := r.start(b)
			bridgeFanIn(b, addr, addr, 4)
		})
		b.Run("bridged/"+r.name, func(b *testing.B) {
			addr, _ := r.start(b)
			bridged(b, addr, nil)
		})
		// The bridge's queue in the local broker's store (a log with
		// SyncBatch, the default): every message the bridge sends waits
		// for the fsync that makes its record durable.
		b.Run("stored/"+r.name, func(b *testing.B) {
			addr, _ := r.start(b)
			l, err := store.Open(b.TempDir(), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			bridged(b, addr, l)
		})
	}
}

// bridged runs bridgeFanIn with the publishers on a local broker (on st, if
// not nil) bridged to the remote at addr.
func bridged(b *testing.B, addr string, st store.Store) {
	local := mqtttest.NewServer(b, func(o *broker.Options) {
		o.MaxInflight = 65535
		o.MaxQueued = 1 << 22
		o.Store = st
		o.Bridges = []broker.Bridge{{
			Name:      "bench",
			URLs:      []string{"mqtt://" + addr},
			ClientID:  "bench-bridge",
			Topics:    []broker.BridgeTopic{{Pattern: "bench/#", Direction: broker.BridgeOut, QoS: 1}},
			MaxQueued: 1 << 22,
		}}
	})
	defer local.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !local.Broker.Stats().Bridges[0].Connected {
		if time.Now().After(deadline) {
			b.Fatal("bridge not up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bridgeFanIn(b, local.Addr, addr, 4)
	if st := local.Broker.Stats().Bridges[0]; st.Dropped != 0 {
		b.Fatalf("bridge dropped %d", st.Dropped)
	}
}

// bridgeFanIn is brokerFanIn at QoS 1 with the publishers on pubAddr and
// the subscriber on subAddr.
func bridgeFanIn(b *testing.B, pubAddr, subAddr string, pubs int) {
	sub := dialRaw(b, subAddr, "sub")
	sub.subscribe(b, "bench/#", 1)
	clients := make([]*rawClient, pubs)
	for i := range clients {
		clients[i] = dialRaw(b, pubAddr, fmt.Sprint("pub", i))
	}
	b.SetBytes(brokerPayload)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, pubs+1)
	for i, c := range clients {
		n := b.N / pubs
		if i < b.N%pubs {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.publishN([]byte(fmt.Sprint("bench/", i)), n, 1, 100); err != nil {
				errs <- err
			}
		}()
	}
	if err := sub.receiveN(b.N); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}
