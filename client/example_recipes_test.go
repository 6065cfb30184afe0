package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/client"
	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/session"
)

// Property sync over retained topics: a device publishes each property's
// value retained on dev/{id}/prop/{name}, so that a controller connecting
// later reads the current values at once; the controller sets a property
// by publishing on dev/{id}/set/{name}, and the device publishes the new
// value.
func Example_propertySync() {
	url, stop := startBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	device := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer device.Disconnect(ctx)
	setProp := func(name, value string) {
		if err := device.Publish(ctx, "dev/lamp1/prop/"+name, 1, true, []byte(value)); err != nil {
			log.Fatal(err)
		}
	}
	setProp("colour", "blue")
	// Requests to change a property: the handler comes with the
	// subscription, so no request is missed.
	if _, err := device.Subscribe(ctx, client.Subscription{Filter: "dev/lamp1/set/+", QoS: 1, Handler: func(m *client.Message) {
		setProp(m.Topic[strings.LastIndexByte(m.Topic, '/')+1:], string(m.Payload))
	}}); err != nil {
		log.Fatal(err)
	}

	// A controller connecting later gets the current value, retained.
	controller := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer controller.Disconnect(ctx)
	values := make(chan string, 2)
	if _, err := controller.Subscribe(ctx, client.Subscription{Filter: "dev/+/prop/+", QoS: 1, Handler: func(m *client.Message) {
		values <- fmt.Sprintf("%s = %s (retained %v)", m.Topic, m.Payload, m.Retain)
	}}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-values)
	if err := controller.Publish(ctx, "dev/lamp1/set/colour", 1, false, []byte("green")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-values)
	// Output:
	// dev/lamp1/prop/colour = blue (retained true)
	// dev/lamp1/prop/colour = green (retained false)
}

