package client_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

// signerCase is a signing algorithm, how a caller signs with its Signer,
// and how a standard implementation verifies the result.
type signerCase struct {
	alg  client.Algorithm
	opts crypto.SignerOpts
	// prepare turns the message into what Sign takes (a digest, or the
	// message itself).
	prepare func(msg []byte) []byte
	// verify checks sig over msg with pub (Signer.Public()).
	verify func(t *testing.T, pub crypto.PublicKey, msg, sig []byte) bool
}

func sum256(m []byte) []byte { h := sha256.Sum256(m); return h[:] }
func sum384(m []byte) []byte { h := sha512.Sum384(m); return h[:] }
func sum512(m []byte) []byte { h := sha512.Sum512(m); return h[:] }
func whole(m []byte) []byte  { return m }

// pubAs returns pub as a T or fails t.
func pubAs[T any](t *testing.T, pub crypto.PublicKey) T {
	t.Helper()
	k, ok := pub.(T)
	if !ok {
		var want T
		t.Fatalf("Public() is %T, want %T", pub, want)
	}
	return k
}

var signerCases = []signerCase{
	{client.Ed25519, crypto.Hash(0), whole, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		return ed25519.Verify(pubAs[ed25519.PublicKey](t, pub), m, s)
	}},
	{client.Ed25519ph, &ed25519.Options{Hash: crypto.SHA512}, sum512, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		return ed25519.VerifyWithOptions(pubAs[ed25519.PublicKey](t, pub), sum512(m), s, &ed25519.Options{Hash: crypto.SHA512}) == nil
	}},
	{client.Ed448, crypto.Hash(0), whole, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		return ed448.Verify(pubAs[ed448.PublicKey](t, pub), m, s, "")
	}},
	{client.MLDSA65, crypto.Hash(0), whole, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		return mldsa65.Verify(pubAs[*mldsa65.PublicKey](t, pub), m, nil, s)
	}},
	{client.ECDSAP256, crypto.SHA256, sum256, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		return ecdsa.VerifyASN1(pubAs[*ecdsa.PublicKey](t, pub), sum256(m), s)
	}},
	{client.ECDSAP384, crypto.SHA384, sum384, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		return ecdsa.VerifyASN1(pubAs[*ecdsa.PublicKey](t, pub), sum384(m), s)
	}},
	{client.RSA2048PSS, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}, sum256, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		// The salt is 32 bytes: a verifier fixed to that length accepts it.
		return rsa.VerifyPSS(pubAs[*rsa.PublicKey](t, pub), crypto.SHA256, sum256(m), s, &rsa.PSSOptions{SaltLength: 32}) == nil
	}},
	{client.RSA2048PKCS1, crypto.SHA256, sum256, func(t *testing.T, pub crypto.PublicKey, m, s []byte) bool {
		return rsa.VerifyPKCS1v15(pubAs[*rsa.PublicKey](t, pub), crypto.SHA256, sum256(m), s) == nil
	}},
}

// newAlgSigners creates one key per signerCase algorithm and returns the
// client and a Signer for each.
func newAlgSigners(t *testing.T) (*client.Client, *clienttest.Server, map[client.Algorithm]client.KeySigner) {
	t.Helper()
	c, srv := dial(t, clienttest.Options{})
	ctx := context.Background()
	signers := map[client.Algorithm]client.KeySigner{}
	for _, tc := range signerCases {
		key := "alg/" + string(tc.alg)
		if _, err := c.Create(ctx, key, client.CreateOptions{Algorithm: tc.alg}); err != nil {
			t.Fatalf("Create(%s): %v", tc.alg, err)
		}
		s, err := c.Signer(ctx, key)
		if err != nil {
			t.Fatalf("Signer(%s): %v", tc.alg, err)
		}
		signers[tc.alg] = s
	}
	return c, srv, signers
}

