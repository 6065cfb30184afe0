package broker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/packet"
)

// Shared subscriptions: each message goes to one member of each group, in
// turn among the connected members; a plain subscriber of the same filter gets
// every message.
func TestSharedSubscriptions(t *testing.T) {
	srv := newServer(t)
	var members []*script
	for i := range 3 {
		m := connect(t, srv, fmt.Sprint("m", i), true, false)
		m.subscribe(1, "$share/workers/jobs/+", 1)
		members = append(members, m)
	}
	all := connect(t, srv, "all", true, false)
	all.subscribe(1, "jobs/#", 0)
	p := connect(t, srv, "p", true, false)
	const n = 9
	for i := range n {
		p.publish(pub("jobs/a", fmt.Sprint(i), 1, uint16(i+1)))
	}
	for i := range n {
		checkPublish(t, all.expectPublish(), "jobs/a", fmt.Sprint(i), 0, false)
	}
	for _, m := range members {
		for range n / len(members) {
			got := m.expectPublish()
			checkPublish(t, got, "jobs/a", string(got.Payload), 1, false)
			m.ack(got)
		}
		m.expectNothing()
	}

	// A member that went away is skipped while others are connected.
	// Its clean session ends after its connection closes: wait for its
	// subscription to go, so that the group is the same for the four
	// messages (taken in turn by an index, it may give one member two in
	// a row while it shrinks).
	members[0].disconnect()
	waitFor(t, "m0's subscription removed", func() bool { return srv.Broker.Stats().Subscriptions == 3 })
	for i := range 4 {
		p.publish(pub("jobs/b", fmt.Sprint(i), 0, 0))
	}
	for range 4 {
		all.expectPublish()
	}
	for _, m := range members[1:] {
		for range 2 {
			m.expectPublish()
		}
		m.expectNothing()
	}
}

// When no member of a shared subscription is connected, the messages are
// queued to the members' persistent sessions in turn, not all to one of
// them: each member finds its share when it comes back (mosquitto does the
// same).
func TestSharedSubscriptionAllAway(t *testing.T) {
	srv := newServer(t)
	const members, n = 3, 9
	for i := range members {
		m := connect(t, srv, fmt.Sprint("m", i), false, false)
		m.subscribe(1, "$share/g/jobs", 1)
		m.disconnect()
	}
	waitFor(t, "members gone", func() bool { return srv.Broker.Stats().Connected == 0 })
	p := connect(t, srv, "p", true, false)
	for i := range n {
		p.publish(pub("jobs", fmt.Sprint(i), 1, uint16(i+1)))
	}
	seen := map[string]bool{}
	for i := range members {
		m := connect(t, srv, fmt.Sprint("m", i), false, true)
		for range n / members {
			got := m.expectPublish()
			checkPublish(t, got, "jobs", string(got.Payload), 1, false)
			if seen[string(got.Payload)] {
				t.Errorf("message %s delivered twice", got.Payload)
			}
			seen[string(got.Payload)] = true
			m.ack(got)
		}
		m.expectNothing()
	}
	if len(seen) != n {
		t.Errorf("%d of %d messages delivered", len(seen), n)
	}
}

// A member of a shared subscription whose session is full does not lose the
// group its messages: each goes to the next member with room, and none is
// dropped while one has.
func TestSharedSubscriptionFullMember(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) {
		o.MaxInflight = 2
		o.MaxQueued = 2
	})
	stuck := connect(t, srv, "stuck", true, false) // reads, never acknowledges
	stuck.subscribe(1, "$share/g/jobs", 1)
	p := connect(t, srv, "p", true, false)
	// Alone in the group, stuck takes two messages in flight and two
	// queued behind them: its session is full.
	got := map[string]bool{}
	for i := range 4 {
		p.publish(pub("jobs", fmt.Sprint(i), 1, uint16(i+1)))
	}
	var window []*packet.Publish
	for range 2 {
		m := stuck.expectPublish()
		window = append(window, m)
		got[string(m.Payload)] = true
	}
	stuck.expectNothing()
	// Every later message goes to live, whether the turn is stuck's or
	// its own, at the QoS of live's subscription [MQTT-3.8.4-6]. One at a
	// time, so that live's own queue never fills.
	live := connect(t, srv, "live", true, false)
	live.subscribe(1, "$share/g/jobs", 0)
	const n = 20
	for i := 4; i < n; i++ {
		p.publish(pub("jobs", fmt.Sprint(i), 1, uint16(i+1)))
		checkPublish(t, live.expectPublish(), "jobs", fmt.Sprint(i), 0, false)
		got[fmt.Sprint(i)] = true
	}
	live.expectNothing()
	if st := srv.Broker.Stats(); st.Dropped != 0 {
		t.Errorf("Stats.Dropped = %d, want 0: a member had room", st.Dropped)
	}
	// stuck's queued two come once it acknowledges its window.
	for _, m := range window {
		stuck.ack(m)
	}
	for range 2 {
		m := stuck.expectPublish()
		stuck.ack(m)
		got[string(m.Payload)] = true
	}
	stuck.expectNothing()
	for i := range n {
		if !got[fmt.Sprint(i)] {
			t.Errorf("message %d never delivered", i)
		}
	}
}

