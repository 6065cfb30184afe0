package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/mqtttest"
	"github.com/ternmq/mqtt/packet"
	"github.com/ternmq/mqtt/session"
)

// collector gathers the payloads a subscriber receives.
type collector struct {
	mu   sync.Mutex
	got  []int
	more chan struct{}
}

func newCollector() *collector { return &collector{more: make(chan struct{}, 1)} }

func (c *collector) handle(m *client.Message) {
	i, _ := strconv.Atoi(string(m.Payload))
	c.mu.Lock()
	c.got = append(c.got, i)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

// distinct returns the number of distinct payloads received.
func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[int]bool{}
	for _, i := range c.got {
		seen[i] = true
	}
	return len(seen)
}

// wait waits until n distinct payloads arrived.
func (c *collector) wait(t testing.TB, n int, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for c.distinct() < n {
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("%d distinct messages of %d within %v: %v", c.distinct(), n, d, c.snapshot())
		}
	}
}

func (c *collector) snapshot() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.got...)
}

// check verifies the delivery guarantee of qos for messages 0..n-1: QoS 2
// exactly once and in order [MQTT-4.3.3-2]; QoS 1 at least once, first
// deliveries in order [MQTT-4.3.2-2] [MQTT-4.6.0-6].
func check(t testing.TB, qos byte, got []int, n int) {
	t.Helper()
	if qos == 2 {
		if len(got) != n {
			t.Fatalf("QoS 2: %d deliveries of %d messages: %v", len(got), n, got)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("QoS 2: delivery %d is message %d: %v", i, v, got)
			}
		}
		return
	}
	next := 0
	for _, v := range got {
		switch {
		case v == next:
			next++
		case v > next:
			t.Fatalf("QoS 1: message %d before %d: %v", v, next, got)
		}
	}
	if next != n {
		t.Fatalf("QoS 1: %d of %d messages: %v", next, n, got)
	}
}

// subscribe retries Subscribe through connection losses.
func subscribe(t testing.TB, ctx context.Context, c *client.Client, filter string, qos byte) {
	t.Helper()
	for {
		_, err := c.Subscribe(ctx, client.Subscription{Filter: filter, QoS: qos})
		if err == nil {
			return
		}
		if !errors.Is(err, client.ErrConnectionLost) {
			t.Fatalf("Subscribe: %v", err)
		}
	}
}

// TestCutEveryPacket cuts the connection of the publisher or of the
// subscriber, before the k-th packet in one direction, for every k of the
// QoS 1 and QoS 2 flows: both clients keep their session and reconnect, the
// messages are sent again [MQTT-4.4.0-1], and the subscriber sees them all.
func TestCutEveryPacket(t *testing.T) {
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	const n = 3
	for _, store := range []string{"memory", "file"} {
		for _, qos := range []byte{1, 2} {
			// Packets per direction: CONNECT/CONNACK, SUBSCRIBE/SUBACK, then
			// up to two per message and direction.
			last := 2 + 2*n
			for _, side := range []string{"pub", "sub"} {
				for _, dir := range []mqtttest.Direction{mqtttest.ClientToServer, mqtttest.ServerToClient} {
					for k := 0; k <= last; k++ {
						name := fmt.Sprintf("%s/qos%d/%s/%v/%d", store, qos, side, dir, k)
						t.Run(name, func(t *testing.T) {
							t.Parallel()
							cutFlow(t, b, store == "file", qos, side, dir, k, n, name)
						})
					}
				}
			}
		}
	}
}

