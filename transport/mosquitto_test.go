package transport_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/transport"
)

// TestAgainstMosquitto dials a real broker on each transport and does an
// MQTT CONNECT by hand: the CONNACK proves the bytes arrived intact and the
// WebSocket framing and subprotocol suit mosquitto [MQTT-6.0.0-3].
func TestAgainstMosquitto(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{TLS: true, WebSockets: true, SecureWebSockets: true})
	tlsOpts := &transport.Options{TLSConfig: b.ClientTLS()}
	for _, tt := range []struct {
		url  string
		opts *transport.Options
	}{
		{b.URL, nil},
		{strings.Replace(b.URL, "mqtt://", "tcp://", 1), nil},
		{b.TLSURL, tlsOpts},
		{strings.Replace(b.TLSURL, "mqtts://", "ssl://", 1), tlsOpts},
		{strings.Replace(b.TLSURL, "127.0.0.1", "localhost", 1), tlsOpts},
		{b.WSURL, nil},
		{strings.TrimSuffix(b.WSURL, "/mqtt"), nil}, // default path /mqtt
		{b.WSSURL, tlsOpts},
	} {
		t.Run(tt.url, func(t *testing.T) {
			c, err := transport.Dial(ctxT(t), tt.url, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mqttConnect(t, c)
		})
	}
}

// mqttConnect sends CONNECT and expects CONNACK accepted, then PINGREQ and
// PINGRESP, then DISCONNECT.
func mqttConnect(t *testing.T, c io.ReadWriter) {
	t.Helper()
	if dc, ok := c.(interface{ SetDeadline(time.Time) error }); ok {
		dc.SetDeadline(time.Now().Add(10 * time.Second))
	}
	// CONNECT and PINGREQ in one write: one WebSocket frame holding two
	// packets [MQTT-6.0.0-2].
	if _, err := c.Write(append(append([]byte{}, connect...), 0xc0, 0x00)); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if want := []byte{0x20, 0x02, 0x00, 0x00, 0xd0, 0x00}; string(got) != string(want) {
		t.Fatalf("got % x, want CONNACK and PINGRESP % x", got, want)
	}
	if _, err := c.Write([]byte{0xe0, 0x00}); err != nil {
		t.Fatalf("write DISCONNECT: %v", err)
	}
}

func TestMosquittoClientCertificate(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{RequireClientCert: true, SecureWebSockets: true})
	for _, url := range []string{b.TLSURL, b.WSSURL} {
		t.Run(url, func(t *testing.T) {
			c, err := transport.Dial(ctxT(t), url, &transport.Options{TLSConfig: b.ClientTLS()})
			if err != nil {
				t.Fatal(err)
			}
			mqttConnect(t, c)
			c.Close()

			// Trusting the CA but without a certificate of our own, the
			// broker refuses: at the handshake, or at the first read with
			// TLS 1.3.
			c, err = transport.Dial(ctxT(t), url, &transport.Options{TLSConfig: &tls.Config{RootCAs: b.Certs.Pool}})
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write(connect)
				_, err = io.ReadFull(c, make([]byte, 4))
				c.Close()
			}
			if err == nil {
				t.Fatal("broker accepted a client without a certificate")
			}
			t.Logf("refused as expected: %v", err)
		})
	}
}

// appendVarint appends an MQTT remaining length.
func appendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// connectID returns CONNECT with clean session and the client id.
func connectID(id string) []byte {
	body := append([]byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, byte(len(id))}, id...)
	return append(appendVarint([]byte{0x10}, len(body)), body...)
}

// TestMosquittoLargeMessages publishes messages of every WebSocket length
// class through mosquitto, from one WebSocket client to another: tern's
// masked frames with 16- and 64-bit lengths reach the broker intact, and
// the broker's frames, however it cuts them, reassemble into the same
// bytes [MQTT-6.0.0-2].
func TestMosquittoLargeMessages(t *testing.T) {
	b := mosquitto.Start(t, mosquitto.Config{WebSockets: true, SecureWebSockets: true})
	for _, url := range []string{b.WSURL, b.WSSURL} {
		t.Run(url, func(t *testing.T) {
			opts := &transport.Options{TLSConfig: b.ClientTLS()}
			sub, err := transport.Dial(ctxT(t), url, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			pub, err := transport.Dial(ctxT(t), url, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			for _, c := range []net.Conn{sub, pub} {
				c.SetDeadline(time.Now().Add(20 * time.Second))
			}
			read := func(c net.Conn, n int) []byte {
				t.Helper()
				buf := make([]byte, n)
				if _, err := io.ReadFull(c, buf); err != nil {
					t.Fatalf("read %d bytes: %v", n, err)
				}
				return buf
			}
			sub.Write(connectID("sub"))
			pub.Write(connectID("pub"))
			for _, c := range []net.Conn{sub, pub} {
				if got := read(c, 4); !bytes.Equal(got, connack) {
					t.Fatalf("CONNACK % x", got)
				}
			}
			// SUBSCRIBE id 1 to "t/big" at QoS 0; SUBACK grants 0.
			sub.Write([]byte{0x82, 0x0a, 0x00, 0x01, 0x00, 0x05, 't', '/', 'b', 'i', 'g', 0x00})
			if got := read(sub, 5); !bytes.Equal(got, []byte{0x90, 0x03, 0x00, 0x01, 0x00}) {
				t.Fatalf("SUBACK % x", got)
			}
			// mosquitto 2.0.11 sends large messages to WebSocket clients
			// at about 40 KB/s (libwebsockets writes a slice per service
			// loop), so the largest size here is the first past 64 KiB.
			for _, n := range []int{0, 1, 118, 119, 65536} {
				payload := make([]byte, n)
				for i := range payload {
					payload[i] = byte(i*7 + n)
				}
				msg := appendVarint([]byte{0x30}, 7+n)
				msg = append(msg, 0x00, 0x05, 't', '/', 'b', 'i', 'g')
				msg = append(msg, payload...)
				if _, err := pub.Write(msg); err != nil {
					t.Fatal(err)
				}
				if got := read(sub, len(msg)); !bytes.Equal(got, msg) {
					t.Fatalf("%d-byte payload: received PUBLISH differs", n)
				}
			}
		})
	}
}
