package session

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// The crash test runs a publisher and a receiver, each with its own
// FileStore, in a child process (this test binary run again), and kills it
// with SIGKILL at random instants until every message has completed. The
// receiver records each message it processes in an append-only file before
// acknowledging it (Config.ManualAck), and recognises a QoS 2 message
// delivered again after a restart by its tag. In the end every message must
// be in the record, and every QoS 2 message exactly once.

const (
	crashEnv      = "TERN_CRASH_CHILD"
	crashMessages = 200
)

// crashQoS is the QoS of message n.
func crashQoS(n int) byte { return byte(1 + n%2) }

func TestCrash(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in a crash child")
	}
	wantKills := 200
	switch {
	case raceEnabled:
		wantKills = 10 // each child takes a second to start
	case testing.Short():
		wantKills = 20
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	kills, rounds, starts := 0, 0, 0
	deadline := time.Now().Add(120 * time.Second)
	for kills < wantKills {
		rounds++
		dir := t.TempDir()
		policy := SyncNever
		if rounds%2 == 0 {
			policy = SyncBatch
		}
		for done := false; !done; {
			starts++
			if time.Now().After(deadline) {
				t.Fatalf("only %d kills in 120 s", kills)
			}
			cmd := exec.Command(exe, "-test.run=^TestCrashChild$")
			cmd.Env = append(os.Environ(), crashEnv+"="+dir, "TERN_CRASH_SYNC="+strconv.Itoa(int(policy)))
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait until the child has loaded its state, then let it make a
			// random amount of progress (sometimes none: a kill while it
			// recovers): it writes a byte per round of packets. Counting
			// progress rather than time keeps the test meaningful on a slow
			// machine or with -race; the kill still lands at a random instant,
			// since the child runs on while the parent reads and signals.
			progress := make([]byte, 1+rng.Intn(10))
			if _, err := io.ReadFull(stdout, progress); err == nil {
				cmd.Process.Signal(syscall.SIGKILL)
			}
			io.Copy(io.Discard, stdout)
			err = cmd.Wait()
			var ee *exec.ExitError
			switch {
			case err == nil:
				done = true
			case errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled():
				kills++
			default:
				t.Fatalf("child failed: %v\n%s", err, stderr.String())
			}
		}
		checkCrashRecord(t, dir)
	}
	t.Logf("%d kills in %d rounds of %d messages, %d child runs", kills, rounds, crashMessages, starts)
}

// checkCrashRecord checks the receiver's record of a finished round.
func checkCrashRecord(t *testing.T, dir string) {
	t.Helper()
	rec, err := readCrashRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	count := map[int]int{}
	for _, r := range rec {
		count[r.n]++
	}
	for n := 1; n <= crashMessages; n++ {
		switch {
		case count[n] == 0:
			t.Fatalf("message %d (QoS %d) never processed", n, crashQoS(n))
		case crashQoS(n) == 2 && count[n] != 1:
			t.Fatalf("QoS 2 message %d processed %d times", n, count[n])
		}
	}
	if len(count) != crashMessages {
		t.Fatalf("%d distinct messages processed, want %d", len(count), crashMessages)
	}
}

type crashRecord struct {
	n   int
	tag Tag
}

// readCrashRecord reads the receiver's record; a last line cut by a kill
// (no newline) was never acknowledged and does not count.
func readCrashRecord(dir string) ([]crashRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, "record"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var rec []crashRecord
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		f := strings.Fields(string(b[:i]))
		b = b[i+1:]
		if len(f) != 2 {
			return nil, fmt.Errorf("bad record line %q", f)
		}
		n, err1 := strconv.Atoi(f[0])
		tag, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad record line %q", f)
		}
		rec = append(rec, crashRecord{n, Tag(tag)})
	}
	return rec, nil
}