func cutFlow(t *testing.T, b *mosquitto.Broker, fileStore bool, qos byte, side string, dir mqtttest.Direction, k, n int, name string) {
	ctx := testCtx(t, 30*time.Second)
	pp := mqtttest.NewProxy(t, b.URL)
	sp := mqtttest.NewProxy(t, b.URL)
	cut := mqtttest.OnConn(0, mqtttest.At(dir, k, mqtttest.Cut))
	if side == "pub" {
		pp.SetFilter(cut)
	} else {
		sp.SetFilter(cut)
	}
	opts := func(url, id string) client.Options {
		o := client.Options{
			Servers:      []string{url},
			ClientID:     id,
			KeepSession:  true,
			ReconnectMin: 5 * time.Millisecond,
			ReconnectMax: 20 * time.Millisecond,
		}
		if fileStore {
			// Durable against kill -9 (not power loss), which is what
			// this test is about, without an fsync per state change.
			st, err := session.OpenFileStore(t.TempDir(), session.FileStoreOptions{Sync: session.SyncNever})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			o.Store = st
		}
		return o
	}
	col := newCollector()
	so := opts(sp.URL(), "s-"+name)
	so.DefaultHandler = col.handle
	sub, err := client.New(so)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// The first connection may be cut before its CONNACK: retry.
	for sub.Connect(ctx) != nil {
		if ctx.Err() != nil {
			t.Fatal("subscriber cannot connect")
		}
	}
	subscribe(t, ctx, sub, "cut/"+name, qos)

	pub, err := client.New(opts(pp.URL(), "p-"+name))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for pub.Connect(ctx) != nil {
		if ctx.Err() != nil {
			t.Fatal("publisher cannot connect")
		}
	}
	toks := make([]*client.Token, n)
	for i := range toks {
		toks[i] = pub.PublishAsync(ctx, "cut/"+name, qos, false, []byte(strconv.Itoa(i)))
	}
	for i, tok := range toks {
		if err := tok.Wait(ctx); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	col.wait(t, n, 10*time.Second)
	// Let late duplicates arrive before judging: a marker sent after the
	// messages, on the same topic and QoS, comes after them [MQTT-4.6.0-6].
	if err := pub.Publish(ctx, "cut/"+name, qos, false, []byte(strconv.Itoa(n))); err != nil {
		t.Fatal(err)
	}
	col.wait(t, n+1, 10*time.Second)
	check(t, qos, col.snapshot(), n+1)
	if sp.Accepted()+pp.Accepted() < 2 {
		t.Fatalf("only %d connections", sp.Accepted()+pp.Accepted())
	}
}

// TestCutAllLoad cuts both clients' connections repeatedly while hundreds
// of messages flow, through mosquitto.
func TestCutAllLoad(t *testing.T) {
	t.Parallel()
	cutAllLoad(t, mosquitto.Start(t, mosquitto.Config{}).URL)
}

// TestCutAllLoadTernBroker is TestCutAllLoad through tern's broker, to tell
// the client's faults from a broker's.
func TestCutAllLoadTernBroker(t *testing.T) {
	t.Parallel()
	cutAllLoad(t, mqtttest.NewServer(t).URL)
}

func cutAllLoad(t *testing.T, url string) {
	for _, qos := range []byte{1, 2} {
		t.Run("qos"+strconv.Itoa(int(qos)), func(t *testing.T) {
			ctx := testCtx(t, 60*time.Second)
			p := mqtttest.NewProxy(t, url)
			var answers answerOrder
			p.SetFilter(answers.filter)
			col := newCollector()
			// MaxCuts off: the proxy cuts every 30 ms whatever is in
			// flight, and under load the same message can meet three
			// cuts in a row before the broker's answer, which the client
			// would take for a broker refusing it (TestRefusedMessageGivenUp).
			o := client.Options{Servers: []string{p.URL()}, KeepSession: true, ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond, MaxCuts: -1}
			so := o
			so.ClientID, so.DefaultHandler = fmt.Sprintf("load-sub-%d", qos), col.handle
			sub := connect(t, so)
			subscribe(t, ctx, sub, "load", qos)
			po := o
			po.ClientID = fmt.Sprintf("load-pub-%d", qos)
			pub := connect(t, po)
			const n = 500
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(30 * time.Millisecond):
						p.CutAll()
					}
				}
			}()
			toks := make([]*client.Token, n)
			for i := range toks {
				toks[i] = pub.PublishAsync(ctx, "load", qos, false, []byte(strconv.Itoa(i)))
			}
			for i, tok := range toks {
				if err := tok.Wait(ctx); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			close(stop)
			wg.Wait()
			if err := pub.Publish(ctx, "load", qos, false, []byte(strconv.Itoa(n))); err != nil {
				t.Fatal(err)
			}
			col.wait(t, n+1, 20*time.Second)
			check(t, qos, col.snapshot(), n+1)
			if err := answers.result(); err != nil {
				t.Error(err)
			}
			t.Logf("%d connections", p.Accepted())
		})
	}
}

