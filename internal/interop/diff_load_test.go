package interop

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// TestDifferentialOfflineQueue: a persistent session away while 1100 QoS 1
// messages and 30 QoS 0 messages are published for it gets, when it comes
// back, the first 1000 QoS 1 messages in order: the QoS 0 ones are not kept
// [MQTT-3.1.2-5], and both brokers keep at most 1000 by default (tern's
// Options.MaxQueued, mosquitto's max_queued_messages), dropping the newest.
func TestDifferentialOfflineQueue(t *testing.T) {
	want := []string{"CONNACK session present", "1000 messages: q/x 0 to 999 in order"}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		p := dialRaw(t, tg.addr, tg.name+"/P")
		p.mustConnect(&packet.Connect{ClientID: []byte("P")}, false)
		p.subscribe("q/#", 1, "end", 1)
		p.disconnect()
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		for i := range 1100 {
			pub.publish("q/x", strconv.Itoa(i), 1, false)
		}
		for i := range 30 {
			pub.publish("q/zero", strconv.Itoa(i), 0, false)
		}
		p = dialRaw(t, tg.addr, tg.name+"/P")
		p.mustConnect(&packet.Connect{ClientID: []byte("P")}, true)
		pub.publish("end", "", 1, false)
		got := p.waitFor(t, "end")
		got = got[:len(got)-1]
		desc := fmt.Sprintf("%d messages: q/x 0 to 999 in order", len(got))
		for i, m := range got {
			if m.Topic != "q/x" || m.Payload != strconv.Itoa(i) || m.QoS != 1 {
				desc = fmt.Sprintf("%d messages, #%d is %v", len(got), i, m)
				break
			}
		}
		return []string{"CONNACK session present", desc}
	})
}

