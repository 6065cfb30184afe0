package transport_test

import (
	"crypto/tls"
	"io"
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