// Every signing algorithm has a Signer whose signatures a standard
// implementation verifies against Public(), and which refuses the opts
// its key cannot honour.
func TestSignerEveryAlgorithm(t *testing.T) {
	ctx := context.Background()
	c, _, signers := newAlgSigners(t)
	msg := []byte("keystored signs for crypto.Signer callers")
	for _, tc := range signerCases {
		t.Run(string(tc.alg), func(t *testing.T) {
			s := signers[tc.alg]
			kv := s.KeyVersion()
			if kv.Algorithm != tc.alg || kv.Version != 1 || kv.Key != "app/alg/"+string(tc.alg) {
				t.Errorf("KeyVersion() = %s %s, want app/alg/%s@1", kv.Ref(), kv.Algorithm, tc.alg)
			}
			if got := client.DigestHash(tc.alg); got != tc.opts.HashFunc() {
				t.Errorf("DigestHash = %v, want %v", got, tc.opts.HashFunc())
			}
			sig, err := s.Sign(nil, tc.prepare(msg), tc.opts)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if !tc.verify(t, s.Public(), msg, sig) {
				t.Fatal("the signature does not verify with the standard implementation")
			}
			if tc.verify(t, s.Public(), []byte("another message"), sig) {
				t.Fatal("the signature verifies over another message")
			}
			// The daemon verifies it too, over the message.
			if err := c.Verify(ctx, kv.Key, 1, msg, sig); err != nil {
				t.Errorf("Verify(message) = %v", err)
			}
			if h := client.DigestHash(tc.alg); h != 0 {
				if err := c.VerifyDigest(ctx, kv.Key, 1, h, tc.prepare(msg), sig); err != nil {
					t.Errorf("VerifyDigest = %v", err)
				}
			}
		})
	}
}

func TestSignerOptsRefused(t *testing.T) {
	_, _, signers := newAlgSigners(t)
	d256, d384, d512 := sum256(nil), sum384(nil), sum512(nil)
	tests := []struct {
		alg    client.Algorithm
		name   string
		digest []byte
		opts   crypto.SignerOpts
		want   error
	}{
		{client.Ed25519, "prehash", d512, crypto.SHA512, client.ErrNotSupported},
		{client.Ed25519, "context", []byte("m"), &ed25519.Options{Context: "c"}, client.ErrNotSupported},
		{client.Ed25519, "pss", d256, &rsa.PSSOptions{Hash: crypto.SHA256}, client.ErrInvalid},
		{client.Ed25519ph, "pure", []byte("m"), crypto.Hash(0), client.ErrNotSupported},
		{client.Ed25519ph, "context", d512, &ed25519.Options{Hash: crypto.SHA512, Context: "c"}, client.ErrNotSupported},
		{client.Ed25519ph, "sha256", d256, crypto.SHA256, client.ErrInvalid},
		{client.Ed25519ph, "short digest", d256, &ed25519.Options{Hash: crypto.SHA512}, client.ErrInvalid},
		{client.Ed448, "hashed", d256, crypto.SHA256, client.ErrNotSupported},
		{client.Ed448, "ed448ph", []byte("m"), ed448.SignerOptions{Scheme: ed448.ED448Ph}, client.ErrNotSupported},
		{client.Ed448, "context", []byte("m"), ed448.SignerOptions{Context: "c"}, client.ErrNotSupported},
		{client.MLDSA65, "hashed", d256, crypto.SHA256, client.ErrNotSupported},
		{client.ECDSAP256, "whole message", []byte("m"), crypto.Hash(0), client.ErrInvalid},
		{client.ECDSAP256, "sha384", d384, crypto.SHA384, client.ErrInvalid},
		{client.ECDSAP256, "short digest", d256[:31], crypto.SHA256, client.ErrInvalid},
		{client.ECDSAP384, "sha256", d256, crypto.SHA256, client.ErrInvalid},
		{client.RSA2048PSS, "pkcs1 opts", d256, crypto.SHA256, client.ErrInvalid},
		{client.RSA2048PSS, "pss sha384", d384, &rsa.PSSOptions{Hash: crypto.SHA384}, client.ErrInvalid},
		{client.RSA2048PSS, "salt 20", d256, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 20}, client.ErrInvalid},
		{client.RSA2048PSS, "nil pss", d256, (*rsa.PSSOptions)(nil), client.ErrInvalid},
		{client.RSA2048PKCS1, "pss opts", d256, &rsa.PSSOptions{Hash: crypto.SHA256}, client.ErrInvalid},
		{client.RSA2048PKCS1, "sha512", d512, crypto.SHA512, client.ErrInvalid},
	}
	for _, tt := range tests {
		sig, err := signers[tt.alg].Sign(nil, tt.digest, tt.opts)
		if !errors.Is(err, tt.want) || sig != nil {
			t.Errorf("%s %s: Sign = %x, %v; want %v", tt.alg, tt.name, sig, err, tt.want)
		}
	}
	// What the standard library accepts, keystored's signers accept too.
	accepted := []struct {
		alg    client.Algorithm
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{client.Ed25519, "typed nil", []byte("m"), (*ed25519.Options)(nil)},
		{client.Ed25519, "nil", []byte("m"), nil},
		{client.Ed25519, "empty options", []byte("m"), &ed25519.Options{}},
		{client.Ed25519ph, "crypto.SHA512", d512, crypto.SHA512},
		{client.Ed448, "pure options", []byte("m"), ed448.SignerOptions{Scheme: ed448.ED448}},
		{client.RSA2048PSS, "salt auto", d256, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthAuto}},
		{client.RSA2048PSS, "salt 32", d256, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 32}},
	}
	for _, tt := range accepted {
		if _, err := signers[tt.alg].Sign(nil, tt.digest, tt.opts); err != nil {
			t.Errorf("%s %s: Sign = %v", tt.alg, tt.name, err)
		}
	}
	// A PSS signature made for "auto" verifies with "auto".
	s := signers[client.RSA2048PSS]
	sig, err := s.Sign(nil, d256, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthAuto})
	if err != nil || rsa.VerifyPSS(s.Public().(*rsa.PublicKey), crypto.SHA256, d256, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) != nil {
		t.Errorf("PSS with SaltLength auto: %v", err)
	}
}