// TestDifferentialConcurrentPublishers: four publishers send 100 QoS 1
// messages each at once, without waiting for acknowledgements, and three
// subscribers get every message of each publisher, in that publisher's
// order [MQTT-4.6.0-6].
func TestDifferentialConcurrentPublishers(t *testing.T) {
	const pubs, subs, n = 4, 3, 100
	var want []string
	for s := range subs {
		for p := range pubs {
			want = append(want, fmt.Sprintf("S%d from cp/%d: %d in order", s, p, n))
		}
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		ss := make([]*rawClient, subs)
		for i := range ss {
			ss[i] = dialRaw(t, tg.addr, fmt.Sprintf("%s/S%d", tg.name, i))
			ss[i].mustConnect(&packet.Connect{ClientID: []byte(fmt.Sprintf("S%d", i)), CleanSession: true}, false)
			ss[i].subscribe("cp/#", 1, "end", 1)
		}
		ps := make([]*rawClient, pubs)
		for i := range ps {
			ps[i] = dialRaw(t, tg.addr, fmt.Sprintf("%s/P%d", tg.name, i))
			ps[i].mustConnect(&packet.Connect{ClientID: []byte(fmt.Sprintf("P%d", i)), CleanSession: true}, false)
		}
		// The publishers run in goroutines, which must not call
		// t.Fatal: they report errors on errs.
		errs := make(chan error, pubs)
		var wg sync.WaitGroup
		for i, c := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := []byte(fmt.Sprintf("cp/%d", i))
				for j := range n {
					if err := c.write(&packet.Publish{Topic: topic, Payload: []byte(strconv.Itoa(j)), QoS: 1, PacketID: uint16(j + 1)}); err != nil {
						errs <- err
						return
					}
				}
				for range n {
					select {
					case p := <-c.ctrl:
						if p.Type() != packet.PUBACK {
							errs <- fmt.Errorf("%s: got %v, want a PUBACK", c.name, p)
							return
						}
					case <-time.After(timeout):
						errs <- fmt.Errorf("%s: no PUBACK within %v", c.name, timeout)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ps[0].publish("end", "", 1, false)
		var rec []string
		for i, s := range ss {
			byTopic := map[string][]string{}
			for _, m := range s.waitFor(t, "end") {
				byTopic[m.Topic] = append(byTopic[m.Topic], m.Payload)
			}
			for p := range pubs {
				got := byTopic[fmt.Sprintf("cp/%d", p)]
				desc := fmt.Sprintf("%d in order", len(got))
				for j, payload := range got {
					if payload != strconv.Itoa(j) {
						desc = fmt.Sprintf("%d, out of order at %d: %s", len(got), j, strings.Join(got, " "))
						break
					}
				}
				rec = append(rec, fmt.Sprintf("S%d from cp/%d: %s", i, p, desc))
			}
		}
		return rec
	})
}

// TestDifferentialStuckSubscriber: a subscriber that stops reading never
// holds up the publisher or the other subscribers. The publisher sends 2000
// messages of 16 KiB, far more than the socket buffers of the stuck
// subscriber hold, each with its QoS 1 flow completed; a reading
// subscriber gets all of them.
func TestDifferentialStuckSubscriber(t *testing.T) {
	const n, size = 2000, 16 << 10
	want := []string{fmt.Sprintf("reader: %d messages in order", n)}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		// The stuck subscriber: CONNECT and SUBSCRIBE written, nothing
		// ever read.
		stuck, err := net.DialTimeout("tcp", tg.addr, timeout)
		if err != nil {
			t.Fatal(err)
		}
		defer stuck.Close()
		w := packet.NewWriter(stuck)
		w.WritePacket(&packet.Connect{ClientID: []byte("stuck"), CleanSession: true})
		w.WritePacket(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: []byte("big/#"), QoS: 1}}})
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		reader := dialRaw(t, tg.addr, tg.name+"/reader")
		reader.mustConnect(&packet.Connect{ClientID: []byte("reader"), CleanSession: true}, false)
		reader.subscribe("big/#", 1, "end", 1)
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		body := string(payload(size))
		for i := range n {
			pub.publish("big/x", strconv.Itoa(i)+body, 1, false)
		}
		pub.publish("end", "", 1, false)
		got := reader.waitFor(t, "end")
		got = got[:len(got)-1]
		desc := fmt.Sprintf("reader: %d messages in order", len(got))
		for i, m := range got {
			if m.Payload != strconv.Itoa(i)+body {
				desc = fmt.Sprintf("reader: %d messages, #%d wrong", len(got), i)
				break
			}
		}
		return []string{desc}
	})
}

// TestDifferentialTakeoverStorm: twenty connections CONNECT with one client
// identifier at once, with CleanSession 0. Each takeover closes the
// connection before it [MQTT-3.1.4-2], so exactly one stays open, and the
// session, with its subscription, goes on there: a message published then
// reaches that connection only, once.
func TestDifferentialTakeoverStorm(t *testing.T) {
	const n = 20
	want := []string{"open connections: 1", `the open one got: msg storm/x "after" qos=1 retain=false`}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		first := dialRaw(t, tg.addr, tg.name+"/storm")
		first.mustConnect(&packet.Connect{ClientID: []byte("storm")}, false)
		first.subscribe("storm/#", 1)
		// Dial all first, then write every CONNECT at once.
		cs := make([]*rawClient, n)
		for i := range cs {
			cs[i] = dialRaw(t, tg.addr, fmt.Sprintf("%s/storm%d", tg.name, i))
		}
		connect, err := (&packet.Connect{ClientID: []byte("storm")}).Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.wmu.Lock()
				defer c.wmu.Unlock()
				c.conn.Write(connect)
			}()
		}
		wg.Wait()
		first.waitClosed()
		// Each connection got CONNACK 0 with the session present, or
		// was taken over before its CONNACK went out; all but one are
		// closed. Which one is left depends on the order the broker took
		// them in: find it with a PINGREQ.
		var acked []*rawClient
		for _, c := range cs {
			p, ok := c.recv()
			if !ok {
				t.Fatalf("%s: neither CONNACK nor close within %v", c.name, timeout)
			}
			if p == nil {
				continue
			}
			if ack, isAck := p.(*packet.Connack); !isAck || ack.ReturnCode != 0 || !ack.SessionPresent {
				t.Fatalf("%s: %v, want CONNACK 0 with session present", c.name, p)
			}
			acked = append(acked, c)
		}
		// Every CONNECT has been answered, so every takeover is done.
		for _, c := range acked {
			c.write(&packet.Pingreq{}) // may fail on a connection closed meanwhile
		}
		var open []*rawClient
		for _, c := range acked {
			p, ok := c.recv()
			if !ok {
				t.Fatalf("%s: neither PINGRESP nor close within %v", c.name, timeout)
			}
			if p != nil && p.Type() == packet.PINGRESP {
				open = append(open, c)
			}
		}
		rec := []string{fmt.Sprintf("open connections: %d", len(open))}
		if len(open) != 1 {
			return rec
		}
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)
		pub.publish("storm/x", "after", 1, false)
		pub.publish("storm/end", "", 1, false)
		got := open[0].waitFor(t, "storm/end")
		return append(rec, "the open one got: "+list(got[:len(got)-1]))
	})
}