// RPC over MQTT: each caller listens on a reply topic of its own
// (rpc/reply/{client id}), named in the request with a correlation id, and
// gives up on an answer when its context ends.
func Example_rpc() {
	url, stop := startBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The service: "reply-topic|id|a b" on rpc/add answers "id|a+b".
	service := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer service.Disconnect(ctx)
	if _, err := service.Subscribe(ctx, client.Subscription{Filter: "rpc/add", QoS: 1, Handler: func(m *client.Message) {
		parts := strings.SplitN(string(m.Payload), "|", 3)
		var a, b int
		fmt.Sscan(parts[2], &a, &b)
		service.PublishAsync(ctx, parts[0], 1, false, fmt.Appendf(nil, "%s|%d", parts[1], a+b))
	}}); err != nil {
		log.Fatal(err)
	}

	caller := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer caller.Disconnect(ctx)
	replyTo := "rpc/reply/" + caller.ClientID()
	var mu sync.Mutex
	pending := map[string]chan string{}
	next := 0
	if _, err := caller.Subscribe(ctx, client.Subscription{Filter: replyTo, QoS: 1, Handler: func(m *client.Message) {
		id, result, _ := strings.Cut(string(m.Payload), "|")
		mu.Lock()
		ch := pending[id]
		delete(pending, id)
		mu.Unlock()
		if ch != nil {
			ch <- result
		}
	}}); err != nil {
		log.Fatal(err)
	}
	call := func(ctx context.Context, method, args string) (string, error) {
		mu.Lock()
		next++
		id := fmt.Sprint(next)
		ch := make(chan string, 1)
		pending[id] = ch
		mu.Unlock()
		defer func() { mu.Lock(); delete(pending, id); mu.Unlock() }()
		if err := caller.Publish(ctx, "rpc/"+method, 1, false, []byte(replyTo+"|"+id+"|"+args)); err != nil {
			return "", err
		}
		select {
		case r := <-ch:
			return r, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	sum, err := call(ctx, "add", "2 3")
	fmt.Println("add(2, 3) =", sum, err)
	// Nobody serves rpc/mul: the call ends with its context.
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	_, err = call(short, "mul", "2 3")
	fmt.Println("mul(2, 3):", err, errors.Is(err, context.DeadlineExceeded))
	// Output:
	// add(2, 3) = 5 <nil>
	// mul(2, 3): context deadline exceeded true
}

// With a session.FileStore, QoS 1 and 2 messages published while the broker
// is away survive a restart of the publisher: the next process sends them
// on its first connection.
func Example_fileStore() {
	url, stop := startBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "tern-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The first run publishes before it could connect, and stops.
	store, err := session.OpenFileStore(filepath.Join(dir, "outbox"), session.FileStoreOptions{})
	if err != nil {
		log.Fatal(err)
	}
	first, err := client.New(client.Options{Servers: []string{url}, ClientID: "meter-7", Store: store})
	if err != nil {
		log.Fatal(err)
	}
	for _, reading := range []string{"1021 kWh", "1022 kWh"} {
		first.PublishAsync(ctx, "meters/7", 1, false, []byte(reading)) // stored, not sent
	}
	first.Close()
	store.Close()

	// A subscriber is there when the next run starts.
	sub := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer sub.Disconnect(ctx)
	msgs := sub.Messages()
	if _, err := sub.Subscribe(ctx, client.Subscription{Filter: "meters/#", QoS: 1}); err != nil {
		log.Fatal(err)
	}

	store, err = session.OpenFileStore(filepath.Join(dir, "outbox"), session.FileStoreOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	second := mustConnect(ctx, client.Options{Servers: []string{url}, ClientID: "meter-7", Store: store})
	defer second.Disconnect(ctx)
	fmt.Println("messages taken so far:", second.LastHandle())
	for range 2 {
		m := <-msgs
		fmt.Printf("%s: %s\n", m.Topic, m.Payload)
	}
	// Output:
	// messages taken so far: 2
	// meters/7: 1021 kWh
	// meters/7: 1022 kWh
}

// Manual acknowledgement: a message is acknowledged once it is processed,
// so that the broker sends it again if the process dies first. Here the
// first run takes a job and stops without acknowledging it; the broker,
// which keeps the session, sends it again, with DUP set, to the next run.
func Example_manualAck() {
	url, stop := startBroker()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := client.Options{Servers: []string{url}, ClientID: "worker-1", KeepSession: true, ManualAck: true}

	worker := mustConnect(ctx, opts)
	jobs := worker.Messages()
	if _, err := worker.Subscribe(ctx, client.Subscription{Filter: "jobs", QoS: 1}); err != nil {
		log.Fatal(err)
	}
	boss := mustConnect(ctx, client.Options{Servers: []string{url}})
	defer boss.Disconnect(ctx)
	if err := boss.Publish(ctx, "jobs", 1, false, []byte("resize photo 42")); err != nil {
		log.Fatal(err)
	}
	m := <-jobs
	fmt.Printf("first run: %s (dup %v); dies before m.Ack\n", m.Payload, m.Dup)
	worker.Close() // as a crash: no DISCONNECT, no PUBACK

	worker = mustConnect(ctx, opts)
	defer worker.Disconnect(ctx)
	m = <-worker.Messages()
	fmt.Printf("next run: %s (dup %v)\n", m.Payload, m.Dup)
	if err := m.Ack(); err != nil { // processed: now the broker forgets it
		log.Fatal(err)
	}
	// Output:
	// first run: resize photo 42 (dup false); dies before m.Ack
	// next run: resize photo 42 (dup true)
}

// TLS with a private certificate authority: the client trusts the CA's
// certificate, read from a PEM file, rather than the system's roots.
func Example_tlsCustomCA() {
	// A CA and a server certificate for 127.0.0.1, as an operator would
	// have them in files.
	certs, err := testcert.New()
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tern-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	files, err := certs.WriteFiles(dir)
	if err != nil {
		log.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig(false))
	if err != nil {
		log.Fatal(err)
	}
	srv := broker.New(broker.Options{})
	go srv.Serve(l)
	defer srv.Close()
	url := "mqtts://" + l.Addr().String()

	// The client side: the CA's PEM file into a pool.
	pem, err := os.ReadFile(files.CACert)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		log.Fatal("no certificate in the CA file")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mustConnect(ctx, client.Options{Servers: []string{url}, TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	defer c.Disconnect(ctx)
	fmt.Println("connected over TLS:", c.IsConnected())

	// Without the CA, the server's certificate is not trusted.
	other, err := client.New(client.Options{Servers: []string{url}, TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	err = other.Connect(ctx)
	var unknown x509.UnknownAuthorityError
	fmt.Println("without the CA:", errors.As(err, &unknown))
	// Output:
	// connected over TLS: true
	// without the CA: true
}
