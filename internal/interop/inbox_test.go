package interop

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// inbox holds the messages a client received, in order, for the test to
// wait for and check.
type inbox struct {
	name    string
	mu      sync.Mutex
	msgs    []message     // every message received, in order
	seen    int           // msgs[:seen] were returned by take
	readErr error         // why the client's input ended
	arrived chan struct{} // signalled (cap 1) on each message and at the end
	done    chan struct{} // closed when no more messages can come
}

func newInbox(name string) inbox {
	return inbox{name: name, arrived: make(chan struct{}, 1)}
}

func (b *inbox) add(m message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	b.signal()
}

func (b *inbox) signal() {
	select {
	case b.arrived <- struct{}{}:
	default:
	}
}

func (b *inbox) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.readErr
}

// received returns a copy of the messages received so far.
func (b *inbox) received() []message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]message(nil), b.msgs...)
}

// wait calls ok with the messages received so far until it returns true,
// failing t when timeout passes or the input ends first.
func (b *inbox) wait(t testing.TB, what string, ok func([]message) bool) []message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		msgs := b.received()
		if ok(msgs) {
			return msgs
		}
		select {
		case <-b.arrived:
		case <-b.done:
			if msgs := b.received(); ok(msgs) {
				return msgs
			}
			t.Fatalf("%s: input ended (%v) before %s; got %s", b.name, b.err(), what, list(b.received()))
		case <-deadline:
			t.Fatalf("%s: no %s within %v; got %s", b.name, what, timeout, list(b.received()))
		}
	}
}

// waitFor waits until a message on topic has arrived, and returns the
// messages received up to it.
func (b *inbox) waitFor(t testing.TB, topic string) []message {
	t.Helper()
	msgs := b.wait(t, "message on "+topic, func(msgs []message) bool {
		for _, m := range msgs {
			if m.Topic == topic {
				return true
			}
		}
		return false
	})
	for i, m := range msgs {
		if m.Topic == topic {
			return msgs[:i+1]
		}
	}
	return nil
}

// take waits for the next len(want) messages and checks that they are
// want, in order.
func (b *inbox) take(t testing.TB, why string, want ...message) {
	t.Helper()
	n := len(want)
	b.mu.Lock()
	from := b.seen
	b.mu.Unlock()
	msgs := b.wait(t, why, func(msgs []message) bool { return len(msgs) >= from+n })
	got := msgs[from : from+n]
	b.mu.Lock()
	b.seen = from + n
	b.mu.Unlock()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("%s: %s: messages differ (-want +got):\n%s", b.name, why, d)
	}
}

// skipTo marks every message up to and including the first on topic as
// seen, waiting for it, and returns those after the previous take.
func (b *inbox) skipTo(t testing.TB, topic string) []message {
	t.Helper()
	b.mu.Lock()
	from := b.seen
	b.mu.Unlock()
	msgs := b.wait(t, "message on "+topic, func(msgs []message) bool {
		for _, m := range msgs[from:] {
			if m.Topic == topic {
				return true
			}
		}
		return false
	})
	for i, m := range msgs[from:] {
		if m.Topic == topic {
			b.mu.Lock()
			b.seen = from + i + 1
			b.mu.Unlock()
			return msgs[from : from+i+1]
		}
	}
	return nil
}

func list(msgs []message) string {
	if len(msgs) == 0 {
		return "nothing"
	}
	s := make([]string, len(msgs))
	for i, m := range msgs {
		s[i] = m.String()
	}
	return strings.Join(s, "; ")
}
