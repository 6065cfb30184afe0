package bench_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
)

// The client benchmarks run end to end: a publishing client and a
// subscribing client of tern, through a mosquitto started by the benchmark
// (with no inflight or queue limits, so that nothing is dropped) or through
// tern's own broker. One op is one message published and received;
// bench/peers runs the same workload with paho.mqtt.golang for comparison.

var clientSizes = []int{64, 1024}

// benchBrokers returns the URLs of the brokers to run against.
func benchBrokers(b *testing.B) map[string]string {
	m := mosquitto.Start(b, mosquitto.Config{Extra: []string{"max_inflight_messages 0", "max_queued_messages 0", "set_tcp_nodelay true"}})
	srv := mqtttest.NewServer(b)
	return map[string]string{"mosquitto": m.URL, "tern": srv.URL}
}

func BenchmarkClientThroughput(b *testing.B) {
	for name, url := range benchBrokers(b) {
		for qos := byte(0); qos <= 2; qos++ {
			for _, size := range clientSizes {
				b.Run(name+"/qos"+strconv.Itoa(int(qos))+"/"+strconv.Itoa(size)+"B", func(b *testing.B) {
					throughput(b, url, qos, size)
				})
			}
		}
	}
}

// benchClient connects a client tuned for throughput: a window of 100
// messages in flight, and a queue behind it that PublishAsync waits on.
func benchClient(b *testing.B, url string, onMsg func(*client.Message)) *client.Client {
	c, err := client.New(client.Options{Servers: []string{url}, MaxInflight: 100, MaxPending: 1000, DefaultHandler: onMsg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func throughput(b *testing.B, url string, qos byte, size int) {
	var got atomic.Int64
	done := make(chan struct{}, 1)
	var want atomic.Int64
	sub := benchClient(b, url, func(*client.Message) {
		if got.Add(1) == want.Load() {
			done <- struct{}{}
		}
	})
	ctx := context.Background()
	topic := "bench/" + strconv.Itoa(int(qos)) + "/" + strconv.Itoa(size)
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: topic, QoS: qos}); err != nil {
		b.Fatal(err)
	}
	pub := benchClient(b, url, nil)
	payload := make([]byte, size)
	want.Store(int64(b.N))
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	var last *client.Token
	for range b.N {
		last = pub.PublishAsync(ctx, topic, qos, false, payload)
	}
	if err := last.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("%d of %d messages received", got.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/msg")
}

func BenchmarkClientRoundTrip(b *testing.B) {
	for name, url := range benchBrokers(b) {
		for qos := byte(0); qos <= 2; qos++ {
			b.Run(name+"/qos"+strconv.Itoa(int(qos)), func(b *testing.B) {
				got := make(chan struct{}, 1)
				c := benchClient(b, url, func(*client.Message) { got <- struct{}{} })
				ctx := context.Background()
				topic := "rtt/" + strconv.Itoa(int(qos))
				if _, err := c.Subscribe(ctx, client.Subscription{Filter: topic, QoS: qos}); err != nil {
					b.Fatal(err)
				}
				payload := make([]byte, 64)
				b.SetBytes(64)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if err := c.Publish(ctx, topic, qos, false, payload); err != nil {
						b.Fatal(err)
					}
					<-got
				}
			})
		}
	}
}