// Retained messages that fit neither the new subscriber's session nor its
// backlog (see TestRetainedBacklog) are dropped like any other: counted, and
// each reported by EventDrop (they were counted only), whose callback may
// call into the Server.
func TestRetainedDropEvents(t *testing.T) {
	var mu sync.Mutex
	var drops []string
	var srvp *broker.Server
	srv := newServer(t, func(o *broker.Options) {
		o.MaxInflight = 1
		o.MaxQueued = 2
		o.MaxQueuedBytes = 1 // one queued message, and no backlog
		o.OnEvent = func(e *broker.Event) {
			if e.Kind != broker.EventDrop || e.Client.ID != "sub" {
				return
			}
			mu.Lock()
			drops = append(drops, fmt.Sprintf("%s q%d r%v %dB", e.Topic, e.QoS, e.Retain, e.PayloadSize))
			mu.Unlock()
			srvp.Publish(&packet.Publish{Topic: []byte("note"), Payload: []byte("dropped")}) // into the Server, from the callback
		}
	})
	srvp = srv.Broker
	p := connect(t, srv, "p", true, false)
	for i := range 5 {
		p.publish(&packet.Publish{Topic: []byte(fmt.Sprint("r/", i)), Payload: []byte("xy"), QoS: 1, PacketID: uint16(i + 1), Retain: true})
	}
	sub := connect(t, srv, "sub", true, false)
	sub.subscribe(1, "r/#", 1) // one in flight, one queued: three dropped
	waitFor(t, "three EventDrop", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(drops) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	for _, d := range drops {
		if !strings.HasSuffix(d, " q1 rtrue 2B") || !strings.HasPrefix(d, "r/") {
			t.Errorf("EventDrop %s, want a retained r/N at QoS 1 of 2 bytes", d)
		}
	}
	if st := srv.Broker.Stats(); st.Dropped != 3 {
		t.Errorf("Stats.Dropped = %d, want 3", st.Dropped)
	}
}

// A subscriber that does not read blocks neither the publisher nor other
// subscribers: its session's queue fills, and what does not fit is dropped and
// counted.
func TestSlowSubscriber(t *testing.T) {
	dropped := make(chan struct{}, 1)
	srv := newServer(t, func(o *broker.Options) {
		o.MaxInflight = 5
		o.MaxQueued = 10
		o.OnEvent = func(e *broker.Event) {
			if e.Kind == broker.EventDrop && e.Client.ID == "stuck" {
				select {
				case dropped <- struct{}{}:
				default:
				}
			}
		}
	})
	stuck := connect(t, srv, "stuck", true, false)
	stuck.subscribe(1, "load", 1)
	fast := connect(t, srv, "fast", true, false)
	fast.subscribe(1, "load", 1)
	p := connect(t, srv, "p", true, false)
	payload := string(make([]byte, 16<<10))
	const n = 200 // 3.2 MB: more than socket buffers hold, far more than the queue
	for i := range n {
		p.send(pub("load", payload, 1, uint16(i+1)))
		got := fast.expectPublish()
		fast.ack(got)
	}
	for i := range n {
		p.expect(&packet.Puback{PacketID: uint16(i + 1)})
	}
	select {
	case <-dropped:
	case <-time.After(scriptTimeout):
		t.Fatal("no EventDrop for the stuck subscriber")
	}
	st := srv.Broker.Stats()
	if st.Dropped < n-5-10-40 { // what the socket buffers took can be up to ~40 messages
		t.Errorf("Stats.Dropped = %d, want most of the %d messages", st.Dropped, n)
	}
	if st.Received != n {
		t.Errorf("Stats.Received = %d, want %d", st.Received, n)
	}
}

// A stuck client whose writes make no progress is closed after WriteTimeout.
func TestWriteTimeout(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) {
		o.WriteTimeout = 200 * time.Millisecond
		o.MaxQueued = 100000
	})
	stuck := connect(t, srv, "stuck", true, false)
	stuck.subscribe(1, "load", 0)
	p := connect(t, srv, "p", true, false)
	payload := make([]byte, 64<<10)
	for i := 0; i < 200 && srv.Broker.Stats().Disconnected == 0; i++ {
		p.send(&packet.Publish{Topic: []byte("load"), Payload: payload})
	}
	waitFor(t, "the stuck connection to be closed", func() bool { return srv.Broker.Stats().Disconnected == 1 })
}

