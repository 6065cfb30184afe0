package client_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
)

// startBroker runs tern's broker on a loopback port for an example, and
// returns its URL and a function that stops it.
func startBroker() (url string, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := broker.New(broker.Options{})
	go srv.Serve(l)
	return "mqtt://" + l.Addr().String(), func() { srv.Close() }
}

// mustConnect returns a connected client, or ends the example.
func mustConnect(ctx context.Context, opts client.Options) *client.Client {
	c, err := client.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	return c
}

// Connect, subscribe, publish, and read the message back from Messages.
func Example() {
	url, stop := startBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.New(client.Options{Servers: []string{url}})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Disconnect(ctx)

	msgs := c.Messages() // before Subscribe, so that no message is missed
	granted, err := c.Subscribe(ctx, client.Subscription{Filter: "greetings/#", QoS: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("granted QoS", granted)

	// Publish returns once the broker acknowledged the QoS 1 message.
	if err := c.Publish(ctx, "greetings/world", 1, false, []byte("hello")); err != nil {
		log.Fatal(err)
	}
	m := <-msgs
	fmt.Printf("%s: %s (QoS %d)\n", m.Topic, m.Payload, m.QoS)
	// Output:
	// granted QoS [1]
	// greetings/world: hello (QoS 1)
}

// A temperature monitor: handlers routed by wildcard filters read the
// sensors, and publish an alert as a retained QoS 2 message, which a
// dashboard connecting later still receives.
func Example_temperatureMonitor() {
	url, stop := startBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	monitor := mustConnect(ctx, client.Options{Servers: []string{url}, ClientID: "monitor"})
	defer monitor.Disconnect(ctx)
	var seen sync.WaitGroup
	// The most specific filter wins: the server room has a lower limit.
	limits := map[string]float64{"sensors/+/temperature": 30, "sensors/server-room/temperature": 25}
	for filter, limit := range limits {
		monitor.Handle(filter, func(m *client.Message) {
			defer seen.Done()
			room := strings.Split(m.Topic, "/")[1]
			t, err := strconv.ParseFloat(string(m.Payload), 64)
			if err != nil || t <= limit {
				return
			}
			// Handlers may publish: the acknowledgement is read by
			// another goroutine.
			alert := fmt.Sprintf("%s at %.1f°C (limit %.0f)", room, t, limit)
			if err := monitor.Publish(ctx, "alerts/"+room, 2, true, []byte(alert)); err != nil {
				log.Print(err)
			}
		})
	}
	if _, err := monitor.Subscribe(ctx, client.Subscription{Filter: "sensors/+/temperature", QoS: 1}); err != nil {
		log.Fatal(err)
	}

	sensors := mustConnect(ctx, client.Options{Servers: []string{url}, ClientID: "sensors"})
	defer sensors.Disconnect(ctx)
	readings := []struct{ room, temp string }{{"kitchen", "21.5"}, {"server-room", "27.0"}, {"attic", "29.9"}}
	seen.Add(len(readings))
	for _, r := range readings {
		if err := sensors.Publish(ctx, "sensors/"+r.room+"/temperature", 1, false, []byte(r.temp)); err != nil {
			log.Fatal(err)
		}
	}
	seen.Wait()

	dashboard := mustConnect(ctx, client.Options{Servers: []string{url}, ClientID: "dashboard"})
	defer dashboard.Disconnect(ctx)
	alerts := dashboard.Messages()
	if _, err := dashboard.Subscribe(ctx, client.Subscription{Filter: "alerts/#", QoS: 2}); err != nil {
		log.Fatal(err)
	}
	m := <-alerts
	fmt.Printf("%s (retained %v, QoS %d): %s\n", m.Topic, m.Retain, m.QoS, m.Payload)
	// Output:
	// alerts/server-room (retained true, QoS 2): server-room at 27.0°C (limit 25)
}

// Request and response over two topics, matched by a correlation id
// carried in the payload.
func Example_requestResponse() {
	url, stop := startBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The service answers "id|question" on svc/requests with "id|answer"
	// on svc/responses.
	service := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer service.Disconnect(ctx)
	service.Handle("svc/requests", func(m *client.Message) {
		id, question, _ := strings.Cut(string(m.Payload), "|")
		answer := strings.ToUpper(question)
		service.PublishAsync(ctx, "svc/responses", 1, false, []byte(id+"|"+answer))
	})
	if _, err := service.Subscribe(ctx, client.Subscription{Filter: "svc/requests", QoS: 1}); err != nil {
		log.Fatal(err)
	}

	// The caller keeps a channel per request in flight.
	caller := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer caller.Disconnect(ctx)
	var mu sync.Mutex
	pending := map[string]chan string{}
	caller.Handle("svc/responses", func(m *client.Message) {
		id, answer, _ := strings.Cut(string(m.Payload), "|")
		mu.Lock()
		ch := pending[id]
		delete(pending, id)
		mu.Unlock()
		if ch != nil {
			ch <- answer
		}
	})
	if _, err := caller.Subscribe(ctx, client.Subscription{Filter: "svc/responses", QoS: 1}); err != nil {
		log.Fatal(err)
	}
	call := func(id, question string) <-chan string {
		ch := make(chan string, 1)
		mu.Lock()
		pending[id] = ch
		mu.Unlock()
		caller.PublishAsync(ctx, "svc/requests", 1, false, []byte(id+"|"+question))
		return ch
	}
	a, b := call("r1", "ping"), call("r2", "hello")
	fmt.Println("r2:", <-b)
	fmt.Println("r1:", <-a)
	// Output:
	// r2: HELLO
	// r1: PING
}
