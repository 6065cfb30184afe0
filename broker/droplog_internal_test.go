package broker

import (
	"log/slog"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// TestCountDropTakesNoServerLock: drops are counted with a client's mu held
// (sendRetained), and the end of a connection takes Server.mu, then a
// client's mu: countDrop must not wait for Server.mu, or the two deadlock.
// FuzzBroker found it: a client subscribing to "$SYS/#" with a small queue.
func TestCountDropTakesNoServerLock(t *testing.T) {
	s := New(Options{Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	cl := &client{id: "x"}
	s.mu.Lock() // as finish does, before it takes cl.mu
	done := make(chan struct{})
	go func() {
		cl.mu.Lock() // as sendRetained does
		for range 3 {
			// The first is logged; the next ones, within the
			// interval, schedule the line that logs them.
			s.countDrop(cl, &packet.Publish{Topic: []byte("t")})
		}
		cl.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.mu.Unlock() // so that Close can end
		t.Fatal("countDrop waits for Server.mu with a client's mu held")
	}
	s.mu.Unlock()
	if got := s.dropped.Load(); got != 3 {
		t.Fatalf("dropped = %d, want 3", got)
	}
}