// answerOrder is a proxy Filter that checks that a client answers the
// PUBLISH packets it receives on each connection once each, in the order
// they came [MQTT-4.6.0-2] [MQTT-4.6.0-3], resends included: an answer
// given before the resend of its message came, or for a message of an
// earlier connection, breaks it. (It also catches what mosquitto 2.0 turns
// an unexpected answer into only now and then: later messages overtaking
// queued ones.)
type answerOrder struct {
	mu      sync.Mutex
	pending map[int][]uint16 // per connection, the PUBLISHes not yet answered
	err     error
}

func (a *answerOrder) filter(f mqtttest.Frame) mqtttest.Action {
	var id uint16
	switch f.Type {
	case packet.PUBLISH, packet.PUBACK, packet.PUBREC:
		p, err := packet.Decode(f.Bytes)
		if err != nil {
			return mqtttest.Forward
		}
		switch p := p.(type) {
		case *packet.Publish:
			if p.QoS == 0 || f.Dir != mqtttest.ServerToClient {
				return mqtttest.Forward
			}
			id = p.PacketID
		case *packet.Puback:
			id = p.PacketID
		case *packet.Pubrec:
			id = p.PacketID
		}
	default:
		return mqtttest.Forward
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending == nil {
		a.pending = make(map[int][]uint16)
	}
	q := a.pending[f.Conn]
	switch {
	case f.Type == packet.PUBLISH:
		a.pending[f.Conn] = append(q, id)
	case f.Dir == mqtttest.ServerToClient:
		// The server's answer to a publisher.
	case len(q) == 0 || q[0] != id:
		if a.err == nil {
			a.err = fmt.Errorf("connection %d: the client answered %v %d, awaited answers %v", f.Conn, f.Type, id, q)
		}
	default:
		a.pending[f.Conn] = q[1:]
	}
	return mqtttest.Forward
}

func (a *answerOrder) result() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// TestRestartedPublisher runs the publisher as a child process with a file
// store, kills it with SIGKILL twice in the middle of a QoS 2 flow and
// starts it again on the same store: the subscriber still gets every message
// exactly once, in order.
func TestRestartedPublisher(t *testing.T) {
	if os.Getenv("TERN_CLIENT_CHILD") != "" {
		t.Skip("in the child")
	}
	t.Parallel()
	b := mosquitto.Start(t, mosquitto.Config{})
	ctx := testCtx(t, 60*time.Second)
	col := newCollector()
	sub := connect(t, client.Options{Servers: []string{b.URL}, ClientID: "restart-sub", KeepSession: true, DefaultHandler: col.handle})
	subscribe(t, ctx, sub, "restart", 2)
	dir := t.TempDir()
	const n = 300
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPublisherChild$", "-test.v")
		cmd.Env = append(os.Environ(), "TERN_CLIENT_CHILD=1", "TERN_CHILD_URL="+b.URL, "TERN_CHILD_DIR="+dir, "TERN_CHILD_N="+strconv.Itoa(n))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	for _, killAt := range []int{n / 4, n / 2} {
		cmd := start()
		col.wait(t, killAt, 20*time.Second)
		cmd.Process.Kill()
		cmd.Wait()
	}
	cmd := start()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	col.wait(t, n, 20*time.Second)
	check(t, 2, col.snapshot(), n)
}

// TestPublisherChild is the publisher of TestRestartedPublisher, run in a
// child process.
func TestPublisherChild(t *testing.T) {
	if os.Getenv("TERN_CLIENT_CHILD") == "" {
		t.Skip("run by TestRestartedPublisher")
	}
	n, _ := strconv.Atoi(os.Getenv("TERN_CHILD_N"))
	store, err := session.OpenFileStore(os.Getenv("TERN_CHILD_DIR"), session.FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := testCtx(t, 30*time.Second)
	c := connect(t, client.Options{Servers: []string{os.Getenv("TERN_CHILD_URL")}, ClientID: "restart-pub", KeepSession: true, Store: store})
	// Handles grow by one per message: the next message is the count of
	// those already taken, which were stored before PublishAsync returned.
	var toks []*client.Token
	t.Logf("child starts at message %d", c.LastHandle())
	for i := int(c.LastHandle()); i < n; i++ {
		toks = append(toks, c.PublishAsync(ctx, "restart", 2, false, []byte(strconv.Itoa(i))))
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // give the parent a chance to kill mid-flow
		}
	}
	for _, tok := range toks {
		if err := tok.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
}