// TestCrashChild is the child process of TestCrash.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	if err := crashChild(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func crashChild(dir string) error {
	sp, _ := strconv.Atoi(os.Getenv("TERN_CRASH_SYNC"))
	opts := FileStoreOptions{Sync: SyncPolicy(sp), CompactSize: 8 << 10}
	pubStore, err := OpenFileStore(filepath.Join(dir, "pub"), opts)
	if err != nil {
		return err
	}
	subStore, err := OpenFileStore(filepath.Join(dir, "sub"), opts)
	if err != nil {
		return err
	}
	pub, err := New(Config{Role: Client, Store: pubStore, MaxInflight: 8})
	if err != nil {
		return err
	}
	sub, err := New(Config{Role: Server, Store: subStore, ManualAck: true})
	if err != nil {
		return err
	}
	// The receiving application's durable record: message numbers and tags.
	rec, err := readCrashRecord(dir)
	if err != nil {
		return err
	}
	seen := map[Tag]bool{}
	for _, r := range rec {
		seen[r.tag] = true
	}
	recFile, err := os.OpenFile(filepath.Join(dir, "record"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	// Cut a line torn by a kill, so that the next one starts clean.
	if b, err := io.ReadAll(recFile); err != nil {
		return err
	} else if i := bytes.LastIndexByte(b, '\n'); i+1 != len(b) {
		if err := recFile.Truncate(int64(i + 1)); err != nil {
			return err
		}
	}
	if _, err := recFile.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	os.Stdout.Write([]byte{'.'}) // ready: the parent may kill from now on

	now := time.Now()
	conn := &packet.Connect{ClientID: []byte("crash")}
	if err := pub.Connect(conn, now); err != nil {
		return err
	}
	var buf []byte
	pass := func(from, to *Session) error {
		var err error
		if buf, err = from.AppendOutgoing(buf[:0], now); err != nil {
			return err
		}
		r := packet.NewReader(bytes.NewReader(buf), 0)
		for {
			p, err := r.ReadPacket()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if c, ok := p.(*packet.Connect); ok {
				// The receiver keeps its session across restarts.
				err = to.Accept(c, true, now)
			} else {
				err = to.Receive(p, now)
			}
			if err != nil {
				return fmt.Errorf("%v receiving %v: %w", to.Role(), p, err)
			}
			for ev, ok := to.NextEvent(); ok; ev, ok = to.NextEvent() {
				if ev.Kind != EventMessage {
					continue
				}
				n, err := strconv.Atoi(string(ev.Publish.Payload))
				if err != nil || ev.Publish.QoS != crashQoS(n) {
					return fmt.Errorf("bad message %v", ev.Publish)
				}
				if !seen[ev.Tag] || ev.Publish.QoS == 1 {
					// Recorded before the acknowledgement may leave. The
					// write is one system call, whole or absent after a kill.
					if _, err := fmt.Fprintf(recFile, "%d %d\n", n, ev.Tag); err != nil {
						return err
					}
					if SyncPolicy(sp) != SyncNever {
						if err := recFile.Sync(); err != nil {
							return err
						}
					}
					seen[ev.Tag] = true
				}
				if err := to.Ack(ev.Tag); err != nil {
					return err
				}
			}
		}
	}
	for {
		for pub.LastHandle() < crashMessages && pub.Queued() < 4 {
			n := int(pub.LastHandle()) + 1
			if _, err := pub.Publish(&packet.Publish{QoS: crashQoS(n), Topic: []byte("crash"), Payload: []byte(strconv.Itoa(n))}); err != nil {
				return err
			}
		}
		if err := pass(pub, sub); err != nil {
			return err
		}
		if err := pass(sub, pub); err != nil {
			return err
		}
		os.Stdout.Write([]byte{'+'}) // progress, for the parent
		for _, ok := pub.NextEvent(); ok; _, ok = pub.NextEvent() {
		}
		if pub.LastHandle() == crashMessages && pub.Inflight() == 0 && pub.Queued() == 0 && !sub.HasOutgoing() {
			return nil
		}
	}
}