// A Signer is bound to its version: a rotate does not change what it
// signs with, and a revoke of that version stops it.
func TestSignerBoundToVersion(t *testing.T) {
	ctx := context.Background()
	c, _ := dial(t, clienttest.Options{})
	if _, err := c.Create(ctx, "tls/ec", client.CreateOptions{Algorithm: client.ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	s1, err := c.Signer(ctx, "tls/ec")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rotate(ctx, "tls/ec"); err != nil {
		t.Fatal(err)
	}
	d := sum256([]byte("after the rotate"))
	sig, err := s1.Sign(nil, d, crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign with the retired version: %v", err)
	}
	if !ecdsa.VerifyASN1(s1.Public().(*ecdsa.PublicKey), d, sig) {
		t.Fatal("the signature does not verify against the Signer's Public()")
	}
	s2, err := c.Signer(ctx, "tls/ec")
	if err != nil || s2.KeyVersion().Version != 2 {
		t.Fatalf("Signer after rotate: %v, version %d, want 2", err, s2.KeyVersion().Version)
	}
	if s1.Public().(*ecdsa.PublicKey).Equal(s2.Public()) {
		t.Fatal("versions 1 and 2 have one public key")
	}
	sOld, err := c.Signer(ctx, "tls/ec@1")
	if err != nil || !sOld.Public().(*ecdsa.PublicKey).Equal(s1.Public()) {
		t.Fatalf("Signer(@1) = %v; want version 1's key", err)
	}
	if _, err := c.RevokeVersion(ctx, "tls/ec", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Sign(nil, d, crypto.SHA256); !errors.Is(err, client.ErrKeyRevoked) {
		t.Fatalf("Sign with a revoked version = %v, want ErrKeyRevoked", err)
	}
	if _, err := c.Signer(ctx, "tls/ec@1"); !errors.Is(err, client.ErrKeyRevoked) {
		t.Fatalf("Signer(revoked @1) = %v, want ErrKeyRevoked", err)
	}
	if _, err := s2.Sign(nil, d, crypto.SHA256); err != nil {
		t.Fatalf("Sign with version 2: %v", err)
	}
	if _, err := c.Signer(ctx, "tls/ec@3"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Signer(@3) = %v, want ErrNotFound", err)
	}
}

// A TLS server on each TLS-capable key, at TLS 1.2 and 1.3, with the
// schemes TLSSignatureSchemes gives.
func TestSignerTLSAlgorithms(t *testing.T) {
	_, _, signers := newAlgSigners(t)
	for _, tt := range []struct {
		alg      client.Algorithm
		versions []uint16
	}{
		{client.ECDSAP256, []uint16{tls.VersionTLS12, tls.VersionTLS13}},
		{client.ECDSAP384, []uint16{tls.VersionTLS12, tls.VersionTLS13}},
		{client.RSA2048PSS, []uint16{tls.VersionTLS12, tls.VersionTLS13}},
		{client.RSA2048PKCS1, []uint16{tls.VersionTLS12}},
		{client.Ed25519, []uint16{tls.VersionTLS12, tls.VersionTLS13}},
	} {
		s := signers[tt.alg]
		tmpl := certTemplate("keystored.test", true)
		if tt.alg == client.RSA2048PSS {
			tmpl.SignatureAlgorithm = x509.SHA256WithRSAPSS
		}
		cert := createCert(t, tmpl, tmpl, s.Public(), s)
		for _, v := range tt.versions {
			tlsEcho(t, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: s, Leaf: cert,
				SupportedSignatureAlgorithms: client.TLSSignatureSchemes(tt.alg)}, cert, v)
		}
	}
	if got := client.TLSSignatureSchemes(client.Ed448); got != nil {
		t.Errorf("TLSSignatureSchemes(ed448) = %v, want none", got)
	}
}

// tlsEcho runs a TLS handshake of version v against a server with cert
// and checks an echo through it.
func tlsEcho(t *testing.T, serverCert tls.Certificate, root *x509.Certificate, v uint16) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(root)
	serverConn, clientConn := net.Pipe()
	server := tls.Server(serverConn, &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		MinVersion:   v, MaxVersion: v,
		SessionTicketsDisabled: true, // net.Pipe is unbuffered: a ticket would block the server
	})
	cl := tls.Client(clientConn, &tls.Config{
		RootCAs: roots, ServerName: "keystored.test",
		Time:       func() time.Time { return fixedNow },
		MinVersion: v, MaxVersion: v,
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
	defer clientConn.Close()
	if err := cl.Handshake(); err != nil {
		t.Fatalf("%x client handshake on %s: %v", v, root.PublicKeyAlgorithm, err)
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
	if st := cl.ConnectionState(); st.Version != v {
		t.Errorf("negotiated %x, want %x", st.Version, v)
	}
}

// certTemplate is a certificate template for host.
func certTemplate(host string, ca bool) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		DNSNames:     []string{host},
		NotBefore:    fixedNow.AddDate(-1, 0, 0),
		NotAfter:     fixedNow.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	tmpl.Subject.CommonName = host
	if ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	}
	return tmpl
}

// createCert makes a certificate of pub signed by signer and parses it.
func createCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(nil, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// An ECDSA P-256, P-384, RSA-PSS and RSA-PKCS#1 CA signs a leaf through
// x509.CreateCertificate; the chain verifies.
func TestSignerX509Algorithms(t *testing.T) {
	_, _, signers := newAlgSigners(t)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		alg  client.Algorithm
		sigs x509.SignatureAlgorithm // 0: Go's default for the key
		want x509.SignatureAlgorithm
	}{
		{client.ECDSAP256, 0, x509.ECDSAWithSHA256},
		{client.ECDSAP384, 0, x509.ECDSAWithSHA384},
		{client.RSA2048PSS, x509.SHA256WithRSAPSS, x509.SHA256WithRSAPSS},
		{client.RSA2048PKCS1, 0, x509.SHA256WithRSA},
	} {
		s := signers[tt.alg]
		ca := certTemplate("ca.keystored.test", true)
		ca.SignatureAlgorithm = tt.sigs
		caCert := createCert(t, ca, ca, s.Public(), s)
		if caCert.SignatureAlgorithm != tt.want {
			t.Errorf("%s: CA signed with %v, want %v", tt.alg, caCert.SignatureAlgorithm, tt.want)
		}
		leaf := certTemplate("keystored.test", false)
		leaf.SerialNumber = big.NewInt(8)
		leaf.SignatureAlgorithm = tt.sigs
		leafCert := createCert(t, leaf, caCert, &leafKey.PublicKey, s)
		roots := x509.NewCertPool()
		roots.AddCert(caCert)
		if _, err := leafCert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "keystored.test", CurrentTime: fixedNow}); err != nil {
			t.Errorf("%s: the leaf does not verify: %v", tt.alg, err)
		}
	}
	// A PSS key asked for PKCS #1 v1.5 (x509's default for RSA) fails
	// with the hint to set the signature algorithm.
	ca := certTemplate("ca.keystored.test", true)
	s := signers[client.RSA2048PSS]
	if _, err := x509.CreateCertificate(nil, ca, ca, s.Public(), s); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("CreateCertificate(PSS key, default algorithm) = %v, want ErrInvalid", err)
	}
}
