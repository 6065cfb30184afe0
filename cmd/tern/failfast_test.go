package main

// Tests that tern pub and tern sub end, with mosquitto's exit codes, when
// the broker goes away or refuses a message.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/mosquitto"
)

// exitWithin waits for p to exit within d of since and returns its code.
func (p *process) exitWithin(t *testing.T, since time.Time, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Until(since.Add(d))):
		t.Fatalf("tern still runs %v after the broker was killed\nstdout: %.200s\nstderr: %s", d, p.stdout, p.stderr)
	}
	return p.wait(t)
}

// TestKillBroker kills the broker under a running tern pub and tern sub,
// at each QoS: both exit within 2 s with status 7 (connection lost), as
// mosquitto_pub does. (mosquitto_sub reconnects for ever instead; tern sub
// does so with -reconnect.)
func TestKillBroker(t *testing.T) {
	for _, broker := range []string{"tern", "mosquitto"} {
		for _, qos := range []string{"0", "1", "2"} {
			t.Run(broker+"/qos"+qos, func(t *testing.T) {
				var url string
				var kill func()
				if broker == "tern" {
					bp, urls := startBrokerProcess(t, nil, "mqtt://127.0.0.1:0")
					url, kill = urls[0], func() { bp.cmd.Process.Signal(syscall.SIGKILL) }
				} else {
					b := mosquitto.Start(t, mosquitto.Config{})
					url, kill = b.URL, b.Kill
				}
				sub := startTern(t, "sub", "-d", "-L", url, "-t", "k", "-q", qos)
				sub.waitFor(t, "the subscription", func() bool { return strings.Contains(sub.stderr.String(), "subscribed") })
				pub := startTern(t, "pub", "-L", url, "-t", "k", "-m", "hi", "-q", qos, "-repeat", "100000", "-repeat-delay", "0.01")
				sub.waitFor(t, "messages", func() bool { return strings.Count(sub.stdout.String(), "hi\n") >= 3 })
				kill()
				killed := time.Now()
				for name, p := range map[string]*process{"pub": pub, "sub": sub} {
					code := p.exitWithin(t, killed, 2*time.Second)
					if code != exitLost || !strings.Contains(p.stderr.String(), "lost") {
						t.Errorf("tern %s: exit %d, stderr %q; want %d and the connection lost", name, code, p.stderr, exitLost)
					}
				}
			})
		}
	}
}

// TestPubOverLimit sends a 2 MiB file to brokers that take at most 1 MiB:
// tern pub exits 7 at once, as mosquitto_pub does, instead of sending it
// again and again.
func TestPubOverLimit(t *testing.T) {
	t.Parallel() // each with its own brokers; after the sequential tests
	file := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(file, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	b := mosquitto.Start(t, mosquitto.Config{Extra: []string{"max_packet_size 1048576"}})
	urls := map[string]string{
		"tern":      startBroker(t, []string{"-max-packet", "1048576"}, "mqtt://127.0.0.1:0")[0],
		"mosquitto": b.URL,
	}
	for name, url := range urls {
		for _, qos := range []string{"0", "1", "2"} {
			start := time.Now()
			r := runTern(t, "", "pub", "-L", url, "-t", "big", "-f", file, "-q", qos)
			took := time.Since(start)
			// At QoS 0 the broker's close may come after tern pub is done
			// writing: it then exits 0, as mosquitto_pub does.
			if (r.code != exitLost && !(qos == "0" && r.code == 0)) || took > 5*time.Second {
				t.Errorf("%s QoS %s: exit %d after %v, stderr %q; want %d", name, qos, r.code, took, r.stderr, exitLost)
			}
		}
	}
	if mosquittoPub := lookMosquitto(t, "mosquitto_pub"); mosquittoPub != "" {
		r := runBin(t, mosquittoPub, "-p", port(b.URL), "-h", "127.0.0.1", "-t", "big", "-f", file, "-q", "1")
		if r.code != exitLost {
			t.Errorf("mosquitto_pub: exit %d, %q; the test assumes 7", r.code, r.stderr)
		}
	}
}

// TestPubFileSizeChecked: -f refuses a file too large for one message
// before reading it (a sparse file of 300 MB costs nothing to make).
func TestPubFileSizeChecked(t *testing.T) {
	t.Parallel() // each with its own brokers; after the sequential tests
	file := filepath.Join(t.TempDir(), "huge")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(300 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := runTern(t, "", "pub", "-L", "mqtt://127.0.0.1:1", "-t", "topic", "-f", file)
	want := fmt.Sprintf("%s: %d bytes or more, longer than the %d bytes", file, 300<<20, 268435455-2-len("topic"))
	if r.code != exitError || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
}