// call writes p and waits for a packet of type want, returning an error
// instead of failing the test, for use from goroutines.
func (c *rawClient) call(p packet.Packet, want packet.Type) error {
	if err := c.write(p); err != nil {
		return fmt.Errorf("%s: %v", c.name, err)
	}
	got, ok := c.recv()
	switch {
	case !ok:
		return fmt.Errorf("%s: no %v within %v", c.name, want, timeout)
	case got == nil:
		return fmt.Errorf("%s: connection ended (%v) while waiting for a %v", c.name, c.err(), want)
	case got.Type() != want:
		return fmt.Errorf("%s: got %v, want a %v", c.name, got, want)
	}
	return nil
}

// TestDifferentialChurn: while a publisher sends 300 QoS 1 messages without
// waiting, four clients subscribe to and unsubscribe from the same filter
// 50 times each. A steady subscriber gets every message in order; the
// churning clients, subscribed once more at the end, get the next message.
func TestDifferentialChurn(t *testing.T) {
	const n, churners, rounds = 300, 4, 50
	want := []string{fmt.Sprintf("steady: %d in order, then the last", n)}
	for i := range churners {
		want = append(want, fmt.Sprintf("churner %d: got the last", i))
	}
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		steady := dialRaw(t, tg.addr, tg.name+"/steady")
		steady.mustConnect(&packet.Connect{ClientID: []byte("steady"), CleanSession: true}, false)
		steady.subscribe("ch/#", 1)
		cs := make([]*rawClient, churners)
		for i := range cs {
			cs[i] = dialRaw(t, tg.addr, fmt.Sprintf("%s/churn%d", tg.name, i))
			cs[i].mustConnect(&packet.Connect{ClientID: []byte(fmt.Sprintf("churn%d", i)), CleanSession: true}, false)
		}
		pub := dialRaw(t, tg.addr, tg.name+"/pub")
		pub.mustConnect(&packet.Connect{ClientID: []byte("pub"), CleanSession: true}, false)

		errs := make(chan error, churners+1)
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rounds {
					id := uint16(2*r + 1)
					sub := &packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: []byte("ch/#"), QoS: byte(r % 3)}}}
					if err := c.call(sub, packet.SUBACK); err != nil {
						errs <- err
						return
					}
					unsub := &packet.Unsubscribe{PacketID: id + 1, Filters: [][]byte{[]byte("ch/#")}}
					if err := c.call(unsub, packet.UNSUBACK); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n {
				if err := pub.write(&packet.Publish{Topic: []byte("ch/x"), Payload: []byte(strconv.Itoa(j)), QoS: 1, PacketID: uint16(j + 1)}); err != nil {
					errs <- err
					return
				}
			}
			for range n {
				p, ok := pub.recv()
				if !ok || p == nil || p.Type() != packet.PUBACK {
					errs <- fmt.Errorf("%s: got %v (%v), want a PUBACK", pub.name, p, ok)
					return
				}
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, c := range cs {
			c.subscribe("ch/#", 1)
		}
		pub.publish("ch/last", "", 1, false)

		got := steady.waitFor(t, "ch/last")
		desc := fmt.Sprintf("steady: %d in order, then the last", len(got)-1)
		for j, m := range got[:len(got)-1] {
			if m.Payload != strconv.Itoa(j) {
				desc = fmt.Sprintf("steady: %d, #%d is %v", len(got)-1, j, m)
				break
			}
		}
		rec := []string{desc}
		for i, c := range cs {
			c.waitFor(t, "ch/last")
			rec = append(rec, fmt.Sprintf("churner %d: got the last", i))
		}
		return rec
	})
}