// WriteTimeout bounds a time without progress, not the time a batch takes:
// a subscriber that reads steadily but slowly (1 MiB/s) while a publisher
// outruns it, so that the broker's batches to it grow to hundreds of KB,
// each read over more than the 600 ms allowed for a write, keeps its
// connection and gets every message. It reads from the start: a reader
// that waits before its first read makes no progress at all meanwhile, and
// a loaded machine made that wait alone longer than WriteTimeout.
func TestWriteTimeoutSlowReader(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) { o.WriteTimeout = 600 * time.Millisecond })
	slow := connectPipe(t, srv, "slow") // no kernel buffer takes the backlog
	slow.subscribe(1, "big/#", 0)

	const n, size = 128, 16 << 10
	slow.r = packet.NewReader(&paced{r: slow.c, rate: 1 << 20}, 0)
	done := make(chan error, 1)
	go func() {
		for i := range n {
			b, err := slow.next(5 * time.Second)
			if err != nil {
				done <- fmt.Errorf("message %d of %d: %v (Stats.Disconnected = %d)", i, n, err, srv.Broker.Stats().Disconnected)
				return
			}
			got, err := packet.Decode(b)
			pub, ok := got.(*packet.Publish)
			if err != nil || !ok || len(pub.Payload) != size || binary.BigEndian.Uint32(pub.Payload) != uint32(i) {
				done <- fmt.Errorf("message %d: got %s", i, describe(b))
				return
			}
		}
		done <- nil
	}()
	p := connect(t, srv, "p", true, false)
	for i := range n {
		payload := make([]byte, size)
		binary.BigEndian.PutUint32(payload, uint32(i))
		p.send(&packet.Publish{Topic: []byte("big/t"), Payload: payload})
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A connection cut by WriteTimeout accounts for what its clean session
// loses: the QoS 0 messages of the batch that failed, the messages queued
// and those in flight are counted (Stats.Discarded) and logged, and the
// disconnection gives the write's error, not the reader's.
func TestWriteTimeoutDiscarded(t *testing.T) {
	logs := new(lockedBuffer)
	var mu sync.Mutex
	var why error
	srv := newServer(t, func(o *broker.Options) {
		o.WriteTimeout = 200 * time.Millisecond
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		o.OnEvent = func(e *broker.Event) {
			if e.Kind == broker.EventDisconnect && e.Client.ID == "stuck" {
				mu.Lock()
				why = e.Err
				mu.Unlock()
			}
		}
	})
	stuck := connectPipe(t, srv, "stuck") // nothing is taken unless read
	stuck.subscribe(1, "s/#", 1)

	p := connect(t, srv, "p", true, false)
	for i := range 20 {
		p.publish(pub("s/0", fmt.Sprint(i), 0, 0))
	}
	for i := range 10 {
		p.publish(pub("s/1", fmt.Sprint(i), 1, uint16(i+1)))
	}
	waitFor(t, "the stuck connection closed", func() bool { return srv.Broker.Stats().Disconnected == 1 })
	if got := srv.Broker.Stats().Discarded; got != 30 {
		t.Errorf("Stats.Discarded = %d, want 30", got)
	}
	if !strings.Contains(logs.String(), "undelivered messages discarded") || !strings.Contains(logs.String(), "messages=30") {
		t.Errorf("no log line about 30 discarded messages; log:\n%s", logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(why, os.ErrDeadlineExceeded) {
		t.Errorf("disconnection error %v, want the write's timeout", why)
	}
}

// trickle reads at most n bytes every interval.
// paced reads r at rate bytes a second on average since its first read: a
// read that comes late (a loaded machine, the race detector) takes what
// the time allows, so that the rate holds where sleeps between fixed reads
// would slow it down.
type paced struct {
	r     io.Reader
	rate  float64
	start time.Time
	done  int
}

func (p *paced) Read(b []byte) (int, error) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	for {
		if allowed := int(time.Since(p.start).Seconds()*p.rate) - p.done; allowed > 0 {
			n, err := p.r.Read(b[:min(len(b), allowed)])
			p.done += n
			return n, err
		}
		time.Sleep(time.Millisecond)
	}
}

// Shutdown writes out what waits, ends every connection without publishing
// wills, and leaves no goroutine behind; Serve returns ErrServerClosed.
func TestShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := newServer(t)
	w := connect(t, srv, "w", true, false)
	w.subscribe(1, "will", 0)
	for i := range 5 {
		s := dial(t, srv, fmt.Sprint("c", i))
		s.send(&packet.Connect{ClientID: []byte(fmt.Sprint("c", i)), CleanSession: true, KeepAlive: 60, Will: true, WillTopic: []byte("will"), WillMessage: []byte("x")})
		s.expect(&packet.Connack{})
	}
	half := dial(t, srv, "half") // connected, no CONNECT yet
	half.sendRaw([]byte{0x10})
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	if err := srv.Broker.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	w.expectClose() // no will came first
	half.expectClose()
	srv.Close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if st := srv.Broker.Stats(); st.Connections != 0 {
		t.Errorf("Stats.Connections = %d after Shutdown", st.Connections)
	}
}

// Server.Publish routes a message from the application, and stores it when
// retained.
func TestServerPublish(t *testing.T) {
	srv := newServer(t)
	s := connect(t, srv, "s", true, false)
	s.subscribe(1, "app/#", 2)
	if err := srv.Broker.Publish(&packet.Publish{Topic: []byte("app/x"), Payload: []byte("v"), QoS: 2, Retain: true}); err != nil {
		t.Fatal(err)
	}
	got := s.expectPublish()
	checkPublish(t, got, "app/x", "v", 2, false)
	s.ack(got)
	if err := srv.Broker.Publish(&packet.Publish{Topic: []byte("app/+")}); err == nil {
		t.Error("Publish to a wildcard topic succeeded")
	}
	if err := srv.Broker.Publish(&packet.Publish{Topic: []byte("a"), QoS: 3}); err == nil {
		t.Error("Publish at QoS 3 succeeded")
	}
	s2 := connect(t, srv, "s2", true, false)
	s2.subscribe(1, "app/x", 1)
	got = s2.expectPublish()
	checkPublish(t, got, "app/x", "v", 1, true)
	s2.ack(got)
}

// Server.Publish after Close says the message went nowhere.
func TestServerPublishAfterClose(t *testing.T) {
	srv := newServer(t)
	srv.Close()
	err := srv.Broker.Publish(&packet.Publish{Topic: []byte("a"), Payload: []byte("v")})
	if !errors.Is(err, broker.ErrServerClosed) {
		t.Fatalf("Publish after Close: %v, want ErrServerClosed", err)
	}
}

// [MQTT-3.1.2-5] The queue of an offline persistent session is bounded by
// Options.MaxQueued: the oldest messages are kept, the rest dropped and
// counted.
func TestOfflineQueueLimit(t *testing.T) {
	srv := newServer(t, func(o *broker.Options) { o.MaxQueued = 3 })
	s := connect(t, srv, "dev", false, false)
	s.subscribe(1, "q", 1)
	s.disconnect()
	p := connect(t, srv, "p", true, false)
	for i := range 5 {
		p.publish(pub("q", fmt.Sprint(i), 1, uint16(i+1)))
	}
	if st := srv.Broker.Stats(); st.Dropped != 2 || st.Sessions != 2 {
		t.Errorf("Stats.Dropped = %d, Sessions = %d; want 2 and 2", st.Dropped, st.Sessions)
	}
	s = connect(t, srv, "dev", false, true)
	for i := range 3 {
		got := s.expectPublish()
		checkPublish(t, got, "q", fmt.Sprint(i), 1, false)
		s.ack(got)
	}
	s.expectNothing()
}
