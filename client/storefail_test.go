package client_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/session"
)

// breakingStore is a MemoryStore whose deletions fail once broken, as a
// FileStore's writes do on a full disk (and from then on, every write).
type breakingStore struct {
	*session.MemoryStore
	broken atomic.Bool
}

var errDiskFull = errors.New("no space left on device")

func (s *breakingStore) DeleteMessage(h session.Handle) error {
	if s.broken.Load() {
		return errDiskFull
	}
	return s.MemoryStore.DeleteMessage(h)
}

func (s *breakingStore) Sync() error {
	if s.broken.Load() {
		return errDiskFull
	}
	return s.MemoryStore.Sync()
}

// A store that fails stops the client: the Publish waiting on the message
// whose completion could not be recorded fails with ErrStoreFailed and the
// store's error, and so do later calls and Connect. Before, the client
// took the failure for the broker's fault, reconnected at once, over and
// over, resending the message each time (thousands a second to every
// subscriber), and the Publish never returned.
func TestStoreFailureStopsClient(t *testing.T) {
	srv := mqtttest.NewServer(t)
	ctx := testCtx(t, 20*time.Second)
	var copies atomic.Int64
	sub := connect(t, client.Options{Servers: []string{srv.URL}})
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "t", QoS: 1, Handler: func(*client.Message) { copies.Add(1) }}); err != nil {
		t.Fatal(err)
	}
	st := &breakingStore{MemoryStore: session.NewMemoryStore()}
	events := make(chan client.Event, 100)
	pub := connect(t, client.Options{Servers: []string{srv.URL}, ClientID: "pub", KeepSession: true, Store: st,
		OnEvent: func(e client.Event) {
			select {
			case events <- e:
			default:
			}
		}})
	if err := pub.Publish(ctx, "t", 1, false, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	st.broken.Store(true)
	err := pub.Publish(ctx, "t", 1, false, []byte("stuck"))
	if !errors.Is(err, client.ErrStoreFailed) || !errors.Is(err, errDiskFull) {
		t.Fatalf("Publish with the store failing: %v, want ErrStoreFailed and the store's error", err)
	}
	if err := pub.Publish(ctx, "t", 1, false, []byte("later")); !errors.Is(err, client.ErrStoreFailed) {
		t.Errorf("Publish after the failure: %v, want ErrStoreFailed", err)
	}
	if err := pub.Connect(ctx); !errors.Is(err, client.ErrStoreFailed) {
		t.Errorf("Connect after the failure: %v, want ErrStoreFailed", err)
	}
	time.Sleep(300 * time.Millisecond) // room for a storm to show
	if n := pub.Stats().Connects; n != 1 {
		t.Errorf("%d connections, want 1: the client reconnected after its store failed", n)
	}
	if n := copies.Load(); n > 3 {
		t.Errorf("the subscriber got %d copies, want the message and at most a resend or two", n)
	}
	for len(events) > 0 {
		if e := <-events; e.Kind == client.Reconnecting {
			t.Errorf("event Reconnecting after the store failed: %v", e.Err)
		}
	}
}
