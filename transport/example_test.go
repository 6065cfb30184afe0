package transport_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/ternmq/mqtt/transport"
)

// A server listens for MQTT over WebSocket and a client dials it; both see
// a plain net.Conn carrying the MQTT byte stream.
func Example() {
	ln, err := transport.Listen("ws://127.0.0.1:0/mqtt", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(c, c, 2) // echo one PINGREQ
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, "ws://"+ln.Addr().String()+"/mqtt", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte{0xc0, 0x00}) // PINGREQ
	buf := make([]byte, 2)
	io.ReadFull(conn, buf)
	fmt.Printf("% x via %s\n", buf, conn.(*transport.WebSocketConn).Subprotocol())
	// Output: c0 00 via mqtt
}

// Dial a broker over TLS with a client certificate. The custom dialer is
// where a SOCKS or HTTP proxy would plug in.
func ExampleDial() {
	cert, err := tls.LoadX509KeyPair("client.crt", "client.key")
	if err != nil {
		log.Print(err)
		return
	}
	opts := &transport.Options{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{KeepAlive: 30 * time.Second}
			return d.DialContext(ctx, network, addr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, "mqtts://broker.example:8883", opts)
	if err != nil {
		log.Print(err)
		return
	}
	defer conn.Close()
}

// Serve MQTT over WebSocket at /mqtt beside a web site on the same port.
func ExampleWebSocketHandler() {
	mqtt := transport.NewWebSocketHandler(nil)
	mux := http.NewServeMux()
	mux.Handle("/mqtt", mqtt)
	mux.Handle("/", http.FileServer(http.Dir("static")))
	go http.ListenAndServe("127.0.0.1:8080", mux)

	// mqtt is a net.Listener: hand it to the MQTT server.
	for {
		conn, err := mqtt.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			// serve the MQTT session on conn
		}()
	}
}
