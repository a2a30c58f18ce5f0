package e2e

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/client"
)

// Interop with outside implementations (issue 11): OpenSSL verifies the
// signatures of every algorithm it has (3.0 lacks Ed25519ph and ML-DSA),
// made of a whole message and of a digest the CLI streamed; an ECDSA
// P-256 CA and leaf made through client.Signer pass openssl verify; a TLS
// 1.3 server on the leaf's key is reached by openssl s_client.

// opensslPath returns the openssl binary, or skips saying why.
func opensslPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (apt-get install openssl): the interop checks need it as the independent verifier")
	}
	return p
}

// runOpenSSL runs openssl with args, bounded in time, and returns its
// combined output and error.
func runOpenSSL(t *testing.T, openssl string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, args...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenSSLVerifiesEveryAlgorithm(t *testing.T) {
	openssl := opensslPath(t)
	d := start(t)
	c := dial(t, d)
	dir := t.TempDir()
	msg := writeFile(t, filepath.Join(dir, "msg"), []byte("signed by keystored\x00\xff\n"))
	other := writeFile(t, filepath.Join(dir, "other"), []byte("something else"))
	pss := []string{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-sigopt", "rsa_mgf1_md:sha256"}
	for _, tc := range []struct {
		alg    client.Algorithm
		digest string   // keystorectl sign --digest; "" for whole-message algorithms
		dgst   []string // openssl dgst options; nil: pkeyutl -rawin
	}{
		{alg: client.Ed25519},
		{alg: client.Ed448},
		{alg: client.ECDSAP256, digest: "sha256", dgst: []string{"-sha256"}},
		{alg: client.ECDSAP384, digest: "sha384", dgst: []string{"-sha384"}},
		{alg: client.RSA2048PSS, digest: "sha256", dgst: append([]string{"-sha256"}, pss...)},
		{alg: client.RSA3072PSS, digest: "sha256", dgst: append([]string{"-sha256"}, pss...)},
		{alg: client.RSA4096PSS, digest: "sha256", dgst: append([]string{"-sha256"}, pss...)},
		{alg: client.RSA2048PKCS1, digest: "sha256", dgst: []string{"-sha256"}},
		{alg: client.RSA3072PKCS1, digest: "sha256", dgst: []string{"-sha256"}},
		{alg: client.RSA4096PKCS1, digest: "sha256", dgst: []string{"-sha256"}},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			key := "interop/" + string(tc.alg)
			if _, err := c.Create(context.Background(), key, client.CreateOptions{Algorithm: tc.alg}); err != nil {
				t.Fatal(err)
			}
			pub := writeFile(t, filepath.Join(dir, string(tc.alg)+".pem"), ctlOK(t, d, nil, "pubkey", key, "--format", "pem").stdout)
			if out, err := runOpenSSL(t, openssl, nil, "pkey", "-pubin", "-in", pub, "-noout"); err != nil {
				t.Fatalf("openssl pkey -pubin: %v\n%s", err, out)
			}
			verify := func(sig, in string) error {
				var args []string
				if tc.dgst == nil {
					args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", in, "-sigfile", sig}
				} else {
					args = append(append([]string{"dgst"}, tc.dgst...), "-verify", pub, "-signature", sig, in)
				}
				out, err := runOpenSSL(t, openssl, nil, args...)
				if err == nil && !strings.Contains(out, "Verified OK") && !strings.Contains(out, "Signature Verified Successfully") {
					err = errors.New("no success line")
				}
				if err != nil {
					return errors.New(err.Error() + "\n" + out)
				}
				return nil
			}
			sig := filepath.Join(dir, string(tc.alg)+".sig")
			ctlOK(t, d, nil, "sign", key, "--in", msg, "--out", sig)
			if err := verify(sig, msg); err != nil {
				t.Fatalf("openssl verify of a message signature: %v", err)
			}
			if err := verify(sig, other); err == nil {
				t.Fatal("openssl verified a signature over another message")
			}
			if tc.digest == "" {
				return
			}
			dsig := filepath.Join(dir, string(tc.alg)+".dsig")
			ctlOK(t, d, nil, "sign", key, "--digest", tc.digest, "--in", msg, "--out", dsig)
			if err := verify(dsig, msg); err != nil {
				t.Fatalf("openssl verify of a digest signature: %v", err)
			}
			ctlOK(t, d, nil, "verify", key+"@1", "--digest", tc.digest, "--sig", dsig, "--in", msg)
		})
	}
}

