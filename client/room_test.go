package client_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
)

// TestRoomWakesEveryPublisher: publishers that fill the window and the
// queue wait for room, and a waiting publisher is woken only once some room
// is free, not on every acknowledgement (Client.lowWater); none of them may
// be left waiting. Several goroutines publish QoS 0, 1 and 2 messages into
// small and large queues and Disconnect waits for all; every QoS 1 and 2
// message arrives, in order for each publisher and QoS.
func TestRoomWakesEveryPublisher(t *testing.T) {
	t.Parallel()
	srv := mqtttest.NewServer(t)
	for _, tc := range []struct{ inflight, queued int }{{1, 1}, {1, 3}, {2, 70}, {20, 100}, {5, 1000}} {
		t.Run(fmt.Sprintf("inflight%d/queued%d", tc.inflight, tc.queued), func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			sub := connect(t, client.Options{Servers: []string{srv.URL}, MaxPending: 10000})
			msgs := sub.Messages()
			topic := fmt.Sprintf("room/%d/%d", tc.inflight, tc.queued)
			subscribe(t, ctx, sub, topic+"/+/+", 2)
			pub := connect(t, client.Options{Servers: []string{srv.URL}, MaxInflight: tc.inflight, MaxQueued: tc.queued})
			const publishers, each = 3, 400
			var wg sync.WaitGroup
			errs := make(chan error, publishers)
			for p := range publishers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var last *client.Token
					for i := range each {
						qos := byte(i % 3)
						tok := pub.PublishAsync(ctx, fmt.Sprintf("%s/%d/%d", topic, p, qos), qos, false, []byte(fmt.Sprint(i)))
						if qos > 0 {
							last = tok
						}
						if err := tok.Err(); err != nil {
							errs <- fmt.Errorf("publisher %d, message %d: %w", p, i, err)
							return
						}
					}
					if err := last.Wait(ctx); err != nil {
						errs <- fmt.Errorf("publisher %d, last message: %w", p, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := pub.Disconnect(ctx); err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
			// QoS 0 messages may be dropped by the broker; QoS 1 and 2 not.
			next := map[string]int{}
			want := 0
			for i := range each {
				if i%3 != 0 {
					want++
				}
			}
			want *= publishers
			for got := 0; got < want; {
				m := recv(t, msgs, 10*time.Second)
				if m.QoS == 0 {
					continue
				}
				var i int
				fmt.Sscan(string(m.Payload), &i)
				if n, ok := next[m.Topic]; ok && i <= n {
					t.Fatalf("%s: message %d after %d", m.Topic, i, n)
				}
				next[m.Topic] = i
				got++
			}
		})
	}
}
