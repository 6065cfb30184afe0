package peers

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pahomqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/store"
)

// BenchmarkBrokerStore measures persistent QoS 1 fan-in through a broker:
// 4 or 16 paho clients with persistent sessions publish QoS 1 messages of
// 64 bytes, each with window messages in flight, to one paho subscriber
// with a persistent session and a wildcard subscription. One op
// is one message published, acknowledged to its publisher, delivered and
// acknowledged by the subscriber. The load generator is paho, not tern.
//
// Rows, in the same run: tern's broker (in this process) without a store;
// with store.Log and SyncBatch (an fsync before each batch of
// acknowledgements, shared by all connections); with SyncNever (written to
// the operating system, never fsynced); and mosquitto with persistence
// true (which writes its database at autosave_interval, 30 minutes by
// default, and at a clean stop: it syncs nothing per message). Each row
// reports msgs/s, and the tern rows with a store msgs/fsync: the messages
// saved per fsync of the log (group commit).
func BenchmarkBrokerStore(b *testing.B) {
	for _, pubs := range []int{4, 16} {
		name := fmt.Sprintf("pub%d/", pubs)
		b.Run(name+"tern/memory", func(b *testing.B) { ternStoreFanIn(b, pubs, false, 0) })
		b.Run(name+"tern/sync-batch", func(b *testing.B) { ternStoreFanIn(b, pubs, true, store.SyncBatch) })
		b.Run(name+"tern/sync-never", func(b *testing.B) { ternStoreFanIn(b, pubs, true, store.SyncNever) })
		b.Run(name+"mosquitto/persistence", func(b *testing.B) {
			url := startMosquittoPersistent(b)
			fanIn(b, url, pubs)
		})
	}
}

// ternStoreFanIn runs the fan-in through tern's broker, with a store.Log of
// the policy if withStore.
func ternStoreFanIn(b *testing.B, pubs int, withStore bool, policy store.SyncPolicy) {
	opts := broker.Options{MaxInflight: 65535, MaxQueued: 1 << 20}
	var lg *store.Log
	if withStore {
		var err error
		lg, err = store.Open(filepath.Join(b.TempDir(), "data"), store.Options{Sync: policy})
		if err != nil {
			b.Fatal(err)
		}
		opts.Store = lg
	}
	srv := broker.New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		srv.Serve(l)
		close(done)
	}()
	b.Cleanup(func() {
		srv.Close()
		<-done
		if lg != nil {
			lg.Close()
		}
	})
	var before store.Stats
	if lg != nil {
		before = lg.Stats()
	}
	fanIn(b, "mqtt://"+l.Addr().String(), pubs)
	if lg != nil {
		st := lg.Stats()
		if syncs := st.Syncs - before.Syncs; syncs > 0 {
			b.ReportMetric(float64(st.SyncedMessages-before.SyncedMessages)/float64(syncs), "msgs/fsync")
		}
	}
}

// fanIn publishes b.N QoS 1 messages from npub persistent clients to one
// persistent subscriber through the broker at url.
func fanIn(b *testing.B, url string, npub int) {
	var wg sync.WaitGroup
	wg.Add(b.N)
	sub := pahoPersistent(b, url, "store-sub")
	if t := sub.Subscribe("fan/#", 1, func(pahomqtt.Client, pahomqtt.Message) { wg.Done() }); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("paho subscribe: %v", t.Error())
	}
	pubs := make([]pahomqtt.Client, npub)
	for i := range pubs {
		pubs[i] = pahoPersistent(b, url, fmt.Sprintf("store-pub%d", i))
	}
	payload := make([]byte, 64)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var pwg sync.WaitGroup
	for i, pub := range pubs {
		n := b.N / npub
		if i < b.N%npub {
			n++
		}
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			topic := fmt.Sprintf("fan/%d", i)
			toks := make([]pahomqtt.Token, window)
			for j := range n {
				k := j % window
				if t := toks[k]; t != nil {
					t.Wait()
				}
				toks[k] = pub.Publish(topic, 1, false, payload)
			}
			for _, t := range toks {
				if t != nil {
					t.Wait()
				}
			}
		}()
	}
	pwg.Wait()
	waited := make(chan struct{})
	go func() {
		wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(2 * time.Minute):
		b.Fatal("the subscriber did not get every message in 2 minutes")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func pahoPersistent(b *testing.B, url, id string) pahomqtt.Client {
	o := pahomqtt.NewClientOptions().AddBroker(url).SetClientID(id).
		SetCleanSession(false).SetAutoReconnect(false)
	c := pahomqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		b.Fatalf("paho connect: %v", t.Error())
	}
	b.Cleanup(func() { c.Disconnect(0) })
	return c
}

// startMosquittoPersistent runs a mosquitto with persistence true in a
// temporary directory, with its stock autosave_interval, no inflight or
// queue limits and TCP_NODELAY, and returns its URL.
func startMosquittoPersistent(b *testing.B) string {
	dir := b.TempDir()
	// Started as root, mosquitto drops to user mosquitto: it must be able
	// to write its database there.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		os.Chmod(d, 0o777)
	}
	br := runMosquitto(b, fmt.Sprintf("persistence true\npersistence_location %s/\n"+
		"max_inflight_messages 0\nmax_queued_messages 0\nset_tcp_nodelay true\n", dir))
	return "mqtt://" + br.addr
}
