// Package testcert generates a throwaway certificate authority with a
// server and a client certificate, for TLS tests against tern's own
// listeners and against real brokers such as mosquitto.
//
// The server certificate is valid for 127.0.0.1, ::1 and localhost (as
// subject alternative names: Go ignores the common name). Keys are ECDSA
// P-256 in PKCS #8 PEM, which both Go and OpenSSL read.
//
//	certs := testcert.Must(t)
//	ln, _ := transport.Listen("mqtts://127.0.0.1:0", &transport.Options{TLSConfig: certs.ServerConfig(false)})
//	conn, _ := transport.Dial(ctx, "mqtts://"+ln.Addr().String(), &transport.Options{TLSConfig: certs.ClientConfig()})
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs is a CA with one server and one client certificate it signed.
type Certs struct {
	CACertPEM     []byte // the CA certificate
	ServerCertPEM []byte // server certificate, SANs 127.0.0.1, ::1, localhost
	ServerKeyPEM  []byte // server private key (PKCS #8)
	ClientCertPEM []byte // client certificate, CN "tern-test-client"
	ClientKeyPEM  []byte // client private key (PKCS #8)

	CA     *x509.Certificate
	Pool   *x509.CertPool // holds CA only
	Server tls.Certificate
	Client tls.Certificate
}

// Files are the paths written by WriteFiles.
type Files struct {
	CACert, ServerCert, ServerKey, ClientCert, ClientKey string
}

// New generates a fresh CA and its server and client certificates.
func New() (*Certs, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tern test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	c := &Certs{CA: ca, Pool: x509.NewCertPool(), CACertPEM: pemBlock("CERTIFICATE", caDER)}
	c.Pool.AddCert(ca)

	leaf := func(tmpl *x509.Certificate) (certPEM, keyPEM []byte, cert tls.Certificate, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, cert, err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(7*24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, cert, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, cert, err
		}
		certPEM, keyPEM = pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER)
		cert, err = tls.X509KeyPair(certPEM, keyPEM)
		return certPEM, keyPEM, cert, err
	}
	c.ServerCertPEM, c.ServerKeyPEM, c.Server, err = leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("testcert: server certificate: %w", err)
	}
	c.ClientCertPEM, c.ClientKeyPEM, c.Client, err = leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "tern-test-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("testcert: client certificate: %w", err)
	}
	return c, nil
}

// Must is New for tests: it fails t on error.
func Must(t testing.TB) *Certs {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatalf("testcert: %v", err)
	}
	return c
}

// ServerConfig returns a server TLS config presenting the server
// certificate. Client certificates signed by the CA are verified when
// given, and demanded when requireClientCert is true.
func (c *Certs) ServerConfig(requireClientCert bool) *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if requireClientCert {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		Certificates: []tls.Certificate{c.Server},
		ClientCAs:    c.Pool,
		ClientAuth:   auth,
	}
}

// ClientConfig returns a client TLS config trusting only the CA and
// presenting the client certificate when asked.
func (c *Certs) ClientConfig() *tls.Config {
	return &tls.Config{
		RootCAs:      c.Pool,
		Certificates: []tls.Certificate{c.Client},
	}
}

// WriteFiles writes the PEM files into dir as ca.crt, server.crt,
// server.key, client.crt and client.key. They are world-readable (0644) on
// purpose: a broker started as root, such as mosquitto, drops to another
// user before reading them. Use a t.TempDir.
func (c *Certs) WriteFiles(dir string) (Files, error) {
	f := Files{
		CACert:     filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
	}
	for path, data := range map[string][]byte{
		f.CACert: c.CACertPEM, f.ServerCert: c.ServerCertPEM, f.ServerKey: c.ServerKeyPEM,
		f.ClientCert: c.ClientCertPEM, f.ClientKey: c.ClientKeyPEM,
	} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return Files{}, err
		}
		// WriteFile's mode is filtered by the umask; make it exact.
		if err := os.Chmod(path, 0o644); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