// TestDifferentialRetainedRace: four publishers at once, each writing 50
// versions of the retained messages of its own two topics without waiting
// for acknowledgements, the last version of some topics empty (cleared).
// A subscriber that comes afterwards gets the last version of each topic
// that has one, with RETAIN 1 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-10],
// and the order of each publisher's writes decides which is last
// [MQTT-4.6.0-6].
func TestDifferentialRetainedRace(t *testing.T) {
	const pubs, versions = 4, 50
	var want []string
	for p := range pubs {
		want = append(want, fmt.Sprintf("rr/%d/a v%d", p, versions-1))
		// rr/N/b ends cleared for even N.
		if p%2 == 1 {
			want = append(want, fmt.Sprintf("rr/%d/b v%d", p, versions-1))
		}
	}
	sort.Strings(want)
	differential(t, want, nil, func(t *testing.T, tg target) []string {
		ps := make([]*rawClient, pubs)
		for i := range ps {
			ps[i] = dialRaw(t, tg.addr, fmt.Sprintf("%s/P%d", tg.name, i))
			ps[i].mustConnect(&packet.Connect{ClientID: []byte(fmt.Sprintf("P%d", i)), CleanSession: true}, false)
		}
		errs := make(chan error, pubs)
		var wg sync.WaitGroup
		for i, c := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := uint16(0)
				for v := range versions {
					for _, topic := range []string{"a", "b"} {
						payload := fmt.Sprintf("v%d", v)
						if topic == "b" && i%2 == 0 && v == versions-1 {
							payload = "" // clears it
						}
						id++
						// Every tenth at QoS 2: mosquitto takes at most
						// 20 unreleased QoS 2 messages from a client.
						qos := byte(1)
						if v%10 == 9 {
							qos = 2
						}
						p := &packet.Publish{Topic: []byte(fmt.Sprintf("rr/%d/%s", i, topic)), Payload: []byte(payload), QoS: qos, Retain: true, PacketID: id}
						if err := c.write(p); err != nil {
							errs <- err
							return
						}
					}
				}
				// Complete the flows: PUBACK for QoS 1, PUBREC then
				// PUBREL and PUBCOMP for QoS 2, in whatever order.
				for done := 0; done < 2*versions; {
					p, ok := c.recv()
					if !ok || p == nil {
						errs <- fmt.Errorf("%s: no acknowledgement (%v)", c.name, c.err())
						return
					}
					switch p := p.(type) {
					case *packet.Pubrec:
						if err := c.write(&packet.Pubrel{PacketID: p.PacketID}); err != nil {
							errs <- err
							return
						}
					case *packet.Puback, *packet.Pubcomp:
						done++
					default:
						errs <- fmt.Errorf("%s: got %v, want an acknowledgement", c.name, p)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		s := dialRaw(t, tg.addr, tg.name+"/S")
		s.mustConnect(&packet.Connect{ClientID: []byte("S"), CleanSession: true}, false)
		s.subscribe("rr/#", 2)
		s.subscribe("end", 0)
		s.publish("end", "", 0, false)
		var rec []string
		for _, m := range s.waitFor(t, "end") {
			if m.Topic == "end" {
				continue
			}
			l := m.Topic + " " + m.Payload
			if !m.Retain {
				l += " (RETAIN 0)"
			}
			rec = append(rec, l)
		}
		sort.Strings(rec)
		return rec
	})
}