// fixed validity: before any clock a test machine has, and long after.
var (
	notBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
)

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestX509AndTLSWithSigner: a CA and a leaf on ECDSA P-256 keys made with
// client.Signer pass openssl verify, and a TLS 1.3 server whose key is
// the leaf's keystored key completes handshakes with openssl s_client,
// across a rotation of the leaf key (the Signer is bound to its version)
// and no more once that version is revoked.
func TestX509AndTLSWithSigner(t *testing.T) {
	openssl := opensslPath(t)
	d := start(t)
	c := dial(t, d)
	ctx := context.Background()
	for _, k := range []string{"pki/ca", "pki/leaf"} {
		if _, err := c.Create(ctx, k, client.CreateOptions{Algorithm: client.ECDSAP256}); err != nil {
			t.Fatal(err)
		}
	}
	caSigner, err := c.Signer(ctx, "pki/ca")
	if err != nil {
		t.Fatal(err)
	}
	leafSigner, err := c.Signer(ctx, "pki/leaf")
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keystored test CA"},
		NotBefore: notBefore, NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caSigner.Public(), caSigner)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: notBefore, NotAfter: notAfter,
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, leafSigner.Public(), caSigner)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := writeFile(t, filepath.Join(dir, "ca.pem"), certPEM(caDER))
	leafFile := writeFile(t, filepath.Join(dir, "leaf.pem"), certPEM(leafDER))
	if out, err := runOpenSSL(t, openssl, nil, "verify", "-CAfile", caFile, leafFile); err != nil || !strings.Contains(out, "leaf.pem: OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafSigner}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second)) // a stuck peer ends, the test does not hang
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err == nil && line == "ping\n" {
					_, _ = conn.Write([]byte("pong\n")) // the client checks what arrives
				}
			}()
		}
	}()
	handshake := func() (string, error) {
		return runOpenSSL(t, openssl, []byte("ping\n"), "s_client", "-connect", ln.Addr().String(), "-servername", "localhost",
			"-tls1_3", "-CAfile", caFile, "-verify_return_error", "-verify_hostname", "localhost", "-ign_eof", "-brief")
	}
	out, err := handshake()
	if err != nil || !strings.Contains(out, "Verification: OK") || !strings.Contains(out, "TLSv1.3") || !strings.Contains(out, "pong") {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	// A rotation does not break the server: its Signer keeps version 1.
	if _, err := c.Rotate(ctx, "pki/leaf"); err != nil {
		t.Fatal(err)
	}
	if out, err := handshake(); err != nil || !strings.Contains(out, "pong") {
		t.Fatalf("handshake after a rotation: %v\n%s", err, out)
	}
	// Once version 1 is revoked, the server can no longer sign: no
	// handshake completes, and the Signer says why.
	if _, err := c.RevokeVersion(ctx, "pki/leaf", 1); err != nil {
		t.Fatal(err)
	}
	if out, err := handshake(); err == nil && strings.Contains(out, "pong") {
		t.Fatalf("a handshake completed with a revoked version:\n%s", out)
	}
	if _, err := leafSigner.Sign(rand.Reader, make([]byte, 32), crypto.SHA256); !errors.Is(err, client.ErrKeyRevoked) {
		t.Fatalf("Signer of a revoked version: %v, want ErrKeyRevoked", err)
	}
}
