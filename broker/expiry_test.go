package broker_test

import (
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
)

// TestSessionExpiryAfterRestart: a persistent session restored from the
// store expires counting from when its connection ended before the
// restart, not from the restart.
func TestSessionExpiryAfterRestart(t *testing.T) {
	fs := newFakeStore(t)
	const expiry = 400 * time.Millisecond
	srv := storeServer(t, fs, func(o *broker.Options) { o.SessionExpiry = expiry })
	gone := time.Now()
	s := connect(t, srv, "gone", false, false)
	s.subscribe(1, "t", 1)
	s.disconnect()
	waitFor(t, "the disconnection", func() bool { return srv.Broker.Stats().Connected == 0 })
	srv.Close()

	time.Sleep(expiry / 2)
	restart := time.Now()
	srv = storeServer(t, fs.restart(), func(o *broker.Options) { o.SessionExpiry = expiry })
	waitFor(t, "the restore", func() bool {
		st := srv.Broker.Stats()
		return st.Sessions+st.Expired > 0
	})
	if st := srv.Broker.Stats(); st.Sessions != 1 || st.Expired != 0 {
		t.Fatalf("after restart: %d sessions, %d expired; want the session restored", st.Sessions, st.Expired)
	}
	waitFor(t, "the restored session to expire", func() bool { return srv.Broker.Stats().Expired == 1 })
	if d := time.Since(gone); d < expiry {
		t.Errorf("expired %v after its connection ended, before the expiry %v", d, expiry)
	}
	if d := time.Since(restart); d >= expiry {
		t.Errorf("expired %v after the restart: counted from the restart, not from the disconnection", d)
	}
}
