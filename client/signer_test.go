package client_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

// fixedNow is the time certificates are checked at: never the wall clock.
var fixedNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

func newSigner(t *testing.T) (*client.Client, crypto.Signer) {
	t.Helper()
	c, _ := dial(t, clienttest.Options{})
	ctx := context.Background()
	if _, err := c.Create(ctx, "tls/server", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Signer(ctx, "tls/server")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	return c, s
}

// selfSigned makes a CA-capable self-signed certificate for host with s.
func selfSigned(t *testing.T, s crypto.Signer, host string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestSignerX509(t *testing.T) {
	_, s := newSigner(t)
	if _, ok := s.Public().(ed25519.PublicKey); !ok {
		t.Fatalf("Public() is %T, want ed25519.PublicKey", s.Public())
	}
	cert := selfSigned(t, s, "keystored.test")
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Fatalf("CheckSignatureFrom(self): %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "keystored.test", CurrentTime: fixedNow}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// A certificate signed by the CA for another key.
	leafPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(8),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    cert.NotBefore,
		NotAfter:     cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, cert, leafPub, s)
	if err != nil {
		t.Fatalf("CreateCertificate(leaf): %v", err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(cert); err != nil {
		t.Errorf("leaf.CheckSignatureFrom(ca): %v", err)
	}
}

func TestSignerTLS(t *testing.T) {
	_, s := newSigner(t)
	cert := selfSigned(t, s, "keystored.test")
	roots := x509.NewCertPool()
	roots.AddCert(cert)

	serverConn, clientConn := net.Pipe()
	server := tls.Server(serverConn, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: s, Leaf: cert}},
		MinVersion:   tls.VersionTLS13,
		// net.Pipe is unbuffered: a post-handshake session ticket would
		// block the server until the client reads.
		SessionTicketsDisabled: true,
	})
	cl := tls.Client(clientConn, &tls.Config{
		RootCAs:    roots,
		ServerName: "keystored.test",
		Time:       func() time.Time { return fixedNow },
		MinVersion: tls.VersionTLS13,
	})
	errc := make(chan error, 1)
	go func() {
		defer server.Close()
		if err := server.Handshake(); err != nil {
			errc <- err
			return
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil {
			errc <- err
			return
		}
		_, err := server.Write(buf)
		errc <- err
	}()
	// Close the pipe, not the TLS conn: close_notify would wait for a
	// reader.
	defer clientConn.Close()
	if err := cl.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if _, err := cl.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(cl, got); err != nil || string(got) != "hello" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server: %v", err)
	}
	if st := cl.ConnectionState(); len(st.PeerCertificates) != 1 || !st.PeerCertificates[0].Equal(cert) {
		t.Errorf("peer certificates %d, want the keystored certificate", len(st.PeerCertificates))
	}
}

func TestSignerRefusals(t *testing.T) {
	ctx := context.Background()
	c, s := newSigner(t)
	if _, err := s.Sign(rand.Reader, make([]byte, 64), crypto.SHA512); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("Sign(SHA512) = %v, want ErrNotSupported (pure Ed25519 only)", err)
	}
	if _, err := s.Sign(rand.Reader, []byte("m"), &ed25519.Options{Context: "ctx"}); !errors.Is(err, client.ErrNotSupported) {
		t.Errorf("Sign(context) = %v, want ErrNotSupported", err)
	}
	var nilOpts *ed25519.Options
	sig, err := s.Sign(rand.Reader, []byte("m"), nilOpts)
	if err != nil || !ed25519.Verify(s.Public().(ed25519.PublicKey), []byte("m"), sig) {
		t.Errorf("Sign(typed nil opts) = %v; want a valid signature", err)
	}
	if _, err := s.Sign(rand.Reader, []byte("m"), &ed25519.Options{}); err != nil {
		t.Errorf("Sign(&ed25519.Options{}) = %v", err)
	}

	// Bound to version 1: a rotate does not change what it signs with.
	if _, err := c.Rotate(ctx, "tls/server"); err != nil {
		t.Fatal(err)
	}
	sig, err = s.Sign(rand.Reader, []byte("m"), crypto.Hash(0))
	if err != nil || !ed25519.Verify(s.Public().(ed25519.PublicKey), []byte("m"), sig) {
		t.Errorf("Sign after rotate = %v, want a signature of version 1", err)
	}
	s2, err := c.Signer(ctx, "tls/server@2")
	if err != nil {
		t.Fatalf("Signer(@2): %v", err)
	}
	if _, err := s2.Sign(nil, []byte("m"), crypto.Hash(0)); err != nil {
		t.Errorf("Signer(@2).Sign: %v", err)
	}

	// An ML-DSA key has a Signer; Ed448 too (TestSignerEveryAlgorithm).
	if _, err := c.Create(ctx, "p/mldsa", client.CreateOptions{Algorithm: client.MLDSA44}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Signer(ctx, "p/mldsa"); err != nil {
		t.Errorf("Signer(ml-dsa-44) = %v", err)
	}
	if _, err := c.Create(ctx, "p/box", client.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Signer(ctx, "p/box"); !errors.Is(err, client.ErrPermission) {
		t.Errorf("Signer(decrypt key) = %v, want ErrPermission", err)
	}
	if _, err := c.Signer(ctx, "p/missing"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Signer(missing) = %v, want ErrNotFound", err)
	}
	if _, err := c.Signer(ctx, "p/k@0"); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Signer(@0) = %v, want ErrInvalid", err)
	}
}
