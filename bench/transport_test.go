package bench_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/testcert"
	"github.com/ternmq/mqtt/transport"
)

// transportPair returns a connected client and server on loopback for the
// scheme, made by transport.Dial and transport.Listen.
func transportPair(b *testing.B, scheme string) (client, server net.Conn) {
	b.Helper()
	certs := testcert.Must(b)
	ln, err := transport.Listen(scheme+"://127.0.0.1:0", &transport.Options{TLSConfig: certs.ServerConfig(false)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if tc, ok := c.(*tls.Conn); ok && err == nil {
			// crypto/tls handshakes on first use; the client's Dial waits
			// for it.
			tc.Handshake()
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err = transport.Dial(ctx, scheme+"://"+ln.Addr().String(), &transport.Options{TLSConfig: certs.ClientConfig()})
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// BenchmarkTransport streams MQTT-sized messages over loopback: each
// message is one Write (one WebSocket frame) on one side and an
// io.ReadFull of the same size on the other. "ws/client" sends masked
// frames client to server (the direction of publishes from clients),
// "ws/server" unmasked frames server to client. Compare ws with tcp, and
// wss with tls: the WebSocket layer's cost is the difference. cpu-ns/op is
// the process's CPU time per message, both sides included.
func BenchmarkTransport(b *testing.B) {
	for _, tt := range []struct {
		name, scheme string
		fromClient   bool
	}{
		{"tcp", "mqtt", true},
		{"ws/client", "ws", true},
		{"ws/server", "ws", false},
		{"tls", "mqtts", true},
		{"wss/client", "wss", true},
	} {
		for _, size := range []struct {
			name string
			n    int
		}{{"64B", 64}, {"1KiB", 1024}, {"16KiB", 16 << 10}} {
			b.Run(tt.name+"/"+size.name, func(b *testing.B) {
				client, server := transportPair(b, tt.scheme)
				w, r := client, server
				if !tt.fromClient {
					w, r = server, client
				}
				msg := make([]byte, size.n)
				buf := make([]byte, size.n)
				// One round to set up buffers on both sides.
				go w.Write(msg)
				if _, err := io.ReadFull(r, buf); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size.n))
				b.ReportAllocs()
				cpu0 := processCPU()
				b.ResetTimer()
				errc := make(chan error, 1)
				go func() {
					for i := 0; i < b.N; i++ {
						if _, err := w.Write(msg); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				for i := 0; i < b.N; i++ {
					if _, err := io.ReadFull(r, buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
