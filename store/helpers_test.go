package store

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ternmq/mqtt/session"
)

// sessDump is everything stored for a session, as Load returns it.
type sessDump struct {
	Subs       []Subscription
	LastSeen   int64 // unix nanoseconds, 0 if connected
	Msgs       []session.Message
	In         []session.Incoming
	LastHandle session.Handle
	LastTag    session.Tag
}

// dump is everything a Log holds, as its Load methods return it.
type dump struct {
	Sessions map[string]sessDump
	Retained map[string]Retained
}

func loadDump(t testing.TB, l *Log) dump {
	t.Helper()
	d := dump{Sessions: map[string]sessDump{}, Retained: map[string]Retained{}}
	var ids []string
	err := l.Load(func(id string, subs []Subscription, lastSeen time.Time) error {
		var ns int64
		if !lastSeen.IsZero() {
			ns = lastSeen.UnixNano()
		}
		if _, dup := d.Sessions[id]; dup {
			t.Errorf("session %q loaded twice", id)
		}
		d.Sessions[id] = sessDump{Subs: append([]Subscription(nil), subs...), LastSeen: ns}
		ids = append(ids, id)
		return nil
	}, func(r *Retained) error {
		d.Retained[string(r.Topic)] = Retained{Topic: clone(r.Topic), Payload: clone(r.Payload), QoS: r.QoS}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		s, err := l.Session(id)
		if err != nil {
			t.Fatal(err)
		}
		sd := d.Sessions[id]
		sd.LastHandle, sd.LastTag, err = s.Load(func(m *session.Message) error {
			c := *m
			c.Topic, c.Payload = clone(m.Topic), clone(m.Payload)
			sd.Msgs = append(sd.Msgs, c)
			return nil
		}, func(in session.Incoming) error {
			sd.In = append(sd.In, in)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		d.Sessions[id] = sd
	}
	return d
}

func clone(b []byte) []byte { return append([]byte{}, b...) }

func open(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustSession(t testing.TB, l *Log, id string) Session {
	t.Helper()
	s, err := l.Session(id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func diffDump(t testing.TB, want, got dump) {
	t.Helper()
	if reflect.DeepEqual(want, got) {
		return // cmp.Diff is slow on large states
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("state differs (-want +got):\n%s", d)
	}
}

// logFiles returns the segments of dir.
func logFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "log."+strings.Repeat("?", 16)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func timeAt(s int64) time.Time { return time.Unix(s, 0) }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
