package broker

import (
	"log/slog"
	"strings"
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

// A bridge logs its first loss even after it dropped echoes: they are
// counted in Dropped, but not toward the lines about losses (before, 999
// echoes and then a full queue logged nothing).
func TestBridgeFirstLossLoggedAfterEchoes(t *testing.T) {
	var logs strings.Builder
	s := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer s.Close()
	b := &bridge{srv: s, cfg: Bridge{Name: "edge"}}
	for range 5 {
		b.dropped.Add(1) // echoes, as incoming drops them
	}
	b.drop("queue full", "t", 1)
	if !strings.Contains(logs.String(), `msg="bridge dropped a message" bridge=edge why="queue full"`) {
		t.Errorf("no line for the first loss:\n%s", logs.String())
	}
	if n := b.dropped.Load(); n != 6 {
		t.Errorf("dropped = %d, want 6 (echoes too)", n)
	}
}
