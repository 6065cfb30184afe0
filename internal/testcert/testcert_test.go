package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestCertificatesVerify(t *testing.T) {
	c := Must(t)
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := c.Server.Leaf.Verify(x509.VerifyOptions{Roots: c.Pool, DNSName: name}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	if _, err := c.Server.Leaf.Verify(x509.VerifyOptions{Roots: c.Pool, DNSName: "example.com"}); err == nil {
		t.Error("server certificate valid for example.com")
	}
	if _, err := c.Client.Leaf.Verify(x509.VerifyOptions{Roots: c.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	other := Must(t)
	if _, err := c.Server.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool}); err == nil {
		t.Error("certificate verifies against another CA")
	}
}

func TestHandshakeWithClientCertificate(t *testing.T) {
	c := Must(t)
	a, b := net.Pipe()
	errc := make(chan error, 1)
	var peer string
	go func() {
		s := tls.Server(b, c.ServerConfig(true))
		err := s.Handshake()
		if err == nil {
			peer = s.ConnectionState().PeerCertificates[0].Subject.CommonName
		}
		s.Close()
		errc <- err
	}()
	cfg := c.ClientConfig()
	cfg.ServerName = "localhost"
	cl := tls.Client(a, cfg)
	if err := cl.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if err := <-errc; err != nil || peer != "tern-test-client" {
		t.Fatalf("server: %v, peer %q", err, peer)
	}
}

func TestWriteFiles(t *testing.T) {
	c := Must(t)
	f, err := c.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{f.CACert: c.CACertPEM, f.ServerKey: c.ServerKeyPEM, f.ClientCert: c.ClientCertPEM} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(want) || !filepath.IsAbs(path) {
			t.Fatalf("%s: %v", path, err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
			t.Fatalf("%s mode %v, want 0644 so a broker's user can read it", path, fi.Mode())
		}
	}
	if _, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey); err != nil {
		t.Fatal(err)
	}
}
